"""Dynamic configs: ``/console/v1/dynamic_configs`` and ``/{id}`` (rules: :mod:`.rule_endpoints`).

Create answers 201 (200 in the 2025-03 spec; see ``EmulatorConfig.create_status``); ``name`` is
required and ``id`` defaults to the derived name. Dynamic configs and experiments share one id
space (both are served to SDKs as configs), so an id taken by either is 400 "Name is already in
use". Full update (``POST``) requires ``description``, ``isEnabled`` and ``rules``; as for gates,
settable fields it omits return to their defaults (``name``, ``idType`` and ``owner`` are kept).
``defaultValue`` and ``defaultValueJson5`` are kept consistent (each filled from the other; a
mismatch is a 400). ``status`` is "Archived" after archive, else "Enabled"/"Disabled".
"""

from __future__ import annotations

from typing import Any

from .._context import Call, Reply
from .._envelopes import message_only, paged
from .._errors import name_in_use
from .._routing import Router
from .._store import Entity, Project
from .._validation import Bool, ListOf, Obj, Str, validate
from ._entities import (
    DYNAMIC_CONFIGS,
    EXPERIMENTS,
    TARGET_APPS_INPUT,
    TEAM_INPUT,
    audit_fields,
    change_reply,
    derive_id,
    get_entity,
    name_taken,
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
from ._rules import check_with_rules, json5_pair, merge_rules, new_rules, rule_schema
from .gates import NAME

__all__ = ["CREATE_SCHEMA", "FULL_SCHEMA", "create_dynamic_config", "register"]

BASE = "/console/v1/dynamic_configs"
UPDATED = "Dynamic config updated successfully."
_OWNER = Obj(
    fields={"ownerID": Str(), "ownerType": Str(), "ownerName": Str(), "ownerEmail": Str()},
    nullable=True,
)
_FIELDS = {
    "name": NAME,
    "isEnabled": Bool(),
    "description": Str(max_len=1000),
    "rules": ListOf(rule_schema(config=True)),
    "defaultValue": Obj(keep_unknown=True),
    "defaultValueJson5": Str(),
    "idType": Str(),
    "tags": ListOf(Str()),
    "creatorID": Str(nullable=True),
    "owner": _OWNER,
    "creatorEmail": Str(nullable=True),
    "schema": Str(nullable=True),
    "schemaJson5": Str(nullable=True),
    "targetApps": TARGET_APPS_INPUT,
    **TEAM_INPUT,
    "releasePipelineID": Str(nullable=True),
}
CREATE_SCHEMA = Obj(
    fields={
        **_FIELDS,
        "id": Str(min_len=3, max_len=100, pattern=r"^[a-zA-Z0-9_\-.]*$"),
        "isTemplate": Bool(),
    },
    required=("name",),
)
FULL_SCHEMA = Obj(fields=_FIELDS, required=("isEnabled", "description", "rules"))
PARTIAL_SCHEMA = Obj(fields=_FIELDS)

_RESETS: dict[str, Any] = {
    "tags": [],
    "targetApps": [],
    "team": None,
    "teamID": None,
    "defaultValue": {},
    "defaultValueJson5": "{}",
    "schema": None,
    "schemaJson5": None,
    "releasePipelineID": None,
}
_PLAIN = (
    "name",
    "isEnabled",
    "description",
    "idType",
    "tags",
    "schema",
    "schemaJson5",
    "releasePipelineID",
)


def _changes(
    project: Project, old: Entity | None, fields: dict[str, Any], rule_fields: str = "reset"
) -> dict[str, Any]:
    out: dict[str, Any] = {k: fields[k] for k in _PLAIN if k in fields}
    out.update(resolve_team(project, fields))
    if "targetApps" in fields:
        out["targetApps"] = target_app_ids(fields["targetApps"])
    if fields.get("owner"):
        out["owner"] = fields["owner"]
    if "defaultValue" in fields or "defaultValueJson5" in fields:
        value, text = json5_pair(
            fields.get("defaultValue"), fields.get("defaultValueJson5"), "defaultValue"
        )
        out.update(defaultValue=value, defaultValueJson5=text)
    if "rules" in fields:
        existing = old["rules"] if old else []
        out["rules"] = merge_rules(
            project, existing, fields["rules"], config=True, rule_fields=rule_fields
        )
    return out


def _with_status(entity: Entity) -> Entity:
    if entity.get("status") == "Archived":
        return entity
    return {**entity, "status": "Enabled" if entity["isEnabled"] else "Disabled"}


def create_dynamic_config(project: Project, fields: dict[str, Any], now_ms: int) -> Entity:
    """Create a config from validated ``DynamicConfigCreateDto`` fields (handler and seeder)."""
    config_id = fields.get("id") or derive_id(fields["name"])
    taken = config_id in DYNAMIC_CONFIGS.coll(project) or config_id in EXPERIMENTS.coll(project)
    if taken or name_taken(DYNAMIC_CONFIGS, project, fields["name"], config_id):
        raise name_in_use()
    check_with_rules(project, fields)
    config: Entity = {
        "id": config_id,
        "name": fields["name"],
        "description": "",
        "idType": "userID",
        "isEnabled": True,
        "status": "Enabled",
        "rules": [],
        "defaultValue": {},
        "defaultValueJson5": "{}",
        "schema": None,
        "schemaJson5": None,
        "tags": [],
        "targetApps": [],
        "holdoutIDs": [],
        "team": None,
        "teamID": None,
        "releasePipelineID": None,
        "isTemplate": fields.get("isTemplate", False),
        **audit_fields(
            project,
            now_ms,
            creator_id=fields.get("creatorID"),
            creator_email=fields.get("creatorEmail"),
        ),
    }
    config.update({k: v for k, v in _changes(project, None, fields).items() if k != "rules"})
    config["rules"] = new_rules(project, fields.get("rules", []), config=True)
    config = _with_status(config)
    DYNAMIC_CONFIGS.coll(project).add(config_id, config)
    return config


async def list_configs(call: Call) -> Reply:
    keep = list_filter(call, ("releasePipelineID", "creatorName", "creatorID"))
    items = [c for c in DYNAMIC_CONFIGS.coll(call.project).values() if keep(c)]
    return paged(call, "Dynamic Configs listed successfully.", items)


async def update(call: Call, *, full: bool) -> Reply:
    old = get_entity(call.project, DYNAMIC_CONFIGS, call.params["id"])
    fields = validate(FULL_SCHEMA if full else PARTIAL_SCHEMA, call.json_body())
    if name_taken(DYNAMIC_CONFIGS, call.project, fields.get("name"), old["id"]):
        raise name_in_use()
    check_with_rules(call.project, fields)
    base = {**old, **_RESETS} if full and call.config.replaces_on_full_update else old
    new = _with_status({**base, **_changes(call.project, old, fields, call.config.rule_fields)})
    stored, applied = save_change(call, DYNAMIC_CONFIGS, old, new)
    return change_reply(DYNAMIC_CONFIGS, stored, applied, UPDATED)


async def delete(call: Call) -> Reply:
    old = get_entity(call.project, DYNAMIC_CONFIGS, call.params["id"])
    DYNAMIC_CONFIGS.coll(call.project).remove(old["id"])
    return message_only("Dynamic Config deleted successfully.")


_ACTIONS: dict[str, Change] = {
    "enable": lambda c: _with_status({**c, "isEnabled": True}),
    "disable": lambda c: _with_status({**c, "isEnabled": False}),
    "archive": lambda c: {**c, "status": "Archived"},
    "unarchive": lambda c: _with_status({**c, "status": "Enabled"}),
}


def register(router: Router) -> None:
    create = create_handler(
        CREATE_SCHEMA, create_dynamic_config, "Dynamic Config created successfully.", 201
    )
    register_entity_routes(
        router,
        BASE,
        list_all=list_configs,
        create=create,
        read=read_handler(DYNAMIC_CONFIGS, "Dynamic config read successfully."),
        update=update,
        delete=delete,
    )
    for action, change in _ACTIONS.items():
        router.add(
            "PUT", f"{BASE}/{{id}}/{action}", action_handler(DYNAMIC_CONFIGS, change, UPDATED)
        )
