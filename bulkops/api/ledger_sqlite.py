"""The quota ledger in one SQLite file: every bulkops process of the user (or sharing the file).

WAL mode, a busy timeout, and ``BEGIN IMMEDIATE`` around every reservation: the check and the
record are one transaction, so two processes can never both take the last slot. Times are this
machine's clock (every process reading the file shares it). Every call runs in a worker thread,
one at a time per process: sqlite blocks, and the event loop must not.

A reservation is a row ``(project, at)`` with ``at`` its lease's end (now + ``LEASE_S``); its
answer is one ``UPDATE`` of that row (found by rowid *and* its lease time, so a row reused after
the lease aged out is never touched) to the answer's "now", in the same transaction as the
process's next reservation (or a flush), never to later than its lease. The table is the one
earlier versions wrote, unchanged.

A reservation decides with four statements (learned limits, the reservations inside the caller's
own windows, the waiters, the record); the upkeep (recording the caller's windows, deleting rows
aged out of every window) runs every ``SWEEP_S`` per project and process, or at once for windows
this process has not recorded yet. Rows aged out but not yet swept never count. Each statement
gives up the GIL and takes it back, which behind a busy event loop can cost a switch interval, so
in a fleet's bursts fewer statements mean shorter reservations.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio
import structlog

from bulkops.api._learning import answer_span
from bulkops.api.ledger import (
    LEARNED_TTL_S,
    LEASE_S,
    PRIORITIES,
    WAITER_GRACE_S,
    WAITER_PURGE_S,
    WINDOW_TTL_S,
    LearnedLimit,
    ProjectQuota,
    Rule,
    Waiter,
    WaitingJob,
    WindowUse,
    ahead_of,
    unavailable,
    wait_needed,
)
from bulkops.errors import LedgerUnavailable

T = TypeVar("T")
log = structlog.get_logger("bulkops.ledger")

#: How long a reservation waits for another process's transaction before the ledger counts as
#: unreachable (transactions take well under a millisecond; this is a stuck or dead file).
BUSY_TIMEOUT_MS = 10_000
#: A project's upkeep (windows recorded, aged rows deleted) runs at most this often per process.
SWEEP_S = 5.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS reservations (project TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS reservations_by_time ON reservations (project, at);
CREATE TABLE IF NOT EXISTS windows (
    project TEXT NOT NULL, lim INTEGER NOT NULL, seconds REAL NOT NULL, used REAL NOT NULL,
    PRIMARY KEY (project, lim, seconds));
CREATE TABLE IF NOT EXISTS learned (
    project TEXT NOT NULL, publisher TEXT NOT NULL, lim INTEGER NOT NULL, seconds REAL NOT NULL,
    expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS waiters (
    project TEXT NOT NULL, waiter TEXT NOT NULL, job TEXT NOT NULL, priority INTEGER NOT NULL,
    since REAL NOT NULL, alive_until REAL NOT NULL, PRIMARY KEY (project, waiter));
"""
_NAMES = {rank: name for name, rank in PRIORITIES.items()}


