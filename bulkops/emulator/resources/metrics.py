"""Metric definitions: ``/console/v1/metrics``, ``/metrics/list``, ``/metrics/{id}``.

A metric's id is ``<name>::<type>`` (reference §6) and never changes: renaming a metric changes
``name`` only, as the spec's own list example shows (``id: "___RENAME_FAILED___::composite_sum"``
with ``name: "rename_test_success"``). ``type`` cannot be updated. A warehouse-native metric names
its source in ``warehouseNative.metricSourceName``; that source must exist. Update is a POST with
``MetricsUpdateContractDto``, all fields optional; given fields replace the stored ones whole. The
spec does not say whether this POST is a full or a partial update: with the default replace
reading (``EmulatorConfig.full_update``) the DTO fields it leaves out go back to their create
defaults (``name`` excepted: it is part of the id); with ``"merge"`` they keep their value.
"""

from __future__ import annotations

from typing import Any

from .._context import Call, Reply
from .._envelopes import message_only, paged, single
from .._errors import invalid_request, name_in_use, validation_failed
from .._routing import Router
from .._store import Entity, Project
from .._validation import Bool, Enum, ListOf, Num, Obj, OneOf, Str, validate
from ._common import (
    console_owner,
    created_fields,
    get_or_404,
    metric_sources,
    metrics,
    modified_fields,
)

__all__ = ["CREATE_SCHEMA", "METRIC_TYPES", "UPDATE_SCHEMA", "create_metric", "register"]

BASE = "/console/v1/metrics"

METRIC_TYPES = (
    "ratio", "mean", "event_count_custom", "event_user", "funnel",
    "composite", "composite_sum", "sum", "undefined", "user_warehouse",
)  # fmt: skip
_AGGREGATIONS = (
    "count", "sum", "mean", "daily_participation", "ratio", "funnel", "count_distinct",
    "percentile", "first_value", "latest_value", "retention", "max", "min", "",
)  # fmt: skip
_CONDITIONS = (
    "in", "not_in", "=", ">", "<", ">=", "<=", "is_null", "non_null", "contains",
    "not_contains", "sql_filter", "starts_with", "ends_with", "after_exposure",
    "before_exposure", "is_true", "is_false",
)  # fmt: skip

_CRITERIA = ListOf(
    Obj(
        fields={
            "type": Enum(values=("value", "metadata", "user", "user_custom")),
            "column": Str(),
            "condition": Enum(values=_CONDITIONS),
            "values": ListOf(Str()),
            "nullVacuousOverride": Bool(),
        },
        required=("type", "condition"),
    )
)
_RATIO = Num(minimum=0, maximum=1)
_NUMBER_FIELDS = (
    "denominatorCustomRollupEnd", "denominatorCustomRollupStart", "funnelCalculationWindow",
    "metricBakeDays", "valueThreshold", "funnelTimestampAllowanceMs", "customRollUpStart",
    "customRollUpEnd", "percentile", "retentionEnd", "retentionLength", "cap",
)  # fmt: skip
_BOOL_FIELDS = (
    "waitForCohortWindow", "allowNullRatioDenominator", "funnelStrictOrdering",
    "funnelUseExposureAsFirstEvent", "funnelTimeToConvert", "onlyIncludeUsersWithConversionEvent",
    "denominatorCustomRollupMeasureInMinutes", "customRollupMeasureInMinutes", "useLogTransform",
    "useSecondaryRetentionEvent",
)  # fmt: skip
_STRING_FIELDS = (
    "metricSourceName", "denominatorMetricSourceName", "denominatorRollupTimeWindow",
    "denominatorValueColumn", "valueColumn", "rollupTimeWindow",
)  # fmt: skip
WAREHOUSE_NATIVE = Obj(
    fields={
        **{name: Num() for name in _NUMBER_FIELDS},
        **{name: Bool() for name in _BOOL_FIELDS},
        **{name: Str() for name in _STRING_FIELDS},
        **{
            name: _RATIO
            for name in (
                "winsorizationHigh",
                "winsorizationLow",
                "winsorizationHighDenominator",
                "winsorizationLowDenominator",
            )
        },
        **{name: Num(nullable=True) for name in ("cupedAttributionWindow", "logTransformBase")},
        "surrogateMetricMSE": Num(nullable=True),
        "aggregation": Enum(values=_AGGREGATIONS),
        "denominatorAggregation": Enum(values=_AGGREGATIONS),
        "numeratorAggregation": Enum(values=_AGGREGATIONS),
        "criteria": _CRITERIA,
        "denominatorCriteria": _CRITERIA,
        "funnelCountDistinct": Enum(values=("sessions", "users")),
        "funnelStartCriteria": Enum(values=("start_event", "exposure")),
        "metricDimensionColumns": ListOf(Str()),
        "funnelEvents": ListOf(
            Obj(
                fields={
                    "criteria": _CRITERIA,
                    "metricSourceName": Str(),
                    "name": Str(nullable=True),
                    "sessionIdentifierField": Str(nullable=True),
                }
            )
        ),
    }
)
_TEAM = {"team": Str(nullable=True), "teamID": Str(nullable=True)}

