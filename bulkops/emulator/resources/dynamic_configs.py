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
from .._envelopes import message_only, paged, single
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
    save_change,
)
from ._refs import check_references, resolve_team
from ._rules import condition_errors, json5_pair, merge_rules, new_rules, rule_schema
from .gates import NAME
from .tags import tag_filter

__all__ = ["CREATE_SCHEMA", "FULL_SCHEMA", "create_dynamic_config", "register"]

BASE = "/console/v1/dynamic_configs"
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


def _check(project: Project, fields: dict[str, Any]) -> None:
    check_references(project, fields, condition_errors(project, fields.get("rules", []), "rules"))


def _changes(project: Project, old: Entity | None, fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: fields[k] for k in _PLAIN if k in fields}
    out.update(resolve_team(project, fields))
    if "targetApps" in fields:
        apps = fields["targetApps"]
        out["targetApps"] = [apps] if isinstance(apps, str) else list(apps)
    if fields.get("owner"):
        out["owner"] = fields["owner"]
    if "defaultValue" in fields or "defaultValueJson5" in fields:
        value, text = json5_pair(
            fields.get("defaultValue"), fields.get("defaultValueJson5"), "defaultValue"
        )
        out.update(defaultValue=value, defaultValueJson5=text)
    if "rules" in fields:
        existing = old["rules"] if old else []
        out["rules"] = merge_rules(project, existing, fields["rules"], config=True)
    return out


def _with_status(entity: Entity) -> Entity:
    if entity.get("status") == "Archived":
        return entity
    return {**entity, "status": "Enabled" if entity["isEnabled"] else "Disabled"}


def create_dynamic_config(project: Project, fields: dict[str, Any], now_ms: int) -> Entity:
    """Create a config from validated ``DynamicConfigCreateDto`` fields (handler and seeder)."""
    config_id = fields.get("id") or derive_id(fields["name"])
    if config_id in DYNAMIC_CONFIGS.coll(project) or config_id in EXPERIMENTS.coll(project):
        raise name_in_use()
    _check(project, fields)
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
    tags = tag_filter(call)
    items = []
    for config in DYNAMIC_CONFIGS.coll(call.project).values():
        wanted = {k: call.query.get(k) for k in ("releasePipelineID", "creatorName", "creatorID")}
        if any(v is not None and config.get(k) != v for k, v in wanted.items()):
            continue
        if tags is None or tags & set(config.get("tags", [])):
            items.append(config)
    return paged(call, "Dynamic Configs listed successfully.", items)


async def create(call: Call) -> Reply:
    fields = validate(CREATE_SCHEMA, call.json_body())
    config = create_dynamic_config(call.project, fields, call.now_ms)
    return single("Dynamic Config created successfully.", config, call.config.create_code(201))


async def read(call: Call) -> Reply:
    found = get_entity(call.project, DYNAMIC_CONFIGS, call.params["id"])
    return single("Dynamic config read successfully.", found)


async def _update(call: Call, *, full: bool) -> Reply:
    old = get_entity(call.project, DYNAMIC_CONFIGS, call.params["id"])
    fields = validate(FULL_SCHEMA if full else PARTIAL_SCHEMA, call.json_body())
    _check(call.project, fields)
    base = {**old, **_RESETS} if full else old
    new = _with_status({**base, **_changes(call.project, old, fields)})
    stored, applied = save_change(call, DYNAMIC_CONFIGS, old, new)
    return change_reply(DYNAMIC_CONFIGS, stored, applied, "Dynamic config updated successfully.")


async def full_update(call: Call) -> Reply:
    return await _update(call, full=True)


async def partial_update(call: Call) -> Reply:
    return await _update(call, full=False)


async def delete(call: Call) -> Reply:
    old = get_entity(call.project, DYNAMIC_CONFIGS, call.params["id"])
    DYNAMIC_CONFIGS.coll(call.project).remove(old["id"])
    return message_only("Dynamic Config deleted successfully.")


def _action(change: Any) -> Any:
    async def handler(call: Call) -> Reply:
        old = get_entity(call.project, DYNAMIC_CONFIGS, call.params["id"])
        if call.body_bytes.strip():
            call.json_body()  # archive/unarchive bodies carry only reasons
        stored, applied = save_change(call, DYNAMIC_CONFIGS, old, change(old))
        return change_reply(
            DYNAMIC_CONFIGS, stored, applied, "Dynamic config updated successfully."
        )

    return handler


def register(router: Router) -> None:
    router.add("GET", BASE, list_configs)
    router.add("POST", BASE, create)
    router.add("GET", f"{BASE}/{{id}}", read)
    router.add("POST", f"{BASE}/{{id}}", full_update)
    router.add("PATCH", f"{BASE}/{{id}}", partial_update)
    router.add("DELETE", f"{BASE}/{{id}}", delete)
    router.add(
        "PUT", f"{BASE}/{{id}}/enable", _action(lambda c: _with_status({**c, "isEnabled": True}))
    )
    router.add(
        "PUT", f"{BASE}/{{id}}/disable", _action(lambda c: _with_status({**c, "isEnabled": False}))
    )
    router.add("PUT", f"{BASE}/{{id}}/archive", _action(lambda c: {**c, "status": "Archived"}))
    router.add(
        "PUT",
        f"{BASE}/{{id}}/unarchive",
        _action(lambda c: _with_status({**c, "status": "Enabled"})),
    )
