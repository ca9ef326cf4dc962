"""The rate governor of one project: a read lane, a mutation lane, and a pause they share.

- Every request holds one of ``concurrency`` in-flight slots.
- Mutations need far fewer: the windows pace them, so attempts in flight only cover the latency.
  At most ``ceil(pace * round_trip) + 1`` go at once, where ``pace`` is the tightest rate the
  windows (configured and learned) allow over the next minute and ``round_trip`` the p90 of the
  recent mutations' round trips (until the first is answered, the median of the reads' round
  trips to the same server; one at a time if there were none). At 100/10s and 50 ms that is 2, so a
  server window we do not know yet costs about 2 rejected attempts when it first fills, not
  ``concurrency``. Windows the job file states are trusted until the first rejection: up to a
  quarter of the smallest one's count in flight (at most ``concurrency``). Reads keep the full
  concurrency.
- Mutations obey every configured sliding window at once (e.g. 100/10s *and* 900/15min), and the
  learned ones. An attempt takes a slot before it goes out, whatever its answer (the server counts
  rejected attempts too), and keeps it while in flight however long that takes, then until its
  answer + the window (+ ``ANSWER_MARGIN``): the server counted it on arrival, which was before the
  answer reached us, so no network delay can make it see more in a window than we counted. Send
  and answer times can be persisted so a resumed run still honours the 15-minute window.
- A mutation's precondition read is made just before it can go: ``mutation_turn`` lets as many
  mutations read and wait as the cap's pace sends within ``READ_MAX_AGE_S``, each once the
  windows (counting those queued ahead of it) would let it go soon; ``mutation_slot(read_at=...)``
  refuses to send on a read older than ``READ_MAX_AGE_S`` (+ 4 round trips), raising
  :class:`StaleRead`: the caller reads again, so a person's edit made while the mutation waited
  for quota is a conflict, not lost.
- With a quota ledger (other processes), each attempt's reservation is a lease until its answer
  can arrive; the answer moves it to the answer time (:mod:`bulkops.api.ledger`).
- Reads may obey optional windows (aiolimiter leaky buckets).
- A 429 pauses the whole project (both lanes, every task): the read lane halves its concurrency and
  climbs back one step per success; the mutation lane learns the server's real windows.

How the mutation lane learns the server's windows is told in :mod:`bulkops.api._learning`.
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

import anyio
import structlog
from aiolimiter import AsyncLimiter

from bulkops.api._learning import (
    ANSWER_LEASE_S,
    CONFIRM_RATIO,
    EVIDENCE_MARGIN,
    PINNED_RATIO,
    PINNED_SECONDS,
    PROBE_OVERSHOOT_S,
    PROBE_STRETCH,
    QUIET_MIN_S,
    QUIET_SPANS,
    REFINE_BUDGET,
    ROUND_PROBE_MARGIN,
    SEND_MARGIN,
    Attempts,
    LearnedWindow,
    Probe,
    Rule,
    SendTimeStore,
    SlidingWindow,
    answer_span,
    grid_for,
    least_seconds,
    round_durations,
)
from bulkops.api.ledger import LEARNED_TTL_S, QuotaLedger, Waiter
from bulkops.api.windows import RateWindow

log = structlog.get_logger("bulkops.governor")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

PAUSE_BASE = 1.0
PAUSE_CAP = 60.0
#: The pace that sets how many mutations may be in flight is the windows' over this horizon.
PACE_HORIZON_S = 60.0
#: Windows the job file states are trusted with this share of the smallest one's count in
#: flight (so its burst goes out in about 4 round trips), at most ``concurrency``: a wrong
#: statement costs at most that many rejected attempts, once, however high ``concurrency`` is.
TRUSTED_SHARE = 4
#: Mutation round trips kept to estimate the latency (their p90).
ROUND_TRIP_SAMPLES = 32
#: Longest single sleep while waiting for a window, so new evidence is looked at soon.
WAIT_SLICE_S = 2.0
#: A wait for the windows this short neither flushes the answers queued for the ledger first nor
#: wakes on an answer to flush it: the reservation right after it carries them, and a flush's
#: trip through the ledger's thread (5-13 ms in a busy fleet) would outlast the wait itself.
SHORT_WAIT_S = 0.05
#: A mutation is sent on a precondition read at most this old (+ 4 round trips); older, it is
#: read again. Without conditional writes a person's edit between the read and the send is
#: overwritten, so the read must be recent, not a quota wait (up to 15 minutes) old.
READ_MAX_AGE_S = 2.0
#: Before any read has been timed, a read is expected to take this long.
READ_LEAD_DEFAULT_S = 0.1
#: A mutation's read starts at least this long before the windows let it go (4 reads' time if
#: more): a read that comes back late would hold up the window's first sends, which set the pace
#: of every window after (a busy machine's event loop answers late).
READ_LEAD_MIN_S = 1.0
#: A mutation waiting to read behind others that fill the window looks again at least this
#: often (they may leave without sending).
READ_POLL_S = 0.5


class StaleRead(Exception):
    """The read a mutation was checked against is too old to send it on: read again first."""


#: (governor, sequence number) of the mutation the current task sent last; None after a read.
_ATTEMPT: ContextVar[tuple[RateGovernor, int] | None] = ContextVar("bulkops_attempt", default=None)


class _Turn:
    """The current task's mutation turn: has it read (and so holds a place) and not yet sent?"""

    __slots__ = ("ready",)

    def __init__(self) -> None:
        self.ready = False


