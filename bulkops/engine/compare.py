"""Comparing what an entity is with what it should be, ignoring what the server assigns.

Used three times with one meaning: reconciling a mutation whose answer was lost, checking a
precondition before a write, and verifying after apply. Server-assigned fields (ids of rules and
groups, times, creators, versions) never count as a difference.
"""

from __future__ import annotations

from typing import Any

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


def normalize(value: Any, *, keep: frozenset[str] = frozenset()) -> Any:
    """A canonical form: server-assigned keys dropped (unless in ``keep``), nulls and empties too."""
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if key in SERVER_ASSIGNED and key not in keep:
                continue
            item = normalize(item, keep=keep)
            if item is None or item == [] or item == {}:
                continue
            result[key] = item
        return result
    if isinstance(value, list):
        return [normalize(item, keep=keep) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def differences(current: dict[str, Any] | None, expected: dict[str, Any]) -> dict[str, Any]:
    """Field -> {"expected", "actual"} for every expected field the entity does not match."""
    if current is None:
        return {"(entity)": {"expected": "present", "actual": "absent"}}
    diff = {}
    for key, want in expected.items():
        have = current.get(key)
        if normalize(have) != normalize(want):
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
