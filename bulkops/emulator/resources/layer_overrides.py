"""Layer overrides (reference §8.4): ``GET/POST/PATCH/DELETE /console/v1/layers/{id}/overrides``.

``LayerOverridesDto {conditionalOverrides: [{type, name, experimentName, groupName}], idOverrides:
[{groupName, ids, idType?, environment?, experimentName?}]}``. POST replaces both lists, PATCH
(``LayerOverridesPatchDto``, ``op: "add"``) adds, DELETE removes (without a body: all). A
conditional override is one item (equal items are not repeated); id overrides with the same
``(groupName, idType, environment, experimentName)`` merge their ids. References are checked:
the gate or segment must exist and ``experimentName`` must be an experiment of this layer with a
group ``groupName``. Every change bumps the layer's ``version``.
"""

from __future__ import annotations

from typing import Any

from .._context import Call, Reply
from .._envelopes import single
from .._errors import validation_failed
from .._routing import Router
from .._store import Entity, Project
from .._validation import Enum, ListOf, Obj, Str, validate
from ._common import overrides_read
from ._entities import GATES, LAYERS, SEGMENTS, clears_all, get_entity, save_overrides
from ._refs import Errors
from .layers import experiments_in

__all__ = ["OVERRIDES_PATCH_SCHEMA", "OVERRIDES_SCHEMA", "register"]

BASE = "/console/v1/layers/{id}/overrides"
_CONDITIONAL_KEYS = ("type", "name", "experimentName", "groupName")
_CONDITIONAL = ListOf(Obj(fields={k: Str() for k in _CONDITIONAL_KEYS}, required=_CONDITIONAL_KEYS))
_ID_OVERRIDES = ListOf(
    Obj(
        fields={
            "groupName": Str(),
            "ids": ListOf(Str()),
            "idType": Str(nullable=True),
            "environment": Str(nullable=True),
            "experimentName": Str(nullable=True),
        },
        required=("groupName", "ids"),
    )
)
_LISTS = {"conditionalOverrides": _CONDITIONAL, "idOverrides": _ID_OVERRIDES}
OVERRIDES_SCHEMA = Obj(fields=_LISTS, required=tuple(_LISTS))
OVERRIDES_PATCH_SCHEMA = Obj(
    fields={**_LISTS, "op": Enum(values=("add",))}, required=("op", *_LISTS)
)
_EMPTY: dict[str, Any] = {"conditionalOverrides": [], "idOverrides": []}


def _id_key(item: dict[str, Any]) -> tuple[Any, ...]:
    return (
        item["groupName"],
        item.get("idType"),
        item.get("environment"),
        item.get("experimentName"),
    )


def _reference_errors(project: Project, layer: Entity, body: dict[str, Any]) -> Errors:
    errors: Errors = []
    groups = {
        e["id"]: {g["name"] for g in e["groups"]} for e in experiments_in(project, layer["id"])
    }
    for i, item in enumerate(body["conditionalOverrides"]):
        kind = {"gate": GATES, "segment": SEGMENTS}.get(item["type"])
        if kind is None:
            errors.append(
                {
                    "property": f"conditionalOverrides.{i}.type",
                    "errorMessage": "Expected 'gate' or 'segment'",
                }
            )
        elif item["name"] not in kind.coll(project):
            errors.append(
                {
                    "property": f"conditionalOverrides.{i}.name",
                    "errorMessage": f"{kind.label} {item['name']!r} does not exist",
                }
            )
        if item["groupName"] not in groups.get(item["experimentName"], set()):
            errors.append(
                {
                    "property": f"conditionalOverrides.{i}",
                    "errorMessage": f"No group {item['groupName']!r} in an experiment "
                    f"{item['experimentName']!r} of layer {layer['id']!r}",
                }
            )
    return errors


def _apply(current: dict[str, Any], body: dict[str, Any], op: str) -> dict[str, Any]:
    if op == "replace":
        return {k: list(body[k]) for k in _EMPTY}
    conditional = list(current["conditionalOverrides"])
    ids = {_id_key(i): dict(i) for i in current["idOverrides"]}
    for item in body["conditionalOverrides"]:
        if op == "add" and item not in conditional:
            conditional.append(item)
        elif op == "remove" and item in conditional:
            conditional.remove(item)
    for item in body["idOverrides"]:
        old = ids.get(_id_key(item), {**item, "ids": []})
        if op == "add":
            ids[_id_key(item)] = {**old, "ids": list(dict.fromkeys([*old["ids"], *item["ids"]]))}
        else:
            old["ids"] = [x for x in old["ids"] if x not in set(item["ids"])]
            ids[_id_key(item)] = old
    return {
        "conditionalOverrides": conditional,
        "idOverrides": [i for i in ids.values() if i["ids"]],
    }


async def read(call: Call) -> Reply:
    layer = get_entity(call.project, LAYERS, call.params["id"])
    found = LAYERS.overrides(call.project).get(layer["id"])
    return overrides_read(call, "Layer Overrides read successfully.", found or dict(_EMPTY))


def _writer(op: str) -> Any:
    schema = OVERRIDES_PATCH_SCHEMA if op == "add" else OVERRIDES_SCHEMA

    async def write(call: Call) -> Reply:
        project = call.project
        layer = get_entity(project, LAYERS, call.params["id"])
        mode = op
        if clears_all(call, op):
            body = dict(_EMPTY)
            mode = "replace"
        else:
            body = validate(schema, call.json_body())
        if mode != "remove":
            errors = _reference_errors(project, layer, body)
            if errors:
                raise validation_failed(errors)
        current = LAYERS.overrides(project).get(layer["id"]) or dict(_EMPTY)
        updated = _apply(current, body, mode)
        save_overrides(call, LAYERS, layer, updated)
        return single("Layer Overrides updated successfully.", updated)

    return write


def register(router: Router) -> None:
    router.add("GET", BASE, read)
    router.add("POST", BASE, _writer("replace"))
    router.add("PATCH", BASE, _writer("add"))
    router.add("DELETE", BASE, _writer("remove"))
