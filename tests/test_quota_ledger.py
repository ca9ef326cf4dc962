"""The quota ledger, SQLite and Redis alike: windows, ageing out, priority, fairness, learned limits."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from bulkops.api import ledger_redis, ledger_sqlite
from bulkops.api.ledger import (
    LEASE_POLL_S,
    LEDGER_MARGIN,
    QuotaLedger,
    Waiter,
    ledger_url,
    open_ledger,
    project_key,
)
from bulkops.api.urls import redacted
from bulkops.errors import LedgerUnavailable, UserError

#: A window short enough that waiting it out costs a fraction of a second.
SHORT = 0.2


@pytest.fixture(params=["sqlite", "redis"])
async def ledger(request, tmp_path) -> AsyncIterator[QuotaLedger]:
    url = (
        f"sqlite://{tmp_path / 'quota.sqlite'}"
        if request.param == "sqlite"
        else request.getfixturevalue("redis_server")
    )
    opened = open_ledger(url)
    await opened.check()
    try:
        yield opened
    finally:
        await opened.aclose()


A = Waiter("a-1", "job-a")
B = Waiter("b-1", "job-b")


async def test_a_full_window_refuses_with_the_time_until_a_slot_frees(ledger) -> None:
    """Three of 3/1s are reserved; the fourth is refused for about the window and not recorded."""
    assert [await ledger.reserve("p", [(3, 1.0)], A) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = await ledger.reserve("p", [(3, 1.0)], B)
    assert 0.9 < wait <= 1.0 + LEDGER_MARGIN
    [quota] = await ledger.report()
    assert [(w.limit, w.seconds, w.reserved) for w in quota.windows] == [(3, 1.0, 3)]
    assert [w.job for w in quota.waiting] == ["job-b"]


async def test_every_window_of_the_caller_counts_and_projects_are_apart(ledger) -> None:
    """A 2/10s window binds before 5/1s; another project's reservations do not count."""
    rules = [(5, 1.0), (2, 10.0)]
    assert await ledger.reserve("p", rules, A) == 0.0
    assert await ledger.reserve("p", rules, A) == 0.0
    assert await ledger.reserve("p", rules, A) > 9.0
    assert await ledger.reserve("other", rules, A) == 0.0


async def test_reservations_age_out_of_the_window(ledger) -> None:
    """After the wait a refusal names, the next reservation succeeds: nothing needs releasing."""
    assert await ledger.reserve("p", [(1, SHORT)], A) == 0.0
    wait = await ledger.reserve("p", [(1, SHORT)], A)
    assert wait > 0
    await anyio.sleep(wait)
    assert await ledger.reserve("p", [(1, SHORT)], A) == 0.0


async def test_a_higher_priority_waiter_reserves_first(ledger) -> None:
    """A low-priority waiter that was queued first still lets the queued high one go first."""
    low, high = Waiter("low", "nightly", "low"), Waiter("high", "hotfix", "high")
    assert await ledger.reserve("p", [(1, SHORT)], A) == 0.0
    assert await ledger.reserve("p", [(1, SHORT)], low) > 0
    wait = await ledger.reserve("p", [(1, SHORT)], high)
    await anyio.sleep(wait)
    assert await ledger.reserve("p", [(1, SHORT)], low) > 0  # asks first, yet high is ahead
    assert await ledger.reserve("p", [(1, SHORT)], high) == 0.0
    [quota] = await ledger.report()
    assert [(w.job, w.priority) for w in quota.waiting] == [("nightly", "low")]


async def test_equal_priorities_take_turns(ledger) -> None:
    """Two waiters of one priority alternate, whichever asks first each time."""
    order = []
    asking = [A, B, B, A]  # who asks first at each freed slot
    await ledger.reserve("p", [(1, SHORT)], Waiter("starter", "starter"))
    for first in asking:
        second = B if first is A else A
        waits = [await ledger.reserve("p", [(1, SHORT)], w) for w in (first, second)]
        assert all(w > 0 for w in waits)
        await anyio.sleep(max(waits))
        for waiter in (first, second):
            if await ledger.reserve("p", [(1, SHORT)], waiter) == 0.0:
                order.append(waiter.job)
                break
    assert order == ["job-a", "job-b"] * 2


async def test_free_slots_beyond_the_queue_are_not_held_back(ledger) -> None:
    """With 5 slots free and one waiter queued, a newcomer still reserves (no needless waiting)."""
    assert await ledger.reserve("p", [(1, 30.0), (100, 1.0)], A) == 0.0
    assert await ledger.reserve("p", [(1, 30.0)], A) > 0  # A is queued on its own tight window
    assert await ledger.reserve("p", [(5, 1.0)], B) == 0.0


