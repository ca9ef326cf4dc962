"""Experiment overrides (reference §8.3): ``GET/POST/PATCH/DELETE /experiments/{id}/overrides``.

Body ``ExperimentOverridesDto {overrides: [{type: "gate"|"segment", id, groupID, environment?}],
userIDOverrides: [{groupID, ids, environment?, unitType?}]}``; both lists are required. POST
replaces everything, PATCH adds, DELETE removes the listed items (its body, same DTO, is in the
2024 docs only; a DELETE without a body, as the current spec draws it, removes them all).

* ``overrides[]`` accepts ``name`` in place of ``id`` (the 2024 docs send ``name``). Answers
  name the gate or segment as ``EmulatorConfig.override_key`` says: by ``name`` only (the
  default, as the spec's GET examples do), by ``id`` only (as the request DTO does), or both.
  Answers list the items in reverse order by default (``EmulatorConfig.list_order``), as a
  server may, since the API does not order them. An override is
  keyed by ``(type, id, environment)``: adding one for a gate already overridden in that
  environment moves it to the new group.
* ``groupID`` may be a group name or a group id; it is stored as sent and compared by the group
  it resolves to. Answers give it as ``EmulatorConfig.override_group_key`` says: the group's
  ``id`` (the default, the harsher reading: a client that sent names must map them back), its
  ``name``, or as ``sent``. ``userIDOverrides`` entries are keyed by ``(group, environment, unitType)``;
  adding ids to one group takes them out of the other groups of the same environment and unit
  type, since a unit can be forced into one group only.
* References are checked on POST and PATCH: the gate or segment must exist, the group must be a
  group of this experiment (400 otherwise).

Overrides seeded from a snapshot (:mod:`.._snapshot`) keep the answer they were read as under
``SEEDED_ANSWER``; a read answers exactly that until the first write replaces the record.

Every change bumps the experiment's ``version`` (overrides are not held for review: their
documented answer is the overrides, not the experiment).
"""

from __future__ import annotations

from typing import Any

from .._context import Call, Reply
from .._envelopes import single
from .._errors import validation_failed
from .._routing import Router
from .._store import Entity
from .._validation import Enum, ListOf, Obj, Str, validate
from ._common import overrides_read
from ._entities import EXPERIMENTS, GATES, SEGMENTS, clears_all, get_entity, save_overrides
from ._refs import Errors
from .experiments import resolve_group

__all__ = ["OVERRIDES_SCHEMA", "SEEDED_ANSWER", "register"]

PATH = "/console/v1/experiments/{id}/overrides"
OVERRIDES_SCHEMA = Obj(
    fields={
        "overrides": ListOf(
            Obj(
                fields={
                    "type": Enum(values=("gate", "segment")),
                    "id": Str(),
                    "name": Str(),
                    "groupID": Str(),
                    "environment": Str(nullable=True),
                },
                required=("type", "groupID"),
            ),
            max_items=1000,
        ),
        "userIDOverrides": ListOf(
            Obj(
                fields={
                    "groupID": Str(),
                    "ids": ListOf(Str(), max_items=1000),
                    "environment": Str(nullable=True),
                    "unitType": Str(nullable=True),
                },
                required=("groupID", "ids"),
            )
        ),
    },
    required=("overrides", "userIDOverrides"),
)
_EMPTY: dict[str, Any] = {"overrides": [], "userIDOverrides": []}
#: Key of a stored record holding the answer read from a snapshot (see the module docstring).
SEEDED_ANSWER = "seededAnswer"


def _group(exp: Entity, key: str) -> str:
    found = resolve_group(exp["groups"], key)
    return str(found["id"]) if found else key


def _parse(call: Call, exp: Entity, *, check: bool) -> dict[str, Any]:
    body = validate(OVERRIDES_SCHEMA, call.json_body())
    errors: Errors = []
    items = []
    for i, item in enumerate(body["overrides"]):
        target = item.get("id") or item.get("name")
        if not target:
            errors.append({"property": f"overrides.{i}.id", "errorMessage": "Required"})
            continue
        kind = GATES if item["type"] == "gate" else SEGMENTS
        if check and target not in kind.coll(call.project):
            errors.append(
                {
                    "property": f"overrides.{i}.id",
                    "errorMessage": f"{kind.label} {target!r} does not exist in project "
                    f"{call.project.name!r}",
                }
            )
        items.append(
            {
                "type": item["type"],
                "id": target,
                "name": target,
                "groupID": item["groupID"],
                "environment": item.get("environment"),
            }
        )
    groups = [(f"overrides.{i}", o["groupID"]) for i, o in enumerate(body["overrides"])]
    groups += [
        (f"userIDOverrides.{i}", u["groupID"]) for i, u in enumerate(body["userIDOverrides"])
    ]
    for path, key in groups if check else []:
        if resolve_group(exp["groups"], key) is None:
            errors.append(
                {
                    "property": f"{path}.groupID",
                    "errorMessage": f"No group with name or id {key!r} in experiment {exp['id']!r}",
                }
            )
    if errors:
        raise validation_failed(errors)
    users = [
        {**u, "environment": u.get("environment"), "unitType": u.get("unitType")}
        for u in body["userIDOverrides"]
    ]
    return {"overrides": items, "userIDOverrides": users}


