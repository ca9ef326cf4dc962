"""Routing on the raw request path, one percent-decoded segment at a time.

aiohttp matches routes against the *decoded* path, so ``/metrics/metric_source/a%2Fb/metrics``
would become ``.../a/b/metrics`` and address the wrong thing. Statsig names may hold ``/``, ``%``,
spaces, unicode and dots, so the emulator takes the raw path, resolves dot segments the way an
HTTP front end would (a literal ``..`` segment climbs; ``%2E%2E`` is the name ".."), splits on
``/``, and only then decodes each segment.

Among routes that match, the most literal one wins, segment by segment from the left: that
is the ordering rule of reference §12 (``/metrics/list`` before ``/metrics/{id}``) without
relying on registration order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

if TYPE_CHECKING:
    from ._context import Call, Reply

__all__ = ["Handler", "Match", "Route", "Router", "split_raw_path"]

Handler = Callable[["Call"], Awaitable["Reply"]]


def _remove_dot_segments(raw_segments: list[str]) -> list[str]:
    out: list[str] = []
    for seg in raw_segments:
        if seg == ".":
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(seg)
    return out


def split_raw_path(raw_path: str) -> tuple[list[str], list[str]]:
    """Split a raw path (no query) into (raw segments, decoded segments).

    A trailing slash is ignored, as Express-style servers do.
    """
    parts = raw_path.split("/")[1:] if raw_path.startswith("/") else raw_path.split("/")
    if parts and parts[-1] == "":
        parts.pop()
    parts = _remove_dot_segments(parts)
    return parts, [unquote(p, errors="strict") for p in parts]


@dataclass(frozen=True)
class Route:
    """``method`` + path template like ``/console/v1/metrics/metric_source/{name}/metrics``."""

    method: str
    template: str
    handler: Handler
    segments: tuple[str | None, ...]  # literal text, or None for a parameter
    params: tuple[str, ...]

    @classmethod
    def parse(cls, method: str, template: str, handler: Handler) -> Route:
        segments: list[str | None] = []
        params: list[str] = []
        for part in template.strip("/").split("/"):
            if part.startswith("{") and part.endswith("}"):
                segments.append(None)
                params.append(part[1:-1])
            else:
                segments.append(part)
        return cls(method.upper(), template, handler, tuple(segments), tuple(params))

    def match(self, decoded: list[str]) -> dict[str, str] | None:
        if len(decoded) != len(self.segments):
            return None
        values: list[str] = []
        for want, got in zip(self.segments, decoded, strict=True):
            if want is None:
                if got == "":
                    return None
                values.append(got)
            elif want != got:
                return None
        return dict(zip(self.params, values, strict=True))

    @property
    def specificity(self) -> tuple[bool, ...]:
        return tuple(s is not None for s in self.segments)


@dataclass(frozen=True)
class Match:
    route: Route
    params: dict[str, str]


class Router:
    """A table of :class:`Route`; :meth:`resolve` picks the most literal match for a method.

    Routes are kept per (method, number of segments), most literal first, so a request looks at
    the few routes of its own shape and the first match is the best one.
    """

    def __init__(self) -> None:
        self._routes: list[Route] = []
        self._by_shape: dict[tuple[str, int], list[Route]] = {}

    def add(self, method: str, template: str, handler: Handler) -> None:
        route = Route.parse(method, template, handler)
        shape = (route.method, len(route.segments))
        candidates = self._by_shape.setdefault(shape, [])
        if any(existing.segments == route.segments for existing in candidates):
            raise ValueError(f"Route {method} {template} registered twice")
        self._routes.append(route)
        candidates.append(route)
        candidates.sort(key=lambda r: r.specificity, reverse=True)

    def resolve(self, method: str, decoded: list[str]) -> Match | None:
        """The best route for ``method`` and decoded segments, or None (→ 404)."""
        for route in self._by_shape.get((method, len(decoded)), ()):
            params = route.match(decoded)
            if params is not None:
                return Match(route, params)
        return None

    @property
    def routes(self) -> list[Route]:
        return list(self._routes)

    def __repr__(self) -> str:
        return f"Router(routes={len(self._routes)})"
