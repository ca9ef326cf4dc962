"""The emulator's request pipeline: auth, quotas, faults and the request log."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp
import pytest

from bulkops.emulator import (
    EmulatorConfig,
    World,
    build_demo_world,
)
from tests.support.clock import FakeClock
from tests.support.http import V1, seg, serve
from tests.support.metrics import SOURCES, new_metric, new_source, stored_metrics
from tests.support.worlds import SOURCE_RO_KEY, TARGET_KEY, metrics_world

# -- auth ---------------------------------------------------------------------------------------

UNAUTHORIZED = (
    "This endpoint only accepts an active CONSOLE key, but an invalid key was sent. Key: "
)


async def test_missing_or_unknown_key_is_401_with_the_documented_text() -> None:
    """The body echoes the key sent; a missing header reads as 'undefined'. Never faulted."""
    config = EmulatorConfig(fail_rate=0.5, drop_rate=0.5, latency_ms=300)
    async with serve(metrics_world(), config) as api:
        started = time.monotonic()
        wrong = await api.get(f"{V1}/metrics/list", key="console-nope")
        missing = await api.get(f"{V1}/metrics/list", key=None)
        assert time.monotonic() - started < 0.3
    assert wrong.status == missing.status == 401
    assert wrong.body == {"status": 401, "message": UNAUTHORIZED + "console-nope"}
    assert missing.body == {"status": 401, "message": UNAUTHORIZED + "undefined"}


async def test_read_only_key_reads_but_cannot_mutate() -> None:
    """A read-only key reads, and its mutation gets 403 and changes nothing."""
    world = metrics_world()
    async with serve(world, key=SOURCE_RO_KEY) as api:
        assert (await api.get(f"{V1}/metrics/list")).status == 200
        refused = await api.post(f"{V1}/metrics", new_metric())
        assert refused.status == 403
        assert refused.body == {"status": 403, "message": "Forbidden resource"}
    assert "brand new metric::sum" not in stored_metrics(world)


async def test_each_key_sees_its_own_project() -> None:
    """Each key opens its own project's data."""
    async with serve(metrics_world()) as api:
        source = await api.get(f"{V1}/metrics/list")
        target = await api.get(f"{V1}/metrics/list", key=TARGET_KEY)
        assert source.body["pagination"]["totalItems"] == 6
        assert target.body["pagination"]["totalItems"] == 2


# -- quotas -------------------------------------------------------------------------------------


async def test_mutations_over_the_window_get_429() -> None:
    """Mutations beyond the window's limit get 429 (no Retry-After by default) until the window slides."""
    clock = FakeClock()
    config = EmulatorConfig(mutation_windows=("3/10s",))
    async with serve(metrics_world(clock), config) as api:
        statuses = [
            (await api.post(f"{V1}/metrics", new_metric(f"metric {i}"))).status for i in range(4)
        ]
        assert statuses == [201, 201, 201, 429]
        refused = await api.post(f"{V1}/metrics", new_metric("metric 9"))
        assert refused.body == {"status": 429, "message": "Too Many Requests"}
        assert "Retry-After" not in refused.headers
        clock.advance(10.01)
        assert (await api.post(f"{V1}/metrics", new_metric("metric 10"))).status == 201


async def test_rejected_attempts_count_toward_the_quota() -> None:
    """A 429'd attempt at t=5 still occupies the window at t=10.5."""
    clock = FakeClock()
    config = EmulatorConfig(mutation_windows=("2/10s",))
    async with serve(metrics_world(clock), config) as api:
        assert (await api.post(f"{V1}/metrics", new_metric("m one"))).status == 201
        assert (await api.post(f"{V1}/metrics", new_metric("m two"))).status == 201
        clock.advance(5)
        assert (await api.post(f"{V1}/metrics", new_metric("m three"))).status == 429
        clock.advance(5.5)
        assert (await api.post(f"{V1}/metrics", new_metric("m four"))).status == 201
        assert (await api.post(f"{V1}/metrics", new_metric("m five"))).status == 429


async def test_invalid_and_forbidden_attempts_use_quota_too() -> None:
    """A 400 and a 403 mutation attempt count against the quota as an accepted one does."""
    clock = FakeClock()
    config = EmulatorConfig(mutation_windows=("2/10s",))
    async with serve(metrics_world(clock), config) as api:
        assert (await api.post(f"{V1}/metrics", {"name": "x"})).status == 400
        assert (await api.post(f"{V1}/metrics", new_metric(), key=SOURCE_RO_KEY)).status == 403
        assert (await api.post(f"{V1}/metrics", new_metric())).status == 429


