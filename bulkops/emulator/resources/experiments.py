"""Experiments: ``/console/v1/experiments`` and ``/{id}`` (lifecycle: :mod:`.experiment_actions`,
overrides: :mod:`.experiment_overrides`).

**Create** (201) needs ``name``; ``id`` defaults to the derived name and shares its id space with
dynamic configs. Defaults follow reference §7: status ``setup``, groups Control/Test at 50/50 with
server-assigned group ids, allocation 100, duration 14, confidence "95". Without ``layerID`` the
experiment gets an implicit layer ``statsig::<id>_layer``; a given ``layerID`` must be an
existing explicit layer, every key of every group's ``parameterValues`` must be one of its
parameters, and the experiment's ``idType`` (inherited from the layer when omitted) must match.

**Groups.** Sizes must add up to 100 and names be unique. Group ids are never taken from the
client: an incoming group keeps the id of the stored group with the same ``id`` or, failing
that, the same ``name``; any other group gets a new id. ``controlGroupID`` may be a group id or
name and is stored as the id.

**Update.** ``POST /{id}`` is a full update (required: ``idType, description, hypothesis, groups,
allocation, targetingGateID, bonferroniCorrection, defaultConfidenceInterval, status``); settable
fields it omits return to their defaults, except ``name`` and ``decisionReason``. ``PATCH``
merges. Renaming onto another experiment's name is 400 "Name is already in use". ``status`` and
``launchedGroupID`` belong to the lifecycle endpoints: a body may repeat their current value, any
other value is a 400 that says which endpoint to call. ``holdoutIDs`` is read-only (set it from
the holdout). References (metrics, tags, team, id types, targeting gate, target apps) are checked
as described in :mod:`._refs`.
"""

from __future__ import annotations

from typing import Any

from .._context import Call, Reply
from .._envelopes import paged, single
from .._errors import bad_field, name_in_use, validation_failed
from .._ids import stable_id
from .._routing import Router
from .._store import Entity, Project
from .._validation import (
    AnyValue,
    Bool,
    Enum,
    ListOf,
    Node,
    Num,
    Obj,
    Str,
    validate,
)
from ._entities import (
    DYNAMIC_CONFIGS,
    EXPERIMENTS,
    LAYERS,
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
)
from ._handlers import create_handler, list_filter, read_handler, register_entity_routes
from ._refs import Errors, check_references, resolve_team
from .layers import implicit_layer_id, sync_implicit_layer

__all__ = [
    "CREATE_SCHEMA",
    "FULL_SCHEMA",
    "STATUSES",
    "create_experiment",
    "register",
    "resolve_group",
]

