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

from collections.abc import Callable
from typing import Any

from .._context import Call, Reply
from .._envelopes import message_only, paged
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
    name_taken,
    query_values,
    save_change,
    target_app_ids,
)
from ._handlers import (
    Change,
    action_handler,
    create_handler,
    list_filter,
    read_handler,
    register_entity_routes,
)
from ._refs import resolve_team
from ._rules import check_with_rules, merge_rules, new_rules, rule_schema

__all__ = ["CREATE_SCHEMA", "FULL_SCHEMA", "PARTIAL_SCHEMA", "create_gate", "register"]

BASE = "/console/v1/gates"
UPDATED = "Gate updated successfully."
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


def _changes(
    project: Project, old: Entity | None, fields: dict[str, Any], rule_fields: str = "reset"
) -> dict[str, Any]:
    """Stored-field changes from validated body ``fields`` (create, full or partial)."""
    out: dict[str, Any] = {k: fields[k] for k in _PLAIN if k in fields}
    out.update(resolve_team(project, fields))
    if "targetApps" in fields:
        out["targetApps"] = target_app_ids(fields["targetApps"])
    if "reviewSettings" in fields:
        reviewers = (old or {}).get("reviewSettings", {}).get("allowedReviewers", [])
        out["reviewSettings"] = {
            "requiredReview": fields["reviewSettings"]["requiredReview"],
            "allowedReviewers": reviewers,
        }
    if "rules" in fields:
        existing = old["rules"] if old else []
        out["rules"] = merge_rules(
            project, existing, fields["rules"], config=False, rule_fields=rule_fields
        )
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
    if gate_id in GATES.coll(project) or name_taken(GATES, project, fields.get("name"), gate_id):
        raise name_in_use()
    check_with_rules(project, fields)
    gate = build_gate(project, fields, now_ms)
    GATES.coll(project).add(gate_id, gate)
    return gate


def _filter(call: Call) -> Callable[[Entity], bool]:
    plain = list_filter(
        call, ("idType", "typeReason", "creatorName", "creatorID", "releasePipelineID")
    )
    types = query_values(call, "type")
    rates = query_values(call, "passRate") + query_values(call, "rolloutRate")

    def keep(gate: Entity) -> bool:
        if types and gate["type"] not in types:
            return False
        if rates and _rollout_rate(gate) not in rates:
            return False
        return plain(gate)

    return keep


def _rollout_rate(gate: Entity) -> str:
    pcts = {r["passPercentage"] for r in gate["rules"]}
    if pcts <= {0}:
        return "0"
    return "100" if pcts == {100} else "INBETWEEN"


async def list_gates(call: Call) -> Reply:
    keep = _filter(call)
    items = [g for g in GATES.coll(call.project).values() if keep(g)]
    return paged(call, "Gates listed successfully.", items)


async def update(call: Call, *, full: bool) -> Reply:
    old = get_entity(call.project, GATES, call.params["id"])
    fields = validate(FULL_SCHEMA if full else PARTIAL_SCHEMA, call.json_body())
    if name_taken(GATES, call.project, fields.get("name"), old["id"]):
        raise name_in_use()
    check_with_rules(call.project, fields)
    base = {**old, **_RESETS} if full and call.config.replaces_on_full_update else old
    new = _with_status({**base, **_changes(call.project, old, fields, call.config.rule_fields)})
    stored, applied = save_change(call, GATES, old, new)
    return change_reply(GATES, stored, applied, UPDATED)


async def delete(call: Call) -> Reply:
    old = get_entity(call.project, GATES, call.params["id"])
    GATES.coll(call.project).remove(old["id"])
    GATES.overrides(call.project).discard(old["id"])
    detach_from_holdouts(call.project, "gateIDs", old["id"], call.now_ms)
    return message_only("Gate deleted successfully.")


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


def _launch(g: Entity) -> Entity:
    return {**g, "isEnabled": True, "status": "Launched"}


def _archive(g: Entity) -> Entity:
    return {**g, "status": "Archived"}


_ACTIONS: dict[str, Change] = {
    "enable": _enable,
    "disable": _disable,
    "launch": _launch,
    "archive": _archive,
    "unarchive": _unarchive,
}


def register(router: Router) -> None:
    register_entity_routes(
        router,
        BASE,
        list_all=list_gates,
        create=create_handler(CREATE_SCHEMA, create_gate, "Gate created successfully.", 201),
        read=read_handler(GATES, "Gate read successfully."),
        update=update,
        delete=delete,
    )
    for action, change in _ACTIONS.items():
        router.add("PUT", f"{BASE}/{{id}}/{action}", action_handler(GATES, change, UPDATED))
