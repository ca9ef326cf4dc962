"""Autotunes: ``/console/v1/autotunes``, ``/{id}`` and the ``start``, ``reset`` and
``make_decision`` actions.

An autotune is a config entity like an experiment: its id is derived from ``name`` ("A Autotune"
→ "a_autotune"; a taken id is 400 "Name is already in use"), it carries the audit block and a
``version`` that every applied change bumps (:mod:`._entities`). Create (``AutotuneCreateDto``)
answers **201**; each variant gets an id derived from its name (variant names are unique).
``POST /{id}`` is a full update (``AutotuneFullUpdateDto``: variants, success event, windows and
threshold required; under the default ``EmulatorConfig.full_update`` reading, optional fields
it leaves out go back to their create defaults); ``PATCH`` merges.

Actions answer ``{message}``: ``start`` sets ``isStarted`` (400 if it already runs);
``make_decision`` (``{id, decisionReason}``, ``id`` a variant id or name) needs a running
autotune (400 "Experiment has not yet started", the experiments' text), stops it and records
the variant as ``winner``; ``reset`` stops it and clears the winner. References (tags, team,
``idType``) are checked like every entity's (:mod:`._refs`).
"""

from __future__ import annotations

from typing import Any

from .._context import Call, Reply
from .._envelopes import message_only, paged, single
from .._errors import ApiError, bad_field, name_in_use
from .._routing import Router
from .._store import Entity, Project
from .._validation import AnyValue, Bool, Enum, ListOf, Num, Obj, Str, validate
from ._entities import Kind, audit_fields, derive_id, get_entity, save_change
from ._handlers import create_handler, read_handler, register_entity_routes
from ._refs import check_references

__all__ = ["AUTOTUNES", "CREATE_SCHEMA", "create_autotune", "register"]

BASE = "/console/v1/autotunes"
AUTOTUNES = Kind("autotunes", "Autotune")

_EXPLORATION = ("1hr", "24hr", "48hr", "168hr", "336hr", "1", "24", "48", "168", "336",
                "1hrs", "24hrs", "48hrs", "168hrs", "336hrs")  # fmt: skip
_ATTRIBUTION = ("1hr", "2hr", "4hr", "24hr", "1hrs", "2hrs", "4hrs", "24hrs", "1", "2", "4", "24")
_VARIANTS = ListOf(
    Obj(
        fields={"name": Str(min_len=1), "json": AnyValue(), "size": Num()},
        required=("name", "json"),
    )
)
_RATE = Num(minimum=0.001, maximum=1)
_FIELDS = {
    "description": Str(max_len=1000),
    "variants": _VARIANTS,
    "successEvent": Str(),
    "successEventValue": Str(),
    "explorationWindow": Enum(values=_EXPLORATION),
    "attributionWindow": Enum(values=_ATTRIBUTION),
    "attributionWindowUnit": Enum(values=("min", "hour", "day")),
    "explorationWindowRate": _RATE,
    "longtermExplorationAllocation": _RATE,
    "winnerThreshold": Enum(values=("80%", "90%", "95%", "98%", "99%")),
    "metadataField": Str(),
    "higherIsBetter": Bool(),
    "isContextual": Bool(),
    "metricSourceID": Str(),
    "linkedExperimentName": Str(),
    "goalRichText": Str(),
    "optimizationParameter": Enum(values=("occurrence", "value")),
    "valueColumn": Str(),
    "featureList": ListOf(Str()),
}
_REQUIRED = (
    "variants",
    "successEvent",
    "explorationWindow",
    "attributionWindow",
    "winnerThreshold",
)
CREATE_SCHEMA = Obj(
    fields={
        **_FIELDS,
        "name": Str(min_len=3, max_len=100, pattern=r"^[a-zA-Z0-9_\- ]*$"),
        "idType": Str(),
    },
    required=(*_REQUIRED, "name"),
)
FULL_SCHEMA = Obj(fields=_FIELDS, required=_REQUIRED)
PARTIAL_SCHEMA = Obj(fields=_FIELDS)
DECISION_SCHEMA = Obj(
    fields={"id": Str(), "decisionReason": Str(), "removeTargeting": Bool()},
    required=("id", "decisionReason"),
)
#: What a full update resets when its body leaves the field out (the create defaults).
_DEFAULTS: dict[str, Any] = {"description": "", "successEventValue": ""}
_OPTIONAL = tuple(k for k in _FIELDS if k not in _REQUIRED and k not in _DEFAULTS)


