"""The rate governor: several windows at once, a shared pause on 429, persisted send times."""

from __future__ import annotations

import anyio

from bulkops.api.governor import WINDOW_MARGIN, RateGovernor, SendTimeStore, SlidingWindow
from bulkops.jobs.spec import RateWindow


class FakeClock:
    """A clock that only moves when someone sleeps on it; records every sleep."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)
        await anyio.lowlevel.checkpoint()


def governor(clock: FakeClock, windows: list[str], **kwargs) -> RateGovernor:
    return RateGovernor(
        "p",
        mutation_windows=[RateWindow.parse(w) for w in windows],
        clock=clock,
        sleep=clock.sleep,
        **kwargs,
    )


async def send(gov: RateGovernor, n: int, clock: FakeClock) -> list[float]:
    times = []
    for _ in range(n):
        async with gov.mutation_slot():
            times.append(clock.now)
    return times


def test_rate_window_parsing_accepts_units_and_rejects_nonsense() -> None:
    assert RateWindow.parse("100/10s") == RateWindow(100, 10.0)
    assert RateWindow.parse("900/15min") == RateWindow(900, 900.0)
    assert RateWindow.parse("5/h") == RateWindow(5, 3600.0)
    for bad in ("100", "0/10s", "10/10 parsecs", "/10s"):
        try:
            RateWindow.parse(bad)
        except ValueError as exc:
            assert "COUNT/DURATION" in str(exc)
        else:
            raise AssertionError(bad)


async def test_every_window_holds_at_once() -> None:
    clock = FakeClock()
    gov = governor(clock, ["3/10s", "5/60s"])
    times = await send(gov, 7, clock)
    start = times[0]
    offsets = [round(t - start, 3) for t in times]
    span10 = 10 + WINDOW_MARGIN
    span60 = 60 + WINDOW_MARGIN
    # 3 at once, then the short window lets 2 more after 10s, then the long window holds the rest.
    assert offsets[:3] == [0, 0, 0]
    assert offsets[3:5] == [span10, span10]
    assert offsets[5] == span60 and offsets[6] == span60
    for window in gov.windows:  # no span of the window's length ever holds more than its limit
        for i, t in enumerate(times):
            inside = [u for u in times if t <= u < t + window.configured.seconds]
            assert len(inside) <= window.configured.limit, (window, i)


async def test_429_pauses_the_whole_project_including_reads() -> None:
    clock = FakeClock()
    gov = governor(clock, ["100/10s"])
    gov.on_rate_limited(retry_after=7.0, mutation=False)
    before = clock.now
    async with gov.read_slot():
        assert clock.now - before >= 7.0
    async with gov.mutation_slot():
        assert clock.now - before >= 7.0


async def test_429_halves_read_concurrency_and_successes_restore_it() -> None:
    clock = FakeClock()
    gov = governor(clock, ["100/10s"], concurrency=8)
    gov.on_rate_limited(retry_after=0.0, mutation=False)
    assert gov.read_concurrency == 4
    for _ in range(10):
        gov.on_success()
    assert gov.read_concurrency == 8


async def test_a_lower_server_quota_is_learned_from_the_first_rejection() -> None:
    clock = FakeClock()
    gov = governor(clock, ["200/10s", "1800/15min"])
    await send(gov, 101, clock)  # the server (100/10s) rejects the 101st attempt
    gov.on_rate_limited(retry_after=None, mutation=True)
    short, long = gov.windows
    assert short.limit == 95  # 100 accepted, learned with a safety fraction
    assert long.limit == 1800  # the long window was not the culprit


async def test_no_learning_when_our_own_window_was_full() -> None:
    clock = FakeClock()
    gov = governor(clock, ["10/10s", "1000/15min"])
    await send(gov, 10, clock)  # the 10th attempt is rejected
    gov.on_rate_limited(retry_after=None, mutation=True)
    # 10/10s was saturated by us, so the server's culprit is the long window: 9 accepted there.
    assert gov.windows[0].limit == 10
    assert gov.windows[1].limit == 8


async def test_429s_of_one_burst_teach_the_limit_once() -> None:
    """Attempts already in flight when the first 429 lowered a window do not blame the long one."""
    clock = FakeClock()
    gov = governor(clock, ["250/10s", "2250/15min"])
    await send(gov, 103, clock)  # the server (100/10s) rejects the 101st to 103rd attempts
    for _ in range(3):
        gov.on_rate_limited(retry_after=None, mutation=True)
    short, long = gov.windows
    assert short.limit < 100  # learned once, from the first of them
    assert long.limit == 2250  # not blamed for the rejections of attempts already in flight


async def test_consecutive_429s_back_off_exponentially_with_jitter() -> None:
    import random

    clock = FakeClock()
    gov = governor(clock, ["100/10s"], rng=random.Random(1))
    pauses = [gov.on_rate_limited(retry_after=None, mutation=False) for _ in range(6)]
    for n, pause in enumerate(pauses):
        ceiling = min(60.0, 2**n)
        assert ceiling / 2 <= pause <= ceiling


async def test_send_times_persist_so_a_resumed_run_honours_the_window(tmp_path) -> None:
    clock = FakeClock()
    store = SendTimeStore(tmp_path / "p.times")
    first = governor(clock, ["5/60s"], store=store)
    await send(first, 5, clock)
    clock.now += 1
    resumed = governor(clock, ["5/60s"], store=SendTimeStore(tmp_path / "p.times"))
    before = clock.now
    await send(resumed, 1, clock)
    assert clock.now - before >= 59  # waited for the first run's sends to leave the window


def test_sliding_window_repr_and_minimum_time() -> None:
    clock = FakeClock()
    gov = governor(clock, ["100/10s", "900/15min"])
    assert gov.minimum_seconds(100) == 0
    assert gov.minimum_seconds(250) == 20
    assert gov.minimum_seconds(1000) == 900
    assert "100" in repr(SlidingWindow(RateWindow(100, 10)))
    assert "RateGovernor p" in repr(gov)


async def test_concurrency_cap_bounds_requests_in_flight() -> None:
    gov = RateGovernor("p", mutation_windows=[], concurrency=3)
    in_flight = peak = 0

    async def read() -> None:
        nonlocal in_flight, peak
        async with gov.read_slot():
            in_flight += 1
            peak = max(peak, in_flight)
            await anyio.sleep(0.01)
            in_flight -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(12):
            tg.start_soon(read)
    assert peak == 3


async def test_a_lower_long_window_is_blamed_not_the_short_one() -> None:
    """Server 100/10s + 900/15min, job 100/10s + 2000/15min: the 901st attempt trips the long
    window at the start of a new burst; the short window must keep its limit."""
    clock = FakeClock()
    gov = governor(clock, ["100/10s", "2000/15min"])
    await send(gov, 901, clock)
    gov.on_rate_limited(retry_after=None, mutation=True)
    short, long = gov.windows
    assert short.limit == 100
    assert long.limit == 855
    # Another 429 of an attempt already in flight teaches nothing new.
    gov.on_rate_limited(retry_after=None, mutation=True)
    assert (short.limit, long.limit) == (100, 855)
    # The governor now waits for the long window itself, instead of probing the server.
    before = clock.now
    await send(gov, 1, clock)
    assert clock.now - before > 800
