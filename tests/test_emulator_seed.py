"""Seeding the emulator from an ``export_project`` snapshot is faithful, and refuses bad ones.

The tests write a snapshot directory themselves (from an emulator world whose objects are then
made foreign: odd versions, times and fields), seed a project from it, and read everything back
over HTTP: each entity, override and id list must come back exactly as the file holds it.
"""

from __future__ import annotations

import hashlib
import signal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest
from test_emulator_conformance_kinds import conformance_world

from bulkops.emulator import (
    EmulatorConfig,
    World,
    project_from_snapshot,
    running_emulator,
    snapshot_key,
    world_from_snapshots,
)
from bulkops.emulator._snapshot import ENTITY_KINDS
from tests.support.commands import cli

V1 = "/console/v1"
PROJECT_ID = "proj_5nAp5h0t"
#: How to read one entity of each kind: path template ({} is the encoded key), or None when the
#: spec has no read of one (those are compared through their lists).
READ_ONE: dict[str, str | None] = {
    "gates": "gates/{}",
    "dynamic_configs": "dynamic_configs/{}",
    "experiments": "experiments/{}",
    "layers": "layers/{}",
    "holdouts": "holdouts/{}",
    "segments": "segments/{}",
    "autotunes": "autotunes/{}",
    "tags": "tags/{}",
    "target_apps": "target_app/{}",
    "teams": "users/teams/{}",
    "environments": None,
    "metrics": "metrics/{}",
    "metric_sources": "metrics/metric_source/{}",
    "unit_id_types": "unit_id_types/{}",
    "assignment_sources": None,
    "entity_properties": "experiments/entity_property/{}",
    "qualifying_events": "experiments/qualifying_events/{}",
    "param_stores": "param_stores/{}",
    "alerts": None,
    "release_pipelines": "release_pipelines/{}",
    "roles": "roles/{}",
    "prompts": "prompts/{}",
}
LISTS = {
    "environments": None,
    "assignment_sources": "experiments/assignment_sources",
    "metrics": "metrics/list?showHiddenMetrics=true",
    "gates": "gates",
    "param_stores": "param_stores",
    "alerts": "alerts",
}
EXPERIMENT_OVERRIDES = {
    "overrides": [
        {"type": "gate", "name": "bench_0001_gate", "groupID": "Test", "environment": None},
        {"type": "segment", "name": "bench_0001_segment", "groupID": "Control",
         "environment": "staging"},
    ],
    "userIDOverrides": [
        {"groupID": "Control", "ids": ["u1", "u2", "u3"], "environment": None, "unitType": None},
        {"groupID": "Test", "ids": ["u9"], "environment": None, "unitType": None},
    ],
}  # fmt: skip


def _put(snap: Path, rel: str, value: Any) -> dict[str, str]:
    path = snap / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    data = orjson.dumps(value)
    path.write_bytes(data)
    return {"file": rel, "sha256": hashlib.sha256(data).hexdigest()}


def _foreign(kind: str, index: int, entity: dict[str, Any]) -> dict[str, Any]:
    """The object as another server might have answered it: odd version and time, extra field."""
    out = dict(entity)
    if "version" in out:
        out["version"] = 40 + index
    if "lastModifiedTime" in out:
        out["lastModifiedTime"] = 1_800_000_000_000 + index
    out["fieldFromTheFuture"] = {"kind": kind, "n": index}
    return out