async def test_retry_after_header_is_behind_a_flag() -> None:
    """Retry-After is sent only with retry_after=True, and says the full honest wait."""
    clock = FakeClock()
    config = EmulatorConfig(mutation_windows=("1/10s",), retry_after=True)
    async with serve(metrics_world(clock), config) as api:
        await api.post(f"{V1}/metrics", new_metric("first one"))
        clock.advance(2.5)
        refused = await api.post(f"{V1}/metrics", new_metric("second one"))
        assert refused.status == 429
        # The refused attempt itself occupies the window, so the honest wait is a full 10 s.
        assert refused.headers["Retry-After"] == "10"
    async with serve(
        metrics_world(FakeClock()), EmulatorConfig(mutation_windows=("1/10s",))
    ) as api:
        await api.post(f"{V1}/metrics", new_metric("first one"))
        assert "Retry-After" not in (await api.post(f"{V1}/metrics", new_metric("x two"))).headers


async def test_fifteen_minute_window_applies_after_the_burst_window_clears() -> None:
    """The 15-minute window refuses mutations even when the 10-second window has room."""
    clock = FakeClock()
    config = EmulatorConfig(mutation_windows=("5/10s", "6/15min"))
    async with serve(metrics_world(clock), config) as api:
        for i in range(5):
            assert (await api.post(f"{V1}/metrics", new_metric(f"burst {i}"))).status == 201
        clock.advance(11)
        assert (await api.post(f"{V1}/metrics", new_metric("sixth"))).status == 201
        assert (await api.post(f"{V1}/metrics", new_metric("seventh"))).status == 429
        clock.advance(900)
        assert (await api.post(f"{V1}/metrics", new_metric("later"))).status == 201


async def test_reads_are_not_limited_and_quotas_are_per_project() -> None:
    """Reads never get 429, and one project's spent quota leaves another's alone."""
    clock = FakeClock()
    config = EmulatorConfig(mutation_windows=("1/10s",))
    async with serve(metrics_world(clock), config) as api:
        for _ in range(20):
            assert (await api.get(f"{V1}/metrics/list")).status == 200
        assert (await api.post(f"{V1}/metrics", new_metric("only one"))).status == 201
        assert (await api.post(f"{V1}/metrics", new_metric("too many"))).status == 429
        other = await api.post(f"{V1}/metrics", new_metric("target one"), key=TARGET_KEY)
        assert other.status == 201


# -- faults -------------------------------------------------------------------------------------


async def test_server_errors_do_not_apply_mutations() -> None:
    """An injected 5xx answers reads and mutations alike and applies nothing."""
    world = metrics_world()
    async with serve(world, EmulatorConfig(fail_rate=1.0)) as api:
        read = await api.get(f"{V1}/metrics/list")
        wrote = await api.post(f"{V1}/metrics", new_metric())
    assert read.status in (500, 502, 503)
    assert wrote.status in (500, 502, 503)
    assert "brand new metric::sum" not in stored_metrics(world)
    assert [r.fault for r in world.request_log] == ["server_error", "server_error"]


async def test_dropped_connections_send_nothing_and_apply_nothing() -> None:
    """A dropped connection gives no answer and applies no mutation."""
    world = metrics_world()
    async with serve(world, EmulatorConfig(drop_rate=1.0)) as api:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await api.get(f"{V1}/metrics/list")
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await api.post(f"{V1}/metrics", new_metric())
    assert "brand new metric::sum" not in stored_metrics(world)
    # aiohttp's client silently retries an idempotent request once on disconnect: GET twice.
    assert {(r.status, r.fault) for r in world.request_log} == {(None, "drop")}
    assert world.count(method="POST") == 1


async def test_truncated_bodies_fail_to_read_and_apply_nothing() -> None:
    """A truncated body fails to read on the client and applies no mutation."""
    world = metrics_world()
    async with serve(world, EmulatorConfig(truncate_rate=1.0)) as api:
        with pytest.raises(aiohttp.ClientPayloadError):
            await api.get(f"{V1}/metrics/list")
        with pytest.raises(aiohttp.ClientPayloadError):
            await api.post(f"{V1}/metrics", new_metric())
    assert "brand new metric::sum" not in stored_metrics(world)
    assert [r.fault for r in world.request_log] == ["truncate", "truncate"]


