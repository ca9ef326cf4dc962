"""export_project end to end against the in-process emulator: every kind, the manifest, minimal
re-runs, deletions, awkward ids, and the round trip through a seeded emulator."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import anyio
import orjson
import pytest

from bulkops.cli import main
from bulkops.emulator import EmulatorConfig, World, project_from_snapshot, running_emulator
from bulkops.jobs.export_project import READ_ATTEMPTS
from bulkops.output.snapshot import KINDS, dumps, sha256
from tests.support.commands import run_export
from tests.support.jobs import KEY_ENV, snapshot


def project_job(folder: Path, *, out: str = "out", extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "project.toml"
    path.write_text(
        f'job = "export_project"\nname = "prod-nightly"\n[source]\napi_key_env = "{KEY_ENV}"\n'
        f'[output]\ndir = "{out}"\n[options]\nsegment_id_lists = true\n{extra}'
    )
    return path


#: Every kind with details, and a few others: what the slower tests need, without the 2,560 metrics.
SOME_KINDS = '[select]\nkinds = ["gates", "experiments", "layers", "segments", "environments"]\n'


def manifest_of(out: Path) -> dict:
    return orjson.loads((out / "manifest.json").read_bytes())


def entity_files(out: Path) -> dict[str, int]:
    return {
        str(p.relative_to(out)): p.stat().st_mtime_ns
        for p in sorted(out.rglob("*.json"))
        if p.name != "manifest.json"
    }


async def export(world: World, job: Path, state: Path) -> int:
    async with running_emulator(world, EmulatorConfig()) as url:
        return await run_export(job, url, state)


async def test_every_kind_is_exported_exactly_with_a_complete_manifest(tmp_path, world) -> None:
    """Every kind of the demo project is written one file per entity, byte for byte the stored
    object serialised by ``dumps``, and the manifest lists each file with its sha256."""
    job = project_job(tmp_path)
    assert await export(world, job, tmp_path / "state") == 0
    out = tmp_path / "out"
    manifest = manifest_of(out)
    assert manifest["complete"] is True
    assert manifest["kind"] == "export_project"
    assert manifest["job"] == "prod-nightly"
    assert {"run_id", "started_at", "published_at"} <= manifest.keys()
    project = world.project("source")
    assert manifest["project"] == {"id": project.id, "name": None}
    assert set(manifest["totals"]) == set(KINDS) == set(manifest["entities"])
    key_of = {"metric_sources": "name", "unit_id_types": "name", "assignment_sources": "name",
              "entity_properties": "name", "qualifying_events": "name", "param_stores": "name",
              "environments": "name", "roles": "name"}  # fmt: skip
    for kind in KINDS:
        coll = project.collection(kind)
        if kind == "settings":  # singleton documents, keyed by their path segment
            stored = {key: coll.get(key) for key in coll}
        else:
            stored = {e[key_of.get(kind, "id")]: e for e in coll.values()}
        listed = manifest["entities"][kind]
        assert manifest["totals"][kind] == len(stored) == len(listed), kind
        assert stored, f"the demo world has no {kind}"
        for entry in listed:
            data = (out / entry["file"]).read_bytes()
            assert sha256(data) == entry["sha256"]
            assert data == dumps(stored[entry["id"]]), entry["file"]
    hidden = [m for m in project.collection("metrics").values() if m.get("isHidden")]
    assert hidden, "the demo world should hold a hidden metric"
    for kind, detail, collection in (
        ("gates", "overrides", "gates_overrides"),
        ("experiments", "overrides", None),
        ("layers", "overrides", "layers_overrides"),
        ("holdouts", "overrides", "holdouts_overrides"),
        ("segments", "id_list", "segment_ids"),
    ):
        items = [d for d in manifest["details"].get(kind, []) if d["detail"] == detail]
        if collection == "segment_ids":
            assert items, "the demo world has id_list segments"
            for item in items:
                ids = orjson.loads((out / item["file"]).read_bytes())
                assert ids == project.collection("segment_ids").get(item["id"])["ids"]
        elif collection is not None:
            stored = project.collection(collection)
            assert {item["id"] for item in items} == set(stored), f"every {kind} overrides file"
            for item in items:
                assert orjson.loads((out / item["file"]).read_bytes()) == stored.get(item["id"])
        for item in items:
            assert sha256((out / item["file"]).read_bytes()) == item["sha256"]
    assert not list(out.rglob(".*tmp*"))


async def test_an_unchanged_rerun_rewrites_only_the_manifest(tmp_path, world) -> None:
    """A second export of an unchanged project keeps every entity file's bytes and mtime."""
    job = project_job(tmp_path, extra=SOME_KINDS)
    assert await export(world, job, tmp_path / "state") == 0
    before = entity_files(tmp_path / "out")
    for file in before:  # an old mtime, so a rewrite could not hide inside the clock's grain
        os.utime(tmp_path / "out" / file, ns=(1_000_000_000, 1_000_000_000))
    before = entity_files(tmp_path / "out")
    assert await export(world, job, tmp_path / "state") == 0
    assert entity_files(tmp_path / "out") == before


