"""Every emulator response, success or error, validates against the official OpenAPI spec.

Each case names whether the spec documents its status for that operation. Where it does not
(the spec lists no 400 on ``POST /metrics``, no 404 on metric-source operations, no 403/429
anywhere on these paths), the body must still have the spec's generic error shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest
from yarl import URL

from bulkops.emulator import (
    EmulatorConfig,
    Project,
    World,
    build_demo_world,
    populate_metrics,
    running_emulator,
)
from tests.support.openapi_spec import OpenApiSpec, SpecMismatch, spec_or_skip

KEY = "console-conformance-key"
RO_KEY = "console-conformance-readonly-key"
V1 = "/console/v1"
SOURCES = f"{V1}/metrics/metric_source"
SOURCE = "bench source 0001"  # made by populate_metrics, has 3 metrics
EMPTY = "empty source 0001"  # populate_metrics with 0 metrics
METRIC = "bench_s1_m1::user_warehouse"

NEW_METRIC = {
    "name": "Conversion (7d) / user",
    "type": "user_warehouse",
    "description": "conformance",
    "tags": ["growth"],
    "unitTypes": ["userID"],
    "metricEvents": [{"name": "purchase", "type": "count", "criteria": []}],
    "warehouseNative": {
        "aggregation": "count",
        "metricSourceName": SOURCE,
        "criteria": [{"type": "metadata", "column": "os", "condition": "in", "values": ["ios"]}],
    },
}
NEW_SOURCE = {
    "name": "Événements / EU",
    "description": "conformance",
    "sql": "SELECT * FROM events",
    "timestampColumn": "ts",
    "idTypeMapping": [{"statsigUnitID": "userID", "column": "user_id"}],
    "sourceType": "query",
}
SOURCE_UPDATE = {
    "sql": "SELECT * FROM events_v2",
    "timestampColumn": "ts",
    "idTypeMapping": [{"statsigUnitID": "stableID", "column": "stable_id"}],
}
BAD_METRIC = {"name": "ab", "type": "nope", "isVerified": "yes"}
BAD_SOURCE = {"name": "no sql here"}


def seg(name: str) -> str:
    return quote(name, safe="")


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    status: int
    body: Any = None
    key: str | None = KEY
    documented: bool = True
    body_valid: bool = True  # does the request body itself conform to the spec?


CASES = [
    # /metrics/list
    Case("list-200", "GET", f"{V1}/metrics/list?limit=2&page=2", 200),
    Case("list-401", "GET", f"{V1}/metrics/list", 401, key=None),
    Case("list-400", "GET", f"{V1}/metrics/list?page=zero", 400, documented=False),
    # POST /metrics
    Case("create-201", "POST", f"{V1}/metrics", 201, NEW_METRIC),
    Case(
        "create-400-validation",
        "POST",
        f"{V1}/metrics",
        400,
        BAD_METRIC,
        documented=False,
        body_valid=False,
    ),
    Case(
        "create-400-in-use",
        "POST",
        f"{V1}/metrics",
        400,
        {"name": "bench_s1_m1", "type": "user_warehouse"},
        documented=False,
    ),
    Case("create-401", "POST", f"{V1}/metrics", 401, NEW_METRIC, key="console-wrong"),
    Case("create-403", "POST", f"{V1}/metrics", 403, NEW_METRIC, key=RO_KEY, documented=False),
    # /metrics/{id}, /metrics/{name}/{type}
    Case("read-200", "GET", f"{V1}/metrics/{seg(METRIC)}", 200),
    Case("read-404", "GET", f"{V1}/metrics/{seg('missing::sum')}", 404),
    Case("read-by-name-200", "GET", f"{V1}/metrics/bench_s1_m1/user_warehouse", 200),
    Case("read-by-name-404", "GET", f"{V1}/metrics/nothing/sum", 404),
    Case(
        "update-200",
        "POST",
        f"{V1}/metrics/{seg(METRIC)}",
        200,
        {"description": "new", "tags": ["x"], "owner": {"email": "a@b.c", "ownerID": "u1"}},
    ),
    Case("update-404", "POST", f"{V1}/metrics/{seg('missing::sum')}", 404, {"description": "x"}),
    Case("update-401", "POST", f"{V1}/metrics/{seg(METRIC)}", 401, {"description": "x"}, key=None),
    Case(
        "update-400",
        "POST",
        f"{V1}/metrics/{seg(METRIC)}",
        400,
        {"tags": "x"},
        documented=False,
        body_valid=False,
    ),
    Case("delete-200", "DELETE", f"{V1}/metrics/{seg(METRIC)}", 200),
    Case("delete-404", "DELETE", f"{V1}/metrics/{seg('missing::sum')}", 404),
    Case("delete-401", "DELETE", f"{V1}/metrics/{seg(METRIC)}", 401, key="console-wrong"),
    # metric sources
    Case("sources-200", "GET", f"{SOURCES}/list?limit=1", 200),
    Case("sources-401", "GET", f"{SOURCES}/list", 401, key=None),
    Case("source-create-201", "POST", SOURCES, 201, NEW_SOURCE),
    Case("source-create-400-validation", "POST", SOURCES, 400, BAD_SOURCE, body_valid=False),
    Case("source-create-400-in-use", "POST", SOURCES, 400, {**NEW_SOURCE, "name": SOURCE}),
    Case("source-create-401", "POST", SOURCES, 401, NEW_SOURCE, key=None),
    Case("source-read-200", "GET", f"{SOURCES}/{seg(SOURCE)}", 200),
    Case("source-read-404", "GET", f"{SOURCES}/{seg('a/missing')}", 404, documented=False),
    Case("source-read-401", "GET", f"{SOURCES}/{seg(SOURCE)}", 401, key=None),
    Case("source-update-200", "POST", f"{SOURCES}/{seg(SOURCE)}", 200, SOURCE_UPDATE),
    Case(
        "source-update-400",
        "POST",
        f"{SOURCES}/{seg(SOURCE)}",
        400,
        {"description": "x"},
        body_valid=False,
    ),
    Case(
        "source-update-404",
        "POST",
        f"{SOURCES}/{seg('a/missing')}",
        404,
        SOURCE_UPDATE,
        documented=False,
    ),
    Case("source-update-401", "POST", f"{SOURCES}/{seg(SOURCE)}", 401, SOURCE_UPDATE, key=None),
    Case("source-delete-200", "DELETE", f"{SOURCES}/{seg(EMPTY)}", 200),
    Case("source-delete-400-in-use", "DELETE", f"{SOURCES}/{seg(SOURCE)}", 400),
    Case("source-delete-404", "DELETE", f"{SOURCES}/{seg('a/missing')}", 404, documented=False),
    Case("source-delete-401", "DELETE", f"{SOURCES}/{seg(EMPTY)}", 401, key=None),
    Case("source-metrics-200", "GET", f"{SOURCES}/{seg(SOURCE)}/metrics?limit=2", 200),
    Case(
        "source-metrics-404", "GET", f"{SOURCES}/{seg('a/missing')}/metrics", 404, documented=False
    ),
    Case("source-metrics-401", "GET", f"{SOURCES}/{seg(SOURCE)}/metrics", 401, key=None),
]


def conformance_world() -> World:
    project = Project("conformance", KEY, read_only_keys=[RO_KEY])
    populate_metrics(project, 1, 3)
    populate_metrics(project, 1, 0, prefix="empty")
    return World([project])


async def _send(base_url: str, case: Case) -> tuple[int, bytes]:
    headers = {"STATSIG-API-KEY": case.key} if case.key else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            case.method, URL(base_url + case.path, encoded=True), json=case.body, headers=headers
        ) as resp,
    ):
        return resp.status, await resp.read()


@pytest.fixture
def spec() -> OpenApiSpec:
    return spec_or_skip()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_response_matches_spec(spec: OpenApiSpec, case: Case) -> None:
    """Each metrics case answers its expected status with a body the spec's schema for it accepts."""
    async with running_emulator(conformance_world(), EmulatorConfig()) as base_url:
        status, raw = await _send(base_url, case)
    assert status == case.status, raw
    body = orjson.loads(raw)
    documented = spec.validate_response(
        case.method, case.path, status, body, allow_undocumented=True
    )
    assert documented == case.documented, (
        f"spec documents {spec.documented_statuses(case.method, case.path)} "
        f"for {case.method} {case.path}"
    )


