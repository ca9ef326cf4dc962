"""The rate governor of one project: a read lane, a mutation lane, and a pause they share.

- Every request holds one of ``concurrency`` in-flight slots.
- Mutations obey every configured sliding window at once (e.g. 100/10s *and* 900/15min). A send
  time is recorded when the attempt goes out, whatever its answer, because the server counts rejected
  attempts too; send times can be persisted so a resumed run still honours the 15-minute window.
- Reads may obey optional windows (aiolimiter leaky buckets).
- A 429 pauses the whole project (both lanes, every task): the read lane halves its concurrency and
  climbs back one step per success; the mutation lane learns the server's real windows.

How the mutation lane learns. The configured windows are a guess (Statsig's limits "can vary by
project and endpoint"): they stay a ceiling, the job's own limit, and are never rewritten. What
the server really enforces is learned beside them, in count *and* duration:

- A 429 says only "some server window is full now". The evidence kept is the send time of every
  attempt and, for each candidate duration ``D`` of a geometric grid (0.5 s up to twice the
  longest configured window): ``accepted[D]``, the most attempts the server let through within
  ``D`` (counted at each accepted attempt, itself included); and, per learned window,
  ``upper[D]``, the fewest attempts a rejected attempt it explains saw before it within ``D``. A
  server window of duration ``D`` and limit ``M`` needs ``accepted[D] <= M <= upper[D]``; its
  possible durations are the grid points where that can hold.
- Counts are only as good as the order the server saw: attempts in flight together may arrive in
  another order than we sent them. So every count exists twice: at face value (off by up to
  ``concurrency - 1``, used with that slack) and from attempts that were alone in flight (exact).
  A possible duration is only ruled out by sound evidence, so jitter cannot rule out the truth.
- A rejection that no learned window explains starts one, unless the attempt was already in
  flight when the last 429 taught us something (those only refine). Nothing is blamed on a
  configured window, so a wrong blame cannot shrink the 15-minute window to a trickle.
- A learned window enforces one rule: the count it had at its longest possible duration, per
  that duration (+ a jitter margin). While that duration is uncertain, the governor *probes*:
  when the window holds the next send back, one attempt goes single file as soon as the same
  count would fit under a shorter duration (the geometric mid-point of the possible ones; at
  most ``PROBE_STRETCH`` times the shortest while the longest is unbounded). If the server takes
  it, longer durations are ruled out; if not, shorter ones, for the cost of one rejected attempt.
  A probe that could not tell (sent late, after a pause) is not sent. A wrong guess therefore
  costs a few rejected probes and about one real window of waiting, not hours. With
  ``Retry-After``, the first attempt goes when the server says a slot frees.
- After a quiet spell (``QUIET_SPANS`` of its duration, at least ``QUIET_MIN_S``), a learned window
  lets one more attempt through as a single-file probe; if it is taken, the count stays one
  higher (additive increase), so a count learned too low recovers. A learned window that the
  evidence later contradicts is dropped.
- After any 429 the next mutation goes single file; attempts already in flight are not stopped,
  and their 429s neither escalate the backoff nor start new learned windows.
"""

from __future__ import annotations

import math
import random
import time
from bisect import bisect_right
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path

import anyio
import structlog
from aiolimiter import AsyncLimiter

from bulkops.api.windows import RateWindow
from bulkops.writer import AppendFile, wait_for_queued

log = structlog.get_logger("bulkops.governor")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

#: Seconds added to every mutation window, so sends spread by network jitter cannot make the
#: server see one more request in its window than we counted in ours.
WINDOW_MARGIN = 0.25
#: Our send times are not the server's arrival times: evidence is counted this much the safe way.
EVIDENCE_MARGIN = 0.1
PAUSE_BASE = 1.0
PAUSE_CAP = 60.0
#: Candidate server window durations: a geometric grid from GRID_MIN_S, this ratio apart.
GRID_RATIO = 1.05
GRID_MIN_S = 0.5
#: A learned window's duration is pinned once its upper bound is within this ratio of its lower.
PINNED_RATIO = 1.1
#: ... or within this many seconds (what a probe can resolve, given the evidence margins).
PINNED_SECONDS = 0.4
#: While a learned window's upper bound is unknown, probe at most this many times its lower bound.
PROBE_STRETCH = 2.0
#: Duration probes a learned window may spend without learning anything from them.
DURATION_PROBES = 24
#: Additive increase after this many of a learned window's durations without a 429 ...
QUIET_SPANS = 3.0
#: ... and at least this many seconds.
QUIET_MIN_S = 60.0
#: Longest single sleep while waiting for a window, so new evidence is looked at soon.
WAIT_SLICE_S = 2.0

