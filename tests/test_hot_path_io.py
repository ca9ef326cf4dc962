"""Hot-path I/O: batched hand-offs to the writer and spool threads keep order, never deadlock."""

from __future__ import annotations

import asyncio

import anyio

from bulkops.engine.spool import Spool
from bulkops.writer import AppendFile


def test_appends_of_a_loop_that_ended_before_its_flush_are_written_before_a_later_close(
    tmp_path,
) -> None:
    """Appends held back for a loop iteration that never came still land, in order, before a close."""
    file = AppendFile(tmp_path / "log.jsonl")

    async def append_and_leave() -> None:
        for n in range(50):
            file.append(b"%d\n" % n)
        asyncio.get_running_loop().stop()  # the loop ends before its flush callback runs

    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(append_and_leave())
        loop.run_forever()
        assert task.done()
    finally:
        loop.close()
    file.close_sync()
    assert (tmp_path / "log.jsonl").read_bytes().split() == [b"%d" % n for n in range(50)]


async def test_appends_from_one_loop_iteration_land_in_order_among_durable_ones(tmp_path) -> None:
    """Plain and durable appends made on the loop reach the file in the order they were made."""
    file = AppendFile(tmp_path / "journal.jsonl")
    file.append(b"a\n")
    file.append(b"b\n")
    await file.append_durable(b"c\n")
    file.append(b"d\n")
    await file.aclose()
    assert (tmp_path / "journal.jsonl").read_bytes() == b"a\nb\nc\nd\n"


def test_pages_spooled_in_one_batch_each_get_their_own_complete_file(tmp_path) -> None:
    """Pages handed to the spool together are written as separate files, each with exactly its rows."""
    spool = Spool(tmp_path / "spool")
    names: dict[str, str] = {}

    async def page(n: int) -> None:
        rows = [{"page": n, "row": r} for r in range(3)]
        names[f"p{n}"] = await spool.write_async(f"p{n}", rows)

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for n in range(20):
                group.start_soon(page, n)

    anyio.run(main)
    assert len(set(names.values())) == 20
    for n in range(20):
        lines = list(spool.lines(names[f"p{n}"]))
        assert lines == [b'{"page":%d,"row":%d}\n' % (n, r) for r in range(3)]
    assert not list((tmp_path / "spool").glob(".*.tmp"))


def test_the_spools_of_many_projects_share_a_few_threads(tmp_path) -> None:
    """Fifty projects' spools in one process share SPOOL_POOLS pools of SPOOL_THREADS threads."""
    import threading

    from bulkops.engine.spool import SPOOL_POOLS, SPOOL_THREADS

    spools = [Spool(tmp_path / f"p{n}") for n in range(50)]

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for spool in spools:
                group.start_soon(spool.write_async, "page", [{"a": 1}])

    anyio.run(main)
    writers = [t for t in threading.enumerate() if t.name.startswith("bulkops-spool")]
    assert 1 <= len(writers) <= SPOOL_POOLS * SPOOL_THREADS
