"""Running a few reads at once, with errors that come out as themselves; user code off the loop.

anyio task groups wrap failures in ``ExceptionGroup``; the CLI turns a ``BulkopsError`` into one
clear message and an exit code, so this unwraps the group to its most telling error (a fatal one,
such as a rejected key, first).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

from bulkops.errors import BulkopsError

T = TypeVar("T")


async def gather(calls: Iterable[Callable[[], Coroutine[Any, Any, object]]]) -> None:
    """Await every call concurrently; on failure raise the first error, unwrapped."""
    try:
        async with anyio.create_task_group() as group:
            for call in calls:
                group.start_soon(call)
    except BaseExceptionGroup as group:
        raise most_telling(group) from None


def most_telling(group: BaseExceptionGroup) -> BaseException:
    leaves = list(_leaves(group))
    tests: tuple[Callable[[BaseException], bool], ...] = (
        lambda e: isinstance(e, BulkopsError) and e.fatal,
        lambda e: isinstance(e, BulkopsError),
    )
    for wanted in tests:
        for error in leaves:
            if wanted(error):
                return error
    return leaves[0]


def _leaves(error: BaseException) -> Iterable[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error


async def run_in_daemon_thread(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` on a daemon thread of its own, awaited without blocking the loop.

    For user code that may take its time: unlike anyio's worker threads, which the interpreter
    joins at exit, a daemon thread never keeps an interrupted command from exiting (130) while
    the code it abandoned finishes.
    """
    done = anyio.Event()
    token = anyio.lowlevel.current_token()
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append((True, function(*args)))
        except BaseException as exc:  # handed to the awaiting task, whatever it is
            outcome.append((False, exc))
        # RuntimeError: the loop is gone, the command ended (interrupted) while this ran.
        with contextlib.suppress(RuntimeError):
            anyio.from_thread.run_sync(done.set, token=token)

    threading.Thread(target=target, name="bulkops user code", daemon=True).start()
    await done.wait()
    succeeded, value = outcome[0]
    if not succeeded:
        raise value
    return value  # type: ignore[no-any-return]
