"""export_project's reading and publishing paths: pages read at once, details that vanish mid-read,
files staged during the read and checked before publishing, and durability helpers."""

from __future__ import annotations

import ctypes
import errno
import gc
import os

import orjson
import pytest

from bulkops.emulator import EmulatorConfig, running_emulator
from bulkops.errors import LocalIOError
from bulkops.output import files
from bulkops.output.files import make_durable, write_bytes_unsynced
from tests.support.commands import run_export
from tests.support.jobs import snapshot
from tests.test_export_project import project_job

TAGS = '[select]\nkinds = ["tags"]\n'
TAG_PAGES = "/console/v1/tags"


async def test_pages_after_the_first_are_read_at_once_and_each_read_once(tmp_path, world) -> None:
    """A list of several pages: page 1, then pages 2..N together (not one round trip each), then
    the confirming read of all N together; every page is asked for exactly twice."""
    job = project_job(tmp_path, extra=TAGS)
    latency = 0.1
    config = EmulatorConfig(max_page_limit=2, latency_ms=latency * 1000)
    async with running_emulator(world, config) as url:
        assert await run_export(job, url, tmp_path / "state") == 0
    pages = world.requests(path_prefix=TAG_PAGES)
    count = len(world.project("source").collection("tags"))
    last = -(-count // 2)
    assert last >= 4
    numbers = sorted(int(r.query["page"]) for r in pages)
    assert numbers == sorted(list(range(1, last + 1)) * 2)
    first_read = sorted(pages, key=lambda r: r.time)[1:last]  # pages 2..N of the first read
    assert {int(r.query["page"]) for r in first_read} == set(range(2, last + 1))
    # One after another they would be at least a latency apart each (3 latencies or more).
    assert max(r.time for r in first_read) - min(r.time for r in first_read) < 1.5 * latency


async def test_a_gate_deleted_while_the_gates_are_read_gives_the_snapshot_of_after(
    tmp_path, world
) -> None:
    """A gate deleted between two pages of the gate list (its overrides may already be asked
    for, and answer 404) makes the export read the gates again: the run succeeds with the
    snapshot of the project as it is afterwards."""
    kinds = '[select]\nkinds = ["gates"]\n'
    job = project_job(tmp_path / "changed", extra=kinds)
    faults = EmulatorConfig(
        max_page_limit=50,
        list_change_rate=1.0,
        list_change_limit=1,
        list_change_kinds=("delete",),
        fault_paths=("/console/v1/gates",),
        fault_seed=6,  # deletes a gate of page 1, whose overrides are already asked for
    )
    async with running_emulator(world, faults) as url:
        assert await run_export(job, url, tmp_path / "changed-state") == 0
    assert len(world.requests(fault="list_change")) == 1
    assert world.requests(status=404)  # the vanished gate's overrides
    clean = project_job(tmp_path / "clean", extra=kinds)
    async with running_emulator(world, EmulatorConfig(max_page_limit=50)) as url:
        assert await run_export(clean, url, tmp_path / "clean-state") == 0
    assert snapshot(tmp_path / "changed" / "out") == snapshot(tmp_path / "clean" / "out")


async def test_staged_files_lost_before_publishing_are_written_again(tmp_path, world) -> None:
    """Files staged while a kind was read are not durable until publishing: when some are torn
    or gone (a crash lost them) before a resumed run publishes, it writes them again, and the
    snapshot is byte-identical to a clean one, with no staged file left behind."""
    kinds = '[select]\nkinds = ["gates", "tags"]\n'
    job = project_job(tmp_path / "resumed", extra=kinds)
    broken = EmulatorConfig(fail_rate=1.0, fault_paths=(TAG_PAGES,))
    async with running_emulator(world, broken) as url:
        assert await run_export(job, url, tmp_path / "state") == 3  # gates read, tags failed
    out = tmp_path / "resumed" / "out"
    staged = sorted((out / "gates").glob(".*.tmp-*"))
    assert len(staged) > 3
    staged[0].write_bytes(staged[0].read_bytes()[:10])  # torn
    staged[1].write_bytes(b"")  # allocated, never written
    staged[2].unlink()  # gone
    async with running_emulator(world, EmulatorConfig()) as url:
        assert await run_export(job, url, tmp_path / "state") == 0
    clean = project_job(tmp_path / "clean", extra=kinds)
    async with running_emulator(world, EmulatorConfig()) as url:
        assert await run_export(clean, url, tmp_path / "clean-state") == 0
    assert snapshot(out) == snapshot(tmp_path / "clean" / "out")


@pytest.mark.parametrize("tags", ["steady", "failing"])
async def test_lists_read_whole_are_spared_by_the_collector_until_reading_ends(
    tmp_path, world, tags
) -> None:
    """While kinds are read, the lists read whole are frozen out of the cyclic collector's
    generations; once the last kind is read, or has failed, nothing is left frozen."""
    job = project_job(tmp_path, extra='[select]\nkinds = ["gates", "tags"]\n')
    config = EmulatorConfig(latency_ms=5)
    if tags == "failing":
        config = EmulatorConfig(latency_ms=5, fail_rate=1.0, fault_paths=(TAG_PAGES,))
    frozen_before = gc.get_freeze_count()
    seen: list[int] = []

    def watch(phase: str, info: dict[str, int]) -> None:
        seen.append(gc.get_freeze_count())

    gc.callbacks.append(watch)
    try:
        async with running_emulator(world, config) as url:
            code = await run_export(job, url, tmp_path / "state")
    finally:
        gc.callbacks.remove(watch)
    if tags == "steady":
        assert code == 0
        assert max(seen) > frozen_before  # collections ran while lists were frozen
    else:
        assert code == 3  # the tags failed; the gates were read (and their list frozen)
    assert gc.get_freeze_count() == frozen_before


@pytest.mark.parametrize("whole_fs", [True, False])
def test_make_durable_syncs_the_files_and_folders(tmp_path, whole_fs) -> None:
    """Files written unsynced keep their bytes through ``make_durable``, which says how it made
    them durable: one syncfs where Linux offers it, else an fsync of each."""
    if whole_fs and files._syncfs is None:
        pytest.skip("no syncfs on this system")
    paths = [str(tmp_path / f"f{i}.json") for i in range(20)]
    for index, path in enumerate(paths):
        write_bytes_unsynced(path, f"{index}\n".encode() * 1000)
    how = make_durable(paths, [str(tmp_path)], whole_fs=whole_fs)
    assert how == ("syncfs" if whole_fs else "fsync")
    for index, path in enumerate(paths):
        with open(path, "rb") as handle:
            assert handle.read() == f"{index}\n".encode() * 1000
    assert os.stat(paths[0]).st_size == 2000


def test_make_durable_names_a_file_it_cannot_sync(tmp_path) -> None:
    """A file that cannot be opened for its fsync fails as a LocalIOError naming that file."""
    missing = str(tmp_path / "gone.json")
    with pytest.raises(LocalIOError, match=r"gone\.json"):
        make_durable([missing], [str(tmp_path)], whole_fs=False)


class _SyncfsSpy:
    """Wraps libc's syncfs: records how many requests the emulator had answered at each call,
    and can make the first call report a write-back error (EIO), as a failing disk would."""

    def __init__(self, world, fail_first: bool = False) -> None:
        self.world, self.fail_first = world, fail_first
        self.real = files._syncfs
        self.answered_at_call: list[int] = []

    def __call__(self, fd: int) -> int:
        self.answered_at_call.append(len(self.world.requests()))
        if self.fail_first and len(self.answered_at_call) == 1:
            ctypes.set_errno(errno.EIO)
            return -1
        assert self.real is not None
        return self.real(fd)


@pytest.fixture
def syncfs_spy(monkeypatch, world):
    if files._syncfs is None:
        pytest.skip("no syncfs on this system: staged files are fsynced one by one instead")

    def install(fail_first: bool = False) -> _SyncfsSpy:
        spy = _SyncfsSpy(world, fail_first)
        monkeypatch.setattr(files, "_syncfs", spy)
        return spy

    return install


async def test_staged_files_go_to_disk_while_the_reads_go_on(tmp_path, world, syncfs_spy) -> None:
    """Staged files are synced early, while requests are still being answered, so publishing's
    own sync finds little left; the snapshot is the same as ever."""
    spy = syncfs_spy()
    job = project_job(tmp_path, extra='[select]\nkinds = ["gates", "tags"]\n')
    async with running_emulator(world, EmulatorConfig(latency_ms=20)) as url:
        assert await run_export(job, url, tmp_path / "state") == 0
    total = len(world.requests())
    assert len(spy.answered_at_call) >= 2  # early ones, then publishing's
    assert min(spy.answered_at_call) < total  # one ran before the last answer


async def test_a_write_back_error_met_early_fails_the_run_and_keeps_the_old_snapshot(
    tmp_path, world, syncfs_spy
) -> None:
    """An I/O error reported to an early sync is not lost: the run ends with exit 4 naming the
    output directory, the published snapshot stays as it was, and a re-run publishes."""
    job = project_job(tmp_path, extra='[select]\nkinds = ["gates", "tags"]\n')
    out = tmp_path / "out"
    config = EmulatorConfig(latency_ms=20)
    async with running_emulator(world, config) as url:
        assert await run_export(job, url, tmp_path / "state") == 0
    old_manifest = (out / "manifest.json").read_bytes()
    old = snapshot(out)
    tag = world.project("source").collection("tags").values()[0]
    tag["description"] = "changed after the first snapshot"
    spy = syncfs_spy(fail_first=True)
    async with running_emulator(world, config) as url:
        assert await run_export(job, url, tmp_path / "state") == 4
    assert spy.answered_at_call[0] < len(world.requests())  # the failing sync was an early one
    assert (out / "manifest.json").read_bytes() == old_manifest
    for entry in orjson.loads(old_manifest)["entities"]["tags"]:
        assert (out / entry["file"]).read_bytes() == old["files"][entry["file"]]
    async with running_emulator(world, EmulatorConfig()) as url:
        assert await run_export(job, url, tmp_path / "state") == 0
    assert b"changed after the first snapshot" in b"".join(snapshot(out)["files"].values())


def test_early_write_back_requested_after_finish_does_nothing(tmp_path, monkeypatch) -> None:
    """Once publishing has finished the early syncs, a late request starts none (it would race
    the final sync for a write-back error)."""
    calls: list[int] = []
    monkeypatch.setattr(files, "_syncfs", lambda fd: calls.append(fd) or 0)
    early = files.EarlyWriteBack(lambda: str(tmp_path))
    early.request()
    early.finish()
    count = len(calls)
    early.request()
    early.finish()
    assert count >= 1
    assert len(calls) == count
