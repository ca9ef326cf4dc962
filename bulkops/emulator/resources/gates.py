"""Feature gates: ``/console/v1/gates`` and ``/gates/{id}``.

Rules and overrides live in :mod:`.rule_endpoints`.

Create answers 201 (the Oct 2025 spec; the 2025-03 spec said 200: ``EmulatorConfig.create_status``
switches). ``id`` is the body's or derived from ``name``; a taken id is 400 "Name is already in
use". Defaults follow reference §7 (enabled, "In Progress", PERMANENT, no rules...).

**Full vs partial update.** ``POST /gates/{id}`` must carry ``isEnabled``, ``description`` and
``rules`` and is a *full* update: settable fields it leaves out go back to their create defaults
(``tags``, ``targetApps``, ``team``, ``type``, ``monitoringMetrics``, ``measureMetricLifts``,
``releasePipelineID``), except ``name``, ``idType`` and ``reviewSettings``, which are kept.
``PATCH`` merges only the keys given; a list given replaces the whole list. ``rules`` in either
form is a full rules list matched to stored rules by ``id``/``baseID`` (:mod:`._rules`).
``creatorID``/``creatorEmail`` are taken on create only.

``status`` is derived: "Archived" and "Launched" stick until unarchive; otherwise "In Progress"
when enabled and "Disabled" when not.
"""

from __future__ import annotations

from typing import Any

from .._context import Call, Reply
from .._envelopes import message_only, paged, single
from .._errors import bad_field, name_in_use
from .._routing import Router
from .._store import Entity, Project
from .._validation import Bool, Enum, ListOf, Obj, Str, validate
from ._entities import (
    GATES,
    TARGET_APPS_INPUT,
    TEAM_INPUT,
    audit_fields,
    change_reply,
    derive_id,
    detach_from_holdouts,
    get_entity,
    query_values,
    save_change,
)
from ._refs import check_references, resolve_team
from ._rules import condition_errors, merge_rules, new_rules, rule_schema
from .tags import tag_filter

__all__ = ["CREATE_SCHEMA", "FULL_SCHEMA", "PARTIAL_SCHEMA", "create_gate", "register"]

BASE = "/console/v1/gates"
NAME = Str(min_len=3, max_len=100, pattern=r"^[a-zA-Z0-9_\-. ]*$")
_FIELDS = {
    "name": NAME,
    "isEnabled": Bool(),
    "description": Str(max_len=1000),
    "rules": ListOf(rule_schema()),
    "tags": ListOf(Str()),
    "type": Enum(values=("PERMANENT", "TEMPORARY")),
    "idType": Str(),
    "targetApps": TARGET_APPS_INPUT,
    "creatorID": Str(nullable=True),
    "creatorEmail": Str(nullable=True),
    **TEAM_INPUT,
    "measureMetricLifts": Bool(),
    "monitoringMetrics": ListOf(
        Obj(fields={"name": Str(), "type": Str()}, required=("name", "type"))
    ),
    "reviewSettings": Obj(fields={"requiredReview": Bool()}, required=("requiredReview",)),
    "releasePipelineID": Str(nullable=True),
}
CREATE_SCHEMA = Obj(
    fields={
        **_FIELDS,
        "id": Str(min_len=3, max_len=100, pattern=r"^[a-zA-Z0-9_\-.]*$"),
        "isTemplate": Bool(),
    }
)
FULL_SCHEMA = Obj(fields=_FIELDS, required=("isEnabled", "description", "rules"))
PARTIAL_SCHEMA = Obj(fields=_FIELDS)

_RESETS: dict[str, Any] = {
    "tags": [],
    "targetApps": [],
    "team": None,
    "teamID": None,
    "type": "PERMANENT",
    "measureMetricLifts": True,
    "monitoringMetrics": [],
    "releasePipelineID": None,
}
_PLAIN = (
    "description",
    "tags",
    "type",
    "idType",
    "measureMetricLifts",
    "monitoringMetrics",
    "releasePipelineID",
    "isEnabled",
    "name",
)