#: (governor, sequence number) of the mutation the current task sent last; None after a read.
_ATTEMPT: ContextVar[tuple[RateGovernor, int] | None] = ContextVar("bulkops_attempt", default=None)


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


class LearnedWindow:
    """A server window inferred from 429s; ``upper[k]`` bounds its limit if its duration is grid[k].

    ``low``/``high`` index the grid points its duration may have (``high`` is the last one; the
    duration is below ``grid[high + 1]``); ``bounded`` says an acceptance has capped it from above.
    """

    def __init__(self, upper: list[int], upper_exact: list[int], now: float) -> None:
        self.upper = upper  # at face value: the fewest attempts any rejected one saw before it
        self.upper_exact = upper_exact  # the same, from attempts that were alone in flight
        self.low = 0
        self.high = len(upper) - 1
        self.bounded = False
        self.extra = 0  # additive increase: probes above the evidence the server accepted
        self.bonus_due = False  # a quiet spell has passed: the next probe tries one more
        self.probes_left = DURATION_PROBES  # duration probes that taught nothing are limited
        self.quiet_since = now
        #: The (limit, seconds) rule it enforces (a list, so probes can swap in another).
        self.rules: list[tuple[int, float]] = []

    def describe(self, grid: list[float]) -> str:
        top = f"<{grid[self.high + 1]:.3g}s" if self.bounded else "unbounded"
        limit = self.rules[-1][0] if self.rules else 0
        return f"{limit} per {grid[self.low]:.3g}s..{top}"


