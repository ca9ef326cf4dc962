"""export_project's newer kinds (alerts, release_pipelines, roles, prompts, settings): exported
exactly, round-tripped through a seeded emulator, and left out (not failed) by a project that
does not serve them, unless asked for by name; ``bulkops diff`` does not compare such a kind."""

from __future__ import annotations

from pathlib import Path

import anyio
import orjson
import pytest

from bulkops.cli import main
from bulkops.emulator import EmulatorConfig, World, project_from_snapshot, running_emulator
from bulkops.emulator._config import OPTIONAL_KINDS
from bulkops.output.snapshot import dumps
from tests.support.commands import run_export
from tests.test_export_project import manifest_of, project_job

NEW = ("alerts", "release_pipelines", "roles", "prompts", "settings")
SELECT_NEW = "[select]\nkinds = [" + ", ".join(f'"{k}"' for k in NEW) + "]\n"
#: The field the manifest's id comes from, per kind (settings: the document's path segment).
KEY_OF = {"alerts": "id", "release_pipelines": "id", "roles": "name", "prompts": "id"}
NOT_FOUND = "404: Not Found. The requested resource could not be found."


def small(world: World) -> World:
    """The demo world with its 2,560 metrics cut to 20, so exports of every kind are quick."""
    metrics = world.project("source").collection("metrics")
    for extra in list(metrics)[20:]:
        metrics.remove(extra)
    return world


async def export(world: World, job: Path, state: Path, config: EmulatorConfig | None = None) -> int:
    async with running_emulator(world, config or EmulatorConfig()) as url:
        return await run_export(job, url, state)


def diff(*args: str | Path) -> int:
    return main(["diff", *map(str, args)])


def test_the_new_kinds_are_the_emulator_s_optional_ones() -> None:
    """The kinds the export tolerates missing are exactly those the emulator can stop serving."""
    from bulkops.jobs.entity_kinds import OPTIONAL

    assert OPTIONAL == NEW == OPTIONAL_KINDS


async def test_each_new_kind_is_exported_exactly(tmp_path, world) -> None:
    """Every alert, pipeline, role, prompt and settings document of the demo project is one
    file holding exactly the stored object, listed under the id its item path uses."""
    job = project_job(tmp_path, extra=SELECT_NEW)
    assert await export(world, job, tmp_path / "state") == 0
    out = tmp_path / "out"
    manifest = manifest_of(out)
    project = world.project("source")
    assert "unavailable" not in manifest
    for kind in NEW:
        coll = project.collection(kind)
        stored = {key: coll.get(key) for key in coll}
        if kind != "settings":
            assert all(key == e[KEY_OF[kind]] for key, e in stored.items())
        listed = manifest["entities"][kind]
        assert manifest["totals"][kind] == len(stored) == len(listed) >= 2, kind
        for entry in listed:
            assert entry["file"].startswith(f"{kind}/")
            assert (out / entry["file"]).read_bytes() == dumps(stored[entry["id"]]), entry
    assert [e["id"] for e in manifest["entities"]["settings"]] == [
        "project",
        "reviews",
        "roles",
        "teams",
    ]
    assert {e["id"] for e in manifest["entities"]["roles"]} == {"Release Manager", "Analyst"}


async def test_the_new_kinds_survive_the_round_trip(tmp_path, world) -> None:
    """Exported, served from the snapshot and exported again, the new kinds give a snapshot
    ``bulkops diff --all`` calls identical, ids, versions and times kept."""
    key = world.project("source").console_key
    assert await export(world, project_job(tmp_path / "a", extra=SELECT_NEW), tmp_path / "sa") == 0
    old = tmp_path / "a" / "out"
    seeded = World([project_from_snapshot(old, name="source", console_key=key)])
    assert await export(seeded, project_job(tmp_path / "b", extra=SELECT_NEW), tmp_path / "sb") == 0
    new = tmp_path / "b" / "out"
    assert await anyio.to_thread.run_sync(diff, "--all", old, new) == 0
    assert manifest_of(new)["entities"] == manifest_of(old)["entities"]
    assert manifest_of(new)["totals"] == manifest_of(old)["totals"]


