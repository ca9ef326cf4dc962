"""The jobs against answers that leave out what the spec does not require (or send it null).

An independent server may omit any field its DTO does not list as ``required``, or answer
``null`` where the DTO says ``nullable`` (docs/api-assumptions.md #33). Each case removes such a
field from the emulator's stored entities, so every answer lacks it, runs the real job, and pins
its exit code and outcome: the job still works, or fails that item with a message naming the
entity and the field, never with a crash.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from bulkops.commands import planned
from bulkops.commands.session import RunOptions
from bulkops.emulator import EmulatorConfig, World, running_emulator
from bulkops.jobs.semantics import normalize
from tests.support import batch
from tests.support.commands import FAST_RETRY, bulkops, loaded
from tests.support.jobs import clone_job

#: The kinds a clone creates by name (clone_reader.NAMED).
NAMED_COLLECTIONS = ("gates", "segments", "experiments", "layers", "holdouts")


def drop(world: World, project: str, collection: str, path: str, *, null: bool = False) -> int:
    """Remove the field at ``path`` (dotted, ``[]`` for every item of a list) from every stored
    entity of ``collection``, or set it to null; how many entities had it."""
    stored = world.project(project).collection(collection)
    changed = 0
    for key in list(stored):
        entity = copy.deepcopy(stored.get(key))
        if _drop(entity, path.split("."), null):
            stored.replace(key, entity)
            changed += 1
    return changed


def _drop(value: Any, parts: list[str], null: bool) -> bool:
    head, rest = parts[0], parts[1:]
    if head == "[]":
        return isinstance(value, list) and any([_drop(item, rest, null) for item in value])
    if not isinstance(value, dict) or head not in value:
        return False
    if rest:
        return _drop(value[head], rest, null)
    if null:
        value[head] = None
    else:
        del value[head]
    return True


async def clone(
    tmp_path: Path, world: World, config: EmulatorConfig | None = None, **job: Any
) -> int:
    path = clone_job(tmp_path, **job)
    async with running_emulator(world, config or EmulatorConfig()) as url:
        options = RunOptions(
            state_dir=tmp_path / "s", base_url=url, retry=FAST_RETRY, progress=False
        )
        return await planned.run_planned(await loaded(str(path)), options)


# -- clone_experiments -----------------------------------------------------------------------
async def test_entities_without_a_name_are_created_named_after_their_id(
    tmp_path, world, capsys
) -> None:
    """``name`` is optional in every entity DTO but required by the segment, experiment, layer
    and holdout creates: a source answer without one is cloned under its id as its name (which
    a layer's or holdout's create derives the same id from), and the plan says so."""
    for collection in NAMED_COLLECTIONS:
        assert drop(world, "source", collection, "name"), collection
    assert await clone(tmp_path, world) == 0
    source, target = world.project("source"), world.project("target")
    for collection in NAMED_COLLECTIONS:
        cloned = [target.collection(collection).get(i) for i in source.collection(collection)]
        cloned = [entity for entity in cloned if entity is not None]
        assert cloned, collection
        assert all(entity["name"] == entity["id"] for entity in cloned), collection
    assert len(target.collection("experiments")) == len(source.collection("experiments"))
    out = capsys.readouterr().out
    assert (
        "layer 'checkout_layer' has no name in the source (its answer leaves out `name`, which "
        "the spec does not require); created named 'checkout_layer', after its id"
    ) in out


async def test_target_app_rows_without_ids_are_cloned_under_their_names(tmp_path, world) -> None:
    """``TargetAppDto.id`` is optional and the list examples leave it out: the source apps its
    entities reference by id are read one by one, so the target's apps get the source's names,
    not the source's ids as names."""
    assert await clone(tmp_path, world, EmulatorConfig(listed_ids="omitted")) == 0
    source_names = {a["name"] for a in world.project("source").collection("target_apps").values()}
    target = world.project("target").collection("target_apps").values()
    assert {a["name"] for a in target} == source_names


async def test_a_clone_re_run_maps_target_apps_listed_without_ids(tmp_path, world) -> None:
    """On a re-run, the target's apps (listed without ids) are known by the ids its entities
    reference, so an update sends the target's ids and nothing differs: exit 0, no mutation."""
    config = EmulatorConfig(listed_ids="omitted")
    assert await clone(tmp_path / "first", world, config, on_conflict="update") == 0
    before = len(world.requests(project="target", is_mutation=True))
    assert await clone(tmp_path / "again", world, config, on_conflict="update") == 0
    assert len(world.requests(project="target", is_mutation=True)) == before


# -- batch_rule_update -----------------------------------------------------------------------
def unversioned_gates(monkeypatch: Any) -> World:
    """The batch world whose gates answer no ``version`` (optional) and a null
    ``lastModifiedTime`` (nullable)."""
    world = batch.build_world()
    monkeypatch.setenv(batch.KEY_ENV, batch.KEY)
    assert drop(world, "target", "gates", "version") == 3 * batch.PER_FAMILY
    assert drop(world, "target", "gates", "lastModifiedTime", null=True) == 3 * batch.PER_FAMILY
    return world


async def test_a_batch_plan_of_gates_without_a_version_shows_no_none_and_applies(
    tmp_path, monkeypatch, capsys
) -> None:
    """The plan names each gate without a ``(version None)`` (a Python repr) when the answer has
    no version, and the edit applies (exit 0)."""
    world = unversioned_gates(monkeypatch)
    async with running_emulator(world, batch.config()) as url:
        assert await bulkops("run", batch.job_file(tmp_path), url, tmp_path / "s") == 0
    out = capsys.readouterr().out
    assert "gate 'checkout_000':\n  ~ rule 'Internal'" in out
    assert "None" not in out
    edited = world.project("target").collection("gates").get("checkout_000")
    assert edited["rules"][0]["passPercentage"] == 50


async def test_a_gate_without_version_or_time_edited_after_the_plan_is_a_conflict(
    tmp_path, monkeypatch, capsys
) -> None:
    """With neither ``version`` nor ``lastModifiedTime`` to pin a gate, its rules as read are the
    precondition: a gate whose rules changed between plan and apply is a conflict (exit 3, not
    overwritten), where the empty pins would have let the apply overwrite it."""
    world = unversioned_gates(monkeypatch)
    job, state = batch.job_file(tmp_path), tmp_path / "s"
    stored = world.project("target").collection("gates")
    async with running_emulator(world, batch.config()) as url:
        assert await bulkops("plan", job, url, state) == 0
        human = copy.deepcopy(stored.get("checkout_001"))
        human["rules"][0]["passPercentage"] = 30  # somebody's edit; still no version shown
        stored.replace("checkout_001", human)
        assert await bulkops("apply", None, url, state) == 3
    err = capsys.readouterr().err
    assert (
        "conflict: gate 'checkout_001' in [target] changed since the plan; not overwritten" in err
    )
    assert "None" not in err
    assert normalize(stored.get("checkout_001")) == normalize(human)
    assert stored.get("checkout_000")["rules"][0]["passPercentage"] == 50
