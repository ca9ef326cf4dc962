"""Success envelopes (reference §2) and page slicing with its ``pagination`` block (§5).

* single: ``{"message", "data"}``
* list: ``{"message", "data": [...], "pagination": {itemsPerPage, pageNumber, nextPage,
  previousPage, totalItems, all}}``
* message only (deletes): ``{"message"}``

``nextPage``/``previousPage`` are relative links that repeat the request's own path and query
with ``page`` changed (and ``page``/``limit`` appended when absent), or null. ``limit`` defaults to
100 and is capped at ``EmulatorConfig.max_page_limit``; a bad ``page`` or ``limit`` is a 400.
``EmulatorConfig.pagination`` may leave the block out (``"omitted"``), or also answer every item
whatever the ``page`` and ``limit`` (``"unpaged"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._context import Call, Reply
from ._errors import invalid_request

__all__ = ["message_only", "paged", "single"]

DEFAULT_LIMIT = 100


def single(message: str, data: Any, status: int = 200) -> Reply:
    """``{"message", "data"}``."""
    return Reply(status, {"message": message, "data": data})


def message_only(message: str, status: int = 200) -> Reply:
    """``{"message"}``, as deletes answer."""
    return Reply(status, {"message": message})


def _positive_int(call: Call, name: str, default: int) -> int:
    raw = call.query.get(name)
    if raw is None:
        return default
    text = raw.strip()
    if not text.isdigit() or int(text) < 1:
        raise invalid_request()
    return int(text)


def _link(call: Call, page: int, limit: int) -> str:
    """The request's own path and query with ``page`` set (query kept as sent, not re-encoded)."""
    parts = [p for p in call.raw_query.split("&") if p] if call.raw_query else []
    seen_page = seen_limit = False
    out = []
    for part in parts:
        key = part.split("=", 1)[0]
        if key == "page":
            if seen_page:
                continue
            seen_page = True
            out.append(f"page={page}")
            continue
        seen_limit = seen_limit or key == "limit"
        out.append(part)
    if not seen_page:
        out.append(f"page={page}")
    if not seen_limit:
        out.append(f"limit={limit}")
    return f"{call.raw_path}?{'&'.join(out)}"


def paged(call: Call, message: str, items: Sequence[Any]) -> Reply:
    """Slice ``items`` by the call's ``page``/``limit`` and wrap them in the list envelope."""
    mode = call.config.pagination
    if mode == "unpaged":
        return Reply(200, {"message": message, "data": list(items)})
    page = _positive_int(call, "page", 1)
    limit = min(_positive_int(call, "limit", DEFAULT_LIMIT), call.config.max_page_limit)
    total = len(items)
    start = (page - 1) * limit
    data = list(items[start : start + limit])
    has_next = start + limit < total
    pagination = {
        "itemsPerPage": limit,
        "pageNumber": page,
        "nextPage": _link(call, page + 1, limit) if has_next else None,
        "previousPage": _link(call, page - 1, limit) if page > 1 else None,
        "totalItems": total,
        "all": call.raw_path,
    }
    if mode == "omitted":
        return Reply(200, {"message": message, "data": data})
    return Reply(200, {"message": message, "data": data, "pagination": pagination})