def _variants(given: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(given) < 2:
        raise bad_field("variants", "Array must contain at least 2 element(s)")
    out = []
    for v in given:
        out.append({"name": v["name"], "json": v.get("json"), "id": derive_id(v["name"]),
                    **({"size": v["size"]} if "size" in v else {})})  # fmt: skip
    ids = [v["id"] for v in out]
    if len(set(ids)) != len(ids):
        raise bad_field("variants", "Variant names must be unique")
    return out


def create_autotune(project: Project, fields: dict[str, Any], now_ms: int) -> Entity:
    """Create an autotune from validated ``AutotuneCreateDto`` fields (handler and seeder)."""
    autotune_id = derive_id(fields["name"])
    if autotune_id in AUTOTUNES.coll(project):
        raise name_in_use()
    check_references(project, {"idType": fields.get("idType", "userID")})
    settings = {k: v for k, v in fields.items() if k in _FIELDS}
    entity: Entity = {
        "id": autotune_id,
        "name": fields["name"],
        "idType": fields.get("idType", "userID"),
        **_DEFAULTS,
        **settings,
        "variants": _variants(fields["variants"]),
        "tags": [],
        "targetApps": [],
        "holdoutIDs": [],
        "team": None,
        "teamID": None,
        "isStarted": False,
        "winner": None,
        **audit_fields(project, now_ms),
    }
    AUTOTUNES.coll(project).add(autotune_id, entity)
    return entity


async def list_autotunes(call: Call) -> Reply:
    items = AUTOTUNES.coll(call.project).values()
    return paged(call, "Autotune Experiments listed successfully.", items)


async def update(call: Call, *, full: bool) -> Reply:
    old = get_entity(call.project, AUTOTUNES, call.params["id"])
    fields = validate(FULL_SCHEMA if full else PARTIAL_SCHEMA, call.json_body())
    base = dict(old)
    if full and call.config.replaces_on_full_update:
        base.update(_DEFAULTS)
        for key in _OPTIONAL:
            base.pop(key, None)
    new = {**base, **fields}
    if "variants" in fields:
        new["variants"] = _variants(fields["variants"])
    stored, _ = save_change(call, AUTOTUNES, old, new)
    return single("Autotune Experiment updated successfully.", stored)


async def delete(call: Call) -> Reply:
    old = get_entity(call.project, AUTOTUNES, call.params["id"])
    AUTOTUNES.coll(call.project).remove(old["id"])
    return message_only("Autotune Experiment deleted successfully.")


async def start(call: Call) -> Reply:
    old = get_entity(call.project, AUTOTUNES, call.params["id"])
    if old["isStarted"]:
        raise ApiError(400, "Autotune has already started")
    save_change(call, AUTOTUNES, old, {**old, "isStarted": True, "winner": None})
    return message_only("Autotune Experiment started successfully.")


async def reset(call: Call) -> Reply:
    old = get_entity(call.project, AUTOTUNES, call.params["id"])
    save_change(call, AUTOTUNES, old, {**old, "isStarted": False, "winner": None})
    return message_only("Autotune Experiment reset successfully.")


async def make_decision(call: Call) -> Reply:
    old = get_entity(call.project, AUTOTUNES, call.params["id"])
    fields = validate(DECISION_SCHEMA, call.json_body())
    if not old["isStarted"]:
        raise ApiError(400, "Experiment has not yet started")
    chosen = next((v for v in old["variants"] if fields["id"] in (v["id"], v["name"])), None)
    if chosen is None:
        raise bad_field("id", f"No variant with id or name {fields['id']!r} in {old['id']!r}")
    winner = {"id": chosen["id"], "name": chosen["name"]}
    save_change(call, AUTOTUNES, old, {**old, "isStarted": False, "winner": winner})
    return message_only("Autotune Experiment decision made successfully.")


def register(router: Router) -> None:
    register_entity_routes(
        router,
        BASE,
        list_all=list_autotunes,
        create=create_handler(
            CREATE_SCHEMA, create_autotune, "Autotune Experiments created successfully.", 201
        ),
        read=read_handler(AUTOTUNES, "Autotune Experiment read successfully."),
        update=update,
        delete=delete,
    )
    router.add("PUT", f"{BASE}/{{id}}/start", start)
    router.add("PUT", f"{BASE}/{{id}}/reset", reset)
    router.add("PUT", f"{BASE}/{{id}}/make_decision", make_decision)
