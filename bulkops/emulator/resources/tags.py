"""Tags: ``/console/v1/tags`` and ``/tags/{id}``.

A tag's id is server-assigned per project (22 base62 characters, different in every project and
never reused after a delete), while entities reference tags by **name** (``"tags": ["★ Core"]``,
reference §6). ``GET /tags/{id}`` also accepts the name, as Statsig's own importer relies on;
``PATCH`` and ``DELETE`` take the id only, so a client that mixes the two up finds out here.

Emulator decisions where the API is silent: names are unique per project and compared exactly
(a duplicate is 400 "Name is already in use"); renaming or deleting a tag leaves entities that
carry the old name untouched (their next write is then checked against the tags that exist).
"""

from __future__ import annotations

from typing import Any

from .._context import Call, Reply
from .._envelopes import message_only, paged, single
from .._errors import TAG_NOT_FOUND, name_in_use, not_found
from .._ids import stable_id
from .._routing import Router
from .._store import Collection, Entity, Project
from .._validation import Bool, Obj, Str, validate
from ._common import first_named, get_or_404, indexed_by_name

__all__ = [
    "CREATE_SCHEMA",
    "UPDATE_SCHEMA",
    "create_tag",
    "register",
    "tag_by_name",
    "tag_filter",
    "tags",
]

BASE = "/console/v1/tags"

CREATE_SCHEMA = Obj(
    fields={
        "name": Str(min_len=1, max_len=100),
        "description": Str(max_len=1000),
        "isCore": Bool(),
    },
    required=("name", "description"),
)
UPDATE_SCHEMA = Obj(
    fields={
        "name": Str(min_len=1, max_len=100),
        "description": Str(max_len=1000),
        "isCore": Bool(),
    },
)


def tags(project: Project) -> Collection:
    """The project's tags keyed by tag id, indexed by name."""
    return indexed_by_name(project, "tags")


def tag_by_name(project: Project, name: str) -> Entity | None:
    return first_named(tags(project), name)


def create_tag(project: Project, fields: dict[str, Any]) -> Entity:
    """Create a tag from validated fields (the handler and the demo seeder)."""
    if tag_by_name(project, fields["name"]) is not None:
        raise name_in_use()
    tag_id = stable_id("tag", project.name, fields["name"], project.next_seq("tags"))
    tag = {
        "id": tag_id,
        "name": fields["name"],
        "description": fields.get("description", ""),
        "isCore": fields.get("isCore", False),
    }
    tags(project).add(tag_id, tag)
    return tag


def tag_filter(call: Call) -> set[str] | None:
    """Tag names asked for by a list's ``tags`` query (tag ids or names; None: no filter).

    A value naming an existing tag is taken whole; otherwise it may be a comma-separated list.
    """
    raw = call.query.getall("tags", [])
    if not raw:
        return None
    coll = tags(call.project)
    names: set[str] = set()
    for value in raw:
        parts = [value] if (value in coll or tag_by_name(call.project, value)) else value.split(",")
        for part in (p.strip() for p in parts):
            found = coll.get(part)
            names.add(found["name"] if found else part)
    return names


def _by_id(project: Project, tag_id: str) -> Entity:
    return get_or_404(tags(project), tag_id, TAG_NOT_FOUND)


async def list_tags(call: Call) -> Reply:
    return paged(call, "Tags listed successfully", tags(call.project).values())


async def create(call: Call) -> Reply:
    fields = validate(CREATE_SCHEMA, call.json_body())
    tag = create_tag(call.project, fields)
    return single("Tag created successfully", tag, status=call.config.create_code(200))


async def read(call: Call) -> Reply:
    key = call.params["id"]
    found = tags(call.project).get(key) or tag_by_name(call.project, key)
    if found is None:
        raise not_found(TAG_NOT_FOUND)
    return single("Tag read successfully", found)


async def update(call: Call) -> Reply:
    old = _by_id(call.project, call.params["id"])
    fields = validate(UPDATE_SCHEMA, call.json_body())
    new_name = str(fields.get("name", old["name"]))
    if new_name != old["name"] and tag_by_name(call.project, new_name) is not None:
        raise name_in_use()
    new = {**old, **fields}
    tags(call.project).replace(old["id"], new)
    return single("Tag updated successfully", new)


async def delete(call: Call) -> Reply:
    old = _by_id(call.project, call.params["id"])
    tags(call.project).remove(old["id"])
    return message_only("Tag deleted successfully")


def register(router: Router) -> None:
    router.add("GET", BASE, list_tags)
    router.add("POST", BASE, create)
    router.add("GET", f"{BASE}/{{id}}", read)
    router.add("PATCH", f"{BASE}/{{id}}", update)
    router.add("DELETE", f"{BASE}/{{id}}", delete)
