"""export_project's reads under each reading of the spec it cannot rule out (docs/api-assumptions.md):
list rows without the ``id`` the spec's examples leave out, lists without ``pagination`` or not
paged at all, the shapes an id list may come in, and overrides answered null or 404 when none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from bulkops.emulator import (
    EmulatorConfig,
    World,
    build_demo_world,
    project_from_snapshot,
    running_emulator,
)
from bulkops.errors import MalformedResponse
from bulkops.jobs.export_project import _ids_of
from tests.support.commands import run_export
from tests.support.jobs import snapshot
from tests.test_export_project import manifest_of, project_job


def kinds(*names: str) -> str:
    return "[select]\nkinds = [" + ", ".join(f'"{n}"' for n in names) + "]\n"


async def export(world: World, folder: Path, select: str, **config: Any) -> int:
    """One export of ``select`` into ``folder/out`` against the world under ``config``."""
    job = project_job(folder, extra=select)
    async with running_emulator(world, EmulatorConfig(**config)) as url:
        return await run_export(job, url, folder / "state")


def files_of(out: Path, kind: str) -> dict[str, Any]:
    """The kind's exported objects, by manifest id."""
    entries = manifest_of(out)["entities"][kind]
    return {e["id"]: orjson.loads((out / e["file"]).read_bytes()) for e in entries}


def detail_of(out: Path, kind: str, key: str, detail: str) -> Any:
    """The exported ``detail`` of the ``kind`` entity ``key``."""
    entries = manifest_of(out)["details"][kind]
    entry = next(e for e in entries if e["id"] == key and e["detail"] == detail)
    return orjson.loads((out / entry["file"]).read_bytes())


async def test_target_apps_and_teams_listed_without_ids_are_keyed_by_name(tmp_path, world) -> None:
    """Under listed_ids="omitted" (the spec's list examples) every target app and team is
    exported under its name, as listed, and a project seeded from that snapshot serves them
    under the ids the emulator had given them (target-app ids derived from names here: ids
    a server assigned cannot come back from a snapshot that does not hold them)."""
    world = build_demo_world(target_app_ids="derived")  # the fixture's keys, set in the env
    select = kinds("target_apps", "teams")
    assert await export(world, tmp_path, select, listed_ids="omitted") == 0
    out = tmp_path / "out"
    source = world.project("source")
    for kind in ("target_apps", "teams"):
        stored = {e["name"]: e for e in source.collection(kind).values()}
        exported = files_of(out, kind)
        assert set(exported) == set(stored), kind
        for name, row in exported.items():
            assert row == {k: v for k, v in stored[name].items() if k != "id"}
    seeded = project_from_snapshot(out, name="source")
    for kind in ("target_apps", "teams"):
        assert set(seeded.collection(kind)) == set(source.collection(kind)), kind


async def test_target_apps_and_teams_with_ids_stay_keyed_by_id(tmp_path, world) -> None:
    """With ids in the list rows (the default), target apps and teams keep their ids as keys."""
    assert await export(world, tmp_path, kinds("target_apps", "teams")) == 0
    source = world.project("source")
    for kind in ("target_apps", "teams"):
        assert set(files_of(tmp_path / "out", kind)) == set(source.collection(kind)), kind


def with_long_id_list(world: World, size: int = 250) -> World:
    """The demo world with the ``vip_users`` id list grown to ``size`` ids (several pages)."""
    ids = [f"user-{n:04d}" for n in range(size)]
    world.project("source").collection("segment_ids").put("vip_users", {"ids": ids})
    return world


