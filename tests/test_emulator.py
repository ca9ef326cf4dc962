"""The Console API emulator: paging, awkward names, auth, quotas, faults, the log, demo data."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest
from yarl import URL

from bulkops.emulator import (
    EmulatorConfig,
    EmulatorThread,
    Project,
    World,
    build_demo_world,
    populate_metrics,
    running_emulator,
)

SOURCE_KEY = "console-demo-source-key"
SOURCE_RO_KEY = "console-demo-source-readonly-key"
TARGET_KEY = "console-demo-target-key"
V1 = "/console/v1"
SOURCES = f"{V1}/metrics/metric_source"
INVALID = {
    "status": 400,
    "message": "Invalid request. Please check the request input and try again.",
}
NOT_FOUND = {"status": 404, "message": "Not Found. The requested resource could not be found."}
NO_FAULTS_CONNECTOR = {"force_close": True}  # no pooled connection: aiohttp won't auto-retry


class FakeClock:
    """A monotonic clock tests move by hand."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Answer:
    status: int
    body: Any
    headers: Any


class Client:
    """A tiny JSON client: paths are sent exactly as written (already percent-encoded)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, key: str | None) -> None:
        self.session, self.base_url, self.key = session, base_url, key

    async def call(
        self, method: str, path: str, body: Any = None, *, key: str | None | bool = True
    ) -> Answer:
        use_key = self.key if key is True else key
        headers = {"STATSIG-API-KEY": use_key} if isinstance(use_key, str) else {}
        url = URL(self.base_url + path, encoded=True)
        async with self.session.request(method, url, json=body, headers=headers) as resp:
            raw = await resp.read()
            parsed = orjson.loads(raw) if resp.content_type == "application/json" else raw
            return Answer(resp.status, parsed, resp.headers)

    async def get(self, path: str, **kw: Any) -> Answer:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, body: Any, **kw: Any) -> Answer:
        return await self.call("POST", path, body, **kw)


@asynccontextmanager
async def serve(
    world: World, config: EmulatorConfig | None = None, key: str | None = SOURCE_KEY
) -> AsyncIterator[Client]:
    async with (
        running_emulator(world, config or EmulatorConfig()) as base_url,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(**NO_FAULTS_CONNECTOR)) as session,
    ):
        yield Client(session, base_url, key)


def seg(name: str) -> str:
    """Percent-encode one path segment the way clients must (``/`` and ``.`` included)."""
    encoded = quote(name, safe="")
    return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded


def small_world(clock: FakeClock | None = None) -> World:
    """Two tiny projects: cheap to build for tests that mutate."""
    kwargs = {"clock": clock} if clock else {}
    world = World(
        [
            Project("source", SOURCE_KEY, read_only_keys=[SOURCE_RO_KEY]),
            Project("target", TARGET_KEY),
        ],
        **kwargs,
    )
    populate_metrics(world.project("source"), 2, 3, prefix="s")
    populate_metrics(world.project("target"), 1, 2, prefix="t")
    return world


def new_metric(name: str = "brand new metric", source: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "type": "sum", "description": "made by a test"}
    if source is not None:
        body["type"] = "user_warehouse"
        body["warehouseNative"] = {"aggregation": "count", "metricSourceName": source}
    return body


def new_source(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "sql": "SELECT * FROM t",
        "timestampColumn": "ts",
        "idTypeMapping": [{"statsigUnitID": "userID", "column": "user_id"}],
    }


def stored_metrics(world: World, project: str = "source") -> dict[str, Any]:
    coll = world.project(project).collection("metrics")
    return {m["id"]: m for m in coll.values()}


# -- pagination ---------------------------------------------------------------------------------


async def test_limit_is_capped_at_the_configured_maximum() -> None:
    """A request for 500 rows gets 100 and says so in itemsPerPage."""
    world = build_demo_world()
    async with serve(world) as api:
        page = await api.get(f"{V1}/metrics/list?limit=500")
        assert page.status == 200
        assert len(page.body["data"]) == 100
        assert page.body["pagination"]["itemsPerPage"] == 100
    async with serve(world, EmulatorConfig(max_page_limit=7)) as api:
        page = await api.get(f"{V1}/metrics/list?limit=50")
        assert len(page.body["data"]) == 7
        assert page.body["pagination"]["itemsPerPage"] == 7


async def test_page_links_repeat_the_original_query() -> None:
    """nextPage/previousPage keep the path and query as sent, with only page changed."""
    async with serve(build_demo_world()) as api:
        p = (await api.get(f"{V1}/metrics/list?showHiddenMetrics=false&limit=7&page=2")).body
        pagination = p["pagination"]
        prefix = f"{V1}/metrics/list?showHiddenMetrics=false&limit=7"
        assert pagination["nextPage"] == f"{prefix}&page=3"
        assert pagination["previousPage"] == f"{prefix}&page=1"
        assert pagination["all"] == f"{V1}/metrics/list"
        assert pagination["pageNumber"] == 2
        first = (await api.get(f"{V1}/metrics/list?showHiddenMetrics=true")).body["pagination"]
        assert first["nextPage"] == f"{V1}/metrics/list?showHiddenMetrics=true&page=2&limit=100"
        assert first["previousPage"] is None
        encoded = f"{SOURCES}/{seg('payments/refunds')}/metrics"
        links = (await api.get(f"{encoded}?limit=2")).body["pagination"]
        assert links["nextPage"] == f"{encoded}?limit=2&page=2"
        assert links["all"] == encoded


async def test_following_next_page_links_visits_every_item_once() -> None:
    """Walking nextPage to the end returns each visible metric exactly once; totals agree."""
    world = build_demo_world()
    visible = {m["id"] for m in stored_metrics(world).values() if not m["isHidden"]}
    async with serve(world) as api:
        seen: list[str] = []
        link: str | None = f"{V1}/metrics/list?limit=100"
        while link:
            page = (await api.get(link)).body
            assert page["pagination"]["totalItems"] == len(visible)
            seen.extend(m["id"] for m in page["data"])
            link = page["pagination"]["nextPage"]
        assert len(seen) == len(set(seen)) == len(visible)
        assert set(seen) == visible
        everything = (await api.get(f"{V1}/metrics/list?showHiddenMetrics=true")).body
        assert everything["pagination"]["totalItems"] == len(stored_metrics(world))


@pytest.mark.parametrize(
    ("source", "pages"),
    [("Page Views", [100]), ("Orders", [100, 1]), ("Deprecated Source", [0])],
)
async def test_page_boundaries(source: str, pages: list[int]) -> None:
    """Exactly 100 is one page; 101 spills one row onto page 2; an empty source has no rows."""
    async with serve(build_demo_world()) as api:
        link: str | None = f"{SOURCES}/{seg(source)}/metrics"
        sizes = []
        while link:
            page = (await api.get(link)).body
            sizes.append(len(page["data"]))
            link = page["pagination"]["nextPage"]
        assert sizes == pages


async def test_page_past_the_end_is_empty() -> None:
    """A page beyond the last returns no data, no nextPage, and a previousPage link."""
    async with serve(build_demo_world()) as api:
        page = await api.get(f"{SOURCES}/list?page=99&limit=10")
        assert page.status == 200
        assert page.body["data"] == []
        assert page.body["pagination"]["nextPage"] is None
        assert page.body["pagination"]["previousPage"] == f"{SOURCES}/list?page=98&limit=10"
        assert page.body["pagination"]["totalItems"] == 24


@pytest.mark.parametrize(
    "query", ["page=0", "page=-1", "page=abc", "limit=0", "limit=x", "limit=1.5"]
)
async def test_bad_paging_parameters_are_400(query: str) -> None:
    """page/limit must be positive integers."""
    async with serve(small_world()) as api:
        answer = await api.get(f"{V1}/metrics/list?{query}")
        assert (answer.status, answer.body) == (400, INVALID)


# -- awkward names ------------------------------------------------------------------------------


async def test_every_demo_source_name_round_trips_through_its_path() -> None:
    """Each source, however named, is addressable by its percent-encoded name."""
    world = build_demo_world()
    async with serve(world) as api:
        names = [s["name"] for s in (await api.get(f"{SOURCES}/list")).body["data"]]
        awkward = {"Orders", "orders", "Événements / EU", "日本 sales", "..", "events.v2.daily"}
        assert awkward <= set(names)
        assert any("%" in n for n in names)
        coll = world.project("source").collection("metrics")
        for name in names:
            read = await api.get(f"{SOURCES}/{seg(name)}")
            assert (read.status, read.body["data"]["name"]) == (200, name)
            listed = await api.get(f"{SOURCES}/{seg(name)}/metrics")
            total = listed.body["pagination"]["totalItems"]
            assert total == coll.count_where("metric_source", name)


async def test_encoded_slash_addresses_a_name_containing_a_slash() -> None:
    """``a%2Fb`` is the source "a/b"; an unencoded slash is a different (unknown) path."""
    world = small_world()
    project = world.project("source")
    populate_metrics(project, 1, 2, prefix="a")  # a source that is not "a/b"
    async with serve(world) as api:
        assert (await api.post(f"{SOURCES}", new_source("a/b"))).status == 201
        created = await api.post(f"{V1}/metrics", new_metric("slashy metric", source="a/b"))
        assert created.status == 201
        listed = await api.get(f"{SOURCES}/a%2Fb/metrics")
        assert listed.status == 200
        assert [m["id"] for m in listed.body["data"]] == ["slashy metric::user_warehouse"]
        assert (await api.get(f"{SOURCES}/a/b/metrics")).status == 404
        assert (await api.get(f"{SOURCES}/a%2Fb")).body["data"]["name"] == "a/b"
    assert world.requests(path_prefix=f"{SOURCES}/a/b/metrics", status=200)[0].raw_path == (
        f"{SOURCES}/a%2Fb/metrics"
    )


async def test_encoded_dots_address_the_source_named_dot_dot() -> None:
    """``%2E%2E`` is the name ".."; a literal ``..`` segment climbs, as at a real front end."""
    async with serve(build_demo_world()) as api:
        assert (await api.get(f"{SOURCES}/%2E%2E")).body["data"]["name"] == ".."
        climbed = await api.get(f"{SOURCES}/x/../list")
        assert climbed.status == 200
        assert climbed.body["pagination"]["totalItems"] == 24


async def test_names_differing_only_by_case_are_distinct() -> None:
    async with serve(build_demo_world()) as api:
        upper = (await api.get(f"{SOURCES}/Orders/metrics")).body["pagination"]["totalItems"]
        lower = (await api.get(f"{SOURCES}/orders/metrics")).body["pagination"]["totalItems"]
        assert upper == 101
        assert lower != upper


async def test_metric_ids_with_slash_percent_and_colon() -> None:
    """Metric ids are ``<name>::<type>`` and are addressable however awkward the name."""
    world = build_demo_world()
    ids = [i for i in stored_metrics(world) if any(c in i.split("::")[0] for c in "/%:")]
    assert ids
    async with serve(world) as api:
        for metric_id in ids[:15]:
            read = await api.get(f"{V1}/metrics/{seg(metric_id)}")
            assert (read.status, read.body["data"]["id"]) == (200, metric_id)
            name, metric_type = metric_id.rsplit("::", 1)
            by_name = await api.get(f"{V1}/metrics/{seg(name)}/{metric_type}")
            assert by_name.body["data"]["id"] == metric_id


# -- auth ---------------------------------------------------------------------------------------

UNAUTHORIZED = (
    "This endpoint only accepts an active CONSOLE key, but an invalid key was sent. Key: "
)


async def test_missing_or_unknown_key_is_401_with_the_documented_text() -> None:
    """The body echoes the key sent; a missing header reads as 'undefined'. Never faulted."""
    config = EmulatorConfig(fail_rate=0.5, drop_rate=0.5, latency_ms=300)
    async with serve(small_world(), config) as api:
        started = time.monotonic()
        wrong = await api.get(f"{V1}/metrics/list", key="console-nope")
        missing = await api.get(f"{V1}/metrics/list", key=None)
        assert time.monotonic() - started < 0.3
    assert wrong.status == missing.status == 401
    assert wrong.body == {"status": 401, "message": UNAUTHORIZED + "console-nope"}
    assert missing.body == {"status": 401, "message": UNAUTHORIZED + "undefined"}


async def test_read_only_key_reads_but_cannot_mutate() -> None:
    world = small_world()
    async with serve(world, key=SOURCE_RO_KEY) as api:
        assert (await api.get(f"{V1}/metrics/list")).status == 200
        refused = await api.post(f"{V1}/metrics", new_metric())
        assert refused.status == 403
        assert refused.body == {"status": 403, "message": "Forbidden resource"}
    assert "brand new metric::sum" not in stored_metrics(world)


async def test_each_key_sees_its_own_project() -> None:
    async with serve(small_world()) as api:
        source = await api.get(f"{V1}/metrics/list")
        target = await api.get(f"{V1}/metrics/list", key=TARGET_KEY)
        assert source.body["pagination"]["totalItems"] == 6
        assert target.body["pagination"]["totalItems"] == 2


# -- quotas -------------------------------------------------------------------------------------


async def test_mutations_over_the_window_get_429() -> None:
    clock = FakeClock()
    config = EmulatorConfig(mutation_windows=("3/10s",))
    async with serve(small_world(clock), config) as api:
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
    async with serve(small_world(clock), config) as api:
        assert (await api.post(f"{V1}/metrics", new_metric("m one"))).status == 201
        assert (await api.post(f"{V1}/metrics", new_metric("m two"))).status == 201
        clock.advance(5)
        assert (await api.post(f"{V1}/metrics", new_metric("m three"))).status == 429
        clock.advance(5.5)
        assert (await api.post(f"{V1}/metrics", new_metric("m four"))).status == 201
        assert (await api.post(f"{V1}/metrics", new_metric("m five"))).status == 429


async def test_invalid_and_forbidden_attempts_use_quota_too() -> None:
    clock = FakeClock()
    config = EmulatorConfig(mutation_windows=("2/10s",))
    async with serve(small_world(clock), config) as api:
        assert (await api.post(f"{V1}/metrics", {"name": "x"})).status == 400
        assert (await api.post(f"{V1}/metrics", new_metric(), key=SOURCE_RO_KEY)).status == 403
        assert (await api.post(f"{V1}/metrics", new_metric())).status == 429


async def test_retry_after_header_is_behind_a_flag() -> None:
    clock = FakeClock()
    config = EmulatorConfig(mutation_windows=("1/10s",), retry_after=True)
    async with serve(small_world(clock), config) as api:
        await api.post(f"{V1}/metrics", new_metric("first one"))
        clock.advance(2.5)
        refused = await api.post(f"{V1}/metrics", new_metric("second one"))
        assert refused.status == 429
        # The refused attempt itself occupies the window, so the honest wait is a full 10 s.
        assert refused.headers["Retry-After"] == "10"
    async with serve(small_world(FakeClock()), EmulatorConfig(mutation_windows=("1/10s",))) as api:
        await api.post(f"{V1}/metrics", new_metric("first one"))
        assert "Retry-After" not in (await api.post(f"{V1}/metrics", new_metric("x two"))).headers


async def test_fifteen_minute_window_applies_after_the_burst_window_clears() -> None:
    clock = FakeClock()
    config = EmulatorConfig(mutation_windows=("5/10s", "6/15min"))
    async with serve(small_world(clock), config) as api:
        for i in range(5):
            assert (await api.post(f"{V1}/metrics", new_metric(f"burst {i}"))).status == 201
        clock.advance(11)
        assert (await api.post(f"{V1}/metrics", new_metric("sixth"))).status == 201
        assert (await api.post(f"{V1}/metrics", new_metric("seventh"))).status == 429
        clock.advance(900)
        assert (await api.post(f"{V1}/metrics", new_metric("later"))).status == 201


async def test_reads_are_not_limited_and_quotas_are_per_project() -> None:
    clock = FakeClock()
    config = EmulatorConfig(mutation_windows=("1/10s",))
    async with serve(small_world(clock), config) as api:
        for _ in range(20):
            assert (await api.get(f"{V1}/metrics/list")).status == 200
        assert (await api.post(f"{V1}/metrics", new_metric("only one"))).status == 201
        assert (await api.post(f"{V1}/metrics", new_metric("too many"))).status == 429
        other = await api.post(f"{V1}/metrics", new_metric("target one"), key=TARGET_KEY)
        assert other.status == 201


# -- faults -------------------------------------------------------------------------------------


async def test_server_errors_do_not_apply_mutations() -> None:
    world = small_world()
    async with serve(world, EmulatorConfig(fail_rate=1.0)) as api:
        read = await api.get(f"{V1}/metrics/list")
        wrote = await api.post(f"{V1}/metrics", new_metric())
    assert read.status in (500, 502, 503)
    assert wrote.status in (500, 502, 503)
    assert "brand new metric::sum" not in stored_metrics(world)
    assert [r.fault for r in world.request_log] == ["server_error", "server_error"]


async def test_dropped_connections_send_nothing_and_apply_nothing() -> None:
    world = small_world()
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
    world = small_world()
    async with serve(world, EmulatorConfig(truncate_rate=1.0)) as api:
        with pytest.raises(aiohttp.ClientPayloadError):
            await api.get(f"{V1}/metrics/list")
        with pytest.raises(aiohttp.ClientPayloadError):
            await api.post(f"{V1}/metrics", new_metric())
    assert "brand new metric::sum" not in stored_metrics(world)
    assert [r.fault for r in world.request_log] == ["truncate", "truncate"]


async def test_lost_answer_applies_the_mutation_then_drops_the_connection() -> None:
    world = small_world()
    async with serve(world, EmulatorConfig(lost_answer_rate=1.0)) as api:
        assert (await api.get(f"{V1}/metrics/list")).status == 200
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await api.post(f"{V1}/metrics", new_metric())
    assert "brand new metric::sum" in stored_metrics(world)
    assert [(r.status, r.fault) for r in world.request_log] == [(200, None), (201, "lost_answer")]


async def test_latency_is_added_to_every_authenticated_request() -> None:
    async with serve(small_world(), EmulatorConfig(latency_ms=60, latency_jitter_ms=20)) as api:
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
    world = small_world()
    async with serve(world, EmulatorConfig(latency_ms=100)) as api:
        await asyncio.gather(*(api.get(f"{V1}/metrics/list") for _ in range(6)))
    assert world.max_in_flight("source") == 6
    assert world.max_in_flight("target") == 0


# -- request log --------------------------------------------------------------------------------


async def test_request_log_records_each_request() -> None:
    clock = FakeClock(start=50.0)
    world = small_world(clock)
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


# -- create, read, update, delete ----------------------------------------------------------------


async def test_metric_lifecycle() -> None:
    world = small_world()
    async with serve(world) as api:
        body = new_metric("Revenue (7d) / user", source="s source 0001")
        created = await api.post(f"{V1}/metrics", body)
        assert created.status == 201
        data = created.body["data"]
        assert data["id"] == "Revenue (7d) / user::user_warehouse"
        assert data["creatorName"] == "CONSOLE API"
        assert data["lineage"] == {"events": [], "metrics": []}
        assert isinstance(data["createdTime"], int)
        path = f"{V1}/metrics/{seg(data['id'])}"
        assert (await api.get(path)).body["data"] == data
        dup = await api.post(f"{V1}/metrics", body)
        assert (dup.status, dup.body) == (400, {"status": 400, "message": "Name is already in use"})
        renamed = await api.post(path, {"name": "Revenue renamed", "type": "sum", "tags": ["a"]})
        assert renamed.status == 200
        assert renamed.body["data"]["id"] == data["id"]
        assert renamed.body["data"]["name"] == "Revenue renamed"
        assert renamed.body["data"]["type"] == "user_warehouse"
        assert (await api.call("DELETE", path)).body == {"message": "Metric deleted successfully."}
        assert (await api.get(path)).body == NOT_FOUND
        assert (await api.call("DELETE", path)).status == 404


async def test_metric_validation_reports_every_error() -> None:
    async with serve(small_world()) as api:
        bad = await api.post(f"{V1}/metrics", {"name": "ab", "type": "nope", "isVerified": "yes"})
        assert bad.status == 400
        assert bad.body["message"] == "Bad Request Exception"
        props = {e["property"]: e["errorMessage"] for e in bad.body["errors"]}
        assert props["name"] == "String must contain at least 4 character(s)"
        assert props["type"].startswith("Invalid enum value.")
        assert props["isVerified"] == "Expected boolean, received string"
        missing = await api.post(f"{V1}/metrics", {})
        assert {e["property"] for e in missing.body["errors"]} == {"name", "type"}
        unknown_source = await api.post(f"{V1}/metrics", new_metric("orphan", source="nope"))
        assert unknown_source.body["errors"][0]["property"] == "warehouseNative.metricSourceName"


async def test_dry_run_validates_without_persisting() -> None:
    world = small_world()
    async with serve(world) as api:
        answer = await api.post(f"{V1}/metrics", {**new_metric("dry metric"), "dryRun": True})
        assert answer.status == 201
        assert "dry metric::sum" not in stored_metrics(world)


async def test_metric_source_lifecycle() -> None:
    world = small_world()
    async with serve(world) as api:
        created = await api.post(SOURCES, new_source("Événements / EU"))
        assert created.status == 201
        assert created.body["data"]["description"] == ""
        path = f"{SOURCES}/{seg('Événements / EU')}"
        partial = await api.post(path, {"description": "only this"})
        assert partial.status == 400
        missing = {e["property"] for e in partial.body["errors"]}
        assert missing == {"sql", "timestampColumn", "idTypeMapping"}
        updated = await api.post(path, {**new_source("ignored new name"), "description": "new"})
        assert updated.body["data"]["name"] == "Événements / EU"
        assert updated.body["data"]["description"] == "new"
        in_use = await api.call("DELETE", f"{SOURCES}/{seg('s source 0001')}")
        assert in_use.status == 400
        deleted = await api.call("DELETE", path)
        assert deleted.body == {"message": "Metric source deleted successfully."}
        assert (await api.get(path)).status == 404
        assert (await api.get(f"{path}/metrics")).status == 404


async def test_create_status_switch() -> None:
    async with serve(small_world(), EmulatorConfig(create_status="200")) as api:
        assert (await api.post(f"{V1}/metrics", new_metric())).status == 200


async def test_unknown_routes_and_methods_are_404() -> None:
    async with serve(small_world()) as api:
        cases = [("GET", f"{V1}/nothing"), ("PATCH", f"{V1}/metrics/x::sum"), ("GET", "/")]
        for method, path in cases:
            answer = await api.call(method, path)
            assert (answer.status, answer.body) == (404, NOT_FOUND)


# -- demo data ----------------------------------------------------------------------------------


def _dump(world: World) -> bytes:
    kinds = ("metrics", "metric_sources")
    return orjson.dumps(
        {
            name: {kind: world.project(name).collection(kind).values() for kind in kinds}
            for name in world.projects
        }
    )


def test_demo_world_is_deterministic_per_seed() -> None:
    assert _dump(build_demo_world()) == _dump(build_demo_world())
    assert _dump(build_demo_world("other")) != _dump(build_demo_world())


def test_demo_world_shape() -> None:
    world = build_demo_world()
    source, target = world.project("source"), world.project("target")
    assert "demo" in source.console_key
    assert "demo" in target.console_key
    sources = source.collection("metric_sources")
    metrics = source.collection("metrics")
    counts = {n: metrics.count_where("metric_source", n) for n in sources}
    assert 20 <= len(sources) <= 30
    assert 2000 <= len(metrics) <= 3000
    assert sorted(counts.values()).count(0) == 1
    assert (counts["Page Views"], counts["Orders"], counts["Deprecated Source"]) == (100, 101, 0)
    assert {"Orders", "orders", "..", "日本 sales", "Événements / EU"} <= set(counts)
    assert len(set(counts.values())) > 15  # uneven
    assert len(target.collection("metrics")) < 50
    shared = set(target.collection("metrics")) & set(metrics)
    assert shared  # clones into target meet "Name is already in use"
    bigger = build_demo_world(scale=3).project("source").collection("metrics")
    assert len(bigger) > 2.5 * len(metrics) - 600
    assert bigger.count_where("metric_source", "Orders") == 101


def test_populate_metrics_sizes() -> None:
    project = Project("bench", "console-bench-key")
    names = populate_metrics(project, 3, 250, seed="x")
    assert len(names) == 3
    assert len(project.collection("metrics")) == 750
    assert project.collection("metrics").count_where("metric_source", names[1]) == 250


def test_config_errors_name_the_field_and_the_fix() -> None:
    with pytest.raises(ValueError, match=r"'100/10 sec'.*e\.g\. '100/10s'"):
        EmulatorConfig(mutation_windows=("100/10 sec",))
    with pytest.raises(ValueError, match="fail_rate"):
        EmulatorConfig(fail_rate=2)
    with pytest.raises(ValueError, match="create_status"):
        EmulatorConfig(create_status="202")


# -- ways to run --------------------------------------------------------------------------------


def test_emulator_thread_serves_blocking_callers() -> None:
    """Runs on its own loop; the main thread sees its request log."""
    world = small_world()
    with EmulatorThread(world, EmulatorConfig()) as emu:
        request = urllib.request.Request(
            emu.base_url + f"{V1}/metrics/list", headers={"STATSIG-API-KEY": SOURCE_KEY}
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 200
        assert world.count(project="source", status=200) == 1
    emu.stop()
    with pytest.raises(RuntimeError):
        _ = emu.base_url


@pytest.mark.slow
def test_serve_forever_prints_url_and_keys_and_stops_on_sigint() -> None:
    code = "from bulkops.emulator import serve_forever; serve_forever('127.0.0.1', 0, 'demo', 1)"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=root, env=env
    ) as proc:
        _check_serving(proc)


def _check_serving(proc: subprocess.Popen[str]) -> None:
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("Statsig Console API emulator listening on http://127.0.0.1:")
        base_url = first.rsplit(" ", 1)[1].strip()
        lines = [proc.stdout.readline().strip() for _ in range(3)]
        assert f"project source key {SOURCE_KEY}" in lines
        assert f"project target key {TARGET_KEY}" in lines
        request = urllib.request.Request(
            base_url + f"{SOURCES}/list", headers={"STATSIG-API-KEY": TARGET_KEY}
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert orjson.loads(resp.read())["pagination"]["totalItems"] == 3
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
