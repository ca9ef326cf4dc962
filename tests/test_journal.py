"""The journal survives a torn last record and refuses real corruption."""

from __future__ import annotations

import pytest

from bulkops.engine.journal import Journal, TaskDone, read_journal
from bulkops.errors import CheckpointError

A = b'{"type":"task_done","task":"a","result":null}\n'
B = b'{"type":"task_done","task":"b","result":null}'


def test_records_round_trip(tmp_path) -> None:
    """Appended records read back as the same typed records, in order."""
    journal = Journal.open(tmp_path / "j.jsonl")
    journal.append(TaskDone(task="a", result={"n": 1}))
    journal.append(TaskDone(task="b"))
    journal.close()
    assert read_journal(tmp_path / "j.jsonl") == [
        TaskDone(task="a", result={"n": 1}),
        TaskDone(task="b"),
    ]
    assert "closed" in repr(journal)


def test_a_torn_last_record_is_dropped_and_truncated(tmp_path) -> None:
    """A record cut short by a kill is dropped on open, and the next append starts a clean line."""
    path = tmp_path / "j.jsonl"
    journal = Journal.open(path)
    journal.append(TaskDone(task="a", result=1))
    journal.close()
    with path.open("ab") as handle:
        handle.write(b'{"type": "task_done", "task": "b", "res')  # killed mid-write
    reopened = Journal.open(path)
    assert reopened.torn_tail_dropped
    assert [r.task for r in reopened.records if isinstance(r, TaskDone)] == ["a"]
    reopened.append(TaskDone(task="c", result=3))
    reopened.close()
    assert [r.task for r in read_journal(path) if isinstance(r, TaskDone)] == ["a", "c"]


def test_a_complete_record_without_its_newline_counts_as_torn(tmp_path) -> None:
    """A last line without its newline was never acknowledged, so it is cut away."""
    path = tmp_path / "j.jsonl"
    path.write_bytes(A + B)
    journal = Journal.open(path)
    assert journal.records == [TaskDone(task="a")]
    journal.close()
    assert path.read_bytes() == A


def test_damage_before_the_last_record_is_an_error_that_says_what_to_do(tmp_path) -> None:
    """A bad line in the middle is corruption: refused, naming the line and --fresh."""
    path = tmp_path / "j.jsonl"
    path.write_bytes(A + b"not json\n" + B + b"\n")
    with pytest.raises(CheckpointError, match=r"line 2.*--fresh"):
        Journal.open(path)


def test_records_appended_without_fsync_survive_a_reopen(tmp_path) -> None:
    """Non-durable records are still written whole: once written, a process kill does not lose them."""
    path = tmp_path / "j.jsonl"
    journal = Journal.open(path)
    journal.append(TaskDone(task="a"))
    journal.flush_sync()
    # no close(): as if the process were killed here
    assert [r.task for r in read_journal(path) if isinstance(r, TaskDone)] == ["a"]
    journal.close()
