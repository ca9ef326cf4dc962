"""The rate governor of one project: a read lane, a mutation lane, and a pause they share.

- Every request holds one of ``concurrency`` in-flight slots.
- Mutations also obey every configured sliding window at once (e.g. 100/10s *and* 900/15min). A send
  time is recorded when the attempt goes out, whatever its answer, because the server counts rejected
  attempts too; send times can be persisted so a resumed run still honours the 15-minute window.
- Reads may obey optional windows (aiolimiter leaky buckets).
- A 429 pauses the whole project (both lanes, every task) and lowers the pace: the read lane halves its
  concurrency and climbs back one step per success; the mutation lane learns the server's real limit
  when the quota is lower than configured (see ``_learn_from_rejection``).
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import structlog
from aiolimiter import AsyncLimiter

from bulkops.api.windows import RateWindow

log = structlog.get_logger("bulkops.governor")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

#: Seconds added to every mutation window, so sends spread by network jitter cannot make the
#: server see one more request in its window than we counted in ours.
WINDOW_MARGIN = 0.25
#: A learned limit is this fraction of what the server accepted before it said 429.
LEARNED_FRACTION = 0.95
PAUSE_BASE = 1.0
PAUSE_CAP = 60.0


class SlidingWindow:
    """Send times within the last ``seconds`` (+ margin); at most ``limit`` of them."""

    def __init__(self, window: RateWindow, margin: float = WINDOW_MARGIN) -> None:
        self.configured = window
        self.limit = window.limit
        self.span = window.seconds + margin
        self._times: deque[float] = deque()

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.span:
            self._times.popleft()

    def count(self, now: float) -> int:
        self._trim(now)
        return len(self._times)

    def wait_time(self, now: float) -> float:
        """Seconds until one more send fits."""
        self._trim(now)
        if len(self._times) < self.limit:
            return 0.0
        # The send that must leave the window before ours fits.
        return self._times[len(self._times) - self.limit] + self.span - now

    def record(self, when: float) -> None:
        self._times.append(when)

    def __repr__(self) -> str:
        return f"<SlidingWindow {len(self._times)}/{self.limit} per {self.span:g}s>"


class SendTimeStore:
    """Mutation send times of one project, appended to a file in the state directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, since: float) -> list[float]:
        try:
            lines = self.path.read_text().split()
        except FileNotFoundError:
            return []
        times = []
        for line in lines:
            try:
                value = float(line)
            except ValueError:
                continue  # a torn last line after a crash
            if value > since:
                times.append(value)
        return times

    def compact(self, keep: Iterable[float]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(f"{t:.3f}\n" for t in keep))
        tmp.replace(self.path)

    def append(self, when: float) -> None:
        with self.path.open("a") as handle:
            handle.write(f"{when:.3f}\n")


