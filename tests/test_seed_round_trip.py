"""Export → seed → export is identical (``bulkops diff --all`` exits 0) for unusual but legal
content: settings documents the server answered ``null``, and the entities listed below."""

from __future__ import annotations

import copy
from pathlib import Path

import aiohttp
import anyio

from bulkops.cli import main
from bulkops.emulator import EmulatorConfig, World, project_from_snapshot, running_emulator
from bulkops.emulator.resources.settings import seed_null_settings
from tests.support.commands import run_export
from tests.test_export_project import manifest_of, project_job

SETTINGS = '[select]\nkinds = ["settings"]\n'


async def export(world: World, job: Path, state: Path) -> int:
    async with running_emulator(world, EmulatorConfig()) as url:
        return await run_export(job, url, state)


def diff_all(old: Path, new: Path) -> int:
    return main(["diff", "--all", str(old), str(new)])


def settings_file(out: Path, document: str) -> Path:
    entry = next(e for e in manifest_of(out)["entities"]["settings"] if e["id"] == document)
    return out / entry["file"]


async def test_a_settings_document_answered_null_round_trips_as_null(tmp_path, world) -> None:
    """A settings document the server answered ``data: null`` is exported as ``null``, seeded,
    answered ``data: null`` again, and re-exported byte for byte (diff --all exits 0)."""
    source = world.project("source")
    seed_null_settings(source, "reviews")
    assert await export(world, project_job(tmp_path / "a", extra=SETTINGS), tmp_path / "sa") == 0
    old = tmp_path / "a" / "out"
    assert settings_file(old, "reviews").read_bytes() == b"null\n"
    seeded = World([project_from_snapshot(old, name="source", console_key=source.console_key)])
    async with (
        running_emulator(seeded, EmulatorConfig()) as url,
        aiohttp.ClientSession(headers={"STATSIG-API-KEY": source.console_key}) as http,
        http.get(f"{url}/console/v1/settings/reviews") as answer,
    ):
        assert answer.status == 200
        assert (await answer.json())["data"] is None
    assert await export(seeded, project_job(tmp_path / "b", extra=SETTINGS), tmp_path / "sb") == 0
    new = tmp_path / "b" / "out"
    assert settings_file(new, "reviews").read_bytes() == b"null\n"
    assert manifest_of(new)["entities"] == manifest_of(old)["entities"]
    assert await anyio.to_thread.run_sync(diff_all, old, new) == 0


#: Kinds whose entities carry details, plus metrics and their sources.
UNUSUAL_KINDS = (
    '[select]\nkinds = ["gates", "segments", "experiments", "layers", "metrics", '
    '"metric_sources"]\n'
)
#: Ids that need percent-encoding, collide ignoring case, or are not ASCII.
ODD_IDS = ("Ünïcødé ✓", "50% off/now?", "Case", "case", "CASE", "a+b #1")


def add_unusual(world: World) -> dict[str, list[str]]:
    """Gates with overrides, id-list segments, experiments with overrides, a layer with
    overrides, under every odd id; a hidden metric and a metric without a source under odd
    names; metrics cut to those plus a few. Returns the ids made, per kind."""
    project = world.project("source")
    made: dict[str, list[str]] = {}
    side = {"gates": "gates_overrides", "experiments": "experiments_overrides"}
    for kind in ("gates", "segments", "experiments", "layers"):
        coll = project.collection(kind)
        template = next(
            e
            for e in coll.values()
            if (kind not in side or project.collection(side[kind]).get(e["id"]) is not None)
            and (kind != "segments" or e.get("type") == "id_list")
        )
        for key in ODD_IDS:
            coll.add(key, {**copy.deepcopy(template), "id": key, "name": key})
            made.setdefault(kind, []).append(key)
            if kind in side:
                detail = project.collection(side[kind]).get(template["id"])
                project.collection(side[kind]).put(key, copy.deepcopy(detail))
            if kind == "segments":
                project.collection("segment_ids").put(key, {"ids": [f"{key}/1", "Ü-2"]})
            if kind == "layers":
                overrides = {
                    "conditionalOverrides": [],
                    "idOverrides": [{"groupName": "Control", "ids": [key]}],
                }
                project.collection("layers_overrides").put(key, overrides)
    metrics = project.collection("metrics")
    hidden = [m for m in metrics.values() if m.get("isHidden")][:3]
    sourceless = [
        m for m in metrics.values() if not (m.get("warehouseNative") or {}).get("metricSourceName")
    ]
    keep = {m["id"] for m in [*metrics.values()[:5], *hidden, *sourceless]}
    for extra in [key for key in metrics if key not in keep]:
        metrics.remove(extra)
    made["metrics"] = sorted(keep)
    for key, base in (("Ünïcødé hidden", hidden[0]), ("50% sourceless", sourceless[0])):
        metric = {**copy.deepcopy(base), "name": key, "id": f"{key}::{base['type']}"}
        metrics.add(metric["id"], metric)
        made["metrics"].append(metric["id"])
    return made


async def test_unusual_but_legal_content_survives_export_seed_export(tmp_path, world) -> None:
    """Odd ids (percent-encoding, unicode, case collisions) with overrides and id lists,
    hidden metrics and metrics without a source round trip: every one is in both snapshots,
    with its details, and diff --all exits 0."""
    made = add_unusual(world)
    source = world.project("source")
    job = project_job(tmp_path / "a", extra=UNUSUAL_KINDS)
    assert await export(world, job, tmp_path / "sa") == 0
    old = tmp_path / "a" / "out"
    listed = {
        kind: {e["id"] for e in items} for kind, items in manifest_of(old)["entities"].items()
    }
    for kind, ids in made.items():
        assert set(ids) <= listed[kind], kind
    with_details = {
        (kind, d["id"], d["detail"]) for kind, ds in manifest_of(old)["details"].items() for d in ds
    }
    for key in ODD_IDS:
        for kind, detail in (("gates", "overrides"), ("experiments", "overrides"),
                             ("layers", "overrides"), ("segments", "id_list")):  # fmt: skip
            assert (kind, key, detail) in with_details
    seeded = World([project_from_snapshot(old, name="source", console_key=source.console_key)])
    job = project_job(tmp_path / "b", extra=UNUSUAL_KINDS)
    assert await export(seeded, job, tmp_path / "sb") == 0
    new = tmp_path / "b" / "out"
    assert manifest_of(new)["entities"] == manifest_of(old)["entities"]
    assert manifest_of(new)["details"] == manifest_of(old)["details"]
    assert await anyio.to_thread.run_sync(diff_all, old, new) == 0


async def test_an_empty_project_s_snapshot_round_trips(tmp_path, monkeypatch) -> None:
    """A project with nothing in it exports, seeds and re-exports to an identical snapshot."""
    from bulkops.emulator import Project
    from tests.support.jobs import KEY_ENV

    empty = World([Project("empty", "console-empty-project")])
    monkeypatch.setenv(KEY_ENV, "console-empty-project")
    assert await export(empty, project_job(tmp_path / "a"), tmp_path / "sa") == 0
    old = tmp_path / "a" / "out"
    listed = manifest_of(old)["entities"]
    assert [kind for kind, items in listed.items() if items] == ["settings"]
    seeded = World([project_from_snapshot(old, name="empty", console_key="console-empty-project")])
    assert await export(seeded, project_job(tmp_path / "b"), tmp_path / "sb") == 0
    assert await anyio.to_thread.run_sync(diff_all, old, tmp_path / "b" / "out") == 0