def write_snapshot(snap: Path, world: World | None = None) -> dict[str, Any]:
    """A complete snapshot of the conformance world's ``source`` project; returns the objects
    written, per kind and key, and the details."""
    project = (world or conformance_world()).project("source")
    entities: dict[str, list[dict[str, str]]] = {}
    written: dict[str, dict[str, Any]] = {}
    for kind, key_field in ENTITY_KINDS.items():
        for index, entity in enumerate(project.collection(kind).values()):
            obj = _foreign(kind, index, entity)
            key = obj[key_field]
            digest = hashlib.sha1(f"{kind}/{key}".encode()).hexdigest()[:12]
            entry = {"id": key, **_put(snap, f"entities/{kind}/{digest}.json", obj)}
            entities.setdefault(kind, []).append(entry)
            written.setdefault(kind, {})[key] = obj
    details: dict[str, list[dict[str, str]]] = {}
    detail_data: dict[tuple[str, str], Any] = {}

    def detail(kind: str, entity_id: str, name: str, data: Any) -> None:
        rel = f"details/{kind}/{entity_id}.{name}.json"
        entry = {"id": entity_id, "detail": name, **_put(snap, rel, data)}
        details.setdefault(kind, []).append(entry)
        detail_data[kind, entity_id] = data

    gate_overrides = {
        "passingUserIDs": ["z", "a"],
        "failingUserIDs": [],
        "passingCustomIDs": [],
        "failingCustomIDs": [],
        "environmentOverrides": [
            {"environment": "staging", "unitID": "userID", "passingIDs": ["s"], "failingIDs": []}
        ],
    }
    detail("gates", "bench_0001_gate", "overrides", gate_overrides)
    detail("experiments", "bench_0001_exp", "overrides", EXPERIMENT_OVERRIDES)
    detail(
        "layers",
        "conf_layer",
        "overrides",
        {"conditionalOverrides": [], "idOverrides": [{"groupName": "Control", "ids": ["l1"]}]},
    )
    detail("holdouts", "conf_holdout", "overrides", {**gate_overrides, "passingUserIDs": ["h"]})
    detail("segments", "conf_ids", "id_list", ["id-3", "id-1", "id-2"])
    manifest = {
        "complete": True,
        "kind": "export_project",
        "project": {"id": PROJECT_ID, "name": "prod snapshot"},
        "entities": entities,
        "details": details,
    }
    (snap / "manifest.json").write_bytes(orjson.dumps(manifest))
    return {"entities": written, "details": detail_data, "manifest": manifest}


async def _get(session: aiohttp.ClientSession, base: str, key: str, path: str) -> Any:
    async with session.get(f"{base}{V1}/{path}", headers={"STATSIG-API-KEY": key}) as resp:
        body = await resp.json()
        assert resp.status in (200, 201), (path, body)
        return body


async def _walk(session: aiohttp.ClientSession, base: str, key: str, path: str) -> list[Any]:
    items: list[Any] = []
    link: str | None = f"{V1}/{path}"
    while link:
        body = await _get(session, base, key, link.removeprefix(f"{V1}/"))
        items.extend(body["data"])
        link = body["pagination"]["nextPage"]
    return items


async def test_every_seeded_entity_reads_back_exactly_as_its_file(tmp_path: Path) -> None:
    """Each entity of every kind, each override and the id list answer the file's object."""
    written = write_snapshot(tmp_path)
    project = project_from_snapshot(tmp_path)
    assert set(written["entities"]) == set(ENTITY_KINDS)  # the fixture covers every kind
    world = World([project])
    key = project.console_key
    async with running_emulator(world, EmulatorConfig()) as base, aiohttp.ClientSession() as s:
        assert (await _get(s, base, key, "project"))["data"] == {"id": PROJECT_ID}
        for kind, objects in written["entities"].items():
            template = READ_ONE[kind]
            if template is None:
                continue
            for obj_key, obj in objects.items():
                body = await _get(s, base, key, template.format(quote(obj_key, safe="")))
                assert body["data"] == obj, (kind, obj_key)
        envs = (await _get(s, base, key, "environments"))["data"]["environments"]
        assert envs == list(written["entities"]["environments"].values())
        for kind, path in LISTS.items():
            if path is not None:
                listed = await _walk(s, base, key, path)
                assert listed == list(written["entities"][kind].values()), kind
        for (kind, entity_id), data in written["details"].items():
            if kind == "segments":
                body = await _get(s, base, key, f"segments/{entity_id}/id_list")
                assert body["data"]["ids"] == data
            else:
                body = await _get(s, base, key, f"{kind}/{entity_id}/overrides")
                assert body["data"] == data, kind