class RateGovernor:
    def __init__(
        self,
        project: str,
        *,
        mutation_windows: Iterable[RateWindow],
        read_windows: Iterable[RateWindow] = (),
        concurrency: int = 8,
        clock: Clock = time.time,
        sleep: Sleep = anyio.sleep,
        store: SendTimeStore | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.project = project
        self.windows = [SlidingWindow(w) for w in mutation_windows]
        self._read_limiters = [AsyncLimiter(w.limit, w.seconds) for w in read_windows]
        self.max_concurrency = concurrency
        self.read_concurrency = concurrency
        self._in_flight = 0
        self._slot_freed = anyio.Condition()
        self._mutation_lock = anyio.Lock()
        self._clock = clock
        self._sleep = sleep
        self._store = store
        self._rng = rng or random.Random()
        self.paused_until = 0.0
        self._consecutive_429 = 0
        self.mutations_sent = 0
        self.rejections = 0
        if store is not None:
            self._restore(store)

    def _restore(self, store: SendTimeStore) -> None:
        longest = max((w.span for w in self.windows), default=0.0)
        times = store.load(since=self._clock() - longest)
        for when in times:
            for window in self.windows:
                window.record(when)
        store.compact(times)

    # -- slots ------------------------------------------------------------------------------
    @asynccontextmanager
    async def read_slot(self) -> AsyncIterator[None]:
        for limiter in self._read_limiters:
            await limiter.acquire()
        async with self._slot(lambda: self.read_concurrency):
            await self._wait_pause()
            yield

    @asynccontextmanager
    async def mutation_slot(self) -> AsyncIterator[None]:
        async with self._slot(lambda: self.max_concurrency):
            # One waiter at a time, so mutations leave in arrival order and windows stay exact.
            async with self._mutation_lock:
                await self._wait_for_windows()
                now = self._clock()
                for window in self.windows:
                    window.record(now)
                if self._store is not None:
                    self._store.append(now)
                self.mutations_sent += 1
            yield

    @asynccontextmanager
    async def _slot(self, limit: Callable[[], int]) -> AsyncIterator[None]:
        async with self._slot_freed:
            while self._in_flight >= max(1, limit()):
                await self._slot_freed.wait()
            self._in_flight += 1
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                async with self._slot_freed:
                    self._in_flight -= 1
                    if self.read_concurrency < self.max_concurrency:
                        self._slot_freed.notify_all()  # lanes differ: the next waiter may not fit
                    else:
                        self._slot_freed.notify()  # one slot freed: wake one waiter

    async def _wait_pause(self) -> None:
        while (delay := self.paused_until - self._clock()) > 0:
            await self._sleep(delay)

    async def _wait_for_windows(self) -> None:
        while True:
            now = self._clock()
            delay = max(
                [self.paused_until - now] + [w.wait_time(now) for w in self.windows],
            )
            if delay <= 0:
                return
            await self._sleep(delay)

    # -- feedback ---------------------------------------------------------------------------
    def on_success(self) -> None:
        self._consecutive_429 = 0
        if self.read_concurrency < self.max_concurrency:
            self.read_concurrency += 1

    def on_rate_limited(self, *, retry_after: float | None, mutation: bool) -> float:
        """Pause the whole project and slow down; return the pause in seconds."""
        self.rejections += 1
        self._consecutive_429 += 1
        if retry_after is not None:
            pause = retry_after
        else:
            ceiling = min(PAUSE_CAP, PAUSE_BASE * 2 ** (self._consecutive_429 - 1))
            pause = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        self.paused_until = max(self.paused_until, self._clock() + pause)
        self.read_concurrency = max(1, self.read_concurrency // 2)
        if mutation:
            self._learn_from_rejection()
        log.warning(
            "bulkops.governor.paused",
            project=self.project,
            pause_s=round(pause, 3),
            read_concurrency=self.read_concurrency,
            windows=[str(w) for w in self.windows],
        )
        return pause

    def _learn_from_rejection(self) -> None:
        """The server's quota is lower than ours: cap the window it must have filled.

        The attempt was already recorded (rejected attempts count). A window we had filled
        ourselves explains nothing. Among the others, the culprit is the one that had used the
        largest share of its configured limit: a burst that trips the 10-second window has used
        most of it, while a 15-minute window tripped at the start of a new burst shows an almost
        empty 10-second one. 429s of attempts sent before a limit was lowered teach nothing new.
        """
        now = self._clock()
        if any(window.count(now) > window.limit for window in self.windows):
            return
        candidates = []
        for window in self.windows:
            accepted = window.count(now) - 1
            if accepted < window.limit - 1:
                candidates.append((accepted / window.configured.limit, accepted, window))
        if not candidates:
            return
        _, accepted, window = max(candidates, key=lambda c: c[0])
        if accepted < 1:
            return  # nothing accepted in any window: not our pace (another client, a server hiccup)
        window.limit = max(1, math.floor(accepted * LEARNED_FRACTION))
        log.info("bulkops.governor.learned_limit", project=self.project, window=str(window))

    def minimum_seconds(self, mutations: int) -> float:
        """The least time ``mutations`` sends can take under the windows, from an idle start."""
        return max(
            (
                max(0, math.ceil(mutations / w.limit) - 1) * w.configured.seconds
                for w in self.windows
            ),
            default=0.0,
        )

    def __repr__(self) -> str:
        return (
            f"<RateGovernor {self.project} in_flight={self._in_flight} "
            f"reads<={self.read_concurrency}/{self.max_concurrency} windows={self.windows} "
            f"paused_for={max(0.0, self.paused_until - self._clock()):.1f}s>"
        )
