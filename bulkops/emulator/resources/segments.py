"""Segments: ``/console/v1/segments``, ``/{id}``, ``/{id}/conditional``, ``/{id}/archive`` and the
id-list endpoints.

There is no update of a segment itself (reference §9.5): a ``rule_based`` segment's rules are
replaced with ``POST /{id}/conditional`` (a bare JSON array of rules, matched to stored rules by
``id``/``baseID`` like every full rules list); an ``id_list`` segment's ids change with ``PATCH``
(add), ``DELETE`` (remove) and ``POST …/reset`` (replace) on ``/{id}/id_list``; a
``user_store_id_list`` segment's with ``PATCH /{id}/add_ids`` and ``/remove_ids``. Using the wrong
kind of endpoint is the documented 400 "Segment must be of type '…' to be modified on this
endpoint". Segment rule conditions allow only the segment subset of condition types. The
``conditional`` answer is the message alone by default, as the spec's example shows (its schema
says ``data`` holds the segment: ``EmulatorConfig.segment_rules_answer="segment"``).

Every segment mutation, including id-list edits, bumps ``version``; all of them draw from the
separate segment quota (the dispatcher routes ``/segments`` mutations to that bucket). ``id``
defaults to the name-derived id. Archiving sets ``isEnabled: false`` and ``isArchived: true``.
"""

from __future__ import annotations

from typing import Any

from .._context import Call, Reply
from .._envelopes import message_only, paged, single
from .._errors import ApiError, bad_field, name_in_use
from .._routing import Router
from .._store import Entity, Project
from .._validation import Enum, ListOf, Num, Obj, Str, validate, validate_value
from ._entities import (
    SEGMENTS,
    TEAM_INPUT,
    audit_fields,
    derive_id,
    get_entity,
    name_taken,
    touch,
)
from ._handlers import create_handler, read_handler
from ._refs import check_references, resolve_team
from ._rules import check_with_rules, condition_errors, merge_rules, new_rules, rule_schema

__all__ = ["CREATE_SCHEMA", "create_segment", "register", "segment_ids"]

BASE = "/console/v1/segments"
TYPES = ("id_list", "rule_based", "analysis_list", "user_store_id_list")
_RULES = ListOf(rule_schema(segment=True))
CREATE_SCHEMA = Obj(
    fields={
        "name": Str(min_len=3, max_len=100, pattern=r"^[a-zA-Z0-9_\- ]*$"),
        "id": Str(min_len=3, max_len=100, pattern=r"^[a-zA-Z0-9_-]*$"),
        "description": Str(max_len=1000),
        "type": Enum(values=TYPES),
        "idType": Str(),
        "tags": ListOf(Str()),
        "creatorID": Str(nullable=True),
        "creatorEmail": Str(nullable=True),
        **TEAM_INPUT,
        "rules": _RULES,
    },
    required=("name", "type"),
)
IDS_SCHEMA = Obj(fields={"ids": ListOf(Str(), max_items=100_000)}, required=("ids",))
USER_STORE_SCHEMA = Obj(
    fields={"ids": ListOf(Str(), max_items=1000), "version": Num()}, required=("ids",)
)


def segment_ids(project: Project, segment_id: str) -> list[str]:
    """The ids of an id-list segment (kept beside the segment so responses stay small)."""
    found = project.collection("segment_ids").get(segment_id)
    return list(found["ids"]) if found else []


def _set_ids(project: Project, segment_id: str, ids: list[str]) -> None:
    project.collection("segment_ids").put(segment_id, {"ids": ids})


def create_segment(
    project: Project, fields: dict[str, Any], now_ms: int, ids: list[str] | None = None
) -> Entity:
    """Create a segment from validated fields; ``ids`` seeds an id list (demo)."""
    segment_id = fields.get("id") or derive_id(fields["name"])
    if segment_id in SEGMENTS.coll(project) or name_taken(
        SEGMENTS, project, fields["name"], segment_id
    ):
        raise name_in_use()
    rules = fields.get("rules")
    if rules and fields["type"] != "rule_based":
        raise bad_field("rules", "Only segments of type 'rule_based' have rules")
    check_with_rules(project, fields)
    segment: Entity = {
        "id": segment_id,
        "name": fields["name"],
        "description": fields.get("description", ""),
        "type": fields["type"],
        "idType": fields.get("idType", "userID"),
        "isEnabled": True,
        "tags": list(fields.get("tags", [])),
        "targetApps": [],
        "holdoutIDs": [],
        "team": None,
        "teamID": None,
        **resolve_team(project, fields),
        **audit_fields(
            project,
            now_ms,
            creator_id=fields.get("creatorID"),
            creator_email=fields.get("creatorEmail"),
        ),
    }
    if fields["type"] == "rule_based":
        segment["rules"] = new_rules(project, rules or [], config=False)
    else:
        segment["count"] = len(dict.fromkeys(ids or []))
        _set_ids(project, segment_id, list(dict.fromkeys(ids or [])))
    SEGMENTS.coll(project).add(segment_id, segment)
    return segment