async def test_a_waiter_that_never_comes_back_stops_counting(ledger, monkeypatch) -> None:
    """A killed process's waiter ages out once its planned retry plus the grace has passed."""
    for module in (ledger_sqlite, ledger_redis):
        monkeypatch.setattr(module, "WAITER_GRACE_S", 0.1)
    high = Waiter("killed", "killed", "high")
    assert await ledger.reserve("p", [(1, SHORT)], A) == 0.0
    wait = await ledger.reserve("p", [(1, SHORT)], high)
    await anyio.sleep(wait)
    assert await ledger.reserve("p", [(1, SHORT)], B) > 0  # high is still due: B waits
    await anyio.sleep(0.15)
    assert await ledger.reserve("p", [(1, SHORT)], B) == 0.0


async def test_learned_limits_are_shared_until_withdrawn(ledger) -> None:
    """A limit one process learned refuses another's reservation; a probe and a withdrawal do not."""
    assert await ledger.reserve("p", [(100, 10.0)], A, publish=[(1, 30.0)]) == 0.0
    assert await ledger.reserve("p", [(100, 10.0)], B) > 29.0
    [quota] = await ledger.report()
    assert [(w.limit, w.seconds) for w in quota.learned] == [(1, 30.0)]
    assert 3500 < quota.learned[0].expires_in <= 3600
    assert await ledger.reserve("p", [(100, 10.0)], B, probe=True) == 0.0
    assert await ledger.reserve("p", [(100, 10.0)], A, publish=[]) == 0.0
    assert await ledger.reserve("p", [(100, 10.0)], B) == 0.0
    [quota] = await ledger.report()
    assert quota.learned == []


async def test_a_window_first_seen_counts_earlier_reservations(ledger) -> None:
    """A job arriving with a new window (2/30s) counts what jobs with other windows reserved."""
    for _ in range(2):
        assert await ledger.reserve("p", [(100, 60.0)], A) == 0.0
    assert await ledger.reserve("p", [(2, 30.0)], B) > 29.0


async def test_leaving_takes_a_waiter_out_of_the_queue(ledger) -> None:
    """A run that ends leaves the queue at once, so it holds nobody back."""
    high = Waiter("high", "hotfix", "high")
    assert await ledger.reserve("p", [(1, SHORT)], A) == 0.0
    wait = await ledger.reserve("p", [(1, SHORT)], high)
    await ledger.leave("p", high.id)
    await anyio.sleep(wait)
    assert await ledger.reserve("p", [(1, SHORT)], B) == 0.0


async def test_an_empty_ledger_reports_no_projects(ledger) -> None:
    """Nothing reserved yet: the report is empty, and a named project shows empty lists."""
    assert await ledger.report() == []
    [quota] = await ledger.report(["p"])
    assert (quota.windows, quota.learned, quota.waiting) == ([], [], [])


# -- unreachable ledgers -------------------------------------------------------------------
async def test_an_unwritable_sqlite_folder_is_unavailable_naming_the_path(tmp_path) -> None:
    """A ledger file under a regular file cannot be made: LedgerUnavailable, exit 4, names it."""
    (tmp_path / "plain").write_text("")
    path = tmp_path / "plain" / "quota.sqlite"
    ledger = open_ledger(f"sqlite://{path}")
    with pytest.raises(LedgerUnavailable) as caught:
        await ledger.check()
    assert caught.value.exit_code == 4
    assert caught.value.fatal
    assert str(path) in str(caught.value)
    assert "BULKOPS_HOME" in str(caught.value)
    await ledger.aclose()


async def test_a_redis_nobody_serves_is_unavailable_with_the_password_hidden() -> None:
    """A closed port: LedgerUnavailable naming the URL, never the password in it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ledger = open_ledger(f"redis://:hunter2@127.0.0.1:{port}/0")
    with pytest.raises(LedgerUnavailable) as caught:
        await ledger.check()
    message = str(caught.value)
    assert f"redis://:***@127.0.0.1:{port}/0" in message
    assert "hunter2" not in message
    with pytest.raises(LedgerUnavailable):
        await ledger.reserve("p", [(1, 1.0)], A)
    await ledger.aclose()


# -- naming and selection ------------------------------------------------------------------
def test_projects_off_the_console_api_are_keyed_with_their_base_url() -> None:
    """The Console API's projects go by id; a sandbox's by id@base_url, so two never share."""
    assert project_key("abc", "https://statsigapi.net/") == "abc"
    assert project_key("abc", "http://127.0.0.1:4001") == "abc@http://127.0.0.1:4001"
    assert project_key("abc", "http://127.0.0.1:4001") != project_key(
        "abc", "http://127.0.0.1:4002"
    )


def test_the_environment_wins_over_the_job_file_and_sqlite_is_the_default(tmp_path) -> None:
    """BULKOPS_QUOTA_URL, else [limits] ledger, else $BULKOPS_HOME/quota.sqlite (or XDG)."""
    job = "redis://job-host:6379/0"
    env = {"BULKOPS_HOME": str(tmp_path)}
    assert ledger_url(None, env) == (f"sqlite://{tmp_path / 'quota.sqlite'}", "the default")
    assert ledger_url(job, env) == (job, "[limits] ledger")
    assert ledger_url(job, {**env, "BULKOPS_QUOTA_URL": "redis://ops:6379/1"})[0] == (
        "redis://ops:6379/1"
    )
    xdg = {"XDG_STATE_HOME": str(tmp_path / "state")}
    assert ledger_url(None, xdg)[0] == f"sqlite://{tmp_path / 'state' / 'bulkops' / 'quota.sqlite'}"
    assert Path(ledger_url(None, {})[0].removeprefix("sqlite://")).parts[-3:] == (
        "state", "bulkops", "quota.sqlite",
    )  # fmt: skip


def test_a_malformed_quota_url_variable_is_a_usage_error_naming_it() -> None:
    """BULKOPS_QUOTA_URL=http://... is refused (exit 2) naming the variable, password hidden."""
    with pytest.raises(UserError) as caught:
        ledger_url(None, {"BULKOPS_QUOTA_URL": "http://u:pw@host/0"})
    message = str(caught.value)
    assert "BULKOPS_QUOTA_URL" in message
    assert "redis://" in message
    assert "pw" not in message
    assert redacted("rediss://user:s3cret@h:1/2") == "rediss://user:***@h:1/2"


