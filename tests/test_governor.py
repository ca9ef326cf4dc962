"""The rate governor: several windows at once, a shared pause on 429, persisted send times."""

from __future__ import annotations

import random

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from bulkops.api._learning import answer_span
from bulkops.api.governor import RateGovernor, SendTimeStore, SlidingWindow
from bulkops.emulator._config import parse_window
from bulkops.emulator._quota import SlidingWindowQuota
from bulkops.jobs.spec import RateWindow
from tests.support.clock import FakeClock


def governor(clock: FakeClock, windows: list[str], **kwargs) -> RateGovernor:
    kwargs.setdefault("rng", random.Random(0))  # the backoff jitter is seeded too
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
    """Rate windows parse COUNT/DURATION with s, min and h units; anything else names the expected form."""
    assert RateWindow.parse("100/10s") == RateWindow(100, 10.0)
    assert RateWindow.parse("900/15min") == RateWindow(900, 900.0)
    assert RateWindow.parse("5/h") == RateWindow(5, 3600.0)
    for bad in ("100", "0/10s", "10/10 parsecs", "/10s"):
        with pytest.raises(ValueError, match="COUNT/DURATION"):
            RateWindow.parse(bad)


async def test_every_window_holds_at_once() -> None:
    """Sends are spaced so no span of any configured window ever holds more than its limit."""
    clock = FakeClock()
    gov = governor(clock, ["3/10s", "5/60s"])
    times = await send(gov, 7, clock)
    start = times[0]
    offsets = [round(t - start, 3) for t in times]
    span10 = round(answer_span(10), 3)  # each answer here arrives at its send (no time passes)
    span60 = round(answer_span(60), 3)
    # 3 at once, then the short window lets 2 more after 10s, then the long window holds the rest.
    assert offsets[:3] == [0, 0, 0]
    assert offsets[3:5] == [span10, span10]
    assert offsets[5] == span60
    assert offsets[6] == span60
    for window in gov.windows:  # no span of the window's length ever holds more than its limit
        for i, t in enumerate(times):
            inside = [u for u in times if t <= u < t + window.configured.seconds]
            assert len(inside) <= window.configured.limit, (window, i)


async def test_429_pauses_the_whole_project_including_reads() -> None:
    """A 429 pauses the project's reads and mutations alike for the Retry-After time."""
    clock = FakeClock()
    gov = governor(clock, ["100/10s"])
    gov.on_rate_limited(retry_after=7.0, mutation=False)
    before = clock.now
    async with gov.read_slot():
        assert clock.now - before >= 7.0
    async with gov.mutation_slot():
        assert clock.now - before >= 7.0


async def test_429_halves_read_concurrency_and_successes_restore_it() -> None:
    """A 429 halves read concurrency; successes bring it back to the configured level."""
    clock = FakeClock()
    gov = governor(clock, ["100/10s"], concurrency=8)
    gov.on_rate_limited(retry_after=0.0, mutation=False)
    assert gov.read_concurrency == 4
    for _ in range(10):
        gov.on_success()
    assert gov.read_concurrency == 8


async def against(gov: RateGovernor, clock: FakeClock, quota: SlidingWindowQuota, n: int) -> int:
    """Send ``n`` mutations one at a time to ``quota``, retrying 429s; return the rejections."""
    rejected = 0
    for _ in range(n):
        while True:
            async with gov.mutation_slot():
                wait = quota.attempt(clock.now)
            if wait is None:
                gov.on_success()
                break
            rejected += 1
            gov.on_rate_limited(retry_after=None, mutation=True)
    return rejected


def server(*windows: str) -> SlidingWindowQuota:
    return SlidingWindowQuota([parse_window(w) for w in windows])


async def test_a_lower_server_quota_is_learned_from_the_first_rejection() -> None:
    """Server 100/10s under a 200/10s guess: the first 429 teaches a window of 100 (the few
    more are single probes of its duration), and the configured windows are kept."""
    clock = FakeClock()
    gov = governor(clock, ["200/10s", "1800/15min"])
    assert 1 <= await against(gov, clock, server("100/10s"), 101) <= 5
    (learned,) = gov.learned
    assert learned.rules[0][0] == 100
    assert [w.limit for w in gov.windows] == [200, 1800]  # the guess is a ceiling, not rewritten
    assert "100 per" in repr(gov)