class SqliteLedger:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.url = f"sqlite://{path}"
        self._clock = clock
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        #: The one thread that runs this ledger's transactions, one after the other, taking
        #: the next as soon as one ends (``_call``).
        self._thread: _Worker | None = None
        #: Answers queued on the event loop (token, time.monotonic() at the answer), drained by
        #: the next transaction, which dates each one back from its "now" by its age.
        self._answers: deque[tuple[str, float]] = deque()
        #: Leases made by this process and not yet answered: token -> (rowid, lease end).
        self._leases: dict[str, tuple[int, float]] = {}
        self.answers_recorded = 0  # (for tests and measurements)
        #: Per project: when this process last swept it, and the windows it recorded then.
        self._swept: dict[str, tuple[float, set[Rule]]] = {}

    # -- plumbing ---------------------------------------------------------------------------
    async def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in a transaction on the ledger's own thread. Calls queue there, not on
        the event loop: under a burst of reservations (every project of a fleet at once) each
        starts as soon as the previous ends, instead of one loop iteration later, as a
        ``CapacityLimiter(1)`` of anyio's worker threads made it. Like a worker thread's call it
        is never abandoned half-way: a cancelled caller still waits for its transaction's end."""
        future = self._executor().submit(lambda: self._locked(work))
        with anyio.CancelScope(shield=True):
            result = await asyncio.wrap_future(future)
        return result

    def _executor(self) -> _Worker:
        if self._thread is None or self._thread.pid != os.getpid():  # (anew in a forked child)
            self._thread = _Worker()
        return self._thread

    def _locked(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                return work(self._connection())
            except sqlite3.Error as exc:
                self._forget()
                raise unavailable(
                    self.url,
                    str(exc),
                    f"Check that {self.path} is a writable SQLite file (and its folder is "
                    "writable), or point BULKOPS_HOME (or BULKOPS_QUOTA_URL) elsewhere.",
                ) from exc
            except OSError as exc:
                raise unavailable(
                    self.url,
                    f"{exc.strerror or exc} ({exc.filename or self.path.parent})",
                    "Make the folder writable, or set BULKOPS_HOME (or BULKOPS_QUOTA_URL) to "
                    "another place.",
                ) from exc

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
            while True:
                try:
                    self._db = self._open()
                    break
                except sqlite3.OperationalError as exc:
                    # Switching a new file to WAL takes its lock without waiting on the busy
                    # timeout: processes (or projects) opening it at once try again shortly.
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)  # a worker thread's: the event loop never runs this
        return self._db

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
            check_same_thread=False,
        )  # fmt: skip
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.executescript(SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def _forget(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _transaction(self, db: sqlite3.Connection, work: Callable[[float], T]) -> T:
        db.execute("BEGIN IMMEDIATE")
        try:
            now = self._clock()  # "now" is read once the write lock is held
            self._record_answers(db, now)
            result = work(now)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    def _record_answers(self, db: sqlite3.Connection, now: float) -> None:
        """Move the queued answers' reservations to ``now`` (lost if the transaction fails:
        their leases stand, which is only more conservative)."""
        rows = []
        while self._answers:
            token, answered = self._answers.popleft()
            lease = self._leases.pop(token, None)
            if lease is not None:
                age = max(0.0, time.monotonic() - answered)
                rows.append((min(now, now - age), lease[0], lease[1]))
        if rows:
            # Never later than its lease: an answer after the lease ended (its row not swept
            # yet) brings nothing back; the lease was the longest the attempt could be in flight.
            db.executemany(
                "UPDATE reservations SET at = min(at, ?) WHERE rowid = ? AND at = ?", rows
            )
            self.answers_recorded += len(rows)

    # -- answers ----------------------------------------------------------------------------
    def answered(self, project: str, token: str) -> None:
        self._answers.append((token, time.monotonic()))

    async def flush(self) -> None:
        if not self._answers:
            return

        def work(db: sqlite3.Connection) -> None:
            if self._answers:  # a reservation may have taken them meanwhile
                self._transaction(db, lambda now: None)

        try:
            await self._call(work)
        except LedgerUnavailable as exc:
            log.warning("bulkops.ledger.answers_not_recorded", ledger=self.url, error=str(exc))

    # -- the protocol -----------------------------------------------------------------------
    async def check(self) -> None:
        def probe(db: sqlite3.Connection) -> None:
            self._transaction(db, lambda now: db.execute("DELETE FROM waiters WHERE 0"))

        await self._call(probe)

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
        def work(db: sqlite3.Connection) -> float:
            return self._transaction(
                db,
                lambda now: self._reserve(db, now, project, rules, waiter, publish, probe, token),
            )

        return await self._call(work)

    def _reserve(
        self,
        db: sqlite3.Connection,
        now: float,
        project: str,
        rules: Sequence[Rule],
        waiter: Waiter,
        publish: Sequence[Rule] | None,
        probe: bool,
        token: str | None,
    ) -> float:
        # Four statements decide (learned limits, reservations, waiters, the record); the
        # upkeep goes every SWEEP_S per project, or at once for windows not recorded yet: each
        # statement gives up the GIL and must get it back, which under a busy event loop can
        # take a switch interval (5 ms), so the fewer the better.
        swept = self._swept.get(project)
        kept = set(rules)
        if swept is None or now - swept[0] >= SWEEP_S or not kept <= swept[1]:
            self._sweep(db, now, project, kept | (swept[1] if swept else set()))
            self._swept[project] = (now, kept | (swept[1] if swept else set()))
        if publish is not None:
            db.execute(
                "DELETE FROM learned WHERE project = ? AND publisher = ?", (project, waiter.id)
            )
            db.executemany(
                "INSERT INTO learned VALUES (?, ?, ?, ?, ?)",
                [
                    (project, waiter.id, limit, seconds, now + LEARNED_TTL_S)
                    for limit, seconds in set(publish)
                ],
            )
        learned = [] if probe else self._learned(db, project, now)
        checked = [*rules, *learned]
        # Only what lies inside the caller's own windows decides (the sweep ages out the rest).
        since = now - answer_span(max((seconds for _, seconds in checked), default=0.0))
        times = [row[0] for row in db.execute(
            "SELECT at FROM reservations WHERE project = ? AND at > ? ORDER BY at",
            (project, since))]  # fmt: skip
        since, queued = now, False
        live = []
        for other, rank, other_since, alive_until in db.execute(
            "SELECT waiter, priority, since, alive_until FROM waiters WHERE project = ?",
            (project,),
        ):
            if other == waiter.id:
                since, queued = other_since, True
            if alive_until >= now:
                live.append((other, rank, other_since))
        wait = wait_needed(times, checked, now, ahead_of(waiter, since, live))
        if wait > 0:
            db.execute(
                "INSERT INTO waiters VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                "job = excluded.job, priority = excluded.priority, alive_until = excluded.alive_until",
                (project, waiter.id, waiter.job, waiter.rank, since, now + wait + WAITER_GRACE_S),
            )  # fmt: skip
            return wait
        at = now if token is None else now + LEASE_S
        row = db.execute("INSERT INTO reservations VALUES (?, ?)", (project, at)).lastrowid
        if token is not None and row is not None:
            self._leases[token] = (row, at)
        if queued:
            db.execute("DELETE FROM waiters WHERE project = ? AND waiter = ?", (project, waiter.id))
        return 0.0

    @staticmethod
    def _sweep(db: sqlite3.Connection, now: float, project: str, rules: set[Rule]) -> None:
        """The upkeep of a project: record the caller's windows (for ``bulkops quota``, and so
        reservations inside any caller's longest window are kept), and delete what aged out."""
        db.executemany(
            "INSERT INTO windows VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET used = excluded.used",
            [(project, limit, seconds, now) for limit, seconds in rules],
        )
        db.execute(
            "DELETE FROM windows WHERE project = ? AND used < ?", (project, now - WINDOW_TTL_S)
        )
        db.execute("DELETE FROM learned WHERE expires < ?", (now,))
        longest = db.execute(
            "SELECT max(seconds) FROM (SELECT seconds FROM windows WHERE project = ?1 "
            "UNION ALL SELECT seconds FROM learned WHERE project = ?1)",
            (project,),
        ).fetchone()[0]
        db.execute(
            "DELETE FROM reservations WHERE project = ? AND at <= ?",
            (project, now - answer_span(longest or 0.0)),
        )
        db.execute(
            "DELETE FROM waiters WHERE project = ? AND alive_until < ?", (project, now - WAITER_PURGE_S)
        )  # fmt: skip

    @staticmethod
    def _learned(db: sqlite3.Connection, project: str, now: float) -> list[Rule]:
        return [
            (int(limit), float(seconds))
            for limit, seconds in db.execute(
                "SELECT DISTINCT lim, seconds FROM learned WHERE project = ? AND expires >= ?",
                (project, now),
            )
        ]

    async def leave(self, project: str, waiter_id: str) -> None:
        def work(db: sqlite3.Connection) -> None:
            self._transaction(db, lambda now: db.execute(
                "DELETE FROM waiters WHERE project = ? AND waiter = ?", (project, waiter_id)))  # fmt: skip

        await self._call(work)

    async def report(self, projects: Sequence[str] | None = None) -> list[ProjectQuota]:
        def work(db: sqlite3.Connection) -> list[ProjectQuota]:
            now = self._clock()
            if projects is None:
                names = [row[0] for row in db.execute(
                    "SELECT DISTINCT project FROM windows WHERE used >= ? ORDER BY project",
                    (now - WINDOW_TTL_S,))]  # fmt: skip
            else:
                names = list(projects)
            return [self._report(db, now, name) for name in names]

        if not await anyio.Path(self.path).exists():
            return []
        return await self._call(work)

    def _report(self, db: sqlite3.Connection, now: float, project: str) -> ProjectQuota:
        def reserved(seconds: float) -> int:
            row = db.execute(
                "SELECT count(*) FROM reservations WHERE project = ? AND at > ?",
                (project, now - answer_span(seconds)),
            ).fetchone()
            return int(row[0])

        windows = [
            WindowUse(int(limit), float(seconds), reserved(seconds))
            for limit, seconds in db.execute(
                "SELECT lim, seconds FROM windows WHERE project = ? AND used >= ? "
                "ORDER BY seconds, lim",
                (project, now - WINDOW_TTL_S),
            )
        ]
        learned = [
            LearnedLimit(int(limit), float(seconds), expires - now)
            for limit, seconds, expires in db.execute(
                "SELECT lim, seconds, max(expires) FROM learned WHERE project = ? AND expires >= ? "
                "GROUP BY lim, seconds ORDER BY seconds, lim",
                (project, now),
            )
        ]
        waiting = [
            WaitingJob(job, _NAMES.get(rank, "normal"), since, now - since)
            for job, rank, since in db.execute(
                "SELECT job, priority, since FROM waiters WHERE project = ? AND alive_until >= ? "
                "ORDER BY priority DESC, since",
                (project, now),
            )
        ]
        return ProjectQuota(project, windows, learned, waiting)

    async def aclose(self) -> None:
        future = self._executor().submit(self._close_now)
        with anyio.CancelScope(shield=True):
            await asyncio.wrap_future(future)
        if self._thread is not None:
            self._thread.stop()  # its last call has returned: it ends at once
            self._thread = None

    def _close_now(self) -> None:
        with self._lock:
            if self._answers and self._db is not None:
                with contextlib.suppress(sqlite3.Error):  # their leases stand
                    self._transaction(self._db, lambda now: None)
            self._forget()


class _Worker:
    """A daemon thread running the calls handed to it, in order (so, like anyio's worker
    threads, it never holds up the interpreter's exit)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._queue: queue.SimpleQueue[
            tuple[Callable[[], Any], concurrent.futures.Future[Any]] | None
        ]
        self._queue = queue.SimpleQueue()
        threading.Thread(target=self._run, name="bulkops-ledger", daemon=True).start()

    def submit(self, call: Callable[[], T]) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put((call, future))
        return future

    def stop(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            call, future = item
            try:
                future.set_result(call())
            except BaseException as exc:  # handed to the caller, as a worker thread's would be
                future.set_exception(exc)