CREATE_SCHEMA = Obj(
    fields={
        "name": Str(min_len=4, max_len=200, pattern=r"^[a-zA-Z0-9_.\-()/ %:]*$"),
        "type": Enum(values=METRIC_TYPES),
        "isVerified": Bool(),
        "isReadOnly": Bool(),
        "unitTypes": ListOf(Str()),
        "metricEvents": ListOf(
            Obj(
                fields={
                    "name": Str(),
                    "type": Enum(
                        values=("count", "count_distinct", "value", "metadata"), nullable=True
                    ),
                    "metadataKey": Str(),
                    "criteria": _CRITERIA,
                },
                required=("name",),
            )
        ),
        "metricComponentMetrics": ListOf(
            Obj(fields={"name": Str(), "type": Str()}, required=("name", "type"))
        ),
        "description": Str(max_len=1000),
        "directionality": Enum(values=("increase", "decrease")),
        "tags": OneOf(options=(ListOf(Str()), Str())),
        "isPermanent": Bool(),
        "rollupTimeWindow": Str(),
        "customRollUpStart": Num(),
        "customRollUpEnd": Num(),
        "funnelEventList": ListOf(
            Obj(
                fields={
                    "name": Str(),
                    "type": Enum(
                        values=("event_dau", "event_user", "event_count", "event_count_custom")
                    ),
                },
                required=("name", "type"),
            )
        ),
        "funnelCountDistinct": Enum(values=("events", "users")),
        "warehouseNative": WAREHOUSE_NATIVE,
        **_TEAM,
        "dryRun": Bool(),
    },
    required=("name", "type"),
)

UPDATE_SCHEMA = Obj(
    fields={
        "name": Str(),
        "description": Str(),
        "tags": ListOf(Str()),
        "isVerified": Bool(),
        "isReadOnly": Bool(),
        "isPermanent": Bool(),
        "warehouseNative": WAREHOUSE_NATIVE,
        "unitTypes": ListOf(Str()),
        **_TEAM,
        "directionality": Enum(values=("increase", "decrease")),
        "dryRun": Bool(),
        "owner": Obj(fields={"email": Str(), "ownerID": Str()}),
    }
)

_CREATE_PASSTHROUGH = (
    "metricComponentMetrics", "rollupTimeWindow", "customRollUpStart", "customRollUpEnd",
    "funnelEventList", "funnelCountDistinct", "warehouseNative",
)  # fmt: skip


def _check_source_exists(project: Project, fields: dict[str, Any]) -> None:
    whn = fields.get("warehouseNative")
    if not isinstance(whn, dict):
        return
    sources = metric_sources(project)
    errors = [
        {
            "property": f"warehouseNative.{key}",
            "errorMessage": f"Metric source {whn[key]!r} does not exist",
        }
        for key in ("metricSourceName", "denominatorMetricSourceName")
        if whn.get(key) and whn[key] not in sources
    ]
    if errors:
        raise validation_failed(errors)


def build_metric(project: Project, fields: dict[str, Any], now_ms: int) -> Entity:
    """A full ``ExternalMetricDefinitionContractDto`` from validated create fields."""
    tags = fields.get("tags", [])
    events = fields.get("metricEvents", [])
    components = fields.get("metricComponentMetrics", [])
    metric: Entity = {
        "id": f"{fields['name']}::{fields['type']}",
        "name": fields["name"],
        "directionality": fields.get("directionality", "increase"),
        "type": fields["type"],
        "description": fields.get("description", ""),
        "isPermanent": fields.get("isPermanent", False),
        "isReadOnly": fields.get("isReadOnly", False),
        "isHidden": False,
        "isVerified": fields.get("isVerified", False),
        "tags": [tags] if isinstance(tags, str) else list(tags),
        **created_fields(project, now_ms),
        "owner": console_owner(project),
        "lineage": {
            "events": [e["name"] for e in events],
            "metrics": [c["name"] for c in components],
        },
        "team": fields.get("team"),
        "teamID": fields.get("teamID"),
        "unitTypes": fields.get("unitTypes", ["userID"]),
        "metricEvents": events,
    }
    for name in _CREATE_PASSTHROUGH:
        if name in fields:
            metric[name] = fields[name]
    return metric