def _o_key(item: dict[str, Any]) -> tuple[Any, ...]:
    return item["type"], item["id"], item.get("environment")


def _u_key(exp: Entity, item: dict[str, Any]) -> tuple[Any, ...]:
    return _group(exp, item["groupID"]), item.get("environment"), item.get("unitType")


def _add(exp: Entity, current: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    overrides = {_o_key(o): o for o in current["overrides"]}
    for item in body["overrides"]:
        overrides[_o_key(item)] = item
    users = {_u_key(exp, u): dict(u) for u in current["userIDOverrides"]}
    for item in body["userIDOverrides"]:
        key = _u_key(exp, item)
        moved = set(item["ids"])
        for other_key, other in users.items():
            if other_key != key and other_key[1:] == key[1:]:
                other["ids"] = [i for i in other["ids"] if i not in moved]
        old = users.get(key, {**item, "ids": []})
        users[key] = {**old, "ids": list(dict.fromkeys([*old["ids"], *item["ids"]]))}
    return {
        "overrides": list(overrides.values()),
        "userIDOverrides": [u for u in users.values() if u["ids"]],
    }


def _remove(exp: Entity, current: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    gone = {_o_key(o) for o in body["overrides"]}
    drop: dict[tuple[Any, ...], set[str]] = {}
    for item in body["userIDOverrides"]:
        drop.setdefault(_u_key(exp, item), set()).update(item["ids"])
    users = []
    for entry in current["userIDOverrides"]:
        ids = [i for i in entry["ids"] if i not in drop.get(_u_key(exp, entry), set())]
        if ids:
            users.append({**entry, "ids": ids})
    return {
        "overrides": [o for o in current["overrides"] if _o_key(o) not in gone],
        "userIDOverrides": users,
    }


def _answered_group(call: Call, exp: Entity, key: str) -> str:
    """A stored ``groupID`` as answered: the group's id, its name, or as sent."""
    how = call.config.override_group_key
    found = resolve_group(exp["groups"], key) if how != "sent" else None
    return key if found is None else str(found[how])


def _shown(call: Call, exp: Entity, overrides: dict[str, Any]) -> dict[str, Any]:
    """Overrides as answered: each item's gate or segment named by the configured key(s), each
    group as ``EmulatorConfig.override_group_key`` says."""
    hidden = {"name": ("id",), "id": ("name",), "both": ()}[call.config.override_key]
    items = [
        {
            **{k: v for k, v in o.items() if k not in hidden},
            "groupID": _answered_group(call, exp, o["groupID"]),
        }
        for o in overrides["overrides"]
    ]
    users = [
        {**u, "groupID": _answered_group(call, exp, u["groupID"])}
        for u in overrides["userIDOverrides"]
    ]
    if call.config.list_order == "reversed":
        items.reverse()
        users = [{**u, "ids": u["ids"][::-1]} for u in reversed(users)]
    return {**overrides, "overrides": items, "userIDOverrides": users}


async def read(call: Call) -> Reply:
    exp = get_entity(call.project, EXPERIMENTS, call.params["id"])
    found = EXPERIMENTS.overrides(call.project).get(exp["id"])
    if found is not None and SEEDED_ANSWER in found:
        return single("Experiment Overrides read successfully.", found[SEEDED_ANSWER])
    shown = _shown(call, exp, found or dict(_EMPTY))
    return overrides_read(call, "Experiment Overrides read successfully.", shown)


def _writer(op: str) -> Any:
    async def write(call: Call) -> Reply:
        project = call.project
        exp = get_entity(project, EXPERIMENTS, call.params["id"])
        mode = op
        if clears_all(call, op):
            body: dict[str, Any] = {"overrides": [], "userIDOverrides": []}
            mode = "replace"
        else:
            body = _parse(call, exp, check=mode != "remove")
        current = EXPERIMENTS.overrides(project).get(exp["id"]) or dict(_EMPTY)
        if mode == "replace":
            updated = _add(exp, dict(_EMPTY), body)
        elif mode == "add":
            updated = _add(exp, current, body)
        else:
            updated = _remove(exp, current, body)
        save_overrides(call, EXPERIMENTS, exp, updated)
        return single("Experiment Overrides updated successfully.", _shown(call, exp, updated))

    return write


def register(router: Router) -> None:
    router.add("GET", PATH, read)
    router.add("POST", PATH, _writer("replace"))
    router.add("PATCH", PATH, _writer("add"))
    router.add("DELETE", PATH, _writer("remove"))
