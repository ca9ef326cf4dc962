"""Pieces several resources share: collection accessors, lookups and server-assigned audit fields.

Entities created or changed with a console key are attributed to "CONSOLE API" (reference §7);
the ids are the project's stable ``api_user_id`` so repeated runs give identical data.
"""

from __future__ import annotations

from typing import Any

from .._context import Call, Reply
from .._envelopes import single
from .._errors import NOT_FOUND, not_found
from .._store import Collection, Entity, Project
from .._validation import Obj, Str

__all__ = [
    "CONSOLE_API",
    "OWNER_INPUT",
    "console_owner",
    "created_fields",
    "first_named",
    "get_or_404",
    "indexed_by_name",
    "listed_rows",
    "metric_source_of",
    "metric_sources",
    "metrics",
    "modified_fields",
    "overrides_read",
]

CONSOLE_API = "CONSOLE API"

METRICS = "metrics"
METRIC_SOURCES = "metric_sources"
BY_SOURCE = "metric_source"
BY_NAME = "name"

OWNER_INPUT = Obj(
    fields={
        "ownerID": Str(),
        "ownerType": Str(),
        "ownerName": Str(),
        "ownerEmail": Str(),
        "name": Str(),
    },
    nullable=True,
)


def get_or_404(coll: Collection, key: str, message: str = NOT_FOUND) -> Entity:
    """The entity stored under ``key``, or the 404 every read, update and delete answers."""
    found = coll.get(key)
    if found is None:
        raise not_found(message)
    return found


def indexed_by_name(project: Project, kind: str) -> Collection:
    """The ``kind`` collection with an index on ``name``.

    For kinds whose ids are server-assigned (tags, teams) but which entities reference by name.
    """
    coll = project.collection(kind)
    coll.ensure_index(BY_NAME, lambda e: e["name"])
    return coll


def first_named(coll: Collection, name: str) -> Entity | None:
    """The entity of an :func:`indexed_by_name` collection with this exact name, if any."""
    found = coll.where(BY_NAME, name)
    return found[0] if found else None


def listed_rows(call: Call, rows: list[Entity]) -> list[Entity]:
    """List rows of a kind whose ``id`` the spec's list examples leave out (target apps, teams):
    as stored, or without ``id`` under ``EmulatorConfig.listed_ids="omitted"``."""
    if call.config.listed_ids == "sent":
        return rows
    return [{k: v for k, v in row.items() if k != "id"} for row in rows]


def overrides_read(call: Call, message: str, overrides: Any, status: int = 200) -> Reply:
    """The answer of an overrides GET; overrides that are all empty are answered as
    ``EmulatorConfig.empty_overrides`` says: the lists, ``data`` null, or a 404."""
    empty = isinstance(overrides, dict) and not any(overrides.values())
    if empty and call.config.empty_overrides == "404":
        raise not_found()
    if empty and call.config.empty_overrides == "null":
        return single(message, None, status)
    return single(message, overrides, status)


def metric_source_of(metric: Entity) -> str | None:
    """The metric source a (warehouse-native) metric reads from, if any."""
    whn = metric.get("warehouseNative")
    if isinstance(whn, dict):
        name = whn.get("metricSourceName")
        if isinstance(name, str) and name:
            return name
    return None


def metrics(project: Project) -> Collection:
    """The project's metrics, keyed by ``<name>::<type>``, indexed by metric source."""
    coll = project.collection(METRICS)
    coll.ensure_index(BY_SOURCE, metric_source_of)
    return coll


def metric_sources(project: Project) -> Collection:
    """The project's metric sources, keyed by name."""
    return project.collection(METRIC_SOURCES)


def console_owner(project: Project) -> dict[str, Any]:
    """``owner`` as the API reports it for entities created with a console key."""
    return {
        "name": CONSOLE_API,
        "ownerID": project.api_user_id,
        "ownerType": "SDK_KEY",
        "ownerName": CONSOLE_API,
        "ownerEmail": "",
    }


def modified_fields(project: Project, now_ms: int) -> dict[str, Any]:
    """``lastModified*`` fields for a change made now with the console key."""
    return {
        "lastModifiedTime": now_ms,
        "lastModifierID": project.api_user_id,
        "lastModifierName": CONSOLE_API,
        "lastModifierEmail": None,
    }


def created_fields(project: Project, now_ms: int) -> dict[str, Any]:
    """``creator*``/``createdTime`` plus ``lastModified*`` for an entity created now."""
    return {
        "creatorName": CONSOLE_API,
        "creatorEmail": None,
        "createdTime": now_ms,
        **modified_fields(project, now_ms),
    }