def test_the_projects_of_one_process_share_one_ledger_connection(tmp_path) -> None:
    """Members of a job over several projects use one ledger per URL, closed after the last."""
    from bulkops.commands import session

    url = f"sqlite://{tmp_path / 'q.sqlite'}"

    async def main() -> None:
        async with session._process_ledger(url) as first, session._process_ledger(url) as second:
            assert first is second
        assert url not in session._OPEN_LEDGERS
        async with session._process_ledger(url) as third:
            assert third is not first

    anyio.run(main)


def test_many_processes_opening_a_new_ledger_file_at_once_all_get_in(tmp_path) -> None:
    """Sixteen connections creating one new SQLite ledger together: none is refused as locked."""
    from bulkops.api.ledger_sqlite import SqliteLedger

    async def main() -> None:
        ledgers = [SqliteLedger(tmp_path / "new" / "quota.sqlite") for _ in range(16)]
        async with anyio.create_task_group() as group:
            for ledger in ledgers:
                group.start_soon(ledger.check)
        for ledger in ledgers:
            await ledger.aclose()

    for _ in range(5):
        anyio.run(main)
        for file in (tmp_path / "new").iterdir():
            file.unlink()


# -- leases: a reservation counts until its answer, then one window after it ----------------
async def test_a_lease_holds_its_slot_until_the_answer_then_one_window_after_it(ledger) -> None:
    """In flight, a reservation counts however old; answered, it frees one window after that."""
    assert await ledger.reserve("p", [(1, SHORT)], A, token="a-1:0") == 0.0
    await anyio.sleep(SHORT + 0.05)
    wait = await ledger.reserve("p", [(1, SHORT)], B)
    assert 0 < wait <= LEASE_POLL_S  # still in flight: ask again soon, not after the lease
    [quota] = await ledger.report()
    assert [w.reserved for w in quota.windows] == [1]
    ledger.answered("p", "a-1:0")
    wait = await ledger.reserve("p", [(1, SHORT)], B)  # records the answer, then is refused
    assert SHORT - 0.05 < wait <= SHORT + 0.01
    await anyio.sleep(wait)
    assert await ledger.reserve("p", [(1, SHORT)], B) == 0.0


async def test_a_flushed_answer_is_dated_back_to_when_it_came(ledger) -> None:
    """An answer recorded 0.15 s late frees its slot one window after the answer, not the flush."""
    assert await ledger.reserve("p", [(1, 0.4)], A, token="a-1:0") == 0.0
    ledger.answered("p", "a-1:0")
    await anyio.sleep(0.15)
    await ledger.flush()
    wait = await ledger.reserve("p", [(1, 0.4)], B)
    assert 0.15 < wait < 0.3


async def test_a_killed_process_s_leases_age_out_after_lease_and_window(
    ledger, monkeypatch
) -> None:
    """A lease never answered (its process died) counts until lease + window, then frees."""
    for module in (ledger_sqlite, ledger_redis):
        monkeypatch.setattr(module, "LEASE_S", 0.3)
    assert await ledger.reserve("p", [(1, SHORT)], A, token="dead:0") == 0.0
    await anyio.sleep(0.3)
    wait = await ledger.reserve("p", [(1, SHORT)], B)
    assert SHORT - 0.05 < wait <= SHORT + 0.01  # the lease ended: an ordinary reservation now
    await anyio.sleep(wait)
    assert await ledger.reserve("p", [(1, SHORT)], B) == 0.0
    ledger.answered("p", "dead:0")  # an answer after it aged out brings nothing back
    assert await ledger.reserve("p", [(2, SHORT)], A) == 0.0
