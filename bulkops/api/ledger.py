"""The quota ledger: one record of mutation reservations per project, shared by every process.

The mutation quota belongs to the project (across all keys and processes), so before a mutation
goes out its governor reserves a slot here. ``reserve`` is one atomic step: either it records a
reservation and returns 0, or it records nothing and returns the seconds until a retry can
succeed. Reservations simply age out of the windows, so a process killed while holding some
leaves nothing to release.

- A reservation is a *lease*: it is recorded at the ledger's "now" + ``LEASE_S`` (the longest an
  attempt can be in flight: the client's request timeout and some), so it counts in every window
  while its attempt is in flight. When the answer arrives the governor reports it
  (:meth:`QuotaLedger.answered`, which only queues the token with the moment it came) and
  the ledger moves the reservation to the answer's time: its own "now" when it records it,
  less the answer's age then (an elapsed time on this process's monotonic clock, so no skew
  between machines enters). The server counted the attempt on arrival, before that answer, so
  the slot frees one window after the answer and never earlier. Queued answers go
  with the process's next ledger call (a reservation of any project, in the same transaction or
  script), or in a :meth:`QuotaLedger.flush` a governor makes before it waits; so they cost no
  call of their own while mutations flow. An answer that cannot be recorded (the ledger gone,
  the reservation already aged out) leaves the lease, which is only more conservative.
- A process killed while attempts were in flight leaves their leases: they count until
  ``LEASE_S`` + the window after their reservation, then age out like any other. A caller whose
  slot only a lease would free polls every ``LEASE_POLL_S`` (its answer may come any moment).
- Times are the ledger's own clock (SQLite: this machine's; Redis: the server's), both for the
  lease and for the answer (dated back by its age), so machines whose clocks disagree still
  cannot double-book.

- Projects are keyed by their identity (``GET /console/v1/project``'s id), not by the key, so two
  keys of one project share one budget. A project served anywhere but the Console API's default
  base URL (a sandbox, an emulator, a proxy) is keyed ``id@base_url``: two unrelated sandboxes
  whose projects happen to have the same id never share a budget.
- Each reservation is checked against the caller's own windows (its job's ``[limits]``) counted
  over every process's reservations on the project, and against the limits any process learned
  from 429s on that project (published for ``LEARNED_TTL_S``).
- Waiters: a refused caller is registered (priority, waiting since, alive until its next planned
  retry + ``WAITER_GRACE_S``). A reservation is refused while the free slots do not exceed the live
  waiters ahead of the caller (a higher priority, or the same priority waiting longer); once a
  waiter reserves, it leaves the queue, so equal priorities take turns. A killed process's waiter
  stops counting once its planned retry plus the grace has passed.
- Fail closed: a ledger that cannot be reached raises :class:`LedgerUnavailable` (exit 4); a
  mutation is never sent unmetered.

Two implementations: :mod:`bulkops.api.ledger_sqlite` (the default, one file per user) and
:mod:`bulkops.api.ledger_redis` (for processes on several machines).
"""

from __future__ import annotations

import os
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bulkops.api._learning import ANSWER_LEASE_S, ANSWER_MARGIN, ANSWER_MARGIN_RATIO, answer_span
from bulkops.api.urls import ledger_url_problem, redacted
from bulkops.errors import LedgerUnavailable, UserError

#: Where the Console API lives; a project anywhere else is keyed with its base URL.
CONSOLE_BASE_URL = "https://statsigapi.net"
#: The environment variable naming the ledger (``redis://...`` or ``sqlite:///path``).
LEDGER_ENV = "BULKOPS_QUOTA_URL"
#: Seconds added to every window after a reservation's answer, as the governor adds to its own
#: (clock resolution and drift, see ``ANSWER_MARGIN``) ...
LEDGER_MARGIN = ANSWER_MARGIN
#: ... plus this share of the window (clock drift over long windows).
LEDGER_MARGIN_RATIO = ANSWER_MARGIN_RATIO
#: A reservation counts this long past its making until its answer moves it (the longest an
#: attempt can be in flight: the client's 60 s request timeout + 5 s).
LEASE_S = ANSWER_LEASE_S
#: A refused caller whose slot only an attempt in flight frees asks again this soon.
LEASE_POLL_S = 0.05
#: A refused waiter stays in the queue this long after its planned retry.
WAITER_GRACE_S = 2.0
#: Rows of waiters gone quiet are deleted after this long (their place in the queue is lost).
WAITER_PURGE_S = 600.0
#: How long a learned limit stays shared after the process that learned it last published it.
LEARNED_TTL_S = 3600.0
#: How long a job's windows stay on the ledger (and in ``bulkops quota``) after its last use.
WINDOW_TTL_S = 3600.0
#: The shortest wait a refusal returns, so a queue of waiters never spins.
MIN_RETRY_S = 0.005
#: ``[limits] priority`` values, in order.
PRIORITIES: Mapping[str, int] = {"low": 0, "normal": 1, "high": 2}


