"""The mutation lane with a quota ledger: the next reservation is made while the attempts ahead
are in flight, and the first mutation of a fleet's project waits at the start line ready to go."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from bulkops.api.governor import RateGovernor
from bulkops.api.ledger import Rule, Waiter
from bulkops.api.ledger_sqlite import SqliteLedger
from bulkops.api.windows import RateWindow
from tests.support.clock import FakeClock

KEY = "p@test"
ME = Waiter("me-1", "job-me")


class RecordingLedger(SqliteLedger):
    """The SQLite ledger, noting each reservation (its token and answer) and each answer."""

    def __init__(self, path: Path, clock: FakeClock, log: list[tuple[Any, ...]]) -> None:
        super().__init__(path, clock=clock)
        self.log = log

    async def reserve(
        self, project: str, rules: Sequence[Rule], waiter: Waiter, **kwargs: Any
    ) -> float:
        wait = await super().reserve(project, rules, waiter, **kwargs)
        if waiter is ME:
            self.log.append(("reserve", kwargs.get("token"), wait))
        return wait

    def answered(self, project: str, token: str) -> None:
        self.log.append(("answered", token))
        super().answered(project, token)


@dataclass
class Lane:
    gov: RateGovernor
    ledger: RecordingLedger
    clock: FakeClock
    log: list[tuple[Any, ...]] = field(default_factory=list)


@pytest.fixture
async def lane(tmp_path: Path) -> AsyncIterator[Lane]:
    clock = FakeClock()
    log: list[tuple[Any, ...]] = []
    ledger = RecordingLedger(tmp_path / "quota.sqlite", clock, log)
    gov = RateGovernor(
        "p",
        mutation_windows=[RateWindow.parse("100/10s")],
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(0),
    )
    gov.bind_ledger(ledger, KEY, ME)
    try:
        yield Lane(gov, ledger, clock, log)
    finally:
        await ledger.aclose()


async def until(condition: Callable[[], bool]) -> None:
    """Poll (the ledger's thread is real) until ``condition()`` holds, for 5 s at most."""
    for _ in range(2500):
        if condition():
            return
        await anyio.sleep(0.002)
    raise AssertionError("the condition never came true")


async def one_answered_at_once(gov: RateGovernor, log: list[tuple[Any, ...]]) -> None:
    """A first mutation answered at once: a round trip is measured (0 s), so the cap is 1."""
    async with gov.mutation_slot():
        log.append(("sent", 1))
    assert gov.mutation_cap() == 1


def reservations(log: list[tuple[Any, ...]]) -> list[str]:
    return [entry[1] for entry in log if entry[0] == "reserve" and entry[2] == 0.0]


def attempt_ahead(
    gov: RateGovernor,
    log: list[tuple[Any, ...]],
    release: anyio.Event,
    *,
    then: Callable[[], None] | None = None,
) -> Callable[[], Any]:
    """Mutation 2: sent, holding its slot (so the cap of 1) until ``release``; ``then`` runs
    after its answer (as the client reacts to one)."""

    async def ahead() -> None:
        async with gov.mutation_slot():
            log.append(("sent", 2))
            await release.wait()
        if then is not None:
            then()

    return ahead


def attempt_behind(
    gov: RateGovernor, log: list[tuple[Any, ...]], *noted: Callable[[], Any]
) -> Callable[[], Any]:
    """Mutation 3: logs ``("sent", 3, ...)`` (with ``noted`` values) once it may send."""

    async def behind() -> None:
        async with gov.mutation_slot():
            log.append(("sent", 3, *(note() for note in noted)))

    return behind


async def queue_behind(
    group: Any, gov: RateGovernor, log: list[tuple[Any, ...]], ahead: Any, behind: Any
) -> None:
    """Start ``ahead``, wait until it is sent, start ``behind``, and wait until ``behind`` has
    reserved and waits for the cap."""
    group.start_soon(ahead)
    await until(lambda: ("sent", 2) in log)
    group.start_soon(behind)
    await until(lambda: gov._mutation_freed is not None)


async def test_the_next_reservation_is_made_while_the_attempt_ahead_is_in_flight(
    lane: Lane,
) -> None:
    """With the cap reached, the next mutation reserves its ledger slot before the attempt ahead
    answers, and is sent on that answer with no ledger call in between."""
    gov, log = lane.gov, lane.log
    await one_answered_at_once(gov, log)
    release = anyio.Event()
    ahead = attempt_ahead(gov, log, release, then=lambda: log.append(("answer", 2)))
    async with anyio.create_task_group() as group:
        await queue_behind(group, gov, log, ahead, attempt_behind(gov, log))
        assert len(reservations(log)) == 3
        assert ("sent", 3) not in log
        release.set()
    assert log.index(("answer", 2)) < log.index(("sent", 3))
    after_answer = log[log.index(("answer", 2)) :]
    assert not [entry for entry in after_answer if entry[0] == "reserve"]
    assert len(set(reservations(log))) == 3  # one reservation per send, none given back
    assert [entry for entry in log if entry[0] == "answered"] == [
        ("answered", token) for token in reservations(log)
    ]


async def test_a_429_while_a_reservation_waits_gives_it_back_and_reserves_anew(lane: Lane) -> None:
    """A 429 of the attempt ahead changes the picture: the waiting reservation is given back as
    answered (never sent), and the mutation reserves again once the pause is over."""
    gov, clock, log = lane.gov, lane.clock, lane.log
    await one_answered_at_once(gov, log)
    release = anyio.Event()
    # A 429 answers it; as the client does, with no await.
    ahead = attempt_ahead(
        gov, log, release, then=lambda: gov.on_rate_limited(retry_after=None, mutation=True)
    )
    start = clock.now
    async with anyio.create_task_group() as group:
        await queue_behind(group, gov, log, ahead, attempt_behind(gov, log, lambda: clock.now))
        assert len(reservations(log)) == 3  # reserved while the attempt ahead is in flight
        pipelined = reservations(log)[-1]
        release.set()
    sent = next(entry for entry in log if entry[:2] == ("sent", 3))
    assert log.index(("answered", pipelined)) < log.index(sent)
    assert reservations(log)[-1] != pipelined  # reserved anew, after the pause
    assert sent[2] >= gov.paused_until > start


async def test_a_reservation_cancelled_before_its_send_is_given_back(lane: Lane) -> None:
    """A mutation cancelled while it waits for the attempt ahead, its slot reserved, gives the
    reservation back (counted as answered now) and sends nothing."""
    gov, log = lane.gov, lane.log
    await one_answered_at_once(gov, log)
    release = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(attempt_ahead(gov, log, release))
        await until(lambda: ("sent", 2) in log)
        async with anyio.create_task_group() as inner:
            inner.start_soon(attempt_behind(gov, log))
            await until(lambda: gov._mutation_freed is not None)
            assert len(reservations(log)) == 3
            inner.cancel_scope.cancel()
        release.set()
    assert ("sent", 3) not in log
    assert ("answered", reservations(log)[-1]) in log
    assert gov.mutations_sent == 2


async def test_the_first_mutation_waits_at_the_start_line_reserved_and_ready(lane: Lane) -> None:
    """Held at a fleet's start line, the first mutation makes its reservation first and, once
    the line opens, is sent with no ledger call in between."""
    gov, log = lane.gov, lane.log
    line = anyio.Event()

    async def at_line() -> None:
        log.append(("at line",))
        await line.wait()

    gov.hold_mutations(at_line)

    async def first() -> None:
        async with gov.mutation_slot():
            log.append(("sent", 1))

    async with anyio.create_task_group() as group:
        group.start_soon(first)
        await until(lambda: ("at line",) in log)
        assert [entry[0] for entry in log] == ["reserve", "at line"]
        log.append(("opened",))
        line.set()
    assert log[log.index(("opened",)) :] == [("opened",), ("sent", 1), ("answered", "me-1:0")]


async def first_mutation_at_a_line(lane: Lane) -> tuple[list[int], float]:
    """Send one mutation behind a start line: how many sleeps it had made each time it reached
    the line, and when it was sent."""
    seen: list[int] = []

    async def at_line() -> None:
        seen.append(len(lane.clock.sleeps))

    lane.gov.hold_mutations(at_line)
    async with lane.gov.mutation_slot():
        sent = lane.clock.now
    return seen, sent


async def test_a_first_mutation_that_must_wait_for_quota_passes_the_line_first(lane: Lane) -> None:
    """A first mutation whose project's quota is held by another process reaches the start
    line before it waits, so its fleet does not wait for this project's quota."""
    ledger, clock, log = lane.ledger, lane.clock, lane.log
    assert await ledger.reserve(KEY, [(100, 10.0)], Waiter("other-1", "other"), token=None) == 0
    for _ in range(99):
        await ledger.reserve(KEY, [(100, 10.0)], Waiter("other-1", "other"), token=None)
    start = clock.now
    seen, sent = await first_mutation_at_a_line(lane)
    assert seen == [0]  # at the line before any wait
    assert log[0][0] == "reserve"
    assert log[0][2] > 0  # refused first
    assert sent >= start + 10.0


async def test_a_first_mutation_that_must_wait_for_its_windows_passes_the_line_first(
    lane: Lane,
) -> None:
    """A first mutation whose own windows make it wait (a pause here) reaches the start line
    before it waits, and is not sent before the pause ends."""
    gov, clock, log = lane.gov, lane.clock, lane.log
    gov.paused_until = clock.now + 5.0
    seen, sent = await first_mutation_at_a_line(lane)
    assert seen == [0]
    assert sent >= gov.paused_until
    assert not [entry for entry in log if entry[0] == "reserve" and entry[2] > 0]