async def test_a_write_on_a_seeded_entity_moves_on_from_its_seeded_version(tmp_path: Path) -> None:
    """A change bumps the seeded version by one, stamps a later time than any seeded one, and
    a new rule gets an id no seeded rule has; an override write re-renders experiment overrides."""
    written = write_snapshot(tmp_path)
    project = project_from_snapshot(tmp_path, name="rehearsal")
    gate = written["entities"]["gates"]["bench_0001_gate"]
    seeded_rule_ids = {
        r["id"] for g in written["entities"]["gates"].values() for r in g.get("rules", [])
    }
    newest = max(
        o.get("lastModifiedTime") or 0
        for objs in written["entities"].values()
        for o in objs.values()
    )
    key = project.console_key
    rule = {"name": "new", "passPercentage": 5, "conditions": [{"type": "public"}]}
    headers = {"STATSIG-API-KEY": key}
    async with (
        running_emulator(
            World([project], wall_clock=lambda: 1_700_000_000.0),
            EmulatorConfig(override_group_key="name"),  # groups answered by name, as sent
        ) as base,
        aiohttp.ClientSession() as s,
    ):
        url = f"{base}{V1}/gates/bench_0001_gate"
        async with s.patch(url, json={"rules": [*gate["rules"], rule]}, headers=headers) as resp:
            assert resp.status == 200
            changed = (await resp.json())["data"]
        add = {"overrides": [], "userIDOverrides": [{"groupID": "Test", "ids": ["u4"]}]}
        exp_url = f"{base}{V1}/experiments/bench_0001_exp/overrides"
        async with s.patch(exp_url, json=add, headers=headers) as resp:
            assert resp.status == 200
            overrides = (await resp.json())["data"]
    assert changed["version"] == gate["version"] + 1
    assert changed["lastModifiedTime"] > newest
    assert changed["rules"][-1]["id"] not in seeded_rule_ids
    test_ids = [u["ids"] for u in overrides["userIDOverrides"] if u["groupID"] == "Test"]
    assert sorted(test_ids[0]) == ["u4", "u9"]
    assert {o["name"] for o in overrides["overrides"]} == {"bench_0001_gate", "bench_0001_segment"}


def test_a_snapshot_project_keeps_its_id_and_gets_a_deterministic_key(tmp_path: Path) -> None:
    """The project id is the manifest's; the key derives from name and id alone, is ASCII, and
    two seeds of one snapshot under different names get different keys."""
    write_snapshot(tmp_path)
    first = project_from_snapshot(tmp_path)
    again = project_from_snapshot(tmp_path)
    other = project_from_snapshot(tmp_path, name="copy")
    assert first.id == other.id == PROJECT_ID
    assert first.name == "prod snapshot"
    assert other.name == "copy"
    assert first.console_key == again.console_key == snapshot_key("prod snapshot", PROJECT_ID)
    assert first.console_key.startswith("console-snapshot-prod-snapshot-")
    assert first.console_key.isascii()
    assert " " not in first.console_key
    assert other.console_key != first.console_key


def test_two_snapshots_served_under_one_name_are_refused(tmp_path: Path) -> None:
    """Serving two snapshots as the same project name is a clear error; renaming one works."""
    write_snapshot(tmp_path)
    with pytest.raises(ValueError, match='both be served as project "prod snapshot"'):
        world_from_snapshots([(None, tmp_path), (None, tmp_path)])
    world = world_from_snapshots([(None, tmp_path), ("b", tmp_path)])
    assert sorted(world.projects) == ["b", "prod snapshot"]


def _manifest(snap: Path) -> dict[str, Any]:
    return orjson.loads((snap / "manifest.json").read_bytes())


