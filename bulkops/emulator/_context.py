"""What a resource handler receives (:class:`Call`) and returns (:class:`Reply`).

Handlers are plain ``async def handler(call) -> Reply`` functions: no aiohttp objects, so they
stay small, testable and ignorant of faults, quotas and auth, which the dispatcher applies around
them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from multidict import MultiMapping

from ._config import EmulatorConfig
from ._errors import invalid_request, validation_failed
from ._store import Project
from ._validation import kind_of

__all__ = ["REVIEW_HEADER", "Call", "Reply"]

REVIEW_HEADER = "x-respect-review-settings"


@dataclass(frozen=True)
class Reply:
    """A JSON response: status, body and extra headers."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Call:
    """One authenticated, routed request as a handler sees it.

    ``raw_path`` / ``raw_query`` are exactly as sent (used to build pagination links);
    ``params`` are the decoded path parameters; ``now_ms`` is the wall-clock time in epoch
    milliseconds for server-assigned timestamps; ``headers`` are the request headers
    (case-insensitive in the app; a plain dict when a test builds a Call by hand).
    """

    project: Project
    method: str
    raw_path: str
    raw_query: str
    query: MultiMapping[str]
    params: dict[str, str]
    body_bytes: bytes
    config: EmulatorConfig
    now_ms: int
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def respects_review(self) -> bool:
        """True when ``x-respect-review-settings`` carries a non-empty value (reference §1)."""
        value = self.headers.get(REVIEW_HEADER)
        return bool(value and value.strip())

    def json_any(self) -> Any:
        """The request body as any JSON value (None when empty); 400 if it is not JSON."""
        if not self.body_bytes.strip():
            return None
        try:
            return orjson.loads(self.body_bytes)
        except orjson.JSONDecodeError:
            raise invalid_request() from None

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object; 400 if it is not one."""
        if not self.body_bytes.strip():
            return {}  # so validation reports each missing required field by name
        try:
            body = orjson.loads(self.body_bytes)
        except orjson.JSONDecodeError:
            raise invalid_request() from None
        if not isinstance(body, dict):
            raise validation_failed(
                [{"property": "", "errorMessage": f"Expected object, received {kind_of(body)}"}]
            )
        return body
