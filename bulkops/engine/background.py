"""Work that may wait for spare CPU: on threads of lower priority, so the event loop goes first.

Staging an export's files is mostly the kernel creating inodes (0.25-0.75 ms each on some
machines, against tens of microseconds elsewhere); thousands of them, on threads as important as
the event loop's, delay every response in flight. On ``BACKGROUND_THREADS`` threads of their own,
``BACKGROUND_NICENESS`` lower (Linux gives each thread its own nice value), they take the CPU the
loop leaves, and the reads keep their pace.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Callable
from typing import TypeVar

import anyio

T = TypeVar("T")

BACKGROUND_THREADS = 2
#: Added to the threads' nice value (10: about a tenth of the CPU share, when contended).
BACKGROUND_NICENESS = 10
_POOL: concurrent.futures.ThreadPoolExecutor | None = None
_LOCK = threading.Lock()


def _lower_priority() -> None:
    # Not Linux, or not allowed: the thread runs at the normal priority.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICENESS)


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    global _POOL
    with _LOCK:
        if _POOL is None:
            _POOL = concurrent.futures.ThreadPoolExecutor(
                BACKGROUND_THREADS, "bulkops-background", initializer=_lower_priority
            )
        return _POOL


async def in_background(work: Callable[..., T], *args: object) -> T:
    """``work(*args)`` on a background thread; waits for it even when cancelled (it may be
    writing a file), then lets the cancellation through."""
    future = asyncio.get_running_loop().run_in_executor(_pool(), work, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with anyio.CancelScope(shield=True):  # a cancelled scope cancels every await in it
            await asyncio.wait([future])
        raise