async def test_a_deleted_entity_disappears_and_a_changed_one_is_rewritten(tmp_path, world) -> None:
    """After a tag is deleted and a gate changed in the project, the next snapshot has no file
    for the tag and the gate's file holds its new content."""
    job = project_job(tmp_path, extra='[select]\nkinds = ["gates", "tags"]\n')
    assert await export(world, job, tmp_path / "state") == 0
    out = tmp_path / "out"
    first = manifest_of(out)
    assert set(first["entities"]) == {"gates", "tags"}
    project = world.project("source")
    gone = first["entities"]["tags"][0]
    project.collection("tags").remove(gone["id"])
    changed = first["entities"]["gates"][0]
    gate = project.collection("gates").get(changed["id"])
    project.collection("gates").replace(changed["id"], {**gate, "description": "changed"})
    assert await export(world, job, tmp_path / "state") == 0
    second = manifest_of(out)
    assert not (out / gone["file"]).exists()
    assert gone["id"] not in {e["id"] for e in second["entities"]["tags"]}
    assert orjson.loads((out / changed["file"]).read_bytes())["description"] == "changed"
    assert second["totals"]["tags"] == first["totals"]["tags"] - 1


async def test_awkward_ids_get_distinct_safe_files(tmp_path, world) -> None:
    """Ids with slashes, dots, ``..``, unicode, case-only differences, or another's id plus
    ``.overrides`` each get their own file inside their kind's folder."""
    project = world.project("source")
    template = project.collection("gates").values()[0]
    overrides = project.collection("gates_overrides").get(template["id"]) or {
        "passingUserIDs": ["u1"], "failingUserIDs": [], "environmentOverrides": []}  # fmt: skip
    awkward = ["a/b", "..", ".hidden", "x", "x.overrides", "Ünïcødé ✓", "Case", "case"]
    for key in awkward:
        project.collection("gates").add(key, {**copy.deepcopy(template), "id": key, "name": key})
        project.collection("gates_overrides").put(key, {**overrides, "passingUserIDs": [key]})
    job = project_job(tmp_path, extra='[select]\nkinds = ["gates"]\n')
    assert await export(world, job, tmp_path / "state") == 0
    out = tmp_path / "out"
    manifest = manifest_of(out)
    files = [e["file"] for e in manifest["entities"]["gates"]]
    files += [d["file"] for d in manifest["details"]["gates"]]
    assert len({f.lower() for f in files}) == len(files)
    for file in files:
        folder, name = file.split("/")
        assert folder == "gates"
        assert not name.startswith(".")
        assert (out / file).resolve().parent == (out / "gates").resolve()
    by_id = {e["id"]: e for e in manifest["entities"]["gates"]}
    for key in awkward:
        assert orjson.loads((out / by_id[key]["file"]).read_bytes())["id"] == key
    detail = {d["id"]: d for d in manifest["details"]["gates"]}
    assert orjson.loads((out / detail["x"]["file"]).read_bytes())["passingUserIDs"] == ["x"]


async def test_round_trip_through_a_seeded_emulator_is_identical(tmp_path, world) -> None:
    """Export, seed an emulator from the snapshot, export that: ``bulkops diff --all`` finds no
    difference (exit 0)."""
    job = project_job(tmp_path / "a")
    assert await export(world, job, tmp_path / "a-state") == 0
    old = tmp_path / "a" / "out"
    key = world.project("source").console_key
    seeded = World([project_from_snapshot(old, name="source", console_key=key)])
    job = project_job(tmp_path / "b")
    assert await export(seeded, job, tmp_path / "b-state") == 0
    new = tmp_path / "b" / "out"
    # The CLI blocks as a command may; run it beside the loop, as a shell would.
    assert await anyio.to_thread.run_sync(main, ["diff", "--all", str(old), str(new)]) == 0
    assert manifest_of(new)["entities"] == manifest_of(old)["entities"]
    assert manifest_of(new)["details"] == manifest_of(old)["details"]


#: Pages of 3 rows, so the demo's tags take several pages and can change between two of them.
SMALL_PAGES = {"max_page_limit": 3, "fault_paths": ("/console/v1/tags",), "fault_seed": 5}
TAG_PAGES = "/console/v1/tags"


