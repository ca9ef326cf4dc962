"""The emulator's router: the most literal route wins, whatever the registration order."""

from __future__ import annotations

import pytest

from bulkops.emulator._routing import Router, split_raw_path


async def _handler(call: object) -> object:  # never awaited: only identity matters here
    raise AssertionError


def _router(*templates: tuple[str, str]) -> Router:
    router = Router()
    for method, template in templates:
        router.add(method, template, _handler)
    return router


def _template(router: Router, method: str, raw: str) -> str | None:
    match = router.resolve(method, split_raw_path(raw)[1])
    return match.route.template if match else None


def test_a_literal_segment_beats_a_parameter_registered_before_it() -> None:
    """``/metrics/list`` wins over ``/metrics/{id}`` even when the parameter route came first."""
    router = _router(("GET", "/metrics/{id}"), ("GET", "/metrics/list"))
    assert _template(router, "GET", "/metrics/list") == "/metrics/list"
    assert _template(router, "GET", "/metrics/m1") == "/metrics/{id}"


def test_the_leftmost_literal_decides_between_two_partly_literal_routes() -> None:
    """Specificity is compared segment by segment from the left, as reference §12 orders them."""
    router = _router(("GET", "/a/{p}/c"), ("GET", "/a/b/{q}"))
    assert _template(router, "GET", "/a/b/c") == "/a/b/{q}"
    assert _template(router, "GET", "/a/x/c") == "/a/{p}/c"


def test_method_length_and_empty_segments_must_match() -> None:
    """Another method, another number of segments, or an empty parameter finds no route (a 404)."""
    router = _router(("GET", "/gates/{id}"), ("PATCH", "/gates/{id}/rules"))
    assert _template(router, "POST", "/gates/g1") is None
    assert _template(router, "GET", "/gates/g1/rules") is None
    assert _template(router, "PATCH", "/gates/g1/rules") == "/gates/{id}/rules"
    assert _template(router, "PATCH", "/gates//rules") is None
    match = router.resolve("PATCH", split_raw_path("/gates/a%2Fb/rules")[1])
    assert match is not None
    assert match.params == {"id": "a/b"}


def test_a_route_registered_twice_is_refused() -> None:
    """Two routes of one method and shape are a registration bug, not a silent override."""
    router = _router(("GET", "/tags/{id}"))
    with pytest.raises(ValueError, match="registered twice"):
        router.add("GET", "/tags/{name}", _handler)
    router.add("DELETE", "/tags/{id}", _handler)  # another method is another route
    assert len(router.routes) == 2