@pytest.mark.parametrize("case", [c for c in CASES if c.body is not None], ids=lambda c: c.id)
def test_request_bodies_sent_match_the_spec(spec: OpenApiSpec, case: Case) -> None:
    """Valid test bodies conform; the deliberately bad ones are rejected by the spec too."""
    if case.body_valid:
        spec.validate_request_body(case.method, case.path, case.body)
    else:
        with pytest.raises(SpecMismatch):
            spec.validate_request_body(case.method, case.path, case.body)


async def test_rate_limited_and_server_error_bodies_have_the_error_shape(spec: OpenApiSpec) -> None:
    """429 and 5xx bodies (but the HTML 502) have the spec's error shape."""
    config = EmulatorConfig(mutation_windows=("1/10s",))
    async with running_emulator(conformance_world(), config) as base_url:
        await _send(base_url, CASES[3])
        status, raw = await _send(base_url, CASES[3])
    assert status == 429
    assert not spec.validate_response("POST", f"{V1}/metrics", 429, raw, allow_undocumented=True)
    async with running_emulator(conformance_world(), EmulatorConfig(fail_rate=1.0)) as base_url:
        status, raw = await _send(base_url, Case("x", "GET", f"{V1}/metrics/list", 0))
    if status != 502:  # 502 is an HTML page, as a load balancer sends
        spec.validate_response("GET", f"{V1}/metrics/list", status, raw, allow_undocumented=True)


async def test_every_demo_entity_matches_the_spec(spec: OpenApiSpec) -> None:
    """Walk every page of both demo projects' lists; each page validates."""
    world = build_demo_world()
    pages = 0
    async with running_emulator(world, EmulatorConfig()) as base_url:
        for key in ("console-demo-source-key", "console-demo-target-key"):
            for first in (f"{V1}/metrics/list?showHiddenMetrics=true", f"{SOURCES}/list"):
                link: str | None = first
                while link:
                    status, raw = await _send(base_url, Case("walk", "GET", link, 200, key=key))
                    assert status == 200
                    body = orjson.loads(raw)
                    spec.validate_response("GET", link, 200, body)
                    pages += 1
                    link = body["pagination"]["nextPage"]
    assert pages > 25  # ~2,600 metrics at 100 a page, plus sources and the target project
