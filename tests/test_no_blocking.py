"""The blocking guard: bulkops code that blocks inside a running event loop fails the test."""

from __future__ import annotations

import pytest
from blockbuster import BlockingError

from bulkops.engine.journal import Journal, TaskDone
from bulkops.engine.state import StateDir


async def test_a_blocking_call_inside_the_loop_fails(tmp_path) -> None:
    """Reading and repairing a journal on the loop (not through open_async) is caught."""
    with pytest.raises(BlockingError):
        Journal.open(tmp_path / "j.jsonl")


async def test_an_atomic_write_on_the_loop_fails_but_its_async_form_passes(tmp_path) -> None:
    """run.json written on the loop is caught; write_run_async moves it to a worker thread."""
    state = StateDir(tmp_path)
    with pytest.raises(BlockingError):
        state.write_run({"run_id": "r"})
    await state.write_run_async({"run_id": "r"})
    assert (tmp_path / "run.json").exists()


async def test_journal_appends_never_block_the_loop(tmp_path) -> None:
    """Appends, durable appends and close all go through the writer thread."""
    journal = await Journal.open_async(tmp_path / "j.jsonl")
    for n in range(100):
        journal.append(TaskDone(task=f"t{n}"))
    await journal.append_durable(TaskDone(task="last"))
    await journal.aclose()


def test_outside_a_loop_blocking_is_allowed(tmp_path) -> None:
    """Sync code (status, tests, worker threads) keeps its blocking path."""
    journal = Journal.open(tmp_path / "j.jsonl")
    journal.append_durable_sync(TaskDone(task="a"))
    journal.close()