Rule = tuple[int, float]  # at most ``limit`` reservations per ``seconds`` (margin not included)


@dataclass(frozen=True)
class Waiter:
    """Who reserves: one governor of one process (``id`` is unique), its job and priority."""

    id: str
    job: str
    priority: str = "normal"

    @property
    def rank(self) -> int:
        return PRIORITIES[self.priority]


@dataclass(frozen=True)
class WindowUse:
    limit: int
    seconds: float
    reserved: int  # reservations inside the window now

    def as_dict(self) -> dict[str, object]:
        return {"window": describe_rule((self.limit, self.seconds)), "limit": self.limit,
                "seconds": self.seconds, "reserved": self.reserved}  # fmt: skip


@dataclass(frozen=True)
class LearnedLimit:
    limit: int
    seconds: float
    expires_in: float

    def as_dict(self) -> dict[str, object]:
        return {"limit": self.limit, "seconds": round(self.seconds, 3),
                "expires_in_s": round(self.expires_in, 1)}  # fmt: skip


@dataclass(frozen=True)
class WaitingJob:
    job: str
    priority: str
    since: float  # epoch seconds
    waiting: float  # seconds so far

    def as_dict(self) -> dict[str, object]:
        return {"job": self.job, "priority": self.priority, "waiting_since": self.since,
                "waiting_s": round(self.waiting, 1)}  # fmt: skip


@dataclass(frozen=True)
class ProjectQuota:
    """What ``bulkops quota`` shows of one project."""

    project: str
    windows: list[WindowUse] = field(default_factory=list)
    learned: list[LearnedLimit] = field(default_factory=list)
    waiting: list[WaitingJob] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "project": self.project,
            "windows": [w.as_dict() for w in self.windows],
            "learned": [w.as_dict() for w in self.learned],
            "waiting": [w.as_dict() for w in self.waiting],
        }


class QuotaLedger(Protocol):
    """A project-wide record of mutation reservations, shared by every bulkops process."""

    #: Where the ledger is, for messages (any password redacted).
    url: str

    async def check(self) -> None:
        """Raise :class:`LedgerUnavailable` unless the ledger can be read and written."""

    async def reserve(
        self,
        project: str,
        rules: Sequence[Rule],
        waiter: Waiter,
        *,
        publish: Sequence[Rule] | None = None,
        probe: bool = False,
        token: str | None = None,
    ) -> float:
        """Reserve one mutation slot (0.0) or say how many seconds until a retry can succeed.

        ``publish``: the caller's learned limits, replacing what it shared before (``[]``
        withdraws them). ``probe``: the caller deliberately tests beyond its learned limits, so
        learned limits do not refuse it (its configured windows still do). ``token`` (unique
        per reservation, e.g. ``waiter-id:n``): the reservation is a lease until
        :meth:`answered` names it; without one it counts from now (a caller that reports no
        answers, or one already answered).
        """

    def answered(self, project: str, token: str) -> None:
        """The answer of the attempt reserved as ``token`` arrived: queue moving its reservation
        to the answer time (done by the next call, or :meth:`flush`). Never waits, never raises."""

    async def flush(self) -> None:
        """Record the queued answers now (nothing to do: returns at once). A ledger that cannot
        be reached leaves their leases, and says so in the log; the next reservation fails."""

    async def leave(self, project: str, waiter_id: str) -> None:
        """Take a waiter out of the queue (its process is done with the project)."""

    async def report(self, projects: Sequence[str] | None = None) -> list[ProjectQuota]:
        """Every project on the ledger (or just ``projects``), for ``bulkops quota``."""

    async def aclose(self) -> None: ...


