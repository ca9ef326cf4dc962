"""The journal's writer: durable appends are on disk when awaited, threads append safely, failures stick."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import anyio
import anyio.lowlevel
import orjson
import pytest

from bulkops.engine.journal import Intent, Journal, Outcome, TaskDone, decode, read_journal
from bulkops.errors import CheckpointError, LocalIOError
from bulkops.writer import AppendFile


def lines_of(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def test_an_intent_is_in_the_file_when_its_durable_append_returns(tmp_path) -> None:
    """``await append_durable`` returns only once the record, and all appended before it, are written."""
    path = tmp_path / "j.jsonl"
    journal = await Journal.open_async(path)
    journal.append(TaskDone(task="page", result={"n": 1}))
    await journal.append_durable(Intent(op="gate:g1", at=1.5))
    assert lines_of(path) == [
        {"type": "task_done", "task": "page", "result": {"n": 1}},
        {"type": "intent", "op": "gate:g1", "at": 1.5},
    ]
    await journal.aclose()


async def test_threads_and_the_loop_append_at_once_without_tearing_or_reordering(tmp_path) -> None:
    """Four threads and the loop append together: every record lands whole, once, in its appender's order."""
    path = tmp_path / "j.jsonl"
    journal = await Journal.open_async(path)
    per_thread = 400

    def appender(name: str) -> None:
        for n in range(per_thread):
            journal.append(TaskDone(task=f"{name}:{n}", result={"pad": "x" * (n % 50)}))

    threads = [threading.Thread(target=appender, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for n in range(per_thread):
        if n % 50 == 0:
            await journal.append_durable(Intent(op=f"loop:{n}", at=float(n)))
        else:
            journal.append(TaskDone(task=f"loop:{n}"))
        await anyio.lowlevel.checkpoint()
    await anyio.to_thread.run_sync(lambda: [thread.join() for thread in threads])
    await journal.aclose()
    records = await anyio.to_thread.run_sync(read_journal, path)
    ids = [
        r.task if isinstance(r, TaskDone) else r.op for r in records if not isinstance(r, Outcome)
    ]
    assert len(ids) == len(set(ids)) == 5 * per_thread
    for name in ("t0", "t1", "t2", "t3", "loop"):
        mine = [int(i.split(":")[1]) for i in ids if i.startswith(f"{name}:")]
        assert mine == list(range(per_thread)), name


async def test_a_cancelled_wait_still_gets_its_intent_written(tmp_path) -> None:
    """Cancelling the task that awaits a durable append does not unwrite the record."""
    path = tmp_path / "j.jsonl"
    journal = await Journal.open_async(path)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await journal.append_durable(Intent(op="gate:g1", at=0.0))
    await journal.aclose()
    assert lines_of(path) == [{"type": "intent", "op": "gate:g1", "at": 0.0}]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
async def test_a_full_disk_fails_that_append_and_every_later_one_naming_the_file() -> None:
    """A write that fails (ENOSPC) is raised to the durable appender, and no later record slips in."""
    journal = Journal(Path("/dev/full"), [], AppendFile(Path("/dev/full")))
    with pytest.raises(LocalIOError, match=r"cannot write /dev/full: No space left"):
        await journal.append_durable(Intent(op="gate:g1", at=0.0))
    with pytest.raises(LocalIOError, match="/dev/full"):
        journal.append(TaskDone(task="later"))


def test_each_record_type_round_trips_through_its_one_encoding() -> None:
    """encode then decode gives back the same record, ``type`` first in the JSON."""
    from bulkops.engine.journal import TaskFailed, TaskInvalidated, encode

    records = [
        TaskDone(task="a", result=[1, {"b": None}]),
        TaskFailed(task="a", error="boom"),
        TaskInvalidated(tasks=("a", "b")),
        Intent(op="o", at=2.0),
        Outcome(op="o", status="applied", sent=True, after={"version": 3}),
    ]
    for record in records:
        line = encode(record)
        assert line.startswith(b'{"type":"')
        assert line.endswith(b"\n")
        assert decode(orjson.loads(line)) == record


def test_a_record_of_unknown_type_or_fields_in_the_middle_is_corruption(tmp_path) -> None:
    """Only a torn last line is forgiven: a mid-file record that decodes to no type is refused."""
    for bad in (b'{"type":"task_dune","task":"a"}', b'{"type":"intent","op":"o"}'):
        path = tmp_path / "j.jsonl"
        path.write_bytes(bad + b'\n{"type":"task_done","task":"b","result":null}\n')
        with pytest.raises(CheckpointError, match=r"line 1"):
            read_journal(path)


def test_appending_to_a_closed_journal_is_refused(tmp_path) -> None:
    """A record appended after close would be lost: it is an error, not a silent drop."""
    journal = Journal.open(tmp_path / "j.jsonl")
    journal.close()
    with pytest.raises(CheckpointError, match="closed"):
        journal.append(TaskDone(task="late"))


async def test_threads_appending_while_the_loop_turns_never_fail_an_append(tmp_path) -> None:
    """Threads hand over appends while the loop adds and drops its pending batch every iteration
    (thread switches forced to be frequent): no append raises, and every line lands once."""
    file = AppendFile(tmp_path / "lines")
    errors: list[BaseException] = []
    per_thread = 3000

    def appender(name: str) -> None:
        try:
            for n in range(per_thread):
                file.append(f"{name}:{n}\n".encode())
        except BaseException as error:  # what the race raised: the line was lost
            errors.append(error)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=appender, args=(f"t{i}",)) for i in range(3)]
        for thread in threads:
            thread.start()
        for n in range(per_thread):
            file.append(f"loop:{n}\n".encode())
            await anyio.lowlevel.checkpoint()
        await anyio.to_thread.run_sync(lambda: [thread.join() for thread in threads])
    finally:
        sys.setswitchinterval(interval)
    await file.aclose()
    assert errors == []
    lines = (tmp_path / "lines").read_bytes().splitlines()
    assert len(lines) == len(set(lines)) == 4 * per_thread