async def test_lost_answer_applies_the_mutation_then_drops_the_connection() -> None:
    """lost_answer applies the mutation and then drops the connection, so only reconciliation can tell."""
    world = metrics_world()
    async with serve(world, EmulatorConfig(lost_answer_rate=1.0)) as api:
        assert (await api.get(f"{V1}/metrics/list")).status == 200
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await api.post(f"{V1}/metrics", new_metric())
    assert "brand new metric::sum" in stored_metrics(world)
    assert [(r.status, r.fault) for r in world.request_log] == [(200, None), (201, "lost_answer")]


async def test_latency_is_added_to_every_authenticated_request() -> None:
    """Configured latency delays an authenticated request by at least latency_ms."""
    async with serve(metrics_world(), EmulatorConfig(latency_ms=60, latency_jitter_ms=20)) as api:
        started = time.monotonic()
        await api.get(f"{V1}/metrics/list")
        assert 0.06 <= time.monotonic() - started < 1.0


async def _outcomes(world: World, config: EmulatorConfig, paths: list[str], parallel: bool) -> Any:
    world.clear_log()
    async with serve(world, config) as api:

        async def one(path: str) -> None:
            with contextlib.suppress(aiohttp.ClientError):  # faults are the point here
                await api.get(path)

        if parallel:
            await asyncio.gather(*(one(p) for p in reversed(paths)))
        else:
            for path in paths:
                await one(path)
    return [(r.raw_path, r.fault, r.status) for r in world.request_log]


async def test_faults_are_reproducible_from_the_seed() -> None:
    """Same seed and requests: same faults, in sequence or concurrently in another order."""
    world = build_demo_world()
    names = [s["name"] for s in world.project("source").collection("metric_sources").values()]
    paths = [f"{SOURCES}/{seg(n)}" for n in names]
    config = EmulatorConfig(fault_seed=7, fail_rate=0.2, drop_rate=0.1, truncate_rate=0.1)
    repeated = paths + paths  # occurrence number is part of the decision
    first = await _outcomes(world, config, repeated, parallel=False)
    again = await _outcomes(world, config, repeated, parallel=False)
    assert first == again
    assert {f for _, f, _ in first} >= {None, "server_error", "drop", "truncate"}
    other_seed = await _outcomes(
        world,
        EmulatorConfig(fault_seed=8, fail_rate=0.2, drop_rate=0.1, truncate_rate=0.1),
        repeated,
        parallel=False,
    )
    assert [f for _, f, _ in other_seed] != [f for _, f, _ in first]
    sequential = await _outcomes(world, config, paths, parallel=False)
    concurrent = await _outcomes(world, config, paths, parallel=True)
    assert sorted(sequential, key=str) == sorted(concurrent, key=str)


async def test_max_in_flight_is_observed_per_project() -> None:
    """The world records the most requests each project had in flight at once."""
    world = metrics_world()
    async with serve(world, EmulatorConfig(latency_ms=100)) as api:
        await asyncio.gather(*(api.get(f"{V1}/metrics/list") for _ in range(6)))
    assert world.max_in_flight("source") == 6
    assert world.max_in_flight("target") == 0


# -- request log --------------------------------------------------------------------------------


async def test_request_log_records_each_request() -> None:
    """Every request, with or without a key or a route, leaves one record: project, path, status."""
    clock = FakeClock(start=50.0)
    world = metrics_world(clock)
    async with serve(world) as api:
        await api.post(SOURCES, new_source("x/y"))
        await api.get(f"{SOURCES}/x%2Fy/metrics?limit=5&page=1")
        await api.get(f"{V1}/metrics/list", key=None)
        await api.get(f"{V1}/no/such/route")
    post, get, unauth, unknown = world.request_log
    assert (post.project, post.method, post.path, post.status, post.is_mutation) == (
        "source",
        "POST",
        SOURCES,
        201,
        True,
    )
    assert (get.path, get.query, get.status, get.is_mutation, get.fault) == (
        f"{SOURCES}/x/y/metrics",
        {"limit": "5", "page": "1"},
        200,
        False,
        None,
    )
    assert get.time == 50.0
    assert (unauth.project, unauth.status) == (None, 401)
    assert (unknown.project, unknown.status) == ("source", 404)
    assert world.count(project="source", method="get", path_prefix=SOURCES) == 1
    assert world.count(is_mutation=True) == 1
    assert world.requests(project=None) == [unauth]
    with pytest.raises(AttributeError):
        post.status = 500  # type: ignore[misc]
