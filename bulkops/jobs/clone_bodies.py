"""What of an entity a clone may send: settable fields only, references rewritten for the target.

Server-assigned fields (ids of groups and rules, times, creators, versions, status) are never sent;
what each kind's create and update may carry is the whitelist of ``bulkops.jobs.entity_kinds``, so
a field the API adds later is left out rather than sent blindly.
"""

from __future__ import annotations

from typing import Any

from bulkops.jobs.entity_kinds import ENTITY_KINDS

CONDITION_FIELDS = ("type", "operator", "targetValue", "field", "customID")
RULE_FIELDS = ("name", "passPercentage", "conditions", "environments")
GROUP_FIELDS = ("name", "size", "parameterValues", "description", "disabled")


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
    body = pick(entity, ENTITY_KINDS[kind].create_fields)
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
    body = {k: v for k, v in created.items() if k in ENTITY_KINDS[kind].update_fields}
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
