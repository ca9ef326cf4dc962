"""What of an entity a clone may send: settable fields only, references rewritten for the target.

Server-assigned fields (ids of groups and rules, times, creators, versions, status) are never sent;
what each kind's create and update may carry is the whitelist of ``bulkops.jobs.entity_kinds``, so
a field the API adds later is left out rather than sent blindly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bulkops.jobs.entity_kinds import ENTITY_KINDS

CONDITION_FIELDS = ("type", "operator", "targetValue", "field", "customID")
RULE_FIELDS = ("name", "passPercentage", "conditions", "environments")
GROUP_FIELDS = ("name", "size", "parameterValues", "description", "disabled")
_USER_OVERRIDES = ("passingUserIDs", "failingUserIDs", "passingCustomIDs", "failingCustomIDs")
#: The lists of a gate's or holdout's ``OverrideDto`` (§8.2).
ID_OVERRIDE_KEYS = (*_USER_OVERRIDES, "environmentOverrides")


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


def condition_apps(rules: list[dict[str, Any]] | None) -> set[str]:
    """Target-app values that ``target_app`` rule conditions point at."""
    apps: set[str] = set()
    for rule in rules or []:
        for condition in rule.get("conditions") or []:
            if condition.get("type") == "target_app":
                targets = condition.get("targetValue")
                values = targets if isinstance(targets, list) else [targets]
                apps.update(str(v) for v in values if v)
    return apps


def with_target_apps(body: dict[str, Any], app_id: Callable[[str], str | None]) -> dict[str, Any]:
    """``body`` with every target-app reference (``targetApps``, ``target_app`` conditions)
    turned into the target's id for the same app; apps ``app_id`` cannot map are left out."""
    out = dict(body)
    if "targetApps" in out:
        apps = out["targetApps"]
        values = [apps] if isinstance(apps, str) else list(apps or [])
        out["targetApps"] = [t for t in (app_id(v) for v in values) if t is not None]
    if isinstance(out.get("rules"), list):
        out["rules"] = [
            {
                **rule,
                "conditions": [_condition_apps(c, app_id) for c in rule.get("conditions") or []],
            }
            for rule in out["rules"]
        ]
    return out


def _condition_apps(
    condition: dict[str, Any], app_id: Callable[[str], str | None]
) -> dict[str, Any]:
    if condition.get("type") != "target_app":
        return condition
    targets = condition.get("targetValue")
    if isinstance(targets, list):
        mapped: Any = [app_id(str(v)) or v for v in targets]
    else:
        mapped = app_id(str(targets)) or targets if targets else targets
    return {**condition, "targetValue": mapped}


def id_override_bodies(overrides: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A gate's or holdout's ``OverrideDto`` as the request bodies that set it: ``("user",
    {passingUserIDs, failingUserIDs, ...})`` and ``("environment", {environmentOverrides})``,
    each only when it has ids (the two forms of a ``oneOf``, never mixed in one body)."""
    bodies: list[tuple[str, dict[str, Any]]] = []
    users = {k: list(overrides.get(k) or []) for k in _USER_OVERRIDES}
    if any(users.values()):
        required = {k: users[k] for k in ("passingUserIDs", "failingUserIDs")}
        bodies.append(("user", {**required, **{k: v for k, v in users.items() if v}}))
    environments = [
        {
            "environment": entry.get("environment"),
            "unitID": entry.get("unitID"),
            "passingIDs": list(entry.get("passingIDs") or []),
            "failingIDs": list(entry.get("failingIDs") or []),
        }
        for entry in overrides.get("environmentOverrides") or []
        if isinstance(entry, dict) and (entry.get("passingIDs") or entry.get("failingIDs"))
    ]
    if environments:
        bodies.append(("environment", {"environmentOverrides": environments}))
    return bodies
