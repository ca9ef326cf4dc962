"""Running a few reads at once, with errors that come out as themselves.

anyio task groups wrap failures in ``ExceptionGroup``; the CLI turns a ``BulkopsError`` into one
clear message and an exit code, so this unwraps the group to its most telling error (a fatal one,
such as a rejected key, first).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import anyio

from bulkops.errors import BulkopsError


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
