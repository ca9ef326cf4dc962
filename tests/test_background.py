"""Background work (an export's file staging) runs on threads below the event loop's priority."""

from __future__ import annotations

import os
import sys
import threading

import anyio
import pytest

from bulkops.engine.background import BACKGROUND_NICENESS, in_background


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are Linux's")
async def test_background_work_runs_on_a_thread_of_lower_priority() -> None:
    """The work runs off the loop's thread, at a nice value BACKGROUND_NICENESS above it."""

    def where() -> tuple[int, int]:
        me = threading.get_native_id()
        return me, os.getpriority(os.PRIO_PROCESS, me)

    loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    thread, nice = await in_background(where)
    assert thread != threading.get_native_id()
    assert nice == min(19, loop_nice + BACKGROUND_NICENESS)


async def test_a_cancelled_caller_waits_for_the_work_to_end() -> None:
    """Cancelling the caller never leaves the work running behind it (it may be writing a file)."""
    started, release = threading.Event(), threading.Event()
    finished: list[bool] = []

    def work() -> None:
        started.set()
        release.wait(5)
        finished.append(True)

    with anyio.move_on_after(5) as scope:
        async with anyio.create_task_group() as group:
            group.start_soon(in_background, work)
            await anyio.to_thread.run_sync(started.wait, 5)
            group.cancel_scope.cancel()
            threading.Timer(0.2, release.set).start()
    assert not scope.cancelled_caught
    assert finished == [True]
