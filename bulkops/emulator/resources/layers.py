"""Layers: ``/console/v1/layers``, ``/{id}`` and ``/{id}/experiments`` (overrides:
:mod:`.layer_overrides`).

A layer's id is derived from its name (the create DTO has no ``id``: "A Layer" → "a_layer").
Each experiment created without ``layerID`` gets an *implicit* layer ``statsig::<exp id>_layer``
(``isImplicitLayer: true``) whose parameters follow the experiment's groups; it is listed with
the others, goes away with its experiment and cannot be deleted or joined on its own.

``parameters`` are ``[{name, type, defaultValue}]``; the default must have the declared type and
names are unique. ``POST /{id}`` is a full update: with the default replace reading
(``EmulatorConfig.full_update``) an omitted ``targetApps`` goes back to ``[]``; PATCH merges.
Experiments in a layer may only set its parameters, so a layer update that
drops a parameter an experiment of the layer still sets is a 400, and deleting a layer that
still holds experiments is a 400 naming them (emulator decisions; the spec is silent).
"""

from __future__ import annotations

from typing import Any

from .._context import Call, Reply
from .._envelopes import message_only, paged, single
from .._errors import NOT_FOUND, ApiError, name_in_use, validation_failed
from .._routing import Router
from .._store import Entity, Project
from .._validation import AnyValue, Enum, ListOf, Obj, Str, validate
from ._entities import (
    EXPERIMENTS,
    LAYERS,
    TARGET_APPS_INPUT,
    audit_fields,
    derive_id,
    get_entity,
    save_change,
    target_app_ids,
    touch,
)
from ._handlers import create_handler, read_handler, register_entity_routes
from ._refs import Errors, check_references, resolve_team

__all__ = [
    "create_layer",
    "experiments_in",
    "implicit_layer_id",
    "register",
    "sync_implicit_layer",
]

BASE = "/console/v1/layers"
PARAM_TYPES = ("string", "number", "boolean", "object", "array")
_PARAMS = ListOf(
    Obj(
        fields={"name": Str(), "type": Enum(values=PARAM_TYPES), "defaultValue": AnyValue()},
        required=("name", "type", "defaultValue"),
    )
)
CREATE_SCHEMA = Obj(
    fields={
        "name": Str(min_len=3, max_len=100, pattern=r"^[A-Za-z0-9_ -]*$"),
        "description": Str(max_len=1000),
        "idType": Str(),
        "targetApps": TARGET_APPS_INPUT,
        "team": Str(),
    },
    required=("name", "idType"),
)
_UPDATE_FIELDS = {
    "description": Str(max_len=1000),
    "parameters": _PARAMS,
    "targetApps": TARGET_APPS_INPUT,
}
FULL_SCHEMA = Obj(fields=_UPDATE_FIELDS, required=("description", "parameters"))
#: What a full update (replace reading) resets when its body leaves the field out.
_RESETS: dict[str, Any] = {"targetApps": []}
PARTIAL_SCHEMA = Obj(fields=_UPDATE_FIELDS)
_TYPE_CHECK: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


def implicit_layer_id(experiment_id: str) -> str:
    return f"statsig::{experiment_id}_layer"


def _param_errors(params: list[dict[str, Any]]) -> Errors:
    errors: Errors = []
    seen: set[str] = set()
    for i, param in enumerate(params):
        if param["name"] in seen:
            errors.append(
                {
                    "property": f"parameters.{i}.name",
                    "errorMessage": f"Duplicate parameter {param['name']!r}",
                }
            )
        seen.add(param["name"])
        if not _TYPE_CHECK[param["type"]](param["defaultValue"]):
            errors.append(
                {
                    "property": f"parameters.{i}.defaultValue",
                    "errorMessage": f"Expected {param['type']}",
                }
            )
    return errors


def experiments_in(project: Project, layer_id: str) -> list[Entity]:
    return [e for e in EXPERIMENTS.coll(project).values() if e.get("layerID") == layer_id]


def _used_params(project: Project, layer_id: str) -> dict[str, str]:
    """Parameter name → an experiment of the layer that sets it."""
    used: dict[str, str] = {}
    for exp in experiments_in(project, layer_id):
        for group in exp["groups"]:
            for key in group.get("parameterValues") or {}:
                used.setdefault(key, exp["id"])
    return used