async def test_the_learned_duration_converges_on_the_real_one() -> None:
    """After a few cycles the learned window brackets the server's 10 s, and 429s stop."""
    clock = FakeClock()
    gov = governor(clock, ["200/10s", "1800/15min"])
    quota = server("100/10s")
    first = await against(gov, clock, quota, 400)
    assert await against(gov, clock, quota, 400) <= 1  # at most an additive-increase probe
    (learned,) = gov.learned
    assert gov.grid[learned.low] <= 10.0 < gov.grid[learned.high + 1] <= 11.5
    assert first <= 8  # the first 429, then single-file probes of the duration


async def test_429s_of_attempts_already_in_flight_teach_nothing_new() -> None:
    """Three attempts in flight together all get 429: one learned window of 100, not three."""
    clock = FakeClock()
    gov = governor(clock, ["250/10s", "2250/15min"], concurrency=8)
    quota = server("100/10s")
    await against(gov, clock, quota, 97)
    answers: list[anyio.Event] = [anyio.Event() for _ in range(6)]
    sent = anyio.Event()
    count = 0

    async def one(i: int) -> None:
        nonlocal count
        async with gov.mutation_slot():
            wait = quota.attempt(clock.now)
            count += 1
            if count == 6:
                sent.set()
        await answers[i].wait()
        if wait is None:
            gov.on_success()
        else:
            gov.on_rate_limited(retry_after=None, mutation=True)

    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(one, i)
        await sent.wait()
        for event in answers:  # answers arrive in send order, after all six went out
            event.set()
            await anyio.lowlevel.checkpoint()
    assert gov.rejections == 3
    (learned,) = gov.learned
    assert learned.rules[0][0] == 100


async def test_a_429_nothing_we_sent_explains_teaches_nothing() -> None:
    """The very first attempt rejected (another client used the quota): a pause, no limit."""
    clock = FakeClock()
    gov = governor(clock, ["100/10s", "900/15min"])
    async with gov.mutation_slot():
        pass
    gov.on_rate_limited(retry_after=None, mutation=True)
    assert gov.learned == []
    assert gov.paused_until > clock.now


async def test_consecutive_429s_back_off_exponentially_with_jitter() -> None:
    """Consecutive 429s without Retry-After pause for a jittered, doubling, capped time."""
    clock = FakeClock()
    gov = governor(clock, ["100/10s"], rng=random.Random(1))
    pauses = [gov.on_rate_limited(retry_after=None, mutation=False) for _ in range(6)]
    for n, pause in enumerate(pauses):
        ceiling = min(60.0, 2**n)
        assert ceiling / 2 <= pause <= ceiling


async def test_send_times_persist_so_a_resumed_run_honours_the_window(tmp_path) -> None:
    """Send times are stored, so a resumed run waits for the previous run's sends to leave the window."""
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
    """minimum_seconds is the least time the windows allow for N mutations; the reprs show the limits."""
    clock = FakeClock()
    gov = governor(clock, ["100/10s", "900/15min"])
    assert gov.minimum_seconds(100) == 0
    assert gov.minimum_seconds(250) == 20
    assert gov.minimum_seconds(1000) == 900
    assert "100" in repr(SlidingWindow(RateWindow(100, 10)))
    assert "RateGovernor p" in repr(gov)


async def test_concurrency_cap_bounds_requests_in_flight() -> None:
    """No more reads are in flight at once than the governor's concurrency."""
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


async def test_slots_go_first_come_first_served() -> None:
    """Reads waiting for a slot get it in the order they asked, one as each slot frees."""
    gov = RateGovernor("p", mutation_windows=[], concurrency=1)
    order: list[int] = []

    async def read(number: int) -> None:
        async with gov.read_slot():
            order.append(number)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        for number in range(6):
            tg.start_soon(read, number)
    assert order == list(range(6))


async def test_a_task_that_frees_a_slot_and_asks_again_queues_behind_the_waiters() -> None:
    """A worker draining a queue (free the slot, ask again at once, no await between) never takes
    the slot from reads already waiting: a freed slot is handed to the first waiter. Without the
    hand-off two such workers kept every slot and starved a kind's list read for seconds."""
    gov = RateGovernor("p", mutation_windows=[], concurrency=1)
    order: list[str] = []

    async def worker() -> None:
        for turn in range(3):
            async with gov.read_slot():
                order.append(f"worker {turn}")
                for _ in range(3):  # the waiter starts and queues meanwhile
                    await anyio.lowlevel.checkpoint()

    async def waiter() -> None:
        async with gov.read_slot():
            order.append("waiter")

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker)
        await anyio.lowlevel.checkpoint()  # the worker holds the slot
        tg.start_soon(waiter)
    assert order == ["worker 0", "waiter", "worker 1", "worker 2"]