def create_metric(
    project: Project, fields: dict[str, Any], now_ms: int, *, persist: bool = True
) -> Entity:
    """Create a metric from validated fields (used by the handler and the demo seeder)."""
    coll = metrics(project)
    metric_id = f"{fields['name']}::{fields['type']}"
    if metric_id in coll:
        raise name_in_use()
    _check_source_exists(project, fields)
    metric = build_metric(project, fields, now_ms)
    if persist:
        coll.add(metric_id, metric)
    return metric


def _get(project: Project, metric_id: str) -> Entity:
    return get_or_404(metrics(project), metric_id)


async def list_metrics(call: Call) -> Reply:
    show_hidden = call.query.get("showHiddenMetrics", "false")
    if show_hidden not in ("true", "false"):
        raise invalid_request()
    items = metrics(call.project).values()
    if show_hidden == "false":
        items = [m for m in items if not m.get("isHidden")]
    return paged(call, "Metrics listed successfully.", items)


async def create(call: Call) -> Reply:
    fields = validate(CREATE_SCHEMA, call.json_body())
    persist = not fields.get("dryRun", False)
    metric = create_metric(call.project, fields, call.now_ms, persist=persist)
    return single("Metric created successfully.", metric, status=call.config.create_code(201))


async def read(call: Call) -> Reply:
    return single("Metric read successfully.", _get(call.project, call.params["id"]))


async def read_by_name(call: Call) -> Reply:
    metric_id = f"{call.params['name']}::{call.params['type']}"
    return single("Metric read successfully.", _get(call.project, metric_id))


#: What a full update (replace reading) resets when its body leaves the field out.
_UPDATE_RESETS: dict[str, Any] = {
    "description": "",
    "tags": [],
    "isVerified": False,
    "isReadOnly": False,
    "isPermanent": False,
    "unitTypes": ["userID"],
    "team": None,
    "teamID": None,
    "directionality": "increase",
}


def _apply_update(
    project: Project, old: Entity, fields: dict[str, Any], now_ms: int, *, replace: bool
) -> Entity:
    changes = {k: v for k, v in fields.items() if k not in ("dryRun", "owner")}
    base = old
    if replace:
        base = {k: v for k, v in old.items() if k != "warehouseNative"}
        base.update(_UPDATE_RESETS)
    new = {**base, **changes, **modified_fields(project, now_ms)}
    owner = fields.get("owner")
    if owner:
        email = owner.get("email", "")
        new["owner"] = {
            "name": email or owner.get("ownerID", ""),
            "ownerID": owner.get("ownerID", ""),
            "ownerType": "USER",
            "ownerName": email,
            "ownerEmail": email,
        }
    return new


async def update(call: Call) -> Reply:
    metric_id = call.params["id"]
    old = _get(call.project, metric_id)
    fields = validate(UPDATE_SCHEMA, call.json_body())
    _check_source_exists(call.project, fields)
    replace = call.config.replaces_on_full_update
    new = _apply_update(call.project, old, fields, call.now_ms, replace=replace)
    if not fields.get("dryRun", False):
        metrics(call.project).replace(metric_id, new)
    return single("Metric updated successfully.", new)


async def delete(call: Call) -> Reply:
    metric_id = call.params["id"]
    _get(call.project, metric_id)
    metrics(call.project).remove(metric_id)
    return message_only("Metric deleted successfully.")


def register(router: Router) -> None:
    router.add("GET", f"{BASE}/list", list_metrics)
    router.add("POST", BASE, create)
    router.add("GET", f"{BASE}/{{id}}", read)
    router.add("GET", f"{BASE}/{{name}}/{{type}}", read_by_name)
    router.add("POST", f"{BASE}/{{id}}", update)
    router.add("DELETE", f"{BASE}/{{id}}", delete)