# -- the decision, shared by the implementations (the Redis script mirrors it) ---------------
def wait_needed(times: Sequence[float], rules: Sequence[Rule], now: float, ahead: int) -> float:
    """Seconds until a slot is free for us behind ``ahead`` waiters; 0.0 if one is now.

    ``times`` are the project's reservations, sorted (leases of attempts in flight lie ahead of
    ``now``). Under each rule at most ``limit`` fit in ``seconds`` (+ the margins); we need
    ``ahead + 1`` free slots, so we wait for the reservation whose ageing out frees the last of
    them; if that one is a lease, its answer can free it any moment: ask again soon.
    """
    worst = 0.0
    blocked = False
    for limit, seconds in rules:
        span = answer_span(seconds)
        first = bisect_right(times, now - span)
        count = len(times) - first
        index = count - limit + ahead
        if index < 0:
            continue
        blocked = True
        if count:
            at = times[first + min(index, count - 1)]
            worst = max(worst, LEASE_POLL_S if at > now else at + span - now)
    return max(worst, MIN_RETRY_S) if blocked else 0.0


def ahead_of(waiter: Waiter, since: float, others: Sequence[tuple[str, int, float]]) -> int:
    """Live waiters ``(id, rank, since)`` queued before ``waiter``: higher rank, or equal and older."""
    return sum(
        1
        for other_id, rank, other_since in others
        if other_id != waiter.id
        and (rank > waiter.rank or (rank == waiter.rank and other_since < since))
    )


# -- naming -------------------------------------------------------------------------------
def project_key(identity: str, base_url: str) -> str:
    """The ledger's key for a project: its id, with the base URL unless it is the Console API's."""
    base = base_url.rstrip("/")
    return identity if base == CONSOLE_BASE_URL else f"{identity}@{base}"


def describe_rule(rule: Rule) -> str:
    """``(100, 10.0)`` -> ``100/10s``; ``(900, 900.0)`` -> ``900/15min``."""
    limit, seconds = rule
    for unit, size in (("h", 3600.0), ("min", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{limit}/{seconds / size:g}{unit}"
    return f"{limit}/{round(seconds, 3):g}s"


def default_ledger_path(env: Mapping[str, str] | None = None) -> Path:
    """``$BULKOPS_HOME/quota.sqlite``, else ``$XDG_STATE_HOME/bulkops/quota.sqlite``, else
    ``~/.local/state/bulkops/quota.sqlite``."""
    env = os.environ if env is None else env
    if env.get("BULKOPS_HOME"):
        return Path(env["BULKOPS_HOME"]).expanduser() / "quota.sqlite"
    state = env.get("XDG_STATE_HOME") or str(Path("~/.local/state").expanduser())
    return Path(state).expanduser() / "bulkops" / "quota.sqlite"


def ledger_url(job_ledger: str | None, env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The ledger a command uses and where that came from (for messages).

    ``BULKOPS_QUOTA_URL`` wins over a job file's ``[limits] ledger``, as the environment's
    settings win over job files (``--base-url`` over ``base_url``): the machine's operator knows
    which ledger its processes share. Without either: the SQLite file in the state directory.
    """
    env = os.environ if env is None else env
    given = env.get(LEDGER_ENV, "").strip()
    if given:
        problem = ledger_url_problem(given)
        if problem:
            raise UserError(
                f"the environment variable {LEDGER_ENV} is {redacted(given)!r}: {problem}. "
                f"Set it to redis://HOST:PORT/DB or sqlite:///PATH, or unset it to use "
                f"{default_ledger_path(env)}."
            )
        return given, f"${LEDGER_ENV}"
    if job_ledger:
        return job_ledger, "[limits] ledger"
    return "sqlite://" + str(default_ledger_path(env)), "the default"


def open_ledger(url: str) -> QuotaLedger:
    """The ledger ``url`` names (already checked by :func:`ledger_url_problem`)."""
    if url.startswith("sqlite://"):
        from bulkops.api.ledger_sqlite import SqliteLedger

        return SqliteLedger(Path(url.removeprefix("sqlite://")))
    from bulkops.api.ledger_redis import RedisLedger

    return RedisLedger(url)


def unavailable(url: str, reason: str, fix: str) -> LedgerUnavailable:
    return LedgerUnavailable(
        f"the quota ledger {redacted(url)} cannot be used: {reason}. Nothing was sent: every "
        f"mutation reserves its slot there first. {fix} Then run the same command again."
    )


def rules_key(rules: Sequence[Rule]) -> list[list[float]]:
    """Rules as JSON-able pairs, sorted, without duplicates."""
    return [[int(limit), float(seconds)] for limit, seconds in sorted(set(rules))]
