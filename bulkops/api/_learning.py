"""The mutation lane's model of the server's windows: evidence, learned windows, probes.

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
  one less than the most mutations ever in flight together, used with that slack) and from
  attempts that were alone in flight (exact).
  A possible duration is only ruled out by sound evidence, so jitter cannot rule out the truth.
- A rejection that no learned window explains starts one, unless the attempt was already in
  flight when the last 429 taught us something (those only refine). Nothing is blamed on a
  configured window, so a wrong blame cannot shrink the 15-minute window to a trickle.
- A learned window enforces one rule: the count it had at its longest possible duration, per
  that duration (+ a jitter margin). While that duration is unbounded, the governor *probes*:
  when the window holds the next send back, one attempt goes single file as soon as the same
  count would fit under a shorter duration. That duration is the first *round* one (1 s, 2 s,
  5 s, 10 s, 30 s, 1 min, ... and the configured ones) beyond those ruled out, if it lies within
  the geometric step (at most ``PROBE_STRETCH`` times the shortest, and ``PROBE_OVERSHOOT_S`` or
  the shortest beyond it), else the step. If the server takes it, longer durations are ruled
  out; if not, shorter ones, for the cost of one rejected attempt. Servers give their windows
  round durations, so this finds them within a margin (150/1min: probes at 20.6 s, 30 s, 60 s,
  not 89 s); an odd duration costs at most the step, as a plain geometric search would.
  A probe that could not tell (sent late, after a pause) is not sent. A wrong guess therefore
  costs a few rejected probes and about one real window of waiting, not hours. With
  ``Retry-After``, the first attempt goes when the server says a slot frees.
- A *bounded* window (a probe was taken) is no trap: its rule enforces the upper bound. Probing
  it further only saves a fraction of the pace, so those probes are paid for out of a rejection
  budget (``REFINE_BUDGET`` of the attempts so far, every rejection counted): a long job narrows
  an odd duration, a short job keeps its rejections for the windows it has yet to find. A round
  duration inside the range is tried first; one that explains the upper bound is confirmed just
  below it (a rejection pins the window); else the geometric mid-point.
- After a quiet spell (``QUIET_SPANS`` of its duration, at least ``QUIET_MIN_S``), a learned window
  lets one more attempt through as a single-file probe; if it is taken, the count stays one
  higher (additive increase), so a count learned too low recovers. A learned window that the
  evidence later contradicts is dropped.
- After any 429 the next mutation goes single file; attempts already in flight are not stopped,
  and their 429s neither escalate the backoff nor start new learned windows. A rejected probe
  does not escalate it either: it was a deliberate question, not a sign of trouble.

This module holds the model's pieces (configured and learned windows, the send-time store, the
duration grid); :class:`bulkops.api.governor.RateGovernor` gathers the evidence and sends the probes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from pathlib import Path

from bulkops.api.windows import RateWindow
from bulkops.writer import AppendFile, wait_for_queued

#: Seconds added to every mutation window, so sends spread by network jitter cannot make the
#: server see one more request in its window than we counted in ours.
WINDOW_MARGIN = 0.25
#: Our send times are not the server's arrival times: evidence is counted this much the safe way.
EVIDENCE_MARGIN = 0.1
#: Candidate server window durations: a geometric grid from GRID_MIN_S, this ratio apart.
GRID_RATIO = 1.05
GRID_MIN_S = 0.5
#: A learned window's duration is pinned once its upper bound is within this ratio of its lower.
PINNED_RATIO = 1.1
#: ... or within this many seconds (what a probe can resolve, given the evidence margins).
PINNED_SECONDS = 0.4
#: While a learned window's upper bound is unknown, probe at most this many times its lower bound.
PROBE_STRETCH = 3.0
#: ... but never more than this many seconds (or its lower bound) beyond it.
PROBE_OVERSHOOT_S = 10.0
#: Duration probes a learned window may spend without learning anything from them.
DURATION_PROBES = 24
#: Durations servers commonly give their windows (seconds). An unbounded window's next duration
#: probe goes at the first of these beyond what is ruled out, if it is within the geometric step
#: (so a server with round windows is found within a margin of the truth, and one with odd windows
#: costs no more than the plain geometric search); inside a bounded range they are probed first.
ROUND_DURATIONS_S = (1, 2, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600)
#: A probe at a round duration goes this much after it (jitter between our sends and the server's
#: arrivals must not make the server see the oldest attempt still inside its window).
ROUND_PROBE_MARGIN = WINDOW_MARGIN
#: A bounded window's duration probes (it is no trap: the rule enforces its upper bound) are paid
#: for out of this share of the attempts sent so far, every rejection counted.
REFINE_BUDGET = 0.02
#: A bounded window whose upper bound a round duration explains is probed this much below it
#: first: rejected, the window is pinned (within PINNED_RATIO); taken, the round guess was wrong.
CONFIRM_RATIO = 1.07
#: Additive increase after this many of a learned window's durations without a 429 ...
QUIET_SPANS = 3.0
#: ... and at least this many seconds.
QUIET_MIN_S = 60.0


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


def round_durations(windows: list[SlidingWindow]) -> list[float]:
    """The durations a server window most likely has: the round ones and the configured ones."""
    return sorted({float(s) for s in ROUND_DURATIONS_S} | {w.configured.seconds for w in windows})


def grid_for(windows: list[SlidingWindow]) -> list[float]:
    """Candidate durations: a geometric grid, plus points just around each round duration.

    A probe sent ``ROUND_PROBE_MARGIN`` after a round duration ``c`` that the server takes
    bounds the duration below the first grid point beyond the evidence margin past the probe:
    with a point there (and slack for a probe sent a little late), the bound is that tight, not
    the next 5% step.
    """
    longest = max((w.configured.seconds for w in windows), default=60.0)
    points = {w.configured.seconds for w in windows}
    value = GRID_MIN_S
    while value < 2 * longest:
        points.add(round(value, 3))
        value *= GRID_RATIO
    points.add(2 * longest)
    for c in round_durations(windows):
        for offset in (ROUND_PROBE_MARGIN, ROUND_PROBE_MARGIN + 2 * EVIDENCE_MARGIN):
            if c + offset < 2 * longest:
                points.add(round(c + offset, 3))
    return sorted(points)


Rule = tuple[int, float]  # at most ``limit`` attempts per ``seconds`` (margin not included)


def least_seconds(count: int, rules: Iterable[Rule]) -> float:
    """The least time ``count`` sends take under all ``rules`` at once, from an idle start.

    Each send goes as early as every window allows (earliest is optimal for sliding windows).
    Windows together can need more than any one alone: 200 sends under 30/5s and 100/30s take
    45 s (the second hundred waits for the 30 s window, then goes at 30 per 5 s), not 30.
    """
    rules = list(rules)
    times: list[float] = []
    for i in range(count):
        at = times[-1] if times else 0.0
        for limit, seconds in rules:
            if i >= limit:
                at = max(at, times[i - limit] + seconds)
        times.append(at)
    return times[-1] if times else 0.0


#: Why a mutation goes single file ("after-429", "retry-after", "duration", "count") and the
#: learned window it probes, if any.
Probe = tuple[str, LearnedWindow | None]
