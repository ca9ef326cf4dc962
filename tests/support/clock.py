"""One fake clock for every test that must not wait for real time."""

from __future__ import annotations

import anyio.lowlevel


class FakeClock:
    """A clock that moves only when a test ``advance``s it or someone ``sleep``s on it.

    Calling it reads the time (it stands in for ``time.time``/``time.monotonic``); every sleep is
    recorded in ``sleeps``.
    """

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)
        await anyio.lowlevel.checkpoint()

    def __repr__(self) -> str:
        return f"<FakeClock now={self.now} sleeps={len(self.sleeps)}>"