def create_layer(project: Project, fields: dict[str, Any], now_ms: int) -> Entity:
    """Create an explicit layer from validated ``LayerCreateContractDto`` fields."""
    layer_id = derive_id(fields["name"])
    if layer_id in LAYERS.coll(project):
        raise name_in_use()
    check_references(project, fields)
    layer: Entity = {
        "id": layer_id,
        "name": fields["name"],
        "description": fields.get("description", ""),
        "idType": fields["idType"],
        "isImplicitLayer": False,
        "parameters": [],
        "tags": [],
        "targetApps": target_app_ids(fields.get("targetApps")),
        "holdoutIDs": [],
        "team": None,
        "teamID": None,
        **resolve_team(project, fields),
        **audit_fields(project, now_ms),
    }
    LAYERS.coll(project).add(layer_id, layer)
    return layer


def _implicit_params(experiment: Entity) -> list[dict[str, Any]]:
    params: dict[str, dict[str, Any]] = {}
    for group in experiment["groups"]:
        for key, value in (group.get("parameterValues") or {}).items():
            kind = next((t for t in PARAM_TYPES if _TYPE_CHECK[t](value)), "object")
            params.setdefault(key, {"name": key, "type": kind, "defaultValue": value})
    return list(params.values())


def sync_implicit_layer(project: Project, experiment: Entity, now_ms: int) -> None:
    """Create or refresh the implicit layer of an experiment that has one."""
    layer_id = implicit_layer_id(experiment["id"])
    if experiment.get("layerID") != layer_id:
        return
    coll, params = LAYERS.coll(project), _implicit_params(experiment)
    old = coll.get(layer_id)
    if old is None:
        coll.add(
            layer_id,
            {
                "id": layer_id,
                "name": layer_id,
                "description": "",
                "isImplicitLayer": True,
                "idType": experiment["idType"],
                "parameters": params,
                "tags": [],
                "targetApps": [],
                "holdoutIDs": [],
                "team": None,
                "teamID": None,
                **audit_fields(project, now_ms),
            },
        )
    elif old["parameters"] != params or old["idType"] != experiment["idType"]:
        new = {**old, "parameters": params, "idType": experiment["idType"]}
        coll.replace(layer_id, touch(project, new, now_ms))


async def list_layers(call: Call) -> Reply:
    return paged(call, "Layers listed successfully.", LAYERS.coll(call.project).values())


async def update(call: Call, *, full: bool) -> Reply:
    old = get_entity(call.project, LAYERS, call.params["id"])
    fields = validate(FULL_SCHEMA if full else PARTIAL_SCHEMA, call.json_body())
    check_references(call.project, fields)
    base = {**old, **_RESETS} if full and call.config.replaces_on_full_update else old
    new = {**base, **{k: v for k, v in fields.items() if k != "targetApps"}}
    if "targetApps" in fields:
        new["targetApps"] = target_app_ids(fields["targetApps"])
    if "parameters" in fields:
        errors = _param_errors(fields["parameters"])
        kept = {p["name"] for p in fields["parameters"]}
        for name, exp_id in _used_params(call.project, old["id"]).items():
            if name not in kept:
                errors.append(
                    {
                        "property": "parameters",
                        "errorMessage": f"Parameter {name!r} is still set by experiment {exp_id!r}",
                    }
                )
        if errors:
            raise validation_failed(errors)
    stored, _ = save_change(call, LAYERS, old, new)
    return single("Layer updated successfully.", stored)


async def delete(call: Call) -> Reply:
    old = get_entity(call.project, LAYERS, call.params["id"], not_found=NOT_FOUND)
    members = [e["id"] for e in experiments_in(call.project, old["id"])]
    if members:
        raise ApiError(
            400,
            f"Invalid request. Layer {old['id']!r} still holds experiments "
            f"{members}; delete them first",
        )
    LAYERS.coll(call.project).remove(old["id"])
    return message_only("Layer deleted successfully.")


async def list_experiments(call: Call) -> Reply:
    layer = get_entity(call.project, LAYERS, call.params["id"])
    items = experiments_in(call.project, layer["id"])
    return paged(call, "Experiments listed successfully.", items)


def register(router: Router) -> None:
    register_entity_routes(
        router,
        BASE,
        list_all=list_layers,
        create=create_handler(CREATE_SCHEMA, create_layer, "Layer created successfully.", 201),
        read=read_handler(LAYERS, "Layer read successfully.", not_found=NOT_FOUND),
        update=update,
        delete=delete,
    )
    router.add("GET", f"{BASE}/{{id}}/experiments", list_experiments)
