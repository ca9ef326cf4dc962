"""What a resource handler receives (:class:`Call`) and returns (:class:`Reply`).

Handlers are plain ``async def handler(call) -> Reply`` functions: no aiohttp objects, so they
stay small, testable and ignorant of faults, quotas and auth, which the dispatcher applies around
them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from multidict import MultiDictProxy

from ._config import EmulatorConfig
from ._errors import invalid_request, validation_failed
from ._store import Project
from ._validation import kind_of

__all__ = ["Call", "Reply"]


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
    milliseconds for server-assigned timestamps.
    """

    project: Project
    method: str
    raw_path: str
    raw_query: str
    query: MultiDictProxy[str]
    params: dict[str, str]
    body_bytes: bytes
    config: EmulatorConfig
    now_ms: int

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

