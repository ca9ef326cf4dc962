"""The governor against server quotas it was not told about, in virtual time.

Each scenario drives N mutations through a real :class:`RateGovernor` against the emulator's
:class:`SlidingWindowQuota` on an asyncio loop whose clock jumps to the next timer instead of
waiting, so a 30-minute run takes a fraction of a second. Workers behave like ``ConsoleClient``:
a read, then the mutation inside ``mutation_slot``, then ``on_success`` / ``on_rate_limited`` and
a retry after the governor's pause.
"""

from __future__ import annotations

import asyncio
import math
import random
import selectors
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import pytest

from bulkops.api.governor import RateGovernor
from bulkops.emulator._config import parse_window
from bulkops.emulator._quota import SlidingWindowQuota
from bulkops.jobs.spec import RateWindow

DEFAULT_CONFIG = ("100/10s", "900/15min")
MAX_REJECTED = 0.03
MAX_RATIO = 1.5


class _InstantSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """Never blocks: a wait for the next timer moves the loop's virtual clock instead."""

    loop: VirtualTimeLoop

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None:
            raise RuntimeError("virtual-time loop: every task waits and no timer is due")
        self.loop.now += max(timeout, 0.0)
        return super().select(0)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose time only moves when every task is waiting for a timer."""

    def __init__(self) -> None:
        selector = _InstantSelector()
        super().__init__(selector)
        selector.loop = self
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now


def run_virtual(coro: Coroutine[Any, Any, Any]) -> Any:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


@dataclass
class Outcome:
    mutations: int
    attempts: int
    rejected: int
    makespan: float
    minimum: float
    governor: RateGovernor

    @property
    def rejected_fraction(self) -> float:
        return self.rejected / self.attempts

    @property
    def ratio(self) -> float:
        return self.makespan / self.minimum

    def __str__(self) -> str:
        return (
            f"{self.rejected}/{self.attempts} rejected ({self.rejected_fraction:.1%}), "
            f"{self.makespan:.1f}s for a {self.minimum:.0f}s minimum ({self.ratio:.2f}x); "
            f"{self.governor!r}"
        )


async def drive(
    server: tuple[str, ...],
    config: tuple[str, ...],
    mutations: int,
    *,
    seed: int,
    retry_after: bool,
    concurrency: int = 8,
    latency: float = 0.05,
) -> Outcome:
    """Send ``mutations`` writes through a governor configured with ``config`` to ``server``."""
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    quota = SlidingWindowQuota([parse_window(w) for w in server])
    gov = RateGovernor(
        "p",
        mutation_windows=[RateWindow.parse(w) for w in config],
        concurrency=concurrency,
        clock=loop.time,
        sleep=asyncio.sleep,
        rng=random.Random(seed),
    )
    todo = list(range(mutations))
    counts = {"attempts": 0, "rejected": 0}
    start = loop.time()
    finished = start

    def leg() -> float:
        return latency / 2 * rng.uniform(0.5, 1.5)

    async def worker() -> None:
        nonlocal finished
        while todo:
            todo.pop()
            async with gov.read_slot():
                await asyncio.sleep(2 * leg())
            gov.on_success()
            while True:
                async with gov.mutation_slot():
                    await asyncio.sleep(leg())
                    wait = quota.attempt(loop.time())
                    await asyncio.sleep(leg())
                counts["attempts"] += 1
                if wait is None:
                    gov.on_success()
                    finished = max(finished, loop.time())
                    break
                counts["rejected"] += 1
                hint = float(math.ceil(wait)) if retry_after else None
                gov.on_rate_limited(retry_after=hint, mutation=True)
                await asyncio.sleep(max(gov.paused_until - loop.time(), 0.0))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Outcome(
        mutations,
        counts["attempts"],
        counts["rejected"],
        finished - start,
        quota.minimum_seconds(mutations),
        gov,
    )


def check(
    server: tuple[str, ...], config: tuple[str, ...], mutations: int, **kwargs: Any
) -> Outcome:
    # The configured windows stay a ceiling (the job's own limit); the sizes are chosen so they
    # never bind harder than the real ones, so the minimum is the real windows' minimum.
    ours = SlidingWindowQuota([parse_window(w) for w in config]).minimum_seconds(mutations)
    outcome: Outcome = run_virtual(drive(server, config, mutations, **kwargs))
    assert ours < outcome.minimum
    assert outcome.rejected_fraction <= MAX_REJECTED, str(outcome)
    assert outcome.ratio <= MAX_RATIO, str(outcome)
    return outcome


SEEDS = (1, 2, 3)


@pytest.mark.parametrize("retry_after", [False, True], ids=["no-retry-after", "retry-after"])
@pytest.mark.parametrize("seed", SEEDS)
def test_a_short_burst_window_only_is_learned(seed: int, retry_after: bool) -> None:
    """Server 20/2s against the 100/10s + 900/15min guess: few 429s, near the true pace."""
    check(("20/2s",), DEFAULT_CONFIG, 800, seed=seed, retry_after=retry_after)


@pytest.mark.parametrize("retry_after", [False, True], ids=["no-retry-after", "retry-after"])
@pytest.mark.parametrize("seed", SEEDS)
def test_two_short_windows_are_both_learned(seed: int, retry_after: bool) -> None:
    """Server 30/5s + 100/30s against the default guess: both windows are learned."""
    check(("30/5s", "100/30s"), DEFAULT_CONFIG, 800, seed=seed, retry_after=retry_after)


@pytest.mark.parametrize("retry_after", [False, True], ids=["no-retry-after", "retry-after"])
@pytest.mark.parametrize("seed", SEEDS)
def test_a_long_window_tighter_than_configured_is_learned(seed: int, retry_after: bool) -> None:
    """Server 100/10s + 300/15min against 100/10s + 900/15min: the long window is learned."""
    check(("100/10s", "300/15min"), DEFAULT_CONFIG, 800, seed=seed, retry_after=retry_after)


def test_the_learned_windows_show_in_repr_and_minimum_seconds() -> None:
    """After a run against two short windows, repr names both and minimum_seconds obeys them."""
    outcome = run_virtual(
        drive(("30/5s", "100/30s"), DEFAULT_CONFIG, 400, seed=1, retry_after=False)
    )
    gov = outcome.governor
    assert len(gov.learned) == 2, repr(gov)
    assert "learned=[" in repr(gov)
    assert "100 per" in repr(gov)
    assert gov.minimum_seconds(400) >= 90  # 100 per ~30 s: at least three more windows
