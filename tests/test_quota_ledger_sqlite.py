"""The SQLite ledger's upkeep: a reservation runs few statements, aged rows go every SWEEP_S."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bulkops.api import ledger_sqlite
from bulkops.api.ledger import Waiter
from bulkops.api.ledger_sqlite import SWEEP_S, SqliteLedger
from tests.support.clock import FakeClock

A = Waiter("a-1", "job-a")


def rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM reservations").fetchone()[0])


async def test_aged_reservations_are_swept_every_sweep_s_and_never_decide(tmp_path) -> None:
    """Rows aged out of every window stay until the project's next sweep (SWEEP_S later) but
    never count: a full window frees on time, and the sweep then deletes them."""
    clock = FakeClock()
    path = tmp_path / "quota.sqlite"
    ledger = SqliteLedger(path, clock=clock)
    try:
        assert await ledger.reserve("p", [(1, 1.0)], A) == 0.0
        assert await ledger.reserve("p", [(1, 1.0)], A) > 0  # the window is full
        clock.advance(1.1)  # out of the window, before the next sweep
        assert await ledger.reserve("p", [(1, 1.0)], A) == 0.0
        assert rows(path) == 2  # the aged one is still there, and did not count
        clock.advance(SWEEP_S)
        assert await ledger.reserve("p", [(1, 1.0)], A) == 0.0
        assert rows(path) == 1  # swept: only the one just made
    finally:
        await ledger.aclose()


async def test_a_reservation_of_windows_already_recorded_runs_few_statements(tmp_path) -> None:
    """Between sweeps a reservation is a handful of statements (each gives up the GIL); a window
    not recorded yet by this process sweeps at once, so it counts earlier reservations."""
    clock = FakeClock()
    ledger = SqliteLedger(tmp_path / "quota.sqlite", clock=clock)
    statements: list[str] = []
    original = ledger_sqlite.SqliteLedger._connection

    def traced(self: SqliteLedger) -> sqlite3.Connection:
        db = original(self)
        db.set_trace_callback(statements.append)
        return db

    ledger._connection = traced.__get__(ledger)  # type: ignore[method-assign]
    try:
        await ledger.reserve("p", [(20, 4.0)], A, token="a-1:0")
        statements.clear()
        ledger.answered("p", "a-1:0")
        assert await ledger.reserve("p", [(20, 4.0)], A, token="a-1:1") == 0.0
        assert len(statements) <= 7, statements
        assert not [s for s in statements if s.startswith("DELETE")]
        statements.clear()
        assert await ledger.reserve("p", [(2, 60.0)], A) > 0  # a new window sees the first two
        assert [s for s in statements if s.startswith("INSERT INTO windows")]
    finally:
        await ledger.aclose()
