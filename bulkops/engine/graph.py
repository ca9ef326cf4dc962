"""The task graph: a small ready-queue scheduler with dynamic children and failure isolation.

A task's *body* runs once and returns a JSON-able result, which the journal keeps. Its children are a
pure function of that result (``Task.expand``), so a resumed run rebuilds the same graph from the
journal without running finished bodies again. A task is *complete* for its dependents only when its
body and all its descendants are complete. A failed body fails its subtree's ancestors and skips its
dependents; unrelated tasks go on. (graphlib cannot add nodes after ``prepare()`` nor isolate failures,
hence this module.)
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog

from bulkops.engine.journal import Journal, TaskDone, TaskFailed, TaskInvalidated
from bulkops.errors import Aborted, BulkopsError, LocalIOError, StopRequested

log = structlog.get_logger("bulkops.graph")

TaskBody = Callable[[], Awaitable[Any]]
Expander = Callable[[Any], Iterable["Task"]]


@dataclass
class Task:
    """One unit of work with a deterministic id, e.g. ``metrics:Orders:p3``."""

    id: str
    body: TaskBody
    deps: tuple[str, ...] = ()
    expand: Expander | None = None
    #: Short label for logs and summaries, e.g. the entity the task is about.
    label: str = ""
    #: Journal the result? Local steps that must redo on resume (publishing) say False.
    checkpoint: bool = True


class State(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting for children"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass
class _Node:
    task: Task
    parent: str | None
    state: State = State.PENDING
    result: Any = None
    error: str | None = None
    open_children: int = 0
    children: list[str] = field(default_factory=list)
    #: True when this task's own body failed (not merely a descendant).
    failed_itself: bool = False
    #: Dependencies not yet complete; the task is ready when this reaches 0.
    unmet: int = 0


class Scheduler:
    def __init__(self, journal: Journal, *, max_running: int = 64) -> None:
        self._journal = journal
        self._max_running = max_running
        self._nodes: dict[str, _Node] = {}
        self._dependents: dict[str, list[str]] = {}
        self._finished = _finished_results(journal)
        self._running = 0
        self._stopping = False
        self._fatal: BaseException | None = None
        self._wake = anyio.Event()
        self._ready_queue: deque[str] = deque()
        self._task_group: anyio.abc.TaskGroup | None = None
        self.replayed = 0

    # -- building ---------------------------------------------------------------------------
    def add(self, task: Task, parent: str | None = None) -> None:
        if task.id in self._nodes:
            return  # deterministic ids: the same task reached twice is one task
        node = _Node(task, parent)
        self._nodes[task.id] = node
        if parent is not None:
            self._nodes[parent].children.append(task.id)
            self._nodes[parent].open_children += 1
        for dep in task.deps:
            self._dependents.setdefault(dep, []).append(task.id)
        node.unmet = sum(1 for dep in task.deps if self._state(dep) is not State.DONE)
        if task.id in self._finished:
            self.replayed += 1
            self._body_succeeded(node, self._finished[task.id], replayed=True)
        elif any(self._state(dep) in (State.FAILED, State.SKIPPED) for dep in task.deps):
            self._skip(node, "a task it depends on failed")
        elif node.unmet == 0:
            self._ready_queue.append(task.id)
        self._wake.set()

    # -- running ----------------------------------------------------------------------------
    async def run(self) -> None:
        """Run until every task has settled, ``stop()`` was called, or a fatal error struck."""
        async with anyio.create_task_group() as task_group:
            self._task_group = task_group
            while True:
                self._start_ready(task_group)
                if self._running == 0 and (self._stopping or not self._ready_queue):
                    break
                self._wake = anyio.Event()
                await self._wake.wait()
        if not self._stopping:
            self._fail_stuck()
        if self._fatal is not None:
            raise Aborted(self._fatal)

    def stop(self) -> None:
        """Start no more tasks; those in flight finish. (Cancel the caller's scope to cut them.)

        A body that raises ``StopRequested`` (the run's stop switch refused its next request) goes
        back to pending, unjournaled: it did not fail, and a resumed run does it again.
        """
        self._stopping = True
        self._wake.set()

    def _fail_stuck(self) -> None:
        """Nothing runs and nothing is ready: what is still pending waits on a cycle or a task
        that never appeared. A bug in a job's graph, reported instead of hanging."""
        for node in list(self._nodes.values()):
            if node.state is State.PENDING:
                missing = [d for d in node.task.deps if self._state(d) is not State.DONE]
                node.failed_itself = True
                self._fail(node, f"its dependencies never completed: {missing}")

    def _start_ready(self, task_group: anyio.abc.TaskGroup) -> None:
        while self._ready_queue and not self._stopping and self._running < self._max_running:
            node = self._nodes[self._ready_queue.popleft()]
            if node.state is not State.PENDING:
                continue  # skipped since it became ready
            node.state = State.RUNNING
            self._running += 1
            task_group.start_soon(self._run_body, node, name=node.task.id)

    async def _run_body(self, node: _Node) -> None:
        task = node.task
        with structlog.contextvars.bound_contextvars(task_id=task.id):
            try:
                result = await task.body()
                if task.checkpoint:
                    # Not fsync'ed: losing it to a crash only means doing the task again.
                    self._journal.append(TaskDone(task=task.id, result=result))
            except StopRequested:  # stopped before it sent anything more: not a failure
                node.state = State.PENDING
                log.debug("bulkops.task.stopped")
            except BulkopsError as exc:
                self._body_failed(node, exc)
            except OSError as exc:  # disk full, I/O error: no other task can do better; resumable
                self._body_failed(node, LocalIOError.from_os_error(exc))
            except Exception as exc:  # a bug in one task must not take the others down
                log.exception("bulkops.task.crashed", error=repr(exc))
                self._body_failed(node, exc)
            else:
                log.debug("bulkops.task.finished")
                self._body_succeeded(node, result, replayed=False)
            finally:
                self._running -= 1
                self._wake.set()

    # -- settling ---------------------------------------------------------------------------
    def _body_succeeded(self, node: _Node, result: Any, *, replayed: bool) -> None:
        node.result = result
        node.state = State.WAITING
        if node.task.expand is not None:
            for child in node.task.expand(result):
                self.add(child, parent=node.task.id)
        if node.open_children == 0 and node.state is State.WAITING:
            self._complete(node)

    def _complete(self, node: _Node) -> None:
        node.state = State.DONE
        for dependent_id in self._dependents.get(node.task.id, []):
            dependent = self._nodes.get(dependent_id)
            if dependent is not None:
                dependent.unmet -= 1
                if dependent.unmet == 0 and dependent.state is State.PENDING:
                    self._ready_queue.append(dependent_id)
        if node.parent is not None:
            parent = self._nodes[node.parent]
            parent.open_children -= 1
            if parent.open_children == 0 and parent.state is State.WAITING:
                self._complete(parent)

    def _body_failed(self, node: _Node, exc: BaseException) -> None:
        message = str(exc) or type(exc).__name__
        try:
            self._journal.append(TaskFailed(task=node.task.id, error=message))
        except LocalIOError as io_error:  # the failure is reported anyway; the disk is the news
            exc = io_error
        fatal = bool(getattr(exc, "fatal", False))
        if fatal and self._fatal is not None:
            # The run is already stopping for a fatal error; tasks that meet it too add nothing.
            log.debug("bulkops.task.failed", error=message, label=node.task.label)
        else:
            log.warning("bulkops.task.failed", error=message, label=node.task.label)
        # A fatal error is the run's abort, reported once as such, not as a failed item.
        node.failed_itself = not fatal
        if fatal and self._fatal is None:
            self._fatal = exc
            self.stop()
            if self._task_group is not None:
                self._task_group.cancel_scope.cancel()
        self._fail(node, message)

    def _fail(self, node: _Node, message: str) -> None:
        node.state = State.FAILED
        node.error = message
        self._skip_dependents(node.task.id)
        if node.parent is not None:
            parent = self._nodes[node.parent]
            if parent.state is State.WAITING:
                self._fail(parent, f"part of it failed: {message}")

    def _skip(self, node: _Node, reason: str) -> None:
        node.state = State.SKIPPED
        node.error = reason
        self._skip_dependents(node.task.id)
        if node.parent is not None:  # the parent's subtree can no longer complete
            parent = self._nodes[node.parent]
            if parent.state is State.WAITING:
                self._fail(parent, f"part of it did not run: {reason}")

    def _skip_dependents(self, task_id: str) -> None:
        for dependent_id in self._dependents.get(task_id, []):
            dependent = self._nodes.get(dependent_id)
            if dependent is not None and dependent.state is State.PENDING:
                self._skip(dependent, f"it depends on {task_id}, which did not complete")

    def _state(self, task_id: str) -> State | None:
        node = self._nodes.get(task_id)
        return node.state if node else None

    # -- reporting --------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        counts = {state.value: 0 for state in State}
        for node in self._nodes.values():
            counts[node.state.value] += 1
        return counts

    def failures(self) -> list[tuple[str, str, str]]:
        """(task id, label, error) for every failed body (not ancestors failed through it)."""
        return [
            (node.task.id, node.task.label, node.error or "")
            for node in self._nodes.values()
            if node.state is State.FAILED and node.failed_itself
        ]

    def results_under(self, prefix: str) -> dict[str, Any]:
        """Results of every task whose id starts with ``prefix`` and whose body succeeded (this run
        or a replayed one), e.g. each page read so far of a listing, for progress."""
        return {
            task_id: node.result
            for task_id, node in self._nodes.items()
            if task_id.startswith(prefix) and node.state in (State.WAITING, State.DONE)
        }

    def result(self, task_id: str) -> Any:
        return self._nodes[task_id].result

    def is_done(self, task_id: str) -> bool:
        return self._state(task_id) is State.DONE

    @property
    def total(self) -> int:
        return len(self._nodes)

    def settled(self) -> int:
        return sum(
            node.state in (State.DONE, State.FAILED, State.SKIPPED) for node in self._nodes.values()
        )

    def __repr__(self) -> str:
        counts = {k: v for k, v in self.counts().items() if v}
        return f"<Scheduler tasks={self.total} {counts} running={self._running}>"


def _finished_results(journal: Journal) -> dict[str, Any]:
    """Results of bodies that finished in earlier attempts, minus those later invalidated."""
    finished: dict[str, Any] = {}
    for record in journal.records:
        if isinstance(record, TaskDone):
            finished[record.task] = record.result
        elif isinstance(record, TaskInvalidated):
            for task_id in record.tasks:
                finished.pop(task_id, None)
    return finished


def eta_seconds(done: int, total: int, elapsed: float) -> float:
    if done <= 0 or total <= done:
        return 0.0 if total <= done else math.inf
    return elapsed / done * (total - done)