@pytest.mark.parametrize("change", ["add", "delete"])
async def test_a_list_that_changed_once_is_read_again_into_a_consistent_snapshot(
    tmp_path, world, change
) -> None:
    """A tag added or deleted between two pages of the list (a seeded emulator fault) makes the
    export read the list again; the snapshot equals a clean export of the project as it is now."""
    job = project_job(tmp_path / "changed", extra='[select]\nkinds = ["tags"]\n')
    before = len(world.project("source").collection("tags"))
    faults = EmulatorConfig(
        list_change_rate=1.0, list_change_limit=1, list_change_kinds=(change,), **SMALL_PAGES
    )
    async with running_emulator(world, faults) as url:
        assert await run_export(job, url, tmp_path / "changed-state") == 0
    changes = world.requests(fault="list_change")
    assert len(changes) == 1
    assert len(world.project("source").collection("tags")) == before + (
        1 if change == "add" else -1
    )
    first_pages = [r for r in world.requests(path_prefix=TAG_PAGES) if r.query.get("page") == "1"]
    assert len(first_pages) == 3  # read (it changed), read again and confirmed by a second read
    clean = project_job(tmp_path / "clean", extra='[select]\nkinds = ["tags"]\n')
    async with running_emulator(world, EmulatorConfig(max_page_limit=3)) as url:
        assert await run_export(clean, url, tmp_path / "clean-state") == 0
    assert snapshot(tmp_path / "changed" / "out") == snapshot(tmp_path / "clean" / "out")


async def test_a_list_that_keeps_changing_fails_naming_the_kind(tmp_path, world, capsys) -> None:
    """When the tag list changes between pages on every read, the run reads it a bounded number
    of times, fails (exit 3) naming the kind and publishes nothing; a steady re-run publishes."""
    job = project_job(tmp_path, extra='[select]\nkinds = ["tags"]\n')
    faults = EmulatorConfig(list_change_rate=1.0, **SMALL_PAGES)
    async with running_emulator(world, faults) as url:
        assert await run_export(job, url, tmp_path / "state") == 3
    first_pages = [r for r in world.requests(path_prefix=TAG_PAGES) if r.query.get("page") == "1"]
    assert READ_ATTEMPTS <= len(first_pages) <= 2 * READ_ATTEMPTS  # each read, and its check
    assert not (tmp_path / "out" / "manifest.json").exists()
    out = capsys.readouterr()
    assert "the tags of project" in out.out + out.err
    assert "kept changing" in out.out + out.err
    assert await export(world, job, tmp_path / "state") == 0
    tags = len(world.project("source").collection("tags"))
    assert manifest_of(tmp_path / "out")["totals"] == {"tags": tags}


async def test_a_failed_kind_fails_the_run_and_the_rerun_reads_only_it(tmp_path, world) -> None:
    """A kind whose list keeps failing exits 3 with nothing published; the next run reads only
    that kind again (the others resume from the state directory) and publishes."""
    job = project_job(tmp_path, extra='[select]\nkinds = ["gates", "tags"]\n')
    broken = EmulatorConfig(fail_rate=1.0, fault_paths=("/console/v1/tags",))
    async with running_emulator(world, broken) as url:
        assert await run_export(job, url, tmp_path / "state") == 3
    assert not (tmp_path / "out" / "manifest.json").exists()
    before = len(world.requests())
    assert await export(world, job, tmp_path / "state") == 0
    again = {r.path for r in world.requests()[before:]}
    assert "/console/v1/tags" in again
    assert not any(path.startswith("/console/v1/gates") for path in again)
    assert manifest_of(tmp_path / "out")["totals"]["tags"] > 0


async def test_injected_faults_do_not_change_the_snapshot(tmp_path, world) -> None:
    """5xx, dropped and truncated answers (seeded) leave the snapshot byte-identical to a clean
    one."""
    clean = project_job(tmp_path / "clean", extra=SOME_KINDS)
    assert await export(world, clean, tmp_path / "clean-state") == 0
    faults = EmulatorConfig(fail_rate=0.1, drop_rate=0.05, truncate_rate=0.05, fault_seed=11)
    faulty = project_job(tmp_path / "faulty", extra=SOME_KINDS)
    async with running_emulator(world, faults) as url:
        assert await run_export(faulty, url, tmp_path / "faulty-state") == 0
    assert {r.fault for r in world.requests() if r.fault} == {"server_error", "drop", "truncate"}
    assert snapshot(tmp_path / "clean" / "out") == snapshot(tmp_path / "faulty" / "out")