async def test_a_project_without_the_new_kinds_exports_the_others_and_exits_0(
    tmp_path, world, capsys
) -> None:
    """A server answering 404 to every new kind: exit 0, the kinds absent from totals and
    entities, each under ``unavailable`` with the server's message, and one summary line."""
    job = project_job(tmp_path)
    config = EmulatorConfig(unserved_kinds=OPTIONAL_KINDS)
    assert await export(small(world), job, tmp_path / "state", config) == 0
    manifest = manifest_of(tmp_path / "out")
    assert manifest["unavailable"] == dict.fromkeys(NEW, NOT_FOUND)
    assert not set(NEW) & (manifest["totals"].keys() | manifest["entities"].keys())
    assert manifest["totals"]["gates"] > 0
    assert not any((tmp_path / "out" / kind).exists() for kind in NEW)
    said = [line for line in capsys.readouterr().err.splitlines() if "not served" in line]
    assert said == [
        f"  not served: {', '.join(NEW)} ({NOT_FOUND}): left out of the snapshot, as the "
        "project does not serve them"
    ]


async def test_a_403_on_one_new_kind_leaves_only_it_out(tmp_path, world) -> None:
    """A key without access to roles (403) gives a snapshot of everything else, roles listed
    as unavailable with the 403, and an earlier export's role files removed."""
    job = project_job(tmp_path)
    assert await export(small(world), job, tmp_path / "state") == 0
    assert (tmp_path / "out" / "roles").is_dir()
    config = EmulatorConfig(unserved_kinds=("roles",), unserved_status=403)
    assert await export(world, job, tmp_path / "state", config) == 0
    manifest = manifest_of(tmp_path / "out")
    assert manifest["unavailable"] == {"roles": "403: Forbidden resource"}
    assert set(NEW) - {"roles"} <= manifest["totals"].keys()
    assert list((tmp_path / "out" / "roles").glob("*.json")) == []


@pytest.mark.parametrize(("status", "code"), [(404, 3), (403, 4)])
async def test_a_new_kind_asked_for_by_name_fails_when_not_served(
    tmp_path, world, status, code
) -> None:
    """With ``[select] kinds`` naming roles, a 404 fails the run as any list failure (exit 3)
    and a 403 aborts it as a key without permission (exit 4); nothing is published."""
    job = project_job(tmp_path, extra='[select]\nkinds = ["roles", "tags"]\n')
    config = EmulatorConfig(unserved_kinds=("roles",), unserved_status=status)
    assert await export(world, job, tmp_path / "state", config) == code
    assert not (tmp_path / "out" / "manifest.json").exists()


async def test_diff_does_not_compare_a_kind_unavailable_on_one_side(
    tmp_path, world, capsys
) -> None:
    """A snapshot without roles (unavailable) against one with them: roles are "not compared",
    neither added nor removed, and the snapshots count as the same (exit 0)."""
    small(world)
    both = project_job(tmp_path / "a")
    assert await export(world, both, tmp_path / "sa") == 0
    without = project_job(tmp_path / "b")
    config = EmulatorConfig(unserved_kinds=("roles",))
    assert await export(world, without, tmp_path / "sb", config) == 0
    old, new = tmp_path / "a" / "out", tmp_path / "b" / "out"
    capsys.readouterr()
    assert await anyio.to_thread.run_sync(diff, old, new) == 0
    text = capsys.readouterr().out
    assert f"roles: not compared (unavailable in NEW: {NOT_FOUND})" in text
    assert "removed" not in text
    assert await anyio.to_thread.run_sync(diff, "--json", new, old) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report == {
        "added": {},
        "removed": {},
        "changed": {},
        "not_compared": {"roles": f"unavailable in OLD: {NOT_FOUND}"},
    }


async def test_a_snapshot_s_unavailable_kinds_round_trip_too(tmp_path, world) -> None:
    """An emulator seeded from a snapshot with unavailable kinds does not serve them, so its
    export writes the same ``unavailable`` and diffs identical."""
    small(world)
    key = world.project("source").console_key
    config = EmulatorConfig(unserved_kinds=("alerts", "settings"))
    assert await export(world, project_job(tmp_path / "a"), tmp_path / "sa", config) == 0
    old = tmp_path / "a" / "out"
    seeded = World([project_from_snapshot(old, name="source", console_key=key)])
    assert await export(seeded, project_job(tmp_path / "b"), tmp_path / "sb") == 0
    new = tmp_path / "b" / "out"
    assert manifest_of(new)["unavailable"] == manifest_of(old)["unavailable"]
    assert set(manifest_of(old)["unavailable"]) == {"alerts", "settings"}
    assert await anyio.to_thread.run_sync(diff, "--all", old, new) == 0
