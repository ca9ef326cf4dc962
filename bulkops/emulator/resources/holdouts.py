"""Holdouts: ``/console/v1/holdouts``, ``/{id}`` and ``/{id}/overrides``.

Create answers **200** (the spec's code) and needs only ``name``; the id is derived from it and a
taken id is 400 "Name is already in use". ``passPercentage`` is 0 to 10. Full update (``POST``)
requires every setting (``isEnabled, description, passPercentage, gateIDs, experimentIDs,
layerIDs, isGlobal, targetingGateID``); ``PATCH`` merges.

Membership is set from the holdout side only (reference §10): whenever ``gateIDs``,
``experimentIDs`` or ``layerIDs`` change, each gate, experiment or layer that joins gets this
holdout in its read-only ``holdoutIDs`` and each that leaves loses it, and every such entity takes
a version bump. Unknown ids are a 400 listing each one. Deleting a holdout detaches it everywhere;
deleting a member removes it from the holdout (see :func:`detach_from_holdouts`). ``isGlobal`` is
stored but does not attach new entities automatically (that behaviour is only an inference).
"""

from __future__ import annotations

from typing import Any

from .._context import Call, Reply
from .._envelopes import paged, single
from .._errors import NOT_FOUND, name_in_use, validation_failed
from .._routing import Router
from .._store import Entity, Project
from .._validation import Bool, ListOf, Num, Obj, Str, validate
from ._entities import (
    EXPERIMENTS,
    GATES,
    HOLDOUTS,
    LAYERS,
    Kind,
    audit_fields,
    derive_id,
    get_entity,
    save_change,
    touch,
)
from ._handlers import create_handler, list_filter, read_handler, register_entity_routes
from ._id_overrides import register_id_overrides
from ._refs import Errors, check_references, resolve_team

__all__ = ["CREATE_SCHEMA", "FULL_SCHEMA", "create_holdout", "register", "set_members"]

BASE = "/console/v1/holdouts"
MEMBERS: tuple[tuple[str, Kind], ...] = (
    ("gateIDs", GATES),
    ("experimentIDs", EXPERIMENTS),
    ("layerIDs", LAYERS),
)
CREATE_SCHEMA = Obj(
    fields={
        "name": Str(min_len=3, max_len=100, pattern=r"^[a-zA-Z0-9_\- ]*$"),
        "description": Str(max_len=1000),
        "idType": Str(),
        "teamID": Str(nullable=True),
    },
    required=("name",),
)
_FIELDS = {
    "isEnabled": Bool(),
    "description": Str(max_len=1000),
    "passPercentage": Num(minimum=0, maximum=10),
    "gateIDs": ListOf(Str()),
    "experimentIDs": ListOf(Str()),
    "layerIDs": ListOf(Str()),
    "isGlobal": Bool(),
    "targetingGateID": Str(nullable=True),
    "monitoringMetrics": ListOf(
        Obj(fields={"name": Str(), "type": Str()}, required=("name", "type"))
    ),
}
FULL_SCHEMA = Obj(fields=_FIELDS, required=tuple(k for k in _FIELDS if k != "monitoringMetrics"))
PARTIAL_SCHEMA = Obj(fields=_FIELDS)


def create_holdout(project: Project, fields: dict[str, Any], now_ms: int) -> Entity:
    """Create a holdout from validated ``HoldoutCreateContractDto`` fields."""
    holdout_id = derive_id(fields["name"])
    coll = HOLDOUTS.coll(project)
    if holdout_id in coll or any(h["name"] == fields["name"] for h in coll.values()):
        raise name_in_use()
    check_references(project, fields)
    holdout: Entity = {
        "id": holdout_id,
        "name": fields["name"],
        "description": fields.get("description", ""),
        "idType": fields.get("idType", "userID"),
        "isEnabled": True,
        "isGlobal": False,
        "passPercentage": 0,
        "gateIDs": [],
        "experimentIDs": [],
        "layerIDs": [],
        "targetingGateID": None,
        "monitoringMetrics": [],
        "tags": [],
        "targetApps": [],
        "holdoutIDs": [],
        "team": None,
        "teamID": None,
        **resolve_team(project, fields),
        **audit_fields(project, now_ms),
    }
    coll.add(holdout_id, holdout)
    return holdout


def _member_errors(project: Project, fields: dict[str, Any]) -> Errors:
    errors: Errors = []
    for key, kind in MEMBERS:
        for i, entity_id in enumerate(fields.get(key) or []):
            if entity_id not in kind.coll(project):
                errors.append(
                    {
                        "property": f"{key}.{i}",
                        "errorMessage": f"{kind.label} {entity_id!r} does not exist in project "
                        f"{project.name!r}",
                    }
                )
    return errors


def set_members(project: Project, old: Entity, new: Entity, now_ms: int) -> None:
    """Mirror a holdout's member lists into its members' ``holdoutIDs`` (with version bumps)."""
    for key, kind in MEMBERS:
        before, after = set(old.get(key, [])), set(new.get(key, []))
        coll = kind.coll(project)
        # In list order, not set order: each touch stamps a time, and the demo world must come
        # out the same in every process (set order changes with PYTHONHASHSEED).
        changed = dict.fromkeys([*old.get(key, []), *new.get(key, [])])
        for entity_id in (e for e in changed if (e in before) != (e in after)):
            entity = coll.get(entity_id)
            if entity is None:
                continue
            ids = [h for h in entity.get("holdoutIDs", []) if h != old["id"]]
            if entity_id in after:
                ids.append(old["id"])
            coll.replace(entity_id, touch(project, {**entity, "holdoutIDs": ids}, now_ms))


async def list_holdouts(call: Call) -> Reply:
    keep = list_filter(call, ("creatorName", "creatorID"))
    items = [h for h in HOLDOUTS.coll(call.project).values() if keep(h)]
    return paged(call, "Holdouts listed successfully.", items)


async def update(call: Call, *, full: bool) -> Reply:
    # The spec's 404 on the full update is the generic text; on PATCH, "Holdout not found."
    old = get_entity(
        call.project, HOLDOUTS, call.params["id"], not_found=NOT_FOUND if full else None
    )
    fields = validate(FULL_SCHEMA if full else PARTIAL_SCHEMA, call.json_body())
    errors = _member_errors(call.project, fields)
    if errors:
        raise validation_failed(errors)
    check_references(call.project, fields)
    dedup = {k: list(dict.fromkeys(v)) for k, v in fields.items() if k.endswith("IDs")}
    replace = full and call.config.replaces_on_full_update
    base = {**old, "monitoringMetrics": []} if replace else old
    new = {**base, **fields, **dedup}
    stored, _ = save_change(call, HOLDOUTS, old, new)
    set_members(call.project, old, stored, call.now_ms)
    return single("Holdout updated successfully.", stored)


async def delete(call: Call) -> Reply:
    project = call.project
    old = get_entity(project, HOLDOUTS, call.params["id"])
    set_members(project, old, {key: [] for key, _ in MEMBERS}, call.now_ms)
    HOLDOUTS.coll(project).remove(old["id"])
    HOLDOUTS.overrides(project).discard(old["id"])
    return single("Holdout deleted successfully.", old)


def register(router: Router) -> None:
    register_entity_routes(
        router,
        BASE,
        list_all=list_holdouts,
        create=create_handler(CREATE_SCHEMA, create_holdout, "Holdout created successfully.", 200),
        read=read_handler(HOLDOUTS, "Holdout read successfully."),
        update=update,
        delete=delete,
    )
    register_id_overrides(router, BASE, HOLDOUTS, 200)