class SendTimeStore:
    """Mutation send times of one project, appended to a file in the state directory.

    ``load`` and ``compact`` run once, when the governor is made; ``append`` runs on the event
    loop for every mutation, so it hands the line to the writer thread (``bulkops.writer``) and
    never waits: a time lost to a crash only makes the next run's windows a little less full.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: AppendFile | None = None

    def load(self, since: float) -> list[float]:
        wait_for_queued()  # times this process appended (an apply before its undo) are read too
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
        self._file = None  # the next append opens the new file

    def append(self, when: float) -> None:
        if self._file is None:
            self._file = AppendFile(self.path, mode=0o644, keep_open=False)
        if self._file.error is None:  # a full disk ends the run through the journal, not here
            self._file.append(f"{when:.3f}\n".encode())


def _grid(windows: list[SlidingWindow]) -> list[float]:
    longest = max((w.configured.seconds for w in windows), default=60.0)
    points = {w.configured.seconds for w in windows}
    value = GRID_MIN_S
    while value < 2 * longest:
        points.add(round(value, 3))
        value *= GRID_RATIO
    points.add(2 * longest)
    return sorted(points)


Rule = tuple[int, float]  # at most ``limit`` attempts per ``seconds`` (margin not included)
#: Why a mutation goes single file ("after-429", "retry-after", "duration", "count") and the
#: learned window it probes, if any.
Probe = tuple[str, LearnedWindow | None]


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
        self.probes_sent = 0
        self.rejections = 0
        # The evidence: send times of recent attempts (in send order; _base is the sequence
        # number of the first one) and, per grid duration, the most attempts ever accepted in it.
        self.grid = _grid(self.windows)
        self._horizon = self.grid[-1] + WINDOW_MARGIN
        self._times: list[float] = []
        self._base = 0
        self.accepted = [0] * len(self.grid)  # at face value
        self.accepted_exact = [0] * len(self.grid)  # from attempts that were alone in flight
        # Attempts in flight together may reach the server in another order than we sent them,
        # so a count at face value may be off by up to this much; one alone in flight is exact.
        self._slack = max(0, concurrency - 1)
        self._alone: dict[int, bool] = {}
        self._probes: dict[
            int, Probe
        ] = {}  # probes awaiting an answer  # attempts awaiting an answer: alone in flight so far?
        self.learned: list[LearnedWindow] = []
        self._cautious = False  # after a 429: the next mutation goes single file
        self._probe_done: anyio.Event | None = None
        self._hint_until: float | None = None  # Retry-After: when the server said a slot frees
        self._learned_at = -math.inf
        self._last_429_at = -math.inf
        if store is not None:
            self._restore(store)

    def _restore(self, store: SendTimeStore) -> None:
        times = store.load(since=self._clock() - self._horizon)
        for when in times:
            for window in self.windows:
                window.record(when)
            self._times.append(when)
        store.compact(times)

    # -- slots ------------------------------------------------------------------------------
    @asynccontextmanager
    async def read_slot(self) -> AsyncIterator[None]:
        _ATTEMPT.set(None)
        for limiter in self._read_limiters:
            await limiter.acquire()
        async with self._slot(lambda: self.read_concurrency):
            await self._wait_pause()
            yield

    @asynccontextmanager
    async def mutation_slot(self) -> AsyncIterator[None]:
        probe_done: anyio.Event | None = None
        try:
            async with self._slot(lambda: self.max_concurrency):
                # One waiter at a time, so mutations leave in arrival order and windows stay exact.
                async with self._mutation_lock:
                    probe = await self._wait_for_windows()
                    now = self._clock()
                    for window in self.windows:
                        window.record(now)
                    seq = self._base + len(self._times)
                    for other in self._alone:
                        self._alone[other] = False
                    self._alone[seq] = not self._alone
                    _ATTEMPT.set((self, seq))
                    self._times.append(now)
                    self._trim_evidence(now)
                    if self._store is not None:
                        self._store.append(now)
                    self.mutations_sent += 1
                    if probe is not None:
                        self.probes_sent += 1
                        self._hint_until = None
                        self._probes[seq] = probe
                        probe_done = self._probe_done = anyio.Event()
                yield
        finally:
            if probe_done is not None:
                # Released last, with no await after it: the caller's on_success or
                # on_rate_limited runs before the next mutation looks at the state.
                self._probe_done = None
                probe_done.set()

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

    async def _wait_for_windows(self) -> Probe | None:
        """Wait until the next mutation may go; what it probes if it goes single file."""
        while True:
            if self._probe_done is not None:
                await self._probe_done.wait()
                continue
            now = self._clock()
            base = max([self.paused_until - now] + [w.wait_time(now) for w in self.windows])
            # A learned rule's duration is already an upper bound: only jitter needs a margin.
            waits = [(self._rules_wait(w.rules, now, EVIDENCE_MARGIN), w) for w in self.learned]
            strict = max([base] + [wait for wait, _ in waits])
            if strict <= 0:
                return ("after-429", None) if self._cautious else None
            found = self._probe_wait(now, base, waits)
            if found is not None and found[0] <= 0:
                return found[1]
            delay = strict if found is None else min(strict, found[0])
            await self._sleep(min(delay, WAIT_SLICE_S) if self.learned else delay)

    def _rules_wait(self, rules: list[Rule], now: float, margin: float = WINDOW_MARGIN) -> float:
        times = self._times
        worst = 0.0
        for limit, seconds in rules:
            span = seconds + margin
            inside = len(times) - bisect_right(times, now - span)
            if inside >= limit:
                worst = max(worst, times[len(times) - limit] + span - now)
        return worst

    def _probe_wait(
        self, now: float, base: float, waits: list[tuple[float, LearnedWindow]]
    ) -> tuple[float, Probe] | None:
        """When a probe may go and what it probes, or None; the binding window is relaxed alone."""
        if self._hint_until is not None:
            return max(base, self._hint_until - now), ("retry-after", None)
        if not waits:
            return None
        binding = max(waits, key=lambda pair: pair[0])[1]
        relaxed = self._relaxed_rules(binding, now)
        if relaxed is None:
            return None
        kind, rules = relaxed
        others = [wait for wait, w in waits if w is not binding]
        wait = max([base, self._rules_wait(rules, now, margin=0.0), *others])
        if kind == "duration" and not self._informative(binding, now + wait):
            return None
        return wait, (kind, binding)

    def _informative(self, w: LearnedWindow, when: float) -> bool:
        """Can a probe sent at ``when`` rule out durations still possible for ``w``?

        Only if the attempt whose age decides the longest rule is younger than the longest
        possible duration: a probe sent later (after a pause, say) tests durations already
        ruled out.
        """
        limit = w.rules[0][0] if w.rules else 0
        if limit < 1 or len(self._times) < limit:
            return False
        age = when - self._times[len(self._times) - limit]
        return age < self.grid[w.high] - EVIDENCE_MARGIN

    def _relaxed_rules(self, w: LearnedWindow, now: float) -> tuple[str, list[Rule]] | None:
        grid = self.grid
        low = grid[w.low]
        top = grid[w.high + 1] if w.bounded else None
        pinned = top is not None and top - low <= max((PINNED_RATIO - 1) * low, PINNED_SECONDS)
        if not pinned and w.probes_left > 0:
            if top is not None:
                target = math.sqrt(low * top)
            else:
                target = min(PROBE_STRETCH * low, math.sqrt(low * grid[-1]))
            # "Same limits, shorter duration": if the server takes it, the longer durations are
            # ruled out; if not, the shorter ones are.
            return "duration", [(limit, min(seconds, target)) for limit, seconds in w.rules]
        quiet = max(QUIET_SPANS * (top or grid[-1]), QUIET_MIN_S)
        if now - w.quiet_since >= quiet:
            w.bonus_due = True
        if w.bonus_due:
            return "count", [(limit + 1, seconds) for limit, seconds in w.rules]
        return None

    def _trim_evidence(self, now: float) -> None:
        old = bisect_right(self._times, now - self._horizon)
        if old > 1024:
            del self._times[:old]
            self._base += old

    # -- evidence ---------------------------------------------------------------------------
    def _counts(self, seq: int, *, inclusive: bool) -> list[int] | None:
        """Attempts sent within each grid duration up to attempt ``seq`` (itself if inclusive).

        ``inclusive`` is for an accepted attempt, the other for a rejected one.
        """
        index = seq - self._base
        if index < 0 or index >= len(self._times):
            return None
        times = self._times
        sent = times[index]
        end = index + 1 if inclusive else index
        # Our send times are not the server's arrival times: count an accepted attempt's window
        # a margin short and a rejected one's a margin long, so jitter cannot rule out the truth.
        widen = -EVIDENCE_MARGIN if inclusive else EVIDENCE_MARGIN
        counts = []
        upto = index
        for seconds in self.grid:
            upto = bisect_right(times, sent - max(seconds + widen, 0.0), 0, upto)
            counts.append(end - upto)
        return counts

    def _rules(self, w: LearnedWindow, high: int, bounded: bool) -> list[Rule]:
        """One rule: the count it allowed at its longest possible duration, per that duration."""
        limit = min(self.accepted[high], w.upper[high]) + w.extra
        seconds = self.grid[high + 1] if bounded else self.grid[high]
        return [(max(1, limit), seconds)]

    def _feasible(self, w: LearnedWindow, k: int) -> bool:
        """Could ``w`` last grid[k] seconds? Sound bounds: exact counts, or face value +- slack."""
        slack = self._slack
        least = max(self.accepted_exact[k], self.accepted[k] - slack)
        most = min(w.upper_exact[k], w.upper[k] + slack)
        return least <= most and min(self.accepted[k], w.upper[k]) >= 1

    def _fit(self, w: LearnedWindow) -> bool:
        """Place ``w`` on the grid points consistent with all evidence; False if there are none."""
        k = len(self.grid) - 1
        while k >= 0 and not self._feasible(w, k):
            k -= 1
        if k < 0:
            return False  # nothing accepted at any time scale it could have: not our pace
        high = k
        while k > 0 and self._feasible(w, k - 1):
            k -= 1
        w.low, w.high = k, high
        w.bounded = high < len(self.grid) - 1
        w.rules = self._rules(w, high, w.bounded)
        return True

    def _on_accepted(self, seq: int, alone: bool) -> None:
        self._cautious = False
        probe = self._probes.pop(seq, None)
        window = probe[1] if probe is not None else None
        if window is not None and probe is not None:
            if probe[0] == "count":  # one more than the evidence was accepted: keep it
                window.extra += 1
                window.bonus_due = False
                window.quiet_since = self._clock()
            before = (window.low, window.high, window.bounded)
        self._absorb_acceptance(seq, alone)
        if (
            window is not None
            and probe is not None
            and probe[0] == "duration"
            and window in self.learned
            and before == (window.low, window.high, window.bounded)
        ):
            window.probes_left -= 1  # taught nothing: a window cannot make us trickle forever

    def _absorb_acceptance(self, seq: int, alone: bool) -> None:
        counts = self._counts(seq, inclusive=True)
        if counts is None:
            return
        changed = False
        if any(c > a for c, a in zip(counts, self.accepted, strict=True)):
            self.accepted = [max(c, a) for c, a in zip(counts, self.accepted, strict=True)]
            changed = True
        if alone and any(c > a for c, a in zip(counts, self.accepted_exact, strict=True)):
            self.accepted_exact = [
                max(c, a) for c, a in zip(counts, self.accepted_exact, strict=True)
            ]
            changed = True
        if not changed:
            return
        kept = []
        for w in self.learned:
            if self._fit(w):
                kept.append(w)
            else:
                log.info("bulkops.governor.forgot_window", project=self.project,
                         window=w.describe(self.grid))  # fmt: skip
        self.learned = kept

    def _learn_from_rejection(self, seq: int, alone: bool) -> None:
        """Blame the learned window this rejection fits, or learn a new one.

        A rejected attempt that saw ``n[D]`` attempts before it in ``D`` seconds bounds the limit
        of a window of duration ``D``. A window it fits is narrowed; otherwise, unless the attempt
        was already in flight when we last learned something, it starts a new learned window.
        """
        self._probes.pop(seq, None)
        seen = self._counts(seq, inclusive=False)
        if seen is None:
            return
        exact = seen if alone else [1 << 30] * len(seen)
        now = self._clock()
        for w in self.learned:
            before = (w.upper, w.upper_exact)
            w.upper = [min(a, b) for a, b in zip(w.upper, seen, strict=True)]
            w.upper_exact = [min(a, b) for a, b in zip(w.upper_exact, exact, strict=True)]
            if self._fit(w):
                w.quiet_since = now
                w.extra = 0
                w.bonus_due = False
                self._fit(w)
                self._learned_at = now
                log.info("bulkops.governor.narrowed_window", project=self.project,
                         window=w.describe(self.grid))  # fmt: skip
                return
            w.upper, w.upper_exact = before
            self._fit(w)
        if self._times[seq - self._base] < self._learned_at:
            return  # in flight when the last 429 taught us something: nothing new
        w = LearnedWindow(seen, exact, now)
        if not self._fit(w):
            return  # nothing we sent explains it (another client, a server hiccup)
        self.learned.append(w)
        self._learned_at = now
        log.info("bulkops.governor.learned_window", project=self.project,
                 window=w.describe(self.grid))  # fmt: skip

    # -- feedback ---------------------------------------------------------------------------
    def on_success(self) -> None:
        self._consecutive_429 = 0
        if self.read_concurrency < self.max_concurrency:
            self.read_concurrency += 1
        attempt = _ATTEMPT.get()
        if attempt is not None and attempt[0] is self:
            _ATTEMPT.set(None)
            self._on_accepted(attempt[1], self._answered(attempt[1]))

    def on_rate_limited(self, *, retry_after: float | None, mutation: bool) -> float:
        """Pause the whole project and slow down; return the pause in seconds."""
        self.rejections += 1
        now = self._clock()
        attempt = _ATTEMPT.get() if mutation else None
        if attempt is not None and attempt[0] is self:
            _ATTEMPT.set(None)
            seq = attempt[1]
        else:
            attempt, seq = None, self._base + len(self._times) - 1
        sent = self._times[seq - self._base] if mutation and seq >= self._base else now
        if sent < self._last_429_at and retry_after is None:
            # Sent before the last 429 came back: the pause already covers it; do not escalate.
            pause = max(0.0, self.paused_until - now)
        else:
            self._consecutive_429 += 1
            if retry_after is not None:
                pause = retry_after
            else:
                ceiling = min(PAUSE_CAP, PAUSE_BASE * 2 ** (self._consecutive_429 - 1))
                pause = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
            self.read_concurrency = max(1, self.read_concurrency // 2)
        self._last_429_at = now
        self.paused_until = max(self.paused_until, now + pause)
        if mutation:
            self._cautious = True
            if retry_after is not None:
                self._hint_until = now + retry_after
            if attempt is not None:
                self._learn_from_rejection(seq, self._answered(seq))
            elif self._times:
                self._learn_from_rejection(seq, False)
        log.warning(
            "bulkops.governor.paused",
            project=self.project,
            pause_s=round(pause, 3),
            read_concurrency=self.read_concurrency,
            learned=[w.describe(self.grid) for w in self.learned],
        )
        return pause

    def _answered(self, seq: int) -> bool:
        """Forget a pending attempt; True if it was alone in flight from send to answer."""
        return self._alone.pop(seq, False)

    def minimum_seconds(self, mutations: int) -> float:
        """The least time ``mutations`` sends can take under the windows, from an idle start."""
        rules = [(w.limit, w.configured.seconds) for w in self.windows]
        rules += [rule for w in self.learned for rule in w.rules]
        return max(
            (max(0, math.ceil(mutations / limit) - 1) * seconds for limit, seconds in rules),
            default=0.0,
        )

    def __repr__(self) -> str:
        learned = ", ".join(w.describe(self.grid) for w in self.learned) or "none"
        return (
            f"<RateGovernor {self.project} in_flight={self._in_flight} "
            f"reads<={self.read_concurrency}/{self.max_concurrency} windows={self.windows} "
            f"learned=[{learned}] probes={self.probes_sent} rejections={self.rejections} "
            f"paused_for={max(0.0, self.paused_until - self._clock()):.1f}s>"
        )
