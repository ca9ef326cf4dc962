"""Experiment lifecycle (``PUT /experiments/{id}/start|make_decision|abandon|reset|archive|
unarchive``) and ``POST /{id}/enable_groups|disable_groups``.

The lifecycle, reference §9.2 (an inference from endpoint names, messages and the status enum):

* ``setup`` → start → ``active`` (``startTime``);
* ``active`` → make_decision → ``decision_made`` (``launchedGroupID`` from the body's group id or
  name, ``decisionReason``, ``decisionTime``/``endTime``; ``removeTargeting`` clears the
  targeting gate);
* ``active`` → abandon → ``abandoned`` (``decisionReason``, ``endTime``);
* reset restarts a started experiment: ``active`` again with a new ``startTime`` and the decision
  cleared;
* any status → archive → ``archived``; unarchive returns to the status it was archived from.

Calling make_decision, abandon or reset on an experiment still in ``setup`` is the documented 400
"Experiment has not yet started"; other invalid moves are 400s naming the current status. Each
applied move bumps ``version``; with the review header on an experiment that requires review the
move is held and the answer is the experiment showing ``activeReview``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._context import Call, Reply
from .._envelopes import message_only, single
from .._errors import NOT_FOUND, ApiError, bad_field
from .._routing import Router
from .._store import Entity
from .._validation import Bool, ListOf, Obj, Str, validate
from ._entities import EXPERIMENTS, change_reply, get_entity, save_change
from .experiments import resolve_group

__all__ = ["register"]

BASE = "/console/v1/experiments/{id}"
_ARCHIVED_FROM = "experiments_archived_from"
START_SCHEMA = Obj(fields={"analysisStartTime": Str(), "analysisEndTime": Str()})
DECISION_SCHEMA = Obj(
    fields={"id": Str(), "decisionReason": Str(), "removeTargeting": Bool()},
    required=("id", "decisionReason"),
)
ABANDON_SCHEMA = Obj(fields={"decisionReason": Str()}, required=("decisionReason",))
ARCHIVE_SCHEMA = Obj(fields={"archiveReason": Str()})
GROUPS_SCHEMA = Obj(fields={"group_names": ListOf(Str())}, required=("group_names",))

Move = Callable[[Call, Entity, dict[str, Any]], Entity]


def _not_started(exp: Entity) -> None:
    if exp["status"] == "setup":
        raise ApiError(400, "Experiment has not yet started")


def _must_be(exp: Entity, wanted: str, action: str) -> None:
    if exp["status"] != wanted:
        raise ApiError(
            400,
            f"Invalid request. Experiment {exp['id']!r} is {exp['status']!r}; "
            f"only a {wanted!r} experiment can be {action}",
        )


def _start(call: Call, exp: Entity, body: dict[str, Any]) -> Entity:
    _must_be(exp, "setup", "started")
    return {**exp, "status": "active", "startTime": call.now_ms, "endTime": None}


def _decide(call: Call, exp: Entity, body: dict[str, Any]) -> Entity:
    _not_started(exp)
    _must_be(exp, "active", "decided")
    group = resolve_group(exp["groups"], body["id"])
    if group is None:
        raise bad_field(
            "id", f"No group with id or name {body['id']!r} in experiment {exp['id']!r}"
        )
    new = {
        **exp,
        "status": "decision_made",
        "launchedGroupID": group["id"],
        "decisionReason": body["decisionReason"],
        "decisionTime": call.now_ms,
        "endTime": call.now_ms,
    }
    if body.get("removeTargeting"):
        new["targetingGateID"] = ""
    return new


def _abandon(call: Call, exp: Entity, body: dict[str, Any]) -> Entity:
    _not_started(exp)
    _must_be(exp, "active", "abandoned")
    return {
        **exp,
        "status": "abandoned",
        "decisionReason": body["decisionReason"],
        "endTime": call.now_ms,
    }


def _reset(call: Call, exp: Entity, body: dict[str, Any]) -> Entity:
    _not_started(exp)
    if exp["status"] == "archived":
        raise ApiError(400, "Invalid request. Experiment is archived; unarchive it first")
    return {
        **exp,
        "status": "active",
        "startTime": call.now_ms,
        "endTime": None,
        "decisionTime": None,
        "launchedGroupID": None,
        "decisionReason": None,
    }


def _archive(call: Call, exp: Entity, body: dict[str, Any]) -> Entity:
    if exp["status"] == "archived":
        raise ApiError(400, "Invalid request. Experiment is already archived")
    return {**exp, "status": "archived"}


def _unarchive(call: Call, exp: Entity, body: dict[str, Any]) -> Entity:
    if exp["status"] != "archived":
        raise ApiError(400, f"Invalid request. Experiment is {exp['status']!r}, not archived")
    found = call.project.collection(_ARCHIVED_FROM).get(exp["id"])
    return {**exp, "status": found["status"] if found else "setup"}


def _remember_archive(call: Call, old: Entity, stored: Entity) -> None:
    if stored["status"] == "archived" and old["status"] != "archived":
        call.project.collection(_ARCHIVED_FROM).put(old["id"], {"status": old["status"]})


def _lifecycle(move: Move, schema: Obj | None, message: str) -> Any:
    async def handler(call: Call) -> Reply:
        old = get_entity(call.project, EXPERIMENTS, call.params["id"])
        body = validate(schema, call.json_body()) if schema is not None else {}
        stored, applied = save_change(call, EXPERIMENTS, old, move(call, old, body))
        if not applied:
            return change_reply(EXPERIMENTS, stored, applied, message)
        _remember_archive(call, old, stored)
        return message_only(message)

    return handler


def _groups_toggle(disabled: bool) -> Any:
    async def handler(call: Call) -> Reply:
        # The spec's 404 here is the generic text, not "Experiment not found."
        old = get_entity(call.project, EXPERIMENTS, call.params["id"], not_found=NOT_FOUND)
        names = validate(GROUPS_SCHEMA, call.json_body())["group_names"]
        known = {g["name"] for g in old["groups"]}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise bad_field("group_names", f"No groups named {unknown} in {old['id']!r}")
        groups = [{**g, "disabled": disabled} if g["name"] in names else g for g in old["groups"]]
        stored, applied = save_change(call, EXPERIMENTS, old, {**old, "groups": groups})
        if not applied:
            return change_reply(EXPERIMENTS, stored, applied, "")
        return single("Experiment updated successfully.", stored, call.config.create_code(201))

    return handler


def register(router: Router) -> None:
    router.add(
        "PUT", f"{BASE}/start", _lifecycle(_start, START_SCHEMA, "Experiment successfully started.")
    )
    router.add(
        "PUT",
        f"{BASE}/make_decision",
        _lifecycle(_decide, DECISION_SCHEMA, "Decision made for Experiment."),
    )
    router.add(
        "PUT",
        f"{BASE}/abandon",
        _lifecycle(_abandon, ABANDON_SCHEMA, "Experiment successfully abandoned."),
    )
    router.add(
        "PUT", f"{BASE}/reset", _lifecycle(_reset, None, "Experiment successfully restarted.")
    )
    router.add(
        "PUT",
        f"{BASE}/archive",
        _lifecycle(_archive, ARCHIVE_SCHEMA, "Experiment successfully archived."),
    )
    router.add(
        "PUT",
        f"{BASE}/unarchive",
        _lifecycle(_unarchive, None, "Experiment successfully unarchived."),
    )
    router.add("POST", f"{BASE}/enable_groups", _groups_toggle(disabled=False))
    router.add("POST", f"{BASE}/disable_groups", _groups_toggle(disabled=True))
