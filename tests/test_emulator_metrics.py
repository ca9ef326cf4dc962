"""The emulator's metrics and metric sources: paging, awkward names, create/read/update/delete."""

from __future__ import annotations

import pytest

from bulkops.emulator import (
    EmulatorConfig,
    build_demo_world,
    populate_metrics,
)
from tests.support.http import V1, seg, serve
from tests.support.metrics import SOURCES, new_metric, new_source, stored_metrics
from tests.support.worlds import metrics_world

INVALID = {
    "status": 400,
    "message": "Invalid request. Please check the request input and try again.",
}


NOT_FOUND = {"status": 404, "message": "Not Found. The requested resource could not be found."}


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
    async with serve(metrics_world()) as api:
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
    world = metrics_world()
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
    """Source names are case-sensitive: Orders and orders are two sources."""
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


# -- create, read, update, delete ----------------------------------------------------------------


async def test_metric_lifecycle() -> None:
    """A metric is created with its server fields, read, refused a duplicate name, renamed, deleted."""
    world = metrics_world()
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
    """A bad metric body gets one 400 listing every invalid or missing property."""
    async with serve(metrics_world()) as api:
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
    """A create with dryRun answers as a create would and stores nothing."""
    world = metrics_world()
    async with serve(world) as api:
        answer = await api.post(f"{V1}/metrics", {**new_metric("dry metric"), "dryRun": True})
        assert answer.status == 201
        assert "dry metric::sum" not in stored_metrics(world)


async def test_metric_source_lifecycle() -> None:
    """A metric source updates only with a full body, keeps its name, is not deleted while in use."""
    world = metrics_world()
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
    """create_status="200" makes creates answer 200 instead of the spec's 201."""
    async with serve(metrics_world(), EmulatorConfig(create_status="200")) as api:
        assert (await api.post(f"{V1}/metrics", new_metric())).status == 200


async def test_unknown_routes_and_methods_are_404() -> None:
    """Unknown paths and unsupported methods get the documented 404 body."""
    async with serve(metrics_world()) as api:
        cases = [("GET", f"{V1}/nothing"), ("PATCH", f"{V1}/metrics/x::sum"), ("GET", "/")]
        for method, path in cases:
            answer = await api.call(method, path)
            assert (answer.status, answer.body) == (404, NOT_FOUND)