def _save(snap: Path, manifest: dict[str, Any]) -> None:
    (snap / "manifest.json").write_bytes(orjson.dumps(manifest))


def _incomplete(snap: Path) -> None:
    _save(snap, {**_manifest(snap), "complete": False})


def _no_manifest(snap: Path) -> None:
    (snap / "manifest.json").unlink()


def _changed_file(snap: Path) -> None:
    entry = _manifest(snap)["entities"]["gates"][0]
    (snap / entry["file"]).write_bytes(b'{"id": "tampered"}')


def _missing_file(snap: Path) -> None:
    entry = _manifest(snap)["entities"]["tags"][0]
    (snap / entry["file"]).unlink()


def _outside(snap: Path) -> None:
    manifest = _manifest(snap)
    manifest["entities"]["tags"][0]["file"] = "../elsewhere.json"
    _save(snap, manifest)


def _unknown_kind(snap: Path) -> None:
    manifest = _manifest(snap)
    manifest["entities"]["api_keys"] = manifest["entities"].pop("tags")
    _save(snap, manifest)


def _orphan_detail(snap: Path) -> None:
    manifest = _manifest(snap)
    manifest["details"]["segments"][0]["id"] = "not_a_segment"
    _save(snap, manifest)


def _wrong_kind(snap: Path) -> None:
    _save(snap, {**_manifest(snap), "kind": "export_metrics"})


def _not_json(snap: Path) -> None:
    (snap / "manifest.json").write_bytes(b"{not json")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_incomplete, r'does not say "complete": true'),
        (_no_manifest, "has no manifest.json"),
        (_changed_file, "does not match its sha256"),
        (_missing_file, "is listed in manifest.json but missing"),
        (_outside, "lies outside the snapshot directory"),
        (_unknown_kind, r'kind "api_keys" \(a newer bulkops\?\), which the emulator does not'),
        (_orphan_detail, "which the snapshot's entities do not include"),
        (_wrong_kind, 'expected "export_project"'),
        (_not_json, "manifest.json is not valid JSON"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else "",
)
def test_an_incomplete_or_damaged_snapshot_is_refused(
    tmp_path: Path, damage: Any, message: str
) -> None:
    """Each kind of damage gives a ValueError naming the snapshot and what is wrong."""
    snap = tmp_path / "snap"
    write_snapshot(snap)
    damage(snap)
    with pytest.raises(ValueError, match=message) as caught:
        project_from_snapshot(snap)
    assert str(snap) in str(caught.value)


def test_bulkops_emulator_from_serves_the_snapshot_and_prints_its_key(tmp_path: Path) -> None:
    """``bulkops emulator --from NAME=SNAP`` prints the base URL and ``project NAME key KEY``."""
    snap = tmp_path / "snap"
    write_snapshot(snap)
    proc = cli("emulator", "--port", "0", "--from", f"staging={snap}", "--from", str(snap))
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().decode().strip() for _ in range(3)]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert lines[0].startswith("Statsig Console API emulator listening on http://127.0.0.1:")
    assert lines[1] == f"project staging key {snapshot_key('staging', PROJECT_ID)}"
    assert lines[2] == f"project prod snapshot key {snapshot_key('prod snapshot', PROJECT_ID)}"


def test_bulkops_emulator_from_a_damaged_snapshot_exits_2_with_one_message(
    tmp_path: Path,
) -> None:
    """A bad ``--from`` is a usage error: exit 2, the reason on stderr, no traceback."""
    snap = tmp_path / "snap"
    write_snapshot(snap)
    _incomplete(snap)
    proc = cli("emulator", "--port", "0", "--from", str(snap))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    text = err.decode()
    assert f"--from {snap}: snapshot {snap} is not a complete snapshot" in text
    assert "says complete: false" in text
    assert "Traceback" not in text
    assert out == b""
