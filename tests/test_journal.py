"""The journal survives a torn last record and refuses real corruption."""

from __future__ import annotations

import pytest

from bulkops.engine.journal import Journal, read_journal
from bulkops.errors import CheckpointError


def test_records_round_trip(tmp_path) -> None:
    """Appended records are read back in order."""
    journal = Journal.open(tmp_path / "j.jsonl")
    journal.append({"type": "task_done", "task": "a", "result": {"n": 1}})
    journal.append({"type": "task_done", "task": "b", "result": None})
    journal.close()
    assert [r["task"] for r in read_journal(tmp_path / "j.jsonl")] == ["a", "b"]
    assert "closed" in repr(journal)


def test_a_torn_last_record_is_dropped_and_truncated(tmp_path) -> None:
    """A torn last record (a killed writer) is dropped and cut off, and appends continue after it."""
    path = tmp_path / "j.jsonl"
    journal = Journal.open(path)
    journal.append({"type": "task_done", "task": "a", "result": 1})
    journal.close()
    with path.open("ab") as handle:
        handle.write(b'{"type": "task_done", "task": "b", "res')  # killed mid-write
    reopened = Journal.open(path)
    assert reopened.torn_tail_dropped
    assert [r["task"] for r in reopened.records] == ["a"]
    reopened.append({"type": "task_done", "task": "c", "result": 3})
    reopened.close()
    assert [r["task"] for r in read_journal(path)] == ["a", "c"]


def test_a_complete_record_without_its_newline_counts_as_torn(tmp_path) -> None:
    """A last record without its newline counts as torn and is cut off."""
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"type":"x","task":"a"}\n{"type":"x","task":"b"}')
    journal = Journal.open(path)
    assert [r["task"] for r in journal.records] == ["a"]
    journal.close()
    assert path.read_bytes() == b'{"type":"x","task":"a"}\n'


def test_damage_before_the_last_record_is_an_error_that_says_what_to_do(tmp_path) -> None:
    """Damage before the last record is a CheckpointError naming the line and --fresh."""
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"type":"x"}\nnot json\n{"type":"y"}\n')
    with pytest.raises(CheckpointError, match=r"line 2.*--fresh"):
        Journal.open(path)


def test_records_appended_without_fsync_survive_a_reopen(tmp_path) -> None:
    """Non-durable records are still written whole: a process kill does not lose them."""
    path = tmp_path / "j.jsonl"
    journal = Journal.open(path)
    journal.append({"type": "task_done", "task": "a"}, durable=False)
    # no close(): as if the process were killed here
    assert [r["task"] for r in read_journal(path)] == ["a"]
    journal.close()
