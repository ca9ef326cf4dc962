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

Evidence and enforcement differ in one respect. The evidence is send times (``EVIDENCE_MARGIN``
the safe way): that is what a rejection or an acceptance proves anything about. Windows, the
configured ones and the learned rules alike, are *kept* on answers (:class:`Attempts`): an
attempt counts from before its send until its answer + the window (``ANSWER_MARGIN``), and while
in flight however long, since the server saw it before its answer reached us. A learned rule's
duration is an upper bound on the server's, so kept this way it holds under any network delay.

This module holds the model's pieces (configured and learned windows, the attempts they count,
the send-time store, the duration grid); :class:`bulkops.api.governor.RateGovernor` gathers the
evidence and sends the probes.
"""

from __future__ import annotations

import math
from bisect import bisect_right, insort
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from bulkops.api.windows import RateWindow
from bulkops.writer import AppendFile, wait_for_queued

#: How long an attempt counts in a window after its answer arrived, beyond the window itself.
#: The server counts an attempt when it arrives, which is after our send and before its answer
#: reaches us, so counting from the answer needs no allowance for network delay. What is left is
#: what two clocks cannot agree on: a server that stamps arrivals to the millisecond (1 ms), a
#: window boundary taken inclusively on one side and exclusively on the other, and a few ms for
#: the client reading its clock late (an answer is stamped once the event loop gets to it, which
#: only makes it later: safe). 5 ms covers these with room; the old send-time rule needed 0.25 s.
ANSWER_MARGIN = 0.005
#: ... plus this share of the window: two unsynchronised quartz clocks drift up to ~100 ppm, so a
#: 15-minute window measured by the server may last 0.09 s longer than ours (4 s: 0.4 ms).
ANSWER_MARGIN_RATIO = 1e-4
#: The longest an attempt can be in flight: the client's total request timeout (60 s) + 5 s. An
#: attempt of a run that died in flight (its answer never recorded) counts this long after its send.
ANSWER_LEASE_S = 65.0
#: The send-time rule every mutation window used before attempts were counted until their answer;
#: still the horizon of the evidence and the margin of a probe at a round duration (below).
SEND_MARGIN = 0.25
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
ROUND_PROBE_MARGIN = SEND_MARGIN
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


def answer_span(seconds: float) -> float:
    """How long after its answer an attempt still counts in a window of ``seconds``."""
    return seconds * (1 + ANSWER_MARGIN_RATIO) + ANSWER_MARGIN


class Attempts:
    """The mutation attempts windows count: how many are in flight, and when the others'
    answers arrived (sorted, as answers may overtake each other).

    The server counts an attempt when it arrives: after we sent it, before its answer reached
    us. So an attempt occupies a slot of a window of span ``S`` from before it is sent until its
    answer + ``S``, and while in flight it counts however old it is. (Learning still reasons on
    send times, see the module docstring: this is only how windows are kept.)
    """

    def __init__(self) -> None:
        self.in_flight = 0
        self.answers: list[float] = []

    def sent(self) -> None:
        self.in_flight += 1

    def answered(self, when: float) -> None:
        self.in_flight -= 1
        insort(self.answers, when)

    def restore(self, answer: float) -> None:
        """An attempt of an earlier run, answered at ``answer`` (or leased until then)."""
        insort(self.answers, answer)

    def count(self, span: float, now: float) -> int:
        return self.in_flight + len(self.answers) - bisect_right(self.answers, now - span)

    def wait(self, limit: int, span: float, now: float) -> float:
        """Seconds until one more attempt fits ``limit`` per ``span``; ``inf`` while only the
        answer of an attempt still in flight can free the slot."""
        first = bisect_right(self.answers, now - span)
        answered = len(self.answers) - first
        need = self.in_flight + answered - limit + 1  # attempts that must leave the window first
        if need <= 0:
            return 0.0
        if need > answered:
            return math.inf
        return self.answers[first + need - 1] + span - now

    def trim(self, now: float, horizon: float) -> None:
        old = bisect_right(self.answers, now - horizon)
        if old > 1024:
            del self.answers[:old]


class SlidingWindow:
    """A configured window over the governor's :class:`Attempts`: at most ``limit`` of them
    counting at once, each until its answer + ``span``."""

    def __init__(self, window: RateWindow, attempts: Attempts | None = None) -> None:
        self.configured = window
        self.limit = window.limit
        self.span = answer_span(window.seconds)
        self.attempts = attempts if attempts is not None else Attempts()

    def count(self, now: float) -> int:
        return self.attempts.count(self.span, now)

    def wait_time(self, now: float) -> float:
        """Seconds until one more send fits (``inf``: not before an answer arrives)."""
        return self.attempts.wait(self.limit, self.span, now)

    def __repr__(self) -> str:
        return f"<SlidingWindow {self.limit} per {self.configured.seconds:g}s after the answer>"


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


#: One attempt of an earlier run: its send time and when its answer arrived (None: unknown).
StoredAttempt = tuple[float, float | None]


class SendTimeStore:
    """Mutation attempts of one project, appended to a file in the state directory.

    One line per send (``SENT``) and one per answer (``SENT ANSWER``). A send whose answer line
    is missing was in flight when its run died (or the line was lost): it is counted until
    ``ANSWER_LEASE_S`` after its send. ``load`` and ``compact`` run once, when the governor is
    made; ``append`` and ``answered`` run on the event loop for every mutation, so they hand the
    line to the writer thread (``bulkops.writer``) and never wait: a line lost to a crash only
    makes the next run's windows a little less full (a lost answer line: a little fuller).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: AppendFile | None = None

    def load(self, since: float) -> list[StoredAttempt]:
        """Attempts sent after ``since``, in send order."""
        wait_for_queued()  # times this process appended (an apply before its undo) are read too
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        sends: list[float] = []
        answers: dict[float, list[float]] = {}
        for line in lines:
            try:
                values = [float(part) for part in line.split()]
            except ValueError:
                continue  # a torn last line after a crash
            if len(values) == 1:
                sends.append(values[0])
            elif len(values) == 2:
                answers.setdefault(values[0], []).append(values[1])
        # A compacted file holds answered attempts as pairs alone; sends without a pair are
        # attempts whose answer never came. Pair each answer with one send of the same time.
        unpaired = Counter(sends)
        found: list[StoredAttempt] = []
        for sent, times in answers.items():
            for answer in times:
                found.append((sent, answer))
                unpaired[sent] -= 1
        found += [(sent, None) for sent, left in unpaired.items() for _ in range(max(0, left))]
        return sorted(a for a in found if a[0] > since)

    def compact(self, keep: Iterable[StoredAttempt]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(_line(sent, answer) for sent, answer in keep))
        tmp.replace(self.path)
        self._file = None  # the next append opens the new file

    def append(self, when: float) -> None:
        """A send, before the attempt goes out."""
        self._write(_line(when, None))

    def answered(self, sent: float, answer: float) -> None:
        """The answer of the attempt sent at ``sent``."""
        self._write(_line(sent, answer))

    def _write(self, line: str) -> None:
        if self._file is None:
            self._file = AppendFile(self.path, mode=0o644, keep_open=False)
        if self._file.error is None:  # a full disk ends the run through the journal, not here
            self._file.append(line.encode())


def _line(sent: float, answer: float | None) -> str:
    return f"{sent:.3f}\n" if answer is None else f"{sent:.3f} {answer:.3f}\n"


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