@pytest.mark.parametrize(
    "config",
    [
        {"pagination": "omitted"},
        {"pagination": "unpaged"},
        {"id_list_shape": "wrapped"},
        {"id_list_shape": "ids", "pagination": "omitted"},
    ],
    ids=lambda config: ",".join(f"{k}={v}" for k, v in config.items()),
)
async def test_lists_read_alike_with_or_without_pagination_and_in_each_id_list_shape(
    tmp_path, world, config
) -> None:
    """Without a pagination block (pages sliced by limit, or every row on every page), and
    with an id list's data in each shape, the export is the same as under the default reading:
    every gate of several pages and every one of 250 ids of a segment."""
    with_long_id_list(world)
    select = kinds("gates", "segments")
    assert await export(world, tmp_path / "default", select) == 0
    world.clear_log()
    assert await export(world, tmp_path / "reading", select, **config) == 0
    assert snapshot(tmp_path / "reading" / "out") == snapshot(tmp_path / "default" / "out")
    out = tmp_path / "reading" / "out"
    assert len(files_of(out, "gates")) == 301
    assert detail_of(out, "segments", "vip_users", "id_list") == [
        f"user-{n:04d}" for n in range(250)
    ]
    if config.get("pagination") == "unpaged":  # page 2 repeated page 1: the list ends there
        pages = world.requests(method="GET", path_prefix="/console/v1/gates")
        assert sorted(int(r.query["page"]) for r in pages if r.path == "/console/v1/gates") == [
            1,
            2,
        ]


def test_an_id_list_page_in_no_known_shape_is_malformed() -> None:
    """An id list's data that is neither {ids}, [{ids}] nor a list of ids is a MalformedResponse
    naming the request, never read as no ids; a null data is no ids."""
    assert _ids_of({"name": "s", "count": 2, "ids": ["a", "b"]}, "GET /x", "p") == ["a", "b"]
    assert _ids_of([{"ids": ["a"]}], "GET /x", "p") == ["a"]
    assert _ids_of(["a", 7], "GET /x", "p") == ["a", "7"]
    assert _ids_of(None, "GET /x", "p") == []
    for data in ({"name": "s"}, "a,b", [{"ids": "a"}], [["a"]]):
        with pytest.raises(MalformedResponse, match="GET /x"):
            _ids_of(data, "GET /x", "p")


@pytest.mark.parametrize("empty", ["null", "404"])
async def test_overrides_answered_null_or_404_when_none_are_no_overrides(
    tmp_path, world, empty
) -> None:
    """Gates, experiments, layers and holdouts whose overrides read answers data null, or 404
    while the entity exists, have no overrides file; the export is the same as with empty lists."""
    select = kinds("gates", "experiments", "layers", "holdouts")
    assert await export(world, tmp_path / "default", select) == 0
    world.clear_log()
    assert await export(world, tmp_path / "reading", select, empty_overrides=empty) == 0
    assert snapshot(tmp_path / "reading" / "out") == snapshot(tmp_path / "default" / "out")
    manifest = manifest_of(tmp_path / "reading" / "out")
    assert set(manifest["details"]) == {"gates", "experiments", "holdouts"}  # layers have none
    if empty == "404":  # one 404 per entity without overrides, each checked by reading it
        without = sum(manifest["totals"].values()) - sum(map(len, manifest["details"].values()))
        answered = world.requests(method="GET", path_prefix="/console/v1/", status=404)
        assert len(answered) == without
        assert all(r.path.endswith("/overrides") for r in answered)


async def test_a_listed_item_without_its_identity_fails_at_once_as_a_malformed_answer(
    tmp_path, world, capsys
) -> None:
    """A tag listed without an ``id`` is a malformed answer, not a list that changed: the run
    fails (exit 3) after one read of the list, naming the kind and the missing field."""
    tags = world.project("source").collection("tags")
    tags.add("no-id", {"name": "tag without an id", "description": ""})
    assert await export(world, tmp_path, kinds("tags")) == 3
    pages = [r for r in world.requests(path_prefix="/console/v1/tags") if r.query.get("page")]
    assert [r.query["page"] for r in pages] == ["1"]
    said = capsys.readouterr()
    message = said.out + said.err
    assert "the tags of project" in message
    assert "has no `id`" in message
    assert "kept changing" not in message
    assert not (tmp_path / "out" / "manifest.json").exists()