BASE = "/console/v1/experiments"
STATUSES = (
    "active",
    "setup",
    "decision_made",
    "abandoned",
    "archived",
    "experiment_stopped",
    "assignment_stopped",
)
_METRICS = ListOf(
    Obj(
        fields={
            "name": Str(),
            "type": Str(),
            "direction": Enum(values=("increase", "decrease")),
            "hypothesizedValue": Num(),
        },
        required=("name", "type"),
    )
)
_GROUPS = ListOf(
    Obj(
        fields={
            "name": Str(),
            "id": Str(nullable=True),
            "size": Num(minimum=0, maximum=100),
            "parameterValues": Obj(keep_unknown=True),
            "disabled": Bool(),
            "description": Str(),
            "foreignGroupID": Str(),
        },
        required=("name", "size", "parameterValues"),
    )
)
_DAYS = Num(integer=True, minimum=1, exclusive_minimum=True)
_FIELDS: dict[str, Node] = {
    "name": Str(min_len=3, max_len=100, pattern=r"^[a-zA-Z0-9_\- ]*$"),
    "description": Str(max_len=1000),
    "idType": Str(),
    "secondaryIDType": Str(nullable=True),
    "identifierMappingMode": Enum(
        values=("strictOneToOne", "firstTouchOneToMany", "lastTouchOneToMany")
    ),
    "identityResolutionSource": Str(nullable=True),
    "hypothesis": Str(),
    "links": ListOf(Obj(fields={"url": Str(), "title": Str()}, required=("url",))),
    "groups": _GROUPS,
    "controlGroupID": Str(),
    "allocation": Num(minimum=0, maximum=100),
    "primaryMetricTags": ListOf(Str()),
    "secondaryMetricTags": ListOf(Str()),
    "primaryMetrics": _METRICS,
    "secondaryMetrics": _METRICS,
    "otherMetrics": _METRICS,
    "targetApps": TARGET_APPS_INPUT,
    "tags": ListOf(Str()),
    "duration": _DAYS,
    "targetExposures": _DAYS,
    "targetingGateID": Str(nullable=True),
    **{
        k: Bool()
        for k in (
            "sequentialTesting",
            "bonferroniCorrection",
            "bonferroniCorrectionPerMetric",
            "benjaminiHochbergPerVariant",
            "benjaminiHochbergPerMetric",
            "benjaminiPrimaryMetricsOnly",
            "cohortedMetricsMatureAfterEnd",
            "cohortWaitUntilEndToInclude",
            "isSidecar",
        )
    },
    "isAnalysisOnly": Bool(nullable=True),
    "defaultConfidenceInterval": Enum(values=("80", "90", "95", "98", "99")),
    "manualQualityScores": ListOf(Obj(keep_unknown=True)),
    "status": Enum(values=STATUSES),
    "launchedGroupID": Str(nullable=True),
    "assignmentSourceName": Str(),
    "assignmentSourceExperimentName": Str(),
    "creatorID": Str(nullable=True),
    "creatorEmail": Str(nullable=True),
    **TEAM_INPUT,
    "allocationDuration": Num(integer=True, minimum=1, exclusive_minimum=True, nullable=True),
    "cohortedAnalysisDuration": _DAYS,
    "fixedAnalysisDuration": _DAYS,
    "scheduledReloadHour": Num(integer=True, minimum=0, maximum=23, nullable=True),
    "scheduledReloadType": Enum(values=("full", "incremental")),
    "analysisEndTime": Str(),
    "assignmentSourceFilters": ListOf(Obj(keep_unknown=True)),
    "analyticsType": Enum(values=("frequentist", "bayesian", "sprt")),
    "decisionReason": Str(),
    "stratifiedSampling": AnyValue(),
}
CREATE_SCHEMA = Obj(
    fields={
        **_FIELDS,
        "id": Str(min_len=3, max_len=100, pattern=r"^[a-zA-Z0-9_-]*$"),
        "layerID": Str(),
    },
    required=("name",),
)
FULL_SCHEMA = Obj(
    fields=_FIELDS,
    required=(
        "idType",
        "description",
        "hypothesis",
        "groups",
        "allocation",
        "targetingGateID",
        "bonferroniCorrection",
        "defaultConfidenceInterval",
        "status",
    ),
)
PARTIAL_SCHEMA = Obj(fields=_FIELDS)

_DEFAULTS: dict[str, Any] = {
    "description": "",
    "idType": "userID",
    "hypothesis": "",
    "allocation": 100,
    "duration": 14,
    "targetingGateID": "",
    "primaryMetrics": [],
    "secondaryMetrics": [],
    "primaryMetricTags": [],
    "secondaryMetricTags": [],
    "defaultConfidenceInterval": "95",
    "bonferroniCorrection": False,
    "tags": [],
    "targetApps": [],
    "team": None,
    "teamID": None,
}
_KEPT_ON_FULL = ("name", "decisionReason", "creatorID", "creatorEmail", "controlGroupID")
_SPECIAL = (
    "id",
    "layerID",
    "groups",
    "controlGroupID",
    "status",
    "launchedGroupID",
    "team",
    "teamID",
    "targetApps",
    "creatorID",
    "creatorEmail",
)
_LIFECYCLE_HINT = (
    "{field} changes only through the lifecycle endpoints (PUT /experiments/{{id}}/"
    "start, make_decision, abandon, reset, archive, unarchive); send the current "
    "value {current!r} or leave it out"
)


def _new_group_id(project: Project, exp_id: str, name: str) -> str:
    return stable_id("group", project.name, exp_id, name, project.next_seq("groups"))


def _groups(
    project: Project, exp_id: str, old: list[Entity], incoming: list[dict[str, Any]]
) -> list[Entity]:
    errors: Errors = []
    names = [g["name"] for g in incoming]
    if len(set(names)) != len(names):
        errors.append({"property": "groups", "errorMessage": "Group names must be unique"})
    if incoming and abs(sum(g["size"] for g in incoming) - 100) > 1e-6:
        errors.append({"property": "groups", "errorMessage": "Group sizes must add up to 100"})
    if not incoming:
        errors.append({"property": "groups", "errorMessage": "An experiment needs groups"})
    if errors:
        raise validation_failed(errors)
    by_id = {g["id"]: g for g in old}
    by_name = {g["name"]: g for g in old}
    out = []
    for group in incoming:
        match = by_id.get(group.get("id") or "") or by_name.get(group["name"])
        group_id = match["id"] if match else _new_group_id(project, exp_id, group["name"])
        out.append({**{k: v for k, v in group.items() if k != "id"}, "id": group_id})
    return out


