"""The task graph: dynamic children, subtree completion, failure isolation, replay from the journal."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from bulkops.engine.graph import Scheduler, Task
from bulkops.engine.journal import Journal
from bulkops.errors import Aborted, AuthError, TransportError


def body(calls: list[str], task_id: str, result=None, error: Exception | None = None):
    async def run():
        calls.append(task_id)
        await anyio.lowlevel.checkpoint()
        if error is not None:
            raise error
        return result if result is not None else task_id

    return run


def tree(calls: list[str], failing: str | None = None) -> list[Task]:
    """root adds a1..a3 as children; report depends on root's whole subtree; other is unrelated."""

    def children(_result):
        for n in (1, 2, 3):
            tid = f"a{n}"
            err = TransportError("boom") if tid == failing else None
            yield Task(id=tid, body=body(calls, tid, error=err))

    return [
        Task(id="root", body=body(calls, "root"), expand=children),
        Task(id="report", body=body(calls, "report"), deps=("root",)),
        Task(id="other", body=body(calls, "other")),
    ]


async def run_graph(journal: Journal, tasks: list[Task]) -> Scheduler:
    scheduler = Scheduler(journal)
    for task in tasks:
        scheduler.add(task)
    await scheduler.run()
    await journal.aclose()
    return scheduler


async def test_dependents_wait_for_the_whole_subtree(tmp_path) -> None:
    """A task depending on another starts only after that task's whole subtree of children is done."""
    calls: list[str] = []
    scheduler = await run_graph(await Journal.open_async(tmp_path / "j"), tree(calls))
    assert calls.index("report") > max(calls.index(f"a{n}") for n in (1, 2, 3))
    assert scheduler.counts()["done"] == 6
    assert not scheduler.failures()


async def test_a_failure_skips_only_its_dependents(tmp_path) -> None:
    """A failing task skips its dependents and no other task."""
    calls: list[str] = []
    scheduler = await run_graph(await Journal.open_async(tmp_path / "j"), tree(calls, failing="a2"))
    assert "report" not in calls
    assert "other" in calls
    assert [f[0] for f in scheduler.failures()] == ["a2"]
    counts = scheduler.counts()
    assert counts["skipped"] == 1
    assert counts["failed"] == 2


async def test_a_rerun_replays_finished_bodies_and_retries_only_failures(tmp_path) -> None:
    """A re-run on the same journal replays finished tasks and runs only the failed ones and theirs."""
    calls: list[str] = []
    await run_graph(await Journal.open_async(tmp_path / "j"), tree(calls, failing="a2"))
    again: list[str] = []
    scheduler = await run_graph(await Journal.open_async(tmp_path / "j"), tree(again))
    assert sorted(again) == ["a2", "report"]
    assert scheduler.replayed == 4  # root, a1, a3, other
    assert not scheduler.failures()


async def test_a_fatal_error_aborts_the_job(tmp_path) -> None:
    """A fatal error raises Aborted out of the scheduler and starts no further task."""
    calls: list[str] = []
    scheduler = Scheduler(await Journal.open_async(tmp_path / "j"), max_running=1)
    scheduler.add(Task(id="auth", body=body(calls, "auth", error=AuthError("bad key", status=401))))
    scheduler.add(Task(id="later", body=body(calls, "later")))
    with pytest.raises(Aborted, match="bad key"):
        await scheduler.run()
    assert "later" not in calls


async def test_stop_starts_nothing_new(tmp_path) -> None:
    """After stop(), no further task starts; the rest stay pending."""
    calls: list[str] = []
    scheduler = Scheduler(await Journal.open_async(tmp_path / "j"), max_running=1)

    async def first():
        calls.append("first")
        scheduler.stop()

    scheduler.add(Task(id="first", body=first))
    scheduler.add(Task(id="second", body=body(calls, "second")))
    await scheduler.run()
    assert calls == ["first"]
    assert "pending" in repr(scheduler)
    assert scheduler.counts()["pending"] == 1


async def test_a_task_waiting_on_a_missing_dependency_fails_instead_of_hanging(tmp_path) -> None:
    """A task whose dependency never exists fails, naming it, instead of waiting forever."""
    calls: list[str] = []
    scheduler = await run_graph(
        await Journal.open_async(tmp_path / "j"),
        [Task(id="orphan", body=body(calls, "x"), deps=("ghost",))],
    )
    assert calls == []
    assert scheduler.failures()[0][0] == "orphan"
    assert "ghost" in scheduler.failures()[0][2]


async def test_a_skipped_child_settles_its_parent_as_failed(tmp_path) -> None:
    """A child skipped because an unrelated task failed must not leave its parent waiting."""
    calls: list[str] = []

    def children(_result):
        yield Task(id="x", body=body(calls, "x"), deps=("first",))

    scheduler = Scheduler(await Journal.open_async(tmp_path / "j"), max_running=1)
    scheduler.add(Task(id="first", body=body(calls, "first", error=TransportError("boom"))))
    scheduler.add(Task(id="root", body=body(calls, "root"), expand=children))
    await scheduler.run()
    counts = scheduler.counts()
    assert calls == ["first", "root"]
    assert counts["waiting for children"] == 0
    assert counts["skipped"] == 1
    assert counts["failed"] == 2
