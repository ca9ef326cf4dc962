"""Parameter stores: ``/console/v1/param_stores`` (list, create) and ``/param_stores/{name}``
(read, update).

A store is addressed by its ``name`` (the path parameter), which is also its ``id`` here (the
spec gives both and does not relate them; the emulator keeps them equal, so the same store has
the same id in every project). Create (``ParamStoreCreateDto``: ``name``, ``description`` and
``displayName`` required) answers **200**, the spec's code, with an empty ``parameters`` list; a
taken name is 400 "Name is already in use". Update (``POST /{name}``, ``ParamStoreUpdateDto``)
sets ``description`` and/or replaces the whole ``parameters`` list. Parameters are checked
against the spec's shapes (``ref_type`` static / gate / layer / dynamic_config / experiment,
with the fields each needs); the entity a reference names (by name or id) must exist (the validation 400
otherwise, as for every reference, see :mod:`._refs`). The spec documents no delete.
"""

from __future__ import annotations

from typing import Any

from .._context import Call, Reply
from .._envelopes import paged, single
from .._errors import name_in_use, validation_failed
from .._routing import Router
from .._store import Collection, Entity, Project
from .._validation import Bool, Enum, ListOf, Node, Num, Obj, OneOf, Str, validate
from ._common import get_or_404
from ._entities import DYNAMIC_CONFIGS, EXPERIMENTS, GATES, LAYERS, Kind
from ._refs import Errors, check_references, resolve_team

__all__ = ["CREATE_SCHEMA", "UPDATE_SCHEMA", "create_param_store", "param_stores", "register"]

BASE = "/console/v1/param_stores"
_TYPES = ("string", "boolean", "number", "array", "object")
_VALUE_NODES: dict[str, Node] = {
    "boolean": Bool(),
    "number": Num(),
    "string": Str(),
    "object": Obj(keep_unknown=True),
    "array": ListOf(),
}


def _static(param_type: str) -> Obj:
    return Obj(
        fields={
            "ref_type": Enum(values=("static",)),
            "name": Str(),
            "param_type": Enum(values=(param_type,)),
            "value": _VALUE_NODES[param_type],
        },
        required=("ref_type", "name", "param_type", "value"),
    )


def _gate(param_type: str) -> Obj:
    value = _VALUE_NODES[param_type]
    return Obj(
        fields={
            "ref_type": Enum(values=("gate",)),
            "name": Str(),
            "gate_name": Str(),
            "param_type": Enum(values=(param_type,)),
            "pass_value": value,
            "fail_value": value,
        },
        required=("ref_type", "name", "gate_name", "param_type", "pass_value", "fail_value"),
    )


def _ref(ref_type: str, key: str) -> Obj:
    return Obj(
        fields={
            "ref_type": Enum(values=(ref_type,)),
            "name": Str(),
            "param_type": Enum(values=_TYPES),
            key: Str(),
            "param_name": Str(),
        },
        required=("ref_type", "name", "param_type", key, "param_name"),
    )


_REFERENCES: dict[str, tuple[str, Kind]] = {
    "gate": ("gate_name", GATES),
    "layer": ("layer_name", LAYERS),
    "dynamic_config": ("config_name", DYNAMIC_CONFIGS),
    "experiment": ("experiment_name", EXPERIMENTS),
}
PARAMETER = OneOf(
    options=(
        *(_static(t) for t in _TYPES),
        *(_gate(t) for t in _TYPES),
        *(_ref(r, key) for r, (key, _) in _REFERENCES.items() if r != "gate"),
    )
)
CREATE_SCHEMA = Obj(
    fields={
        "name": Str(min_len=1, max_len=100, pattern=r"^[a-zA-Z0-9_\-]*$"),
        "description": Str(max_len=1000),
        "displayName": Str(min_len=1, max_len=100),
        "targetAppIDs": ListOf(Str()),
        "tags": ListOf(Str()),
        "team": Str(),
    },
    required=("name", "description", "displayName"),
)
UPDATE_SCHEMA = Obj(fields={"description": Str(max_len=1000), "parameters": ListOf(PARAMETER)})


def param_stores(project: Project) -> Collection:
    """The project's parameter stores keyed by name."""
    return project.collection("param_stores")


def _parameter_errors(project: Project, parameters: list[dict[str, Any]]) -> Errors:
    errors: Errors = []
    for i, param in enumerate(parameters):
        found = _REFERENCES.get(param["ref_type"])
        if found is None:
            continue
        key, kind = found
        coll = kind.coll(project)
        if param[key] not in coll and not any(e["name"] == param[key] for e in coll.values()):
            errors.append(
                {
                    "property": f"parameters.{i}.{key}",
                    "errorMessage": f"{kind.label} {param[key]!r} does not exist in project "
                    f"{project.name!r}",
                }
            )
    return errors


def create_param_store(project: Project, fields: dict[str, Any], now_ms: int) -> Entity:
    """Create a store from validated ``ParamStoreCreateDto`` fields (handler and demo seeder)."""
    coll = param_stores(project)
    if fields["name"] in coll:
        raise name_in_use()
    check_references(project, {k: fields[k] for k in ("tags", "team") if k in fields})
    team = resolve_team(project, fields) or {"team": None, "teamID": None}
    store: Entity = {
        "id": fields["name"],
        "name": fields["name"],
        "displayName": fields["displayName"],
        "description": fields["description"],
        "createdTime": project.stamp(now_ms),
        "creatorID": project.api_user_id,
        "lastModifierID": project.api_user_id,
        "team": team["team"],
        "teamID": team["teamID"],
        "tags": list(fields.get("tags", [])),
        "targetAppIDs": list(fields.get("targetAppIDs", [])),
        "parameters": [],
    }
    if store["teamID"] is None:
        del store["teamID"]  # the DTO's teamID is a string, never null
    coll.add(store["name"], store)
    return store


async def list_stores(call: Call) -> Reply:
    return paged(call, "List param stores success", param_stores(call.project).values())


async def create(call: Call) -> Reply:
    fields = validate(CREATE_SCHEMA, call.json_body())
    store = create_param_store(call.project, fields, call.now_ms)
    return single("Param Store created successfully.", store, call.config.create_code(200))


async def read(call: Call) -> Reply:
    found = get_or_404(param_stores(call.project), call.params["name"])
    return single("Param Store read successfully.", found)


async def update(call: Call) -> Reply:
    old = get_or_404(param_stores(call.project), call.params["name"])
    fields = validate(UPDATE_SCHEMA, call.json_body())
    errors = _parameter_errors(call.project, fields.get("parameters", []))
    if errors:
        raise validation_failed(errors)
    new = {**old, **fields, "lastModifierID": call.project.api_user_id}
    param_stores(call.project).replace(old["name"], new)
    return single("Param Store updated successfully.", new)


def register(router: Router) -> None:
    router.add("GET", BASE, list_stores)
    router.add("POST", BASE, create)
    router.add("GET", f"{BASE}/{{name}}", read)
    router.add("POST", f"{BASE}/{{name}}", update)