def _default_groups(project: Project, exp_id: str) -> list[Entity]:
    return [
        {
            "name": name,
            "id": _new_group_id(project, exp_id, name),
            "size": 50,
            "parameterValues": {},
        }
        for name in ("Control", "Test")
    ]


def resolve_group(groups: list[Entity], key: str) -> Entity | None:
    """The group whose id or name is ``key``."""
    return next((g for g in groups if key in (g["id"], g["name"])), None)


def _control(groups: list[Entity], given: str | None, current: str | None) -> str:
    if given is not None:
        found = resolve_group(groups, given)
        if found is None:
            raise bad_field("controlGroupID", f"No group with id or name {given!r}")
        return str(found["id"])
    if current and resolve_group(groups, current):
        return current
    named = resolve_group(groups, "Control")
    return str((named or groups[0])["id"])


def _layer_errors(project: Project, exp: Entity) -> Errors:
    layer_id = exp["layerID"]
    if layer_id == implicit_layer_id(exp["id"]):
        return []
    layer = LAYERS.coll(project).get(layer_id)
    if layer is None or layer.get("isImplicitLayer"):
        why = "is another experiment's implicit layer" if layer else "does not exist"
        return [
            {
                "property": "layerID",
                "errorMessage": f"Layer {layer_id!r} {why} in project "
                f"{project.name!r}; create it first with POST /console/v1/layers",
            }
        ]
    errors: Errors = []
    if exp["idType"] != layer["idType"]:
        errors.append(
            {
                "property": "idType",
                "errorMessage": f"Experiment idType "
                f"{exp['idType']!r} differs from layer idType {layer['idType']!r}",
            }
        )
    params = {p["name"] for p in layer["parameters"]}
    for i, group in enumerate(exp["groups"]):
        for key in group["parameterValues"]:
            if key not in params:
                errors.append(
                    {
                        "property": f"groups.{i}.parameterValues.{key}",
                        "errorMessage": f"{key!r} is not a parameter of layer {layer_id!r}",
                    }
                )
    return errors


def _lifecycle_guard(fields: dict[str, Any], current: Entity) -> None:
    for key in ("status", "launchedGroupID"):
        if key in fields and (fields[key] or None) != (current.get(key) or None):
            raise bad_field(key, _LIFECYCLE_HINT.format(field=key, current=current.get(key)))


def _name_taken(project: Project, name: str, exp_id: str) -> bool:
    """Another experiment already has this name, or the id this name derives to."""
    return name_taken(EXPERIMENTS, project, name, exp_id)


def _apply(project: Project, old: Entity, fields: dict[str, Any]) -> Entity:
    """``old`` with validated body fields applied (no reference checks)."""
    new = {**old, **{k: v for k, v in fields.items() if k not in _SPECIAL}}
    new.update(resolve_team(project, fields))
    if "targetApps" in fields:
        apps = fields["targetApps"]
        new["targetApps"] = [apps] if isinstance(apps, str) else list(apps)
    if "groups" in fields:
        new["groups"] = _groups(project, old["id"], old["groups"], fields["groups"])
    new["controlGroupID"] = _control(
        new["groups"], fields.get("controlGroupID"), old.get("controlGroupID")
    )
    return new


def _check(project: Project, exp: Entity, fields: dict[str, Any]) -> None:
    check_references(project, fields, _layer_errors(project, exp))


