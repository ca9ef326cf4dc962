"""Signals: one guard per command, the task graph's graceful stop, interruptible phases.

The first SIGINT/SIGTERM stops starting work (no new task, no new request); requests on the wire
get ``GRACE_SECONDS`` to come back; a second signal cancels at once. Phases outside the graph
(planning, verifying) only read, so a signal cuts them at once, as ``Interrupted``.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeVar

import anyio
import structlog
from anyio.abc import TaskStatus

from bulkops import human, stopping
from bulkops.engine.collector import collecting_for_a_command
from bulkops.engine.concurrency import most_telling
from bulkops.engine.graph import Scheduler
from bulkops.errors import Aborted, Interrupted, StopRequested

log = structlog.get_logger("bulkops.run")

T = TypeVar("T")
#: After the first SIGINT/SIGTERM, in-flight requests get this long to finish before being cut.
GRACE_SECONDS = 5.0


async def run_with_signals(scheduler: Scheduler, progress: Any) -> tuple[bool, Aborted | None]:
    """Run the graph under the stop switch. The first SIGINT/SIGTERM starts no new task and no new
    request; the requests on the wire get ``GRACE_SECONDS`` to come back, then the rest (tasks
    waiting for a quota slot or a retry) is cancelled. A second signal cancels at once."""
    interrupted = False
    aborted: Aborted | None = None
    switch = stopping.StopSwitch()
    async with anyio.create_task_group() as watchers:
        run_scope = anyio.CancelScope()

        def on_signal(signum: int) -> None:
            nonlocal interrupted
            if not interrupted:
                interrupted = True
                switch.stop()
                scheduler.stop()
                log.warning(
                    "bulkops.run.interrupting",
                    signal=signal.Signals(signum).name,
                    in_flight=switch.in_flight,
                    text=f"{signal.Signals(signum).name}: stopping; letting "
                    f"{human.plural(switch.in_flight, 'request')} on the wire finish "
                    "(press Ctrl-C again to stop at once)",
                )
                watchers.start_soon(_cancel_after, run_scope, switch, GRACE_SECONDS)
            else:
                run_scope.cancel()

        watchers.start_soon(_watch_signals, on_signal)
        watchers.start_soon(progress.run)
        try:
            with stopping.active(switch), run_scope:
                await scheduler.run()
        except Aborted as exc:
            aborted = exc
        finally:
            watchers.cancel_scope.cancel()
    return interrupted, aborted


async def _watch_signals(callback: Callable[[int], None]) -> None:
    """Hand SIGINT/SIGTERM to ``callback`` until cancelled: through the command's signal guard
    when one is running (``guarded``), else with a receiver of its own."""
    guard = _GUARD.get()
    if guard is not None:
        guard.handlers.append(callback)
        try:
            await anyio.sleep_forever()
        finally:
            guard.handlers.remove(callback)
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            callback(signum)


class _SignalGuard:
    """One signal receiver for a whole command, so no signal falls between two phases.

    A phase that handles signals (the task graph, planning, verifying) registers its callback;
    a signal that arrives while none is registered (opening projects, writing state between
    phases) cancels the command, which then ends as ``Interrupted`` (exit 130, resumable).

    A command over several projects runs one member command per project at once (``member``):
    each has a guard of its own under the command's, and a signal reaches every one of them.
    """

    def __init__(self, scope: anyio.CancelScope) -> None:
        self.handlers: list[Callable[[int], None]] = []
        self.members: list[_SignalGuard] = []
        self.scope = scope
        self.interrupted = False

    def deliver(self, signum: int) -> None:
        if not self.handlers and not self.members:
            log.warning("bulkops.run.interrupting", signal=signal.Signals(signum).name)
            self.interrupted = True
            self.scope.cancel()
            return
        for handler in list(self.handlers):
            handler(signum)
        for member in list(self.members):
            member.deliver(signum)

    async def watch(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                self.deliver(signum)


_GUARD: ContextVar[_SignalGuard | None] = ContextVar("bulkops_signal_guard", default=None)


async def guarded(command: Callable[..., Awaitable[int]], *args: Any) -> int:
    """Run a command under one signal guard for its whole length (the CLI's entry to commands),
    with the garbage collector set for a long run (``collector``)."""
    results: list[int] = []
    with collecting_for_a_command():
        async with anyio.create_task_group() as group:
            guard = _SignalGuard(group.cancel_scope)
            token = _GUARD.set(guard)
            try:
                await group.start(guard.watch)  # receiving before the command's first step
                results.append(await command(*args))
            finally:
                _GUARD.reset(token)
                group.cancel_scope.cancel()
    if guard.interrupted or not results:
        raise Interrupted
    return results[0]


async def member(command: Callable[..., Awaitable[int]], *args: Any) -> int:
    """Run one project's command of a command over several, concurrently with the others: a
    signal reaches it through the enclosing guard as if it ran alone (``guarded`` if none)."""
    parent = _GUARD.get()
    if parent is None:
        return await guarded(command, *args)
    results: list[int] = []
    with anyio.CancelScope() as scope:
        guard = _SignalGuard(scope)
        token = _GUARD.set(guard)
        parent.members.append(guard)
        try:
            results.append(await command(*args))
        finally:
            parent.members.remove(guard)
            _GUARD.reset(token)
    if guard.interrupted or not results:
        raise Interrupted
    return results[0]


#: Once the last request on the wire is back, how long its task gets to record its result.
SETTLE_SECONDS = 0.2


async def _cancel_after(
    scope: anyio.CancelScope, switch: stopping.StopSwitch, seconds: float
) -> None:
    """Cancel ``scope`` once no request is on the wire (or after ``seconds`` at most)."""
    with anyio.move_on_after(seconds):
        await switch.wait_idle()
        await anyio.sleep(SETTLE_SECONDS)
    scope.cancel()


async def interruptible(phase: Callable[[], Awaitable[T]]) -> T:
    """Run a phase (planning, verifying) so SIGINT/SIGTERM end it cleanly, as ``Interrupted``.

    The phase only reads, so the signal cuts it at once (and no new request starts meanwhile).
    Errors come out unwrapped from anyio's ExceptionGroup, so the CLI can show one message.
    """
    results: list[T] = []
    interrupted = False
    switch = stopping.StopSwitch()
    try:
        with stopping.active(switch):
            async with anyio.create_task_group() as group:

                def on_signal(signum: int) -> None:
                    nonlocal interrupted
                    interrupted = True
                    switch.stop()
                    log.warning("bulkops.run.interrupting", signal=signal.Signals(signum).name)
                    group.cancel_scope.cancel()

                group.start_soon(_watch_signals, on_signal)
                results.append(await phase())
                group.cancel_scope.cancel()
    except BaseExceptionGroup as errors:
        if interrupted:
            raise Interrupted from None
        raise most_telling(errors) from None
    except StopRequested:
        raise Interrupted from None
    if interrupted or not results:
        raise Interrupted
    return results[0]
