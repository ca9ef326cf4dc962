"""What a job over many projects costs beyond the same pages in one project (issue 10): work done
once per fleet stays once per fleet, and nothing per page is held longer than it must be."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from bulkops.commands import fleet, signals
from bulkops.emulator import Project, World, populate_metrics, running_emulator
from bulkops.engine import collector
from bulkops.engine.collector import YOUNG_THRESHOLD, collecting_for_a_command
from bulkops.engine.spool import Spool
from bulkops.errors import UserError
from bulkops.jobs.spec import JobDefinition
from tests.support.commands import loaded
from tests.test_multi_project import export_job, options, set_keys

PROJECTS = 6


async def test_a_fleet_builds_its_members_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export over six projects builds the per-project jobs (one spec copy each) once, not
    once more per project, and still publishes every project and the index."""
    projects = [Project(f"p{n}", f"console-p{n}-key") for n in range(PROJECTS)]
    for project in projects:
        populate_metrics(project, 1, 2, prefix=project.name)
    world = World(projects)
    set_keys(monkeypatch, world)
    built = 0
    members = JobDefinition.members

    def counting(self: JobDefinition) -> dict:  # type: ignore[type-arg]
        nonlocal built
        built += 1
        return members(self)

    async with running_emulator(world) as url:
        job = await loaded(export_job(tmp_path, {p.name: url for p in projects}))
        monkeypatch.setattr(JobDefinition, "members", counting)
        assert await fleet.run_fleet(job, options(tmp_path / "state")) == 0
    assert built == 1
    index = orjson.loads((tmp_path / "out" / "manifest.json").read_bytes())
    assert [entry["name"] for entry in index["projects"]] == [p.name for p in projects]
    assert all(entry["complete"] for entry in index["projects"])


@dataclass
class _Row:
    name: str


class _HeldSpool(Spool):
    """A spool whose writes wait until the test lets them go."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.release = threading.Event()

    def _write_payload(self, name: str, payload: bytes) -> str:
        self.release.wait(10)
        return super()._write_payload(name, payload)


def _page() -> list[_Row]:
    return [_Row(f"metric {n}") for n in range(3)]


async def test_the_spool_lets_go_of_a_pages_rows_before_its_file_is_written(tmp_path) -> None:
    """Once a page's rows are encoded, the spool holds no reference to them while the write and
    its fsync are still pending; the file still gets every row."""
    spool = _HeldSpool(tmp_path / "spool")
    rows = _page()
    row = weakref.ref(rows[0])
    writing = asyncio.ensure_future(spool.write_async("p1", rows))
    del rows
    for _ in range(3):
        await asyncio.sleep(0)
    assert not writing.done()
    gc.collect()
    assert row() is None
    spool.release.set()
    name = await writing
    assert [orjson.loads(line) for line in spool.lines(name)] == [
        {"name": f"metric {n}"} for n in range(3)
    ]


async def test_a_command_runs_with_start_up_frozen_and_young_collections_rarer() -> None:
    """Under the CLI's guard a command sees what existed before it frozen and the young threshold
    at YOUNG_THRESHOLD; when it ends, even by an error, the collector is as it was."""
    assert gc.get_freeze_count() == 0
    before = gc.get_threshold()
    seen: list[tuple[int, tuple[int, int, int]]] = []

    async def command(fail: bool) -> int:
        seen.append((gc.get_freeze_count(), gc.get_threshold()))
        if fail:
            raise UserError("stop here")
        return 0

    assert await signals.guarded(command, False) == 0
    with pytest.raises(ExceptionGroup) as failed:  # the CLI shows the group's UserError alone
        await signals.guarded(command, True)
    assert failed.group_contains(UserError)
    assert [frozen > 0 for frozen, _ in seen] == [True, True]
    assert [threshold for _, threshold in seen] == [(YOUNG_THRESHOLD, *before[1:])] * 2
    assert (gc.get_freeze_count(), gc.get_threshold()) == (0, before)


def test_a_collector_someone_else_set_is_left_alone() -> None:
    """A process that froze objects itself, or turned the collector off, keeps its own settings
    while a command runs (and its frozen objects stay frozen after)."""
    before = gc.get_threshold()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with collecting_for_a_command():
            assert (gc.get_freeze_count(), gc.get_threshold()) == (frozen, before)
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
    gc.disable()
    try:
        with collecting_for_a_command():
            assert (gc.get_freeze_count(), gc.get_threshold()) == (0, before)
    finally:
        gc.enable()


def test_readers_inside_a_command_leave_the_command_s_freeze_to_the_command() -> None:
    """A job's long-lived reads freeze more as they go, but their end does not thaw what the
    command froze at start-up; the command's end thaws everything; outside a command, the last
    reader thaws what the readers froze."""
    with collecting_for_a_command():
        with collector.long_lived():
            kept = [[n] for n in range(1_000)]  # lists are always tracked
            frozen = gc.get_freeze_count()
            collector.spare()
            assert gc.get_freeze_count() >= frozen + len(kept)
        assert gc.get_freeze_count() > 0  # still the command's
    assert gc.get_freeze_count() == 0
    with collector.long_lived():
        collector.spare()
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