def create_experiment(project: Project, fields: dict[str, Any], now_ms: int) -> Entity:
    """Create an experiment (and its implicit layer) from validated ``ExperimentCreateDto``."""
    exp_id = fields.get("id") or derive_id(fields["name"])
    taken = exp_id in EXPERIMENTS.coll(project) or exp_id in DYNAMIC_CONFIGS.coll(project)
    if taken or _name_taken(project, fields["name"], exp_id):
        raise name_in_use()
    _lifecycle_guard(fields, {"status": "setup", "launchedGroupID": None})
    layer = LAYERS.coll(project).get(fields.get("layerID") or "")
    base: Entity = {
        "id": exp_id,
        "name": fields["name"],
        **_DEFAULTS,
        "status": "setup",
        "launchedGroupID": None,
        "decisionReason": None,
        "startTime": None,
        "endTime": None,
        "decisionTime": None,
        "layerID": fields.get("layerID") or implicit_layer_id(exp_id),
        "holdoutIDs": [],
        "healthChecks": [],
        "healthCheckStatus": "PASSED",
        "inlineTargetingRulesJSON": "{}",
        "groups": _default_groups(project, exp_id),
        "reviewSettings": {"requiredReview": False, "allowedReviewers": []},
        **audit_fields(
            project,
            now_ms,
            creator_id=fields.get("creatorID"),
            creator_email=fields.get("creatorEmail"),
        ),
    }
    if layer is not None and "idType" not in fields:
        base["idType"] = layer["idType"]
    exp = _apply(project, base, fields)
    _check(project, exp, fields)
    EXPERIMENTS.coll(project).add(exp_id, exp)
    sync_implicit_layer(project, exp, now_ms)
    return exp


def _filter(call: Call) -> Any:
    statuses = query_values(call, "status")
    bad = [s for s in statuses if s not in STATUSES]
    if bad:
        raise bad_field("status", f"Invalid enum value {bad[0]!r}; expected one of {STATUSES}")
    plain = list_filter(call, ("layerID", "idType", "teamID", "creatorName", "creatorID"))
    app = call.query.get("targetAppID")

    def keep(exp: Entity) -> bool:
        if statuses and exp["status"] not in statuses:
            return False
        if app is not None and app not in exp.get("targetApps", []):
            return False
        return plain(exp)

    return keep


async def list_experiments(call: Call) -> Reply:
    keep = _filter(call)
    items = [e for e in EXPERIMENTS.coll(call.project).values() if keep(e)]
    return paged(call, "Experiments listed successfully.", items)


async def metric_experiments(call: Call) -> Reply:
    """``GET /metrics/{id}/experiments``: experiments whose metric lists name the metric."""
    name, _, kind = call.params["id"].rpartition("::")
    keep = _filter(call)
    items = [
        e
        for e in EXPERIMENTS.coll(call.project).values()
        if keep(e)
        and any(
            m["name"] == name and m["type"] == kind
            for key in ("primaryMetrics", "secondaryMetrics", "otherMetrics")
            for m in e.get(key, [])
        )
    ]
    return paged(call, "Experiments listed successfully.", items)


async def update(call: Call, *, full: bool) -> Reply:
    project = call.project
    old = get_entity(project, EXPERIMENTS, call.params["id"])
    fields = validate(FULL_SCHEMA if full else PARTIAL_SCHEMA, call.json_body())
    if "name" in fields and _name_taken(project, fields["name"], old["id"]):
        raise name_in_use()
    _lifecycle_guard(fields, old)
    base = old
    if full and call.config.replaces_on_full_update:
        settable = set(_FIELDS) - set(_KEPT_ON_FULL) - {"status", "launchedGroupID"}
        base = {k: v for k, v in old.items() if k not in settable}
        base.update({k: v for k, v in _DEFAULTS.items() if k in settable})
        base["groups"] = old["groups"]  # matched by id/name, so group ids survive
    new = _apply(project, base, fields)
    _check(project, new, fields)
    stored, applied = save_change(call, EXPERIMENTS, old, new)
    if applied:
        sync_implicit_layer(project, stored, call.now_ms)
    return change_reply(EXPERIMENTS, stored, applied, "Experiment updated successfully.")


async def delete(call: Call) -> Reply:
    project = call.project
    old = get_entity(project, EXPERIMENTS, call.params["id"])
    EXPERIMENTS.coll(project).remove(old["id"])
    EXPERIMENTS.overrides(project).discard(old["id"])
    LAYERS.coll(project).discard(implicit_layer_id(old["id"]))
    detach_from_holdouts(project, "experimentIDs", old["id"], call.now_ms)
    return single("Experiment deleted successfully.", old)


def register(router: Router) -> None:
    create = create_handler(
        CREATE_SCHEMA, create_experiment, "Experiment created successfully.", 201
    )
    register_entity_routes(
        router,
        BASE,
        list_all=list_experiments,
        create=create,
        read=read_handler(EXPERIMENTS, "Experiment read successfully."),
        update=update,
        delete=delete,
    )
    router.add("GET", "/console/v1/metrics/{id}/experiments", metric_experiments)
