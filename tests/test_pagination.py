"""Pagination edge cases, end to end through the export against the emulator."""

from __future__ import annotations

import pytest

from bulkops.api.client import check_total, pages_for, parse_page
from bulkops.emulator import EmulatorConfig, running_emulator
from bulkops.errors import InconsistentListing, MalformedResponse
from tests.support.commands import run_export
from tests.support.jobs import export_job, snapshot


async def test_a_server_capping_limit_below_100_still_yields_every_row(tmp_path, world) -> None:
    """Pages shorter than the limit we asked for do not end the list while nextPage says more."""
    async with running_emulator(world, EmulatorConfig()) as url:
        assert await run_export(export_job(tmp_path / "a"), url, tmp_path / "sa") == 0
    world.clear_log()
    async with running_emulator(world, EmulatorConfig(max_page_limit=7)) as url:
        assert await run_export(export_job(tmp_path / "b"), url, tmp_path / "sb") == 0
    assert snapshot(tmp_path / "a" / "out") == snapshot(tmp_path / "b" / "out")
    pages = world.requests(method="GET", path_prefix="/console/v1/metrics/metric_source/")
    assert max(int(r.query.get("page", 1)) for r in pages) > 14  # 101 rows / 7 per page
    assert all(r.query.get("limit") == "100" for r in pages)  # we asked for 100 each time


def test_page_parsing_trusts_items_per_page_and_next_page() -> None:
    """A page's itemsPerPage, totalItems and nextPage are what the client goes by."""
    body = {
        "message": "ok",
        "data": [{"id": 1}] * 7,
        "pagination": {
            "itemsPerPage": 7,
            "pageNumber": 1,
            "nextPage": "/x?page=2&limit=100",
            "previousPage": None,
            "totalItems": 20,
        },
    }
    page = parse_page(body, 1, 100, "GET /x", "p")
    assert (page.items_per_page, page.total, page.has_next) == (7, 20, True)
    assert pages_for(20, 7) == 3


def test_missing_total_and_empty_next_page_mean_a_single_last_page() -> None:
    """No totalItems and an empty nextPage (or no pagination block) make the page the last."""
    page = parse_page({"data": [], "pagination": {"nextPage": ""}}, 3, 100, "GET /x", "p")
    assert (page.total, page.has_next, page.items_per_page) == (None, False, 100)
    page = parse_page({"data": [1, 2]}, 1, 100, "GET /x", "p")  # some examples omit pagination
    assert page.has_next is False


def test_a_body_without_a_data_list_is_malformed() -> None:
    """A list answer whose data is not a list is a MalformedResponse."""
    with pytest.raises(MalformedResponse):
        parse_page({"data": {"rules": []}}, 1, 100, "GET /x", "p")


def test_rows_read_must_match_total_items() -> None:
    """Reading fewer rows than the announced totalItems raises InconsistentListing; no total is fine."""
    check_total(rows_read=5, total=5, what="x")
    check_total(rows_read=5, total=None, what="x")
    with pytest.raises(InconsistentListing, match="totalItems=6"):
        check_total(rows_read=5, total=6, what="x")


def test_without_a_pagination_block_a_full_page_is_followed_by_the_next() -> None:
    """An answer with no ``pagination`` (as some spec examples show) ends only on a short page."""
    full = parse_page({"data": [{"id": i} for i in range(100)]}, 1, 100, "GET /x", "p")
    short = parse_page({"data": [{"id": 1}]}, 2, 100, "GET /x", "p")
    assert (full.has_next, short.has_next) == (True, False)
