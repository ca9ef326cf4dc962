"""The stop switch of a run: after the first Ctrl-C, no request starts.

The runner turns a :class:`StopSwitch` on when SIGINT/SIGTERM arrives. The client enters
:func:`sending` around every attempt it puts on the wire: once the switch is on, that raises
:class:`StopRequested` instead, so a task that was waiting for a rate-limit slot or a retry
sends nothing. The switch also counts the requests on the wire, so the runner can wait for
exactly those to come back (``wait_idle``) and then stop at once.

The switch travels in a context variable set by the runner around the work it runs; tasks
started inside inherit it. Code running outside any switch (tests, tools) is never stopped.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import anyio

from bulkops.errors import StopRequested


class StopSwitch:
    def __init__(self) -> None:
        self.stopped = False
        self.in_flight = 0
        self._idle: anyio.Event | None = None

    def stop(self) -> None:
        self.stopped = True

    @contextmanager
    def sending(self) -> Iterator[None]:
        if self.stopped:
            raise StopRequested("the run is stopping; this request was not sent")
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            if self.in_flight == 0 and self._idle is not None:
                self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no request is on the wire."""
        while self.in_flight:
            self._idle = anyio.Event()
            await self._idle.wait()

    def __repr__(self) -> str:
        return f"<StopSwitch stopped={self.stopped} in_flight={self.in_flight}>"


_current: ContextVar[StopSwitch | None] = ContextVar("bulkops_stop_switch", default=None)


@contextmanager
def active(switch: StopSwitch) -> Iterator[StopSwitch]:
    """Make ``switch`` the one that requests (and tasks started) in this block obey."""
    token = _current.set(switch)
    try:
        yield switch
    finally:
        _current.reset(token)


@contextmanager
def sending() -> Iterator[None]:
    """Around one request on the wire: refuses once the current run is stopping."""
    switch = _current.get()
    if switch is None:
        yield
        return
    with switch.sending():
        yield
