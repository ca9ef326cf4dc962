"""What of an entity a clone may send: settable fields only, references rewritten for the target.

Server-assigned fields (ids of groups and rules, times, creators, versions, status) are never sent;
everything here is a whitelist taken from the create DTOs of the spec (reference Appendix B), so a
field the API adds later is left out rather than sent blindly.
"""

from __future__ import annotations

from typing import Any

CONDITION_FIELDS = ("type", "operator", "targetValue", "field", "customID")
RULE_FIELDS = ("name", "passPercentage", "conditions", "environments")
GROUP_FIELDS = ("name", "size", "parameterValues", "description", "disabled")

CREATE_FIELDS: dict[str, tuple[str, ...]] = {
    "tag": ("name", "description", "isCore"),
    "target_app": ("name", "description"),
    "metric_source": (
        "name",
        "description",
        "sql",
        "timestampColumn",
        "idTypeMapping",
        "tags",
        "timestampAsDay",
        "sourceType",
        "tableName",
        "datePartitionColumn",
        "customFieldMapping",
        "isReadOnly",
        "isVerified",
        "team",
    ),
    "metric": (
        "name",
        "type",
        "description",
        "directionality",
        "tags",
        "isVerified",
        "isReadOnly",
        "isPermanent",
        "unitTypes",
        "metricEvents",
        "metricComponentMetrics",
        "rollupTimeWindow",
        "customRollUpStart",
        "customRollUpEnd",
        "funnelEventList",
        "funnelCountDistinct",
        "warehouseNative",
        "team",
    ),
    "segment": ("id", "name", "description", "type", "idType", "tags", "team", "rules"),
    "gate": (
        "id",
        "name",
        "description",
        "idType",
        "type",
        "isEnabled",
        "rules",
        "targetApps",
        "tags",
        "team",
        "measureMetricLifts",
        "monitoringMetrics",
    ),
    "layer": ("name", "idType", "description", "targetApps", "team"),
    "experiment": (
        "id",
        "name",
        "description",
        "idType",
        "hypothesis",
        "links",
        "tags",
        "groups",
        "allocation",
        "duration",
        "targetExposures",
        "targetingGateID",
        "layerID",
        "targetApps",
        "primaryMetricTags",
        "secondaryMetricTags",
        "primaryMetrics",
        "secondaryMetrics",
        "otherMetrics",
        "sequentialTesting",
        "bonferroniCorrection",
        "bonferroniCorrectionPerMetric",
        "benjaminiHochbergPerVariant",
        "benjaminiHochbergPerMetric",
        "benjaminiPrimaryMetricsOnly",
        "defaultConfidenceInterval",
        "manualQualityScores",
        "analyticsType",
        "team",
        "secondaryIDType",
    ),
    "holdout": ("name", "description", "idType"),
}

#: What an update of each kind may carry: the fields of its update DTO that a clone sets (the
#: partial-update DTO for PATCH; the full-update DTO for the POST updates of metrics and metric
#: sources, and for segments the rules of ``POST /segments/{id}/conditional``). A full update is
#: read as replacing the entity, so its body carries every one of these fields the source has:
#: a server that resets omitted fields then loses nothing (docs/api-assumptions.md).
UPDATE_FIELDS: dict[str, tuple[str, ...]] = {
    "tag": ("description", "isCore"),
    "target_app": ("description",),
    "metric_source": CREATE_FIELDS["metric_source"],
    "metric": (
        "name",
        "description",
        "tags",
        "isVerified",
        "isReadOnly",
        "isPermanent",
        "warehouseNative",
        "unitTypes",
        "team",
        "directionality",
    ),
    "segment": ("rules",),
    "gate": tuple(f for f in CREATE_FIELDS["gate"] if f != "id"),
    "layer": ("description", "parameters", "targetApps"),
    "experiment": tuple(f for f in CREATE_FIELDS["experiment"] if f not in ("id", "layerID")),
    "holdout": ("description",),
}


def pick(entity: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {k: entity[k] for k in fields if k in entity and entity[k] is not None}


def clean_rules(rules: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    cleaned = []
    for rule in rules or []:
        body = pick(rule, RULE_FIELDS)
        body["conditions"] = [pick(c, CONDITION_FIELDS) for c in rule.get("conditions") or []]
        cleaned.append(body)
    return cleaned


def create_body(kind: str, entity: dict[str, Any]) -> dict[str, Any]:
    body = pick(entity, CREATE_FIELDS[kind])
    if "rules" in body:
        body["rules"] = clean_rules(body["rules"])
    if kind == "gate" and body.get("type") not in (None, "PERMANENT", "TEMPORARY"):
        body.pop("type")  # STALE/TEMPLATE are server-assigned states
    if kind == "segment" and body.get("type") != "rule_based":
        body.pop("rules", None)
    if kind == "experiment":
        body["groups"] = [pick(g, GROUP_FIELDS) for g in entity.get("groups") or []]
        if str(body.get("layerID", "")).startswith("statsig::"):
            body.pop("layerID")  # implicit layers are made by the target itself
        if not body.get("targetingGateID"):
            body.pop("targetingGateID", None)
    return body


def update_body(kind: str, entity: dict[str, Any]) -> dict[str, Any]:
    created = create_body(kind, entity)
    body = {k: v for k, v in created.items() if k in UPDATE_FIELDS[kind]}
    if kind == "layer":  # not in the create DTO, so not in ``created``
        body["parameters"] = entity.get("parameters") or []
    return body


def referenced_ids(rules: list[dict[str, Any]] | None) -> tuple[set[str], set[str]]:
    """(gate ids, segment ids) that rule conditions point at."""
    gates: set[str] = set()
    segments: set[str] = set()
    for rule in rules or []:
        for condition in rule.get("conditions") or []:
            kind = condition.get("type")
            targets = condition.get("targetValue")
            values = targets if isinstance(targets, list) else [targets]
            values = [str(v) for v in values if v]
            if kind in ("passes_gate", "fails_gate"):
                gates.update(values)
            elif kind in ("passes_segment", "fails_segment"):
                segments.update(values)
    return gates, segments
