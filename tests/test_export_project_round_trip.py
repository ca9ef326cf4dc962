"""The round trip, per kind: awkward entities of one kind → export_project → a new emulator seeded
from the snapshot → export again → ``bulkops diff --all`` finds no difference."""

from __future__ import annotations

import copy

import anyio
import pytest

from bulkops.cli import main
from bulkops.emulator import World, build_demo_world, project_from_snapshot
from bulkops.emulator._snapshot import ENTITY_KINDS as STORE_KEYS
from bulkops.jobs.export_project import EXPORTED
from bulkops.output.snapshot import KINDS
from tests.support.jobs import KEY_ENV
from tests.test_export_project import export, manifest_of, project_job

#: Keys with slashes, dots, ``..``, unicode, a detail suffix, and names differing only in case.
AWKWARD = ("a/b", "..", ".hidden", "dot.ted", "x.overrides", "Ünïcødé ✓", "Case", "case", "%2F")
#: Side collections of details, copied for each awkward entity when the template has one.
DETAILS = {
    "gates": "gates_overrides",
    "layers": "layers_overrides",
    "experiments": "experiments_overrides",
    "holdouts": "holdouts_overrides",
}


def add_awkward(world: World, kind: str) -> list[str]:
    """Copies of one entity of ``kind`` under every awkward key; returns the keys the API uses."""
    project = world.project("source")
    collection = project.collection(kind)
    for extra in list(collection)[40:]:  # the demo's 2,560 metrics would only make it slow
        collection.remove(extra)
    template = next(
        (e for e in collection.values() if kind != "segments" or e.get("type") == "id_list"),
        None,
    )
    assert template is not None, f"the demo world has no {kind}"
    store_key, identity = STORE_KEYS[kind], EXPORTED[kind].identity
    side = project.collection(DETAILS[kind]) if kind in DETAILS else None
    detail = side.get(template[store_key]) if side is not None else None
    made = []
    for key in AWKWARD:
        entity = copy.deepcopy(template)
        for field in {store_key, identity, "name"} & entity.keys():
            entity[field] = key
        if kind == "metrics":  # a metric's id is <name>::<type>
            entity["id"] = f"{key}::{entity['type']}"
        if entity[store_key] not in collection:  # the demo may hold one already (a ".." source)
            collection.add(entity[store_key], entity)
        if side is not None and detail is not None:
            side.put(entity[store_key], copy.deepcopy(detail))
        if kind == "segments":
            project.collection("segment_ids").put(entity["id"], {"ids": [f"{key}-1", f"{key}-2"]})
        made.append(entity[identity])
    return made


#: Settings are four documents at fixed paths, no awkward keys: their round trip is in
#: test_export_project_more_kinds.
@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind != "settings"])
async def test_awkward_entities_of_each_kind_survive_the_round_trip(
    tmp_path, monkeypatch, kind
) -> None:
    """Awkward entities of one kind, exported, seeded into a new emulator and exported again,
    give a snapshot ``bulkops diff --all`` calls identical, with every awkward entity in it."""
    world = build_demo_world()
    key = world.project("source").console_key
    monkeypatch.setenv(KEY_ENV, key)
    made = add_awkward(world, kind)
    select = f'[select]\nkinds = ["{kind}"]\n'
    assert await export(world, project_job(tmp_path / "a", extra=select), tmp_path / "sa") == 0
    old = tmp_path / "a" / "out"
    exported = {e["id"] for e in manifest_of(old)["entities"][kind]}
    assert set(made) <= exported
    seeded = World([project_from_snapshot(old, name="source", console_key=key)])
    assert await export(seeded, project_job(tmp_path / "b", extra=select), tmp_path / "sb") == 0
    new = tmp_path / "b" / "out"
    # The CLI blocks as a command may; run it beside the loop, as a shell would.
    assert await anyio.to_thread.run_sync(main, ["diff", "--all", str(old), str(new)]) == 0
    assert manifest_of(new)["entities"] == manifest_of(old)["entities"]
    assert manifest_of(new)["details"] == manifest_of(old)["details"]
