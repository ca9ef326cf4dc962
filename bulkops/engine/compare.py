"""Comparing what an entity is with what it should be: by meaning, not by spelling.

Used three times with one meaning: reconciling a mutation whose answer was lost, checking a
precondition before a write, and verifying after apply. What never counts as a difference, where
the spec leaves the server free (docs/api-assumptions.md):

* server-assigned fields (ids of rules and groups, times, creators, versions);
* absent, ``null``, ``""``, ``[]`` and ``{}``: all "nothing";
* the order of lists the API does not order (tags, target apps, id lists, overrides, metrics,
  the conditions of a rule...); rules and groups keep their order, which means something;
* whether an experiment override names its gate or segment by ``id`` or by ``name`` (the
  spec's request DTO says ``id``, its answers' examples say ``name``).
"""

from __future__ import annotations

from typing import Any

import orjson

#: Keys the server assigns anywhere in an entity; never compared, never sent.
SERVER_ASSIGNED = frozenset(
    {
        "id",
        "baseID",
        "createdTime",
        "creatorID",
        "creatorName",
        "creatorEmail",
        "lastModifiedTime",
        "lastModifierID",
        "lastModifierName",
        "lastModifierEmail",
        "version",
        "owner",
        "holdoutIDs",
        "completedAutomatedRollouts",
        "pendingAutomatedRollouts",
        "checksPerHour",
        "status",
        "typeReason",
        "activeReview",
        "healthChecks",
        "healthCheckStatus",
        "inlineTargetingRulesJSON",
        "startTime",
        "endTime",
        "decisionTime",
        "lineage",
        "isHidden",
        # Group ids are per project; these point at the entity's own groups.
        "controlGroupID",
        "launchedGroupID",
    }
)

#: Lists whose order carries no meaning, compared as multisets. Not here, because their order
#: is meaningful: ``rules`` (evaluation order) and ``groups``.
UNORDERED = frozenset(
    {
        "tags",
        "targetApps",
        "primaryMetricTags",
        "secondaryMetricTags",
        "primaryMetrics",
        "secondaryMetrics",
        "otherMetrics",
        "monitoringMetrics",
        "unitTypes",
        "experimentIDs",
        "gateIDs",
        "layerIDs",
        "overrides",
        "userIDOverrides",
        "ids",
        "environments",
        "conditions",
        "targetValue",
        "parameters",
        "idTypeMapping",
        "customFieldMapping",
    }
)
#: Where an experiment override names its gate or segment: ``id`` (request DTO) or ``name``.
_OVERRIDE_TARGET = ("id", "name")


def normalize(value: Any, *, keep: frozenset[str] = frozenset()) -> Any:
    """A canonical form: server-assigned keys dropped (unless in ``keep``), empties too, lists
    the API does not order sorted, override targets under one key."""
    return _normalize(value, keep, parent="")


def _normalize(value: Any, keep: frozenset[str], parent: str) -> Any:
    if isinstance(value, dict):
        if parent == "overrides":
            value = _override_item(value)
        result = {}
        for key, item in value.items():
            if key in SERVER_ASSIGNED and key not in keep:
                continue
            item = _normalize(item, keep, parent=key)
            if item is None or item in ("", [], {}):
                continue
            result[key] = item
        return result
    if isinstance(value, list):
        items = [_normalize(item, keep, parent) for item in value]  # items of `parent`
        return sorted(items, key=_sort_key) if parent in UNORDERED else items
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _field(value: Any, key: str) -> Any:
    """One top-level field in canonical form; every kind of nothing becomes None."""
    value = _normalize(value, frozenset(), key)
    return None if value in ("", [], {}) else value


def _override_item(item: dict[str, Any]) -> dict[str, Any]:
    """An experiment override's gate or segment under one key, however the server named it."""
    if item.get("type") not in ("gate", "segment"):
        return item
    target = next((item[k] for k in _OVERRIDE_TARGET if item.get(k)), None)
    rest = {k: v for k, v in item.items() if k not in _OVERRIDE_TARGET}
    return {**rest, "(target)": target}


def _sort_key(item: Any) -> bytes:
    return orjson.dumps(item, option=orjson.OPT_SORT_KEYS)


def differences(current: dict[str, Any] | None, expected: dict[str, Any]) -> dict[str, Any]:
    """Field -> {"expected", "actual"} for every expected field the entity does not match."""
    if current is None:
        return {"(entity)": {"expected": "present", "actual": "absent"}}
    diff = {}
    for key, want in expected.items():
        have = current.get(key)
        if _field(have, key) != _field(want, key):
            diff[key] = {"expected": want, "actual": have}
    return diff


def matches(current: dict[str, Any] | None, expected: dict[str, Any]) -> bool:
    return not differences(current, expected)


def precondition_holds(current: dict[str, Any] | None, precondition: Any) -> bool:
    """Does the entity still look as it did when the operation was planned?"""
    if precondition == "absent":
        return current is None
    if current is None:
        return False
    if isinstance(precondition, dict) and "version" in precondition:
        return all(current.get(k) == v for k, v in precondition.items())
    if isinstance(precondition, dict) and "fields" in precondition:
        return matches(current, precondition["fields"])
    return precondition is None


def guard_of(entity: dict[str, Any]) -> dict[str, Any]:
    """The precondition that pins an entity as read: its version and last modification time."""
    return {"version": entity.get("version"), "lastModifiedTime": entity.get("lastModifiedTime")}