def _of_type(project: Project, segment_id: str, wanted: str) -> Entity:
    segment = get_entity(project, SEGMENTS, segment_id)
    if segment["type"] != wanted:
        raise ApiError(400, f"Segment must be of type '{wanted}' to be modified on this endpoint")
    return segment


def _save(call: Call, new: Entity) -> Entity:
    stored = touch(call.project, new, call.now_ms)
    SEGMENTS.coll(call.project).replace(stored["id"], stored)
    return stored


async def list_segments(call: Call) -> Reply:
    return paged(call, "Segments listed successfully.", SEGMENTS.coll(call.project).values())


async def delete(call: Call) -> Reply:
    old = get_entity(call.project, SEGMENTS, call.params["id"])
    SEGMENTS.coll(call.project).remove(old["id"])
    call.project.collection("segment_ids").discard(old["id"])
    return message_only("Segment deleted successfully.")


async def archive(call: Call) -> Reply:
    old = get_entity(call.project, SEGMENTS, call.params["id"])
    stored = _save(call, {**old, "isEnabled": False, "isArchived": True})
    return single("Segment archived successfully.", stored)


async def conditional(call: Call) -> Reply:
    old = _of_type(call.project, call.params["id"], "rule_based")
    rules = validate_value(_RULES, call.json_any())
    check_references(call.project, {}, condition_errors(call.project, rules, "rules"))
    new_list = merge_rules(
        call.project,
        old.get("rules", []),
        rules,
        config=False,
        rule_fields=call.config.rule_fields,
    )
    saved = _save(call, {**old, "rules": new_list})
    if call.config.segment_rules_answer == "message":  # as the spec's example answers
        return message_only("Rules successfully updated")
    return single("Rules successfully updated", saved)


async def read_ids(call: Call) -> Reply:
    segment = get_entity(call.project, SEGMENTS, call.params["id"])
    ids = segment_ids(call.project, segment["id"])
    reply = paged(call, "Segments listed successfully.", ids)
    shape = call.config.id_list_shape
    if shape != "ids":  # "ids": the page's ids as they are (EmulatorConfig.id_list_shape)
        listed = {"name": segment["name"], "count": len(ids), "ids": reply.body["data"]}
        reply.body["data"] = [listed] if shape == "wrapped" else listed
    return reply


def _id_edit(wanted: str, schema: Obj, op: str, message: str) -> Any:
    async def handler(call: Call) -> Reply:
        old = _of_type(call.project, call.params["id"], wanted)
        given = validate(schema, call.json_body())["ids"]
        current = segment_ids(call.project, old["id"])
        if op == "add":
            ids = list(dict.fromkeys([*current, *given]))
        elif op == "remove":
            drop = set(given)
            ids = [i for i in current if i not in drop]
        else:
            ids = list(dict.fromkeys(given))
        _set_ids(call.project, old["id"], ids)
        _save(call, {**old, "count": len(ids)})
        return message_only(message)

    return handler


async def idlist_metadata(call: Call) -> Reply:
    segment = get_entity(call.project, SEGMENTS, call.params["id"])
    return single(
        "ID list metadata read successfully.",
        {"currentVersion": segment["version"], "isUpdating": False},
    )


def register(router: Router) -> None:
    one = f"{BASE}/{{id}}"
    router.add("GET", BASE, list_segments)
    router.add(
        "POST",
        BASE,
        create_handler(CREATE_SCHEMA, create_segment, "Segment created successfully.", 201),
    )
    router.add("GET", one, read_handler(SEGMENTS, "Segment read successfully."))
    router.add("DELETE", one, delete)
    router.add("PUT", f"{one}/archive", archive)
    router.add("POST", f"{one}/conditional", conditional)
    router.add("GET", f"{one}/id_list", read_ids)
    router.add(
        "PATCH",
        f"{one}/id_list",
        _id_edit("id_list", IDS_SCHEMA, "add", "IDs successfully added to Segment ID List"),
    )
    router.add(
        "DELETE",
        f"{one}/id_list",
        _id_edit("id_list", IDS_SCHEMA, "remove", "IDs successfully removed from Segment ID List"),
    )
    router.add(
        "POST",
        f"{one}/id_list/reset",
        _id_edit("id_list", IDS_SCHEMA, "reset", "Segment Reset reset successfully."),
    )
    router.add("GET", f"{one}/idlist_metadata", idlist_metadata)
    router.add(
        "PATCH",
        f"{one}/add_ids",
        _id_edit("user_store_id_list", USER_STORE_SCHEMA, "add", "IDs successfully added"),
    )
    router.add(
        "PATCH",
        f"{one}/remove_ids",
        _id_edit("user_store_id_list", USER_STORE_SCHEMA, "remove", "IDs successfully removed"),
    )