_TURN: ContextVar[_Turn | None] = ContextVar("bulkops_turn", default=None)


def _quantile(samples: Iterable[float], q: float) -> float:
    """The ``q`` quantile of some (at least one) round trips, nearest rank."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


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
        windows_given: bool = False,
    ) -> None:
        self.project = project
        #: The job file states the windows (``[limits] mutation_rate``) rather than leaving the
        #: documented defaults: until a rejection proves them wrong, ``mutation_cap`` trusts them.
        self.windows_given = windows_given
        # Every attempt counts in every window from before its send until its answer + window.
        self._attempts = Attempts()
        self.windows = [SlidingWindow(w, self._attempts) for w in mutation_windows]
        self._read_limiters = [AsyncLimiter(w.limit, w.seconds) for w in read_windows]
        self.max_concurrency = concurrency
        self.read_concurrency = concurrency
        self._in_flight = 0
        #: The start line the first mutation awaits, till it has returned once (``hold_mutations``).
        self._hold: Callable[[], Awaitable[None]] | None = None
        #: Tasks waiting for a request slot, first come first (a mutation cleared to go before
        #: any read): each wakes on its event and looks again.
        self._mutation_waiters: deque[anyio.Event] = deque()
        self._read_waiters: deque[anyio.Event] = deque()
        # Taken without a trip through the event loop when nobody holds it (most mutations).
        self._mutation_lock = anyio.Lock(fast_acquire=True)
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
        self.grid = grid_for(self.windows)
        self._round = [c + ROUND_PROBE_MARGIN for c in round_durations(self.windows)]
        self._horizon = self.grid[-1] + SEND_MARGIN
        self._times: list[float] = []
        self._base = 0
        self.accepted = [0] * len(self.grid)  # at face value
        self.accepted_exact = [0] * len(self.grid)  # from attempts that were alone in flight
        # Attempts in flight together may reach the server in another order than we sent them,
        # so a count at face value may be off by up to this much; one alone in flight is exact.
        # (the most mutations ever in flight together, less one).
        self._mutations_in_flight = 0
        self._peak_in_flight = 1
        self._mutation_freed: anyio.Event | None = None
        self._answer_came: anyio.Event | None = None  # set when any mutation's answer arrives
        self._round_trips: deque[float] = deque(maxlen=ROUND_TRIP_SAMPLES)
        self._read_round_trips: deque[float] = deque(maxlen=ROUND_TRIP_SAMPLES)
        self._turns = 0  # mutations between their precondition read and their answer
        self._turn_waiters: deque[anyio.Event] = deque()  # first come first, woken one by one
        self._ready = 0  # turns that have read (or are reading) and not sent yet
        self._ledger_refuses_until = -math.inf  # the ledger's last refusal: retry then
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
        # The quota ledger shared with other processes (bound once the project is identified).
        self._ledger: tuple[QuotaLedger, str, Waiter] | None = None
        self._tokens = 0  # reservations made in the ledger (each one's token is waiter:n)
        self._reserved: str | None = None  # the token of the reservation just made
        self._published: list[Rule] = []
        self._published_at = -math.inf
        #: The store whose send times are still to be counted (``_restore``, at the first mutation).
        self._unrestored = store

    @property
    def has_ledger(self) -> bool:
        return self._ledger is not None

    def bind_ledger(self, ledger: QuotaLedger, project_key: str, waiter: Waiter) -> None:
        """Reserve every mutation in ``ledger`` under ``project_key`` from now on."""
        self._ledger = (ledger, project_key, waiter)

    async def _restore(self) -> None:
        """Count the send times earlier runs left in the store, once, before the first mutation
        (the caller holds the mutation lock): read and compacted on a worker thread."""
        store = self._unrestored
        if store is None:
            return
        since = self._clock() - self._horizon

        def read() -> list[tuple[float, float | None]]:
            attempts = store.load(since=since)
            store.compact(attempts)
            return attempts

        for sent, answer in await anyio.to_thread.run_sync(read):
            # An attempt whose answer was never recorded may have been in flight till its lease.
            self._attempts.restore(sent + ANSWER_LEASE_S if answer is None else answer)
            self._times.append(sent)
        self._unrestored = None

    # -- slots ------------------------------------------------------------------------------
    @asynccontextmanager
    async def read_slot(self) -> AsyncIterator[None]:
        _ATTEMPT.set(None)
        for limiter in self._read_limiters:
            await limiter.acquire()
        async with self._slot(lambda: self.read_concurrency):
            await self._wait_pause()
            sent = self._clock()
            yield
            self._read_round_trips.append(self._clock() - sent)

    def hold_mutations(self, until: Callable[[], Awaitable[None]] | None) -> None:
        """Send no mutation before ``until()`` has returned (a fleet's start line); reads go on.

        The first mutation calls it once it is ready to go (its windows allow it, its
        reservation is made), or before it would wait for the project's windows or quota."""
        self._hold = until

    @asynccontextmanager
    async def mutation_slot(self, read_at: float | None = None) -> AsyncIterator[None]:
        """Hold one mutation attempt: the caller sends it, and leaves once its answer (or the
        error) has arrived; a cancelled attempt keeps its ledger lease (it may still arrive).

        ``read_at`` (``now()`` before the read it was checked against): raise
        :class:`StaleRead` instead of sending, if that read is too old by the time it may go."""
        probe_done: anyio.Event | None = None
        sent: float | None = None
        token: str | None = None
        answered = False
        slot = False
        try:
            # One waiter at a time, so mutations leave in arrival order and windows stay exact.
            async with self._mutation_lock:
                # Only the mutation next in line holds a request slot while it waits (taken
                # before any waiting read): the others wait for the lock holding none, so the
                # reads of the tasks behind them go on meanwhile, and this one is sent the moment
                # its windows allow, never queued behind reads.
                await self._take_slot(lambda: self.max_concurrency, mutation=True)
                slot = True
                await self._restore()
                probe, token = await self._clear_to_send(read_at)
                now = sent = self._clock()
                self._leave_queue(_TURN.get())
                self._mutations_in_flight += 1
                self._peak_in_flight = max(self._peak_in_flight, self._mutations_in_flight)
                self._attempts.sent()
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
            try:
                yield
            except anyio.get_cancelled_exc_class():
                raise
            except BaseException as exc:
                answered = not isinstance(exc, KeyboardInterrupt)  # an error is an answer
                raise
            else:
                answered = True
        finally:
            if slot:
                self._free_slot()
            # Released last, with no await after it: the caller's on_success or on_rate_limited
            # runs before the next mutation looks at the state.
            if sent is not None:
                answer = self._clock()
                self._mutations_in_flight -= 1
                # A cancelled attempt may still reach the server: in this process it counts from
                # now (the run is ending); in the ledger its lease stands.
                self._attempts.answered(answer)
                self._round_trips.append(answer - sent)
                if answered and self._store is not None:
                    self._store.answered(sent, answer)
                if answered and token is not None and self._ledger is not None:
                    self._ledger[0].answered(self._ledger[1], token)
                if self._mutation_freed is not None:
                    self._mutation_freed.set()
                    self._mutation_freed = None
                if self._answer_came is not None:
                    self._answer_came.set()
                    self._answer_came = None
            if probe_done is not None:
                self._probe_done = None
                probe_done.set()

    async def _clear_to_send(self, read_at: float | None) -> tuple[Probe | None, str | None]:
        """Wait until the next attempt may go (the caller holds the mutation lock): within the
        windows, reserved in the ledger, past the start line (``hold_mutations``) and below the
        in-flight cap; what it probes, and its reservation's token.

        The reservation is made first, while the attempts ahead are still in flight (pipelined):
        the ledger's round trip (a thread, and the event loop's turn to hear back, 10 ms and
        more in a busy fleet) then overlaps their answers instead of following them. It counts
        from before the send, as ever, only earlier. Once the attempts ahead leave room, the
        windows are looked at again; if anything changed meanwhile (a 429, a window that now
        asks to wait, another probe) the reservation is given back as if answered now (it
        counts one window more in the ledger: only more conservative) and all starts again.
        A read too old to send on (``read_at``) raises :class:`StaleRead`, before anything is
        reserved where it can be.
        """
        while True:
            probe = await self._wait_for_windows()
            self._check_fresh(read_at)
            while (wait := await self._reserve(probe)) > 0:
                # Other processes hold the project's quota (first at the start line, if not yet).
                self._ledger_refuses_until = self._clock() + wait
                await (self._pass_line() if self._hold is not None else self._sleep(wait))
                probe = await self._wait_for_windows()
                self._check_fresh(read_at)
            token = self._reserved
            if self._hold is None and self._mutations_in_flight < self.mutation_cap():
                return probe, token
            rejections = self.rejections
            try:
                await self._pass_line()
                while self._mutations_in_flight >= self.mutation_cap():
                    self._mutation_freed = freed = anyio.Event()
                    await freed.wait()
            except BaseException:
                self._give_back(token)
                raise
            delay, again = self._windows_now()
            if (
                delay <= 0
                and again == probe
                and self.rejections == rejections
                and self._probe_done is None
            ):
                if self._is_stale(read_at):  # the start line can hold it long
                    self._give_back(token)
                    raise StaleRead
                return probe, token
            self._give_back(token)

    # -- precondition reads -----------------------------------------------------------------
    def now(self) -> float:
        """The governor's clock, for ``mutation_slot(read_at=...)``."""
        return self._clock()

    def read_max_age(self) -> float:
        """How old a precondition read may be when its mutation is sent."""
        return READ_MAX_AGE_S + 4 * (self.expected_round_trip() or 0.0)

    def _is_stale(self, read_at: float | None) -> bool:
        return read_at is not None and self._clock() - read_at > self.read_max_age()

    def _check_fresh(self, read_at: float | None) -> None:
        if self._is_stale(read_at):
            raise StaleRead

    @asynccontextmanager
    async def mutation_turn(self) -> AsyncIterator[None]:
        """A mutation's turn, from its precondition read to its answer (``mutation_slot``).

        Turns open at once are bounded by what the in-flight cap can send before a read goes
        stale (``_turn_limit``), and each reads only once the windows would let it go
        ``READ_LEAD_MIN_S`` later, counting the turns queued ahead of it: a window's mutations
        are read before it opens, none long before it can go, and none goes stale waiting.
        """
        if self._turn_waiters or self._turns >= self._turn_limit():
            await self._wait_for_turn()
        self._turns += 1
        turn = _Turn()
        reset = _TURN.set(turn)
        try:
            await self.wait_to_read()
            yield
        finally:
            self._leave_queue(turn)
            _TURN.reset(reset)
            self._turns -= 1
            if self._turn_waiters:
                self._turn_waiters.popleft().set()

    def _turn_limit(self) -> int:
        """Turns open at once: those in flight, and as many as the cap's pace sends within
        ``READ_MAX_AGE_S`` (so a read made for one never goes stale behind the others)."""
        cap = self.mutation_cap()
        rtt = self.expected_round_trip() or READ_LEAD_DEFAULT_S
        return cap * (1 + max(2, math.floor(READ_MAX_AGE_S / rtt)))

    async def _wait_for_turn(self) -> None:
        """Wait in line for a turn: each one that ends wakes the next waiter (not all of them)."""
        granted = anyio.Event()
        self._turn_waiters.append(granted)
        try:
            while True:
                await granted.wait()
                if self._turns < self._turn_limit():
                    break
                granted = anyio.Event()  # the cap fell meanwhile: first in line for the next
                self._turn_waiters.appendleft(granted)
        except BaseException:
            if granted in self._turn_waiters:
                self._turn_waiters.remove(granted)
            elif self._turn_waiters:
                self._turn_waiters.popleft().set()  # woken while cancelled: pass it on
            raise
        if self._turns + 1 < self._turn_limit() and self._turn_waiters:
            self._turn_waiters.popleft().set()  # the cap rose meanwhile: room for one more

    async def wait_to_read(self) -> None:
        """Wait until a precondition read made now would be fresh when its mutation may go
        (within a mutation turn, behind the turns already queued to send)."""
        turn = _TURN.get()
        self._leave_queue(turn)  # reading again: its place is taken anew
        while True:
            delay = self._read_delay(self._ready)
            lead = max(READ_LEAD_MIN_S, 4 * self._read_round_trip())
            if delay <= lead:
                break
            await self._sleep(min(delay - lead, WAIT_SLICE_S) if delay < math.inf else self._full())
        if turn is not None:
            turn.ready = True
            self._ready += 1

    def _full(self) -> float:
        """How long to wait when the window's room is taken by attempts in flight or queued
        ahead: each frees its place one window after it is answered, so not for a window's span
        (less the lead); but those queued may leave without sending, so look again well before."""
        spans = [w.span for w in self.windows] or [WAIT_SLICE_S]
        return max(READ_POLL_S, min(WAIT_SLICE_S, min(spans) - READ_LEAD_MIN_S))

    def _leave_queue(self, turn: _Turn | None) -> None:
        if turn is not None and turn.ready:
            turn.ready = False
            self._ready -= 1

    def _read_delay(self, ahead: int) -> float:
        """Seconds until a mutation with ``ahead`` others queued before it may go: the next
        one's wait (pause, learned windows, probes), each configured window's for the one after
        ``ahead`` more, and the ledger's last refusal (each one a time, not a count of others to
        go first, so sleeping until it is never early)."""
        now = self._clock()
        delay = max(self._windows_now()[0], self._ledger_refuses_until - now)
        for w in self.windows:
            delay = max(delay, w.attempts.wait(w.limit - ahead, w.span, now))
        return delay

    def _read_round_trip(self) -> float:
        if not self._read_round_trips:
            return READ_LEAD_DEFAULT_S
        return _quantile(self._read_round_trips, 0.9)

    async def _pass_line(self) -> None:
        """Wait at the start line (``hold_mutations``) if not passed yet: the first mutation does,
        once ready to go or before it waits for the project's quota, whichever comes first, so
        a fleet's projects all leave together and none waits on another's quota."""
        if self._hold is not None:
            await self._hold()
            self._hold = None

    def _give_back(self, token: str | None) -> None:
        """A reservation that will not be sent: counted as answered now (never freed sooner)."""
        if token is not None and self._ledger is not None:
            self._ledger[0].answered(self._ledger[1], token)

    async def _reserve(self, probe: Probe | None) -> float:
        """Reserve this mutation's slot in the shared ledger: 0.0, or the seconds to wait first.

        Our learned limits go with it whenever they changed (or before they expire there); a
        probe beyond them is not refused by the learned limits (its configured windows hold).
        """
        self._reserved = None
        if self._ledger is None:
            return 0.0
        ledger, key, waiter = self._ledger
        learned = sorted({rule for w in self.learned for rule in w.rules})
        now = self._clock()
        stale = bool(learned) and now - self._published_at > LEARNED_TTL_S / 2
        publish = learned if learned != self._published or stale else None
        token = f"{waiter.id}:{self._tokens}"
        wait = await ledger.reserve(
            key,
            [(w.limit, w.configured.seconds) for w in self.windows],
            waiter,
            publish=publish,
            probe=probe is not None and probe[0] in ("duration", "count"),
            token=token,
        )
        if publish is not None:
            self._published, self._published_at = publish, now
        if wait <= 0:
            self._tokens += 1
            self._reserved = token
        return wait

    def round_trip(self) -> float | None:
        """A mutation's round trip (send to answer): the p90 of the recent ones; None before any."""
        if not self._round_trips:
            return None
        return _quantile(self._round_trips, 0.9)

    def expected_round_trip(self) -> float | None:
        """The round trip a mutation sent now should take: measured on mutations once one has
        been answered; before that, the median of the reads' (the same server and network; a
        write usually takes longer than a read, so this errs low, which keeps the cap low)."""
        measured = self.round_trip()
        if measured is not None or not self._read_round_trips:
            return measured
        return _quantile(self._read_round_trips, 0.5)

    def pace(self) -> float:
        """Attempts per second the windows allow over the next ``PACE_HORIZON_S`` (the tightest)."""
        rules = [(w.limit, w.configured.seconds) for w in self.windows]
        rules += [rule for w in self.learned for rule in w.rules]
        horizon = PACE_HORIZON_S
        return min(
            (limit * max(1, math.ceil(horizon / seconds)) / horizon for limit, seconds in rules),
            default=math.inf,
        )

    def mutation_cap(self) -> int:
        """Mutations allowed in flight: enough to keep up the pace over one round trip, no more.

        The windows pace the sends; attempts in flight only cover latency, and each one is an
        attempt a server window we do not know yet can reject when it fills. One at a time until
        a round trip (of a mutation, or else of a read) has been measured.

        Windows the job file states are the user's word for the server's: until the first
        rejection, a quarter of the smallest one's count may be in flight (``TRUSTED_SHARE``), so
        its burst goes out in about 4 round trips; a wrong word costs at most that many rejected
        attempts, once, and then the cap and learning are as for the defaults. Under sliding
        windows every later burst repeats the first one's spread, so this is what keeps a known
        quota's makespan near its minimum.
        """
        rtt = self.expected_round_trip()
        if rtt is None:
            return 1
        pace = self.pace()
        if math.isinf(pace):
            return self.max_concurrency
        cap = math.ceil(pace * rtt) + 1
        if self.windows_given and not self.rejections and not self.learned:
            cap = max(cap, math.ceil(min(w.limit for w in self.windows) / TRUSTED_SHARE))
        return max(1, min(self.max_concurrency, cap))

    @asynccontextmanager
    async def _slot(self, limit: Callable[[], int]) -> AsyncIterator[None]:
        await self._take_slot(limit, mutation=False)
        try:
            yield
        finally:
            self._free_slot()

    async def _take_slot(self, limit: Callable[[], int], *, mutation: bool) -> None:
        """Take one of the requests in flight (``limit()`` of them at most), first come first
        served, a mutation before any read. Taken and freed without a trip through the event loop
        when one is free (an ``anyio.Condition`` cost a checkpoint each way, for every request);
        a freed slot is handed to the first waiter (``_fill``), so a task that frees one and asks
        again at once (a worker draining a queue) never takes it from those already waiting."""
        if mutation:
            queued = bool(self._mutation_waiters)
        else:
            queued = bool(self._mutation_waiters or self._read_waiters)
        if not queued and self._in_flight < max(1, limit()):
            self._in_flight += 1
            return
        granted = anyio.Event()
        (self._mutation_waiters if mutation else self._read_waiters).append(granted)
        try:
            await granted.wait()  # set once the slot is this task's (counted in _in_flight)
        except BaseException:
            if granted.is_set():
                self._free_slot()  # handed a slot while being cancelled: pass it on
            else:
                (self._mutation_waiters if mutation else self._read_waiters).remove(granted)
                self._fill()  # a read may have waited behind this mutation alone
            raise

    def _free_slot(self) -> None:
        self._in_flight -= 1
        self._fill()

    def _fill(self) -> None:
        """Hand free slots to the waiters, mutations first, reads within the read lane (which
        a 429 narrows and successes widen again, ``on_success`` calls this then)."""
        mutations, reads = self._mutation_waiters, self._read_waiters
        while mutations and self._in_flight < max(1, self.max_concurrency):
            self._in_flight += 1
            mutations.popleft().set()
        while not mutations and reads and self._in_flight < max(1, self.read_concurrency):
            self._in_flight += 1
            reads.popleft().set()

    async def _wait_pause(self) -> None:
        while (delay := self.paused_until - self._clock()) > 0:
            await self._sleep(delay)

    async def _wait_for_windows(self) -> Probe | None:
        """Wait until the next mutation may go; what it probes if it goes single file."""
        while True:
            if self._probe_done is not None:
                await self._probe_done.wait()
                continue
            delay, probe = self._windows_now()
            if delay <= 0:
                return probe
            if self._hold is not None:
                await self._pass_line()  # the windows wait: never hold the fleet's start up
                continue
            short = delay <= SHORT_WAIT_S
            if self._ledger is not None and not short:
                await self._ledger[0].flush()  # answers queued for the ledger go before we wait
            if math.isinf(delay):
                # Only an answer still due frees a slot: wait for the next one to arrive.
                await self._next_answer()
                continue
            delay = min(delay, WAIT_SLICE_S) if self.learned else delay
            if self._ledger is not None and self._attempts.in_flight and not short:
                # An answer that arrives meanwhile goes to the ledger at once (other processes
                # see our lease end), so the wait is cut short by it.
                await self._sleep_or_answer(delay)
            else:
                await self._sleep(delay)

    def _windows_now(self) -> tuple[float, Probe | None]:
        """``(0.0, what it probes)`` if the next mutation may go now, else ``(seconds to wait,
        None)`` (``inf``: until an answer arrives)."""
        now = self._clock()
        base = max([self.paused_until - now] + [w.wait_time(now) for w in self.windows])
        # A learned rule's duration is already an upper bound, counted from the answers.
        waits = [(self._answers_wait(w.rules, now), w) for w in self.learned]
        strict = max([base] + [wait for wait, _ in waits])
        if strict <= 0:
            return 0.0, ("after-429", None) if self._cautious else None
        found = self._probe_wait(now, base, waits)
        if found is not None and found[0] <= 0:
            return 0.0, found[1]
        return (strict if found is None else min(strict, found[0])), None

    async def _next_answer(self) -> None:
        self._answer_came = came = self._answer_came or anyio.Event()
        await came.wait()

    async def _sleep_or_answer(self, delay: float) -> None:
        async with anyio.create_task_group() as group:

            async def wake(wait: Callable[[], Awaitable[None]]) -> None:
                await wait()
                group.cancel_scope.cancel()

            group.start_soon(wake, lambda: self._sleep(delay))
            group.start_soon(wake, self._next_answer)

    def _answers_wait(self, rules: list[Rule], now: float) -> float:
        """Seconds until one more attempt fits ``rules`` (``inf``: not before an answer)."""
        waits = [self._attempts.wait(limit, answer_span(s), now) for limit, s in rules]
        return max(waits, default=0.0)

    def _rules_wait(self, rules: list[Rule], now: float, margin: float) -> float:
        """The same over send times (a probe's relaxed rules are questions in send time)."""
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
        target = None if pinned or w.probes_left <= 0 else self._probe_target(low, top)
        if target is not None:
            # "Same limits, shorter duration": if the server takes it, the longer durations are
            # ruled out; if not, the shorter ones are.
            return "duration", [(limit, min(seconds, target)) for limit, seconds in w.rules]
        quiet = max(QUIET_SPANS * (top or grid[-1]), QUIET_MIN_S)
        if now - w.quiet_since >= quiet:
            w.bonus_due = True
        if w.bonus_due:
            return "count", [(limit + 1, seconds) for limit, seconds in w.rules]
        return None

    def _probe_target(self, low: float, top: float | None) -> float | None:
        """The duration the next duration probe tests, or None if none is worth its risk.

        Unbounded (no acceptance has capped it): the first round duration beyond ``low`` within
        the geometric step, else the step. Waiting is what an unbounded window costs, so this
        probe always goes.

        Bounded: the rule already enforces the upper bound (no trap, at most one geometric step
        slower than the truth), so a finer bound only saves a fraction of the pace, and each
        probe may cost a rejection: it goes only while rejections stay within ``REFINE_BUDGET``
        of the attempts, which long jobs can afford and short ones cannot. It tests a round
        duration inside the range; else, if a round duration explains the upper bound, just
        below it (rejected: the window is pinned; taken: the round guess was wrong); else the
        geometric mid-point.
        """
        step = PINNED_SECONDS / 2  # closer than this to a bound, a probe cannot tell
        if top is None:
            ceiling = min(PROBE_STRETCH * low, low + max(low, PROBE_OVERSHOOT_S))
            ceiling = min(ceiling, math.sqrt(low * self.grid[-1]))
            return next((c for c in self._round if low + step < c <= ceiling), ceiling)
        if self.rejections + 1 > REFINE_BUDGET * self.mutations_sent:
            return None
        middle = math.sqrt(low * top)
        inside = [c for c in self._round if low + step < c < top - step]
        if inside:
            return min(inside, key=lambda c: abs(math.log(c / middle)))
        if any(top - 2 * step <= c <= top for c in self._round):
            return max(middle, top / CONFIRM_RATIO)
        return middle

    def _trim_evidence(self, now: float) -> None:
        old = bisect_right(self._times, now - self._horizon)
        if old > 1024:
            del self._times[:old]
            self._base += old
        self._attempts.trim(now, self._horizon)

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
        slack = self._peak_in_flight - 1
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
            self._fill()
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
            probe = self._probes.get(seq) if attempt is not None else None
            if probe is None or probe[0] not in ("duration", "count"):
                self._consecutive_429 += 1  # a probe of ours that failed is no sign of trouble
            if retry_after is not None:
                pause = retry_after
            else:
                ceiling = min(PAUSE_CAP, PAUSE_BASE * 2 ** max(0, self._consecutive_429 - 1))
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
        return least_seconds(mutations, rules)

    def __repr__(self) -> str:
        learned = ", ".join(w.describe(self.grid) for w in self.learned) or "none"
        measured = self.round_trip()
        rtt = "unmeasured" if measured is None else f"{1000 * measured:.0f} ms"
        return (
            f"<RateGovernor {self.project} in_flight={self._in_flight} "
            f"reads<={self.read_concurrency}/{self.max_concurrency} "
            f"mutations<={self.mutation_cap()} (round trip {rtt}) windows={self.windows} "
            f"learned=[{learned}] probes={self.probes_sent} rejections={self.rejections} "
            f"paused_for={max(0.0, self.paused_until - self._clock()):.1f}s>"
        )