async def test_a_mutation_takes_the_next_free_slot_before_waiting_reads() -> None:
    """With every request slot taken by reads and more reads queued, a mutation allowed by its
    windows goes as soon as one slot frees, ahead of the reads queued before it."""
    gov = RateGovernor("p", mutation_windows=[], concurrency=2)
    release = anyio.Event()
    order: list[str] = []

    async def holder() -> None:
        async with gov.read_slot():
            await release.wait()

    async def read(name: str) -> None:
        async with gov.read_slot():
            order.append(name)

    async def mutation() -> None:
        async with gov.mutation_slot():
            order.append("mutation")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(holder)
            await wait_all_tasks_blocked()
            for name in ("read 1", "read 2", "read 3"):
                tg.start_soon(read, name)
                await wait_all_tasks_blocked()
            tg.start_soon(mutation)
            await wait_all_tasks_blocked()
            assert order == []  # all four wait: both slots are held
            release.set()
    assert order[0] == "mutation"
    assert order[1:] == ["read 1", "read 2", "read 3"]


async def test_a_waiter_cancelled_once_woken_passes_the_slot_on() -> None:
    """A waiting read cancelled in the same step as a freed slot wakes it does not take the
    wake-up with it: the next waiter gets the slot."""
    gov = RateGovernor("p", mutation_windows=[], concurrency=1)
    release = anyio.Event()
    first = anyio.CancelScope()
    got: list[str] = []

    async def holder() -> None:
        async with gov.read_slot():
            await release.wait()
            first.cancel()  # cancelled, yet still queued when the slot frees and wakes it

    async def waiter(name: str) -> None:
        async with gov.read_slot():
            got.append(name)

    async def in_scope(scope: anyio.CancelScope) -> None:
        with scope:
            await waiter("first")

    with anyio.fail_after(5):  # a lost wake-up leaves "second" waiting forever
        async with anyio.create_task_group() as tg:
            tg.start_soon(holder)
            await wait_all_tasks_blocked()
            tg.start_soon(in_scope, first)
            await wait_all_tasks_blocked()
            tg.start_soon(waiter, "second")
            await wait_all_tasks_blocked()
            release.set()
    assert got == ["second"]


async def test_a_lower_long_window_is_learned_and_the_short_one_kept() -> None:
    """Server 100/10s + 900/15min under a 2000/15min guess: the long window is learned (its count
    and its duration), the job ends within 1.5x the minimum, and the short window keeps its pace."""
    clock = FakeClock()
    gov = governor(clock, ["100/10s", "2000/15min"])
    start = clock.now
    rejected = await against(gov, clock, server("100/10s", "900/15min"), 1000)
    assert rejected <= 10
    assert clock.now - start <= 1.5 * 900
    long = [w for w in gov.learned if w.rules[0][1] >= 600]
    assert long
    assert long[0].rules[0][0] >= 850
    assert all(w.rules[0][1] >= 600 for w in gov.learned)  # nothing blamed on a short window


async def test_slow_answers_count_until_they_arrive_so_a_server_counting_arrivals_never_429s() -> (
    None
):
    """Requests delayed 25-625 ms each way (seed 2): each attempt holds its slot until its answer
    + the window, so the emulator, which counts an attempt when it arrives, never answers 429."""
    import aiohttp

    from bulkops.api.client import ConsoleClient
    from bulkops.emulator import EmulatorConfig, Project, World, running_emulator

    world = World([Project("target", "console-slow-answers-key")])
    config = EmulatorConfig(
        mutation_windows=("2/1s",), latency_ms=50, latency_jitter_ms=1200, fault_seed=2
    )
    async with running_emulator(world, config) as url, aiohttp.ClientSession() as session:
        gov = RateGovernor(
            "target", mutation_windows=[RateWindow.parse("2/1s")], rng=random.Random(0)
        )
        client = ConsoleClient(
            project="target", base_url=url, api_key="console-slow-answers-key",
            session=session, governor=gov, rng=random.Random(0),
        )  # fmt: skip
        names = iter(range(10))

        async def worker() -> None:
            for n in names:
                tag = {"name": f"slow {n}", "description": "a tag"}
                await client.request("POST", "/console/v1/tags", json=tag)

        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(worker)
    statuses = [r.status for r in world.requests(is_mutation=True, project="target")]
    assert len(statuses) == 10
    assert all(status is not None and 200 <= status < 300 for status in statuses), statuses
    assert client.stats.rate_limited == 0
    assert max(gov._round_trips) > 0.5  # the send + 0.25 s rule got 429s here (seeds 2-5)