def _targets(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _check(project: Project, fields: dict[str, Any]) -> None:
    check_references(project, fields, condition_errors(project, fields.get("rules", []), "rules"))


def _changes(project: Project, old: Entity | None, fields: dict[str, Any]) -> dict[str, Any]:
    """Stored-field changes from validated body ``fields`` (create, full or partial)."""
    out: dict[str, Any] = {k: fields[k] for k in _PLAIN if k in fields}
    out.update(resolve_team(project, fields))
    if "targetApps" in fields:
        out["targetApps"] = _targets(fields["targetApps"])
    if "reviewSettings" in fields:
        reviewers = (old or {}).get("reviewSettings", {}).get("allowedReviewers", [])
        out["reviewSettings"] = {
            "requiredReview": fields["reviewSettings"]["requiredReview"],
            "allowedReviewers": reviewers,
        }
    if "rules" in fields:
        existing = old["rules"] if old else []
        out["rules"] = merge_rules(project, existing, fields["rules"], config=False)
    return out


def _with_status(entity: Entity) -> Entity:
    if entity.get("status") in ("Archived", "Launched"):
        return entity
    return {**entity, "status": "In Progress" if entity["isEnabled"] else "Disabled"}


def build_gate(project: Project, fields: dict[str, Any], now_ms: int) -> Entity:
    gate_id = fields.get("id") or derive_id(fields["name"])
    gate: Entity = {
        "id": gate_id,
        "name": fields.get("name", gate_id),
        "description": "",
        "idType": "userID",
        "isEnabled": True,
        "status": "In Progress",
        "rules": [],
        "checksPerHour": 0,
        "type": "PERMANENT",
        "typeReason": "NONE",
        "isTemplate": False,
        "tags": [],
        "targetApps": [],
        "holdoutIDs": [],
        "team": None,
        "teamID": None,
        "reviewSettings": {"requiredReview": False, "allowedReviewers": []},
        "measureMetricLifts": True,
        "monitoringMetrics": [],
        "releasePipelineID": None,
        **audit_fields(
            project,
            now_ms,
            creator_id=fields.get("creatorID"),
            creator_email=fields.get("creatorEmail"),
        ),
    }
    gate.update({k: v for k, v in _changes(project, None, fields).items() if k != "rules"})
    gate["rules"] = new_rules(project, fields.get("rules", []), config=False)
    gate["isTemplate"] = fields.get("isTemplate", False)
    return _with_status(gate)


def create_gate(project: Project, fields: dict[str, Any], now_ms: int) -> Entity:
    """Create a gate from validated ``GateCreateDto`` fields (handler and demo seeder)."""
    if not fields.get("id") and not fields.get("name"):
        raise bad_field("name", "Required (send name, id or both)")
    gate_id = fields.get("id") or derive_id(fields["name"])
    if gate_id in GATES.coll(project):
        raise name_in_use()
    _check(project, fields)
    gate = build_gate(project, fields, now_ms)
    GATES.coll(project).add(gate_id, gate)
    return gate


def _matches(gate: Entity, call: Call, tags: set[str] | None) -> bool:
    for key in ("idType", "typeReason", "creatorName", "creatorID", "releasePipelineID"):
        wanted = call.query.get(key)
        if wanted is not None and gate.get(key) != wanted:
            return False
    types = query_values(call, "type")
    if types and gate["type"] not in types:
        return False
    rates = query_values(call, "passRate") + query_values(call, "rolloutRate")
    if rates and _rollout_rate(gate) not in rates:
        return False
    return tags is None or bool(tags & set(gate.get("tags", [])))


def _rollout_rate(gate: Entity) -> str:
    pcts = {r["passPercentage"] for r in gate["rules"]}
    if pcts <= {0}:
        return "0"
    return "100" if pcts == {100} else "INBETWEEN"


async def list_gates(call: Call) -> Reply:
    tags = tag_filter(call)
    items = [g for g in GATES.coll(call.project).values() if _matches(g, call, tags)]
    return paged(call, "Gates listed successfully.", items)


async def create(call: Call) -> Reply:
    fields = validate(CREATE_SCHEMA, call.json_body())
    gate = create_gate(call.project, fields, call.now_ms)
    return single("Gate created successfully.", gate, call.config.create_code(201))


async def read(call: Call) -> Reply:
    return single("Gate read successfully.", get_entity(call.project, GATES, call.params["id"]))


async def _update(call: Call, *, full: bool) -> Reply:
    old = get_entity(call.project, GATES, call.params["id"])
    fields = validate(FULL_SCHEMA if full else PARTIAL_SCHEMA, call.json_body())
    _check(call.project, fields)
    base = {**old, **_RESETS} if full else old
    new = _with_status({**base, **_changes(call.project, old, fields)})
    stored, applied = save_change(call, GATES, old, new)
    return change_reply(GATES, stored, applied, "Gate updated successfully.")


async def full_update(call: Call) -> Reply:
    return await _update(call, full=True)


async def partial_update(call: Call) -> Reply:
    return await _update(call, full=False)


async def delete(call: Call) -> Reply:
    old = get_entity(call.project, GATES, call.params["id"])
    GATES.coll(call.project).remove(old["id"])
    overrides = call.project.collection("gates_overrides")
    if old["id"] in overrides:
        overrides.remove(old["id"])
    detach_from_holdouts(call.project, "gateIDs", old["id"], call.now_ms)
    return message_only("Gate deleted successfully.")


def _action(change: Any) -> Any:
    async def handler(call: Call) -> Reply:
        old = get_entity(call.project, GATES, call.params["id"])
        if call.method == "PUT" and call.body_bytes.strip():
            call.json_body()  # archive/unarchive bodies carry only reasons; must be JSON objects
        stored, applied = save_change(call, GATES, old, change(old))
        return change_reply(GATES, stored, applied, "Gate updated successfully.")

    return handler


def _enable(g: Entity) -> Entity:
    return _with_status({**g, "isEnabled": True})


def _disable(g: Entity) -> Entity:
    return {
        **g,
        "isEnabled": False,
        "status": "Archived" if g["status"] == "Archived" else "Disabled",
    }


def _unarchive(g: Entity) -> Entity:
    return _with_status({**g, "status": "In Progress"})


def register(router: Router) -> None:
    router.add("GET", BASE, list_gates)
    router.add("POST", BASE, create)
    router.add("GET", f"{BASE}/{{id}}", read)
    router.add("POST", f"{BASE}/{{id}}", full_update)
    router.add("PATCH", f"{BASE}/{{id}}", partial_update)
    router.add("DELETE", f"{BASE}/{{id}}", delete)
    router.add("PUT", f"{BASE}/{{id}}/enable", _action(_enable))
    router.add("PUT", f"{BASE}/{{id}}/disable", _action(_disable))
    router.add(
        "PUT",
        f"{BASE}/{{id}}/launch",
        _action(lambda g: {**g, "isEnabled": True, "status": "Launched"}),
    )
    router.add("PUT", f"{BASE}/{{id}}/archive", _action(lambda g: {**g, "status": "Archived"}))
    router.add("PUT", f"{BASE}/{{id}}/unarchive", _action(_unarchive))
