"""What the Statsig Console API means by "the same entity": the semantics every job compares with.

``bulkops.engine.compare`` knows how to compare JSON by meaning; this module says what meaning the
Console API gives its fields (docs/api-assumptions.md):

* server-assigned fields (ids of rules and groups, times, creators, versions) never count;
* the order of lists the API does not order (tags, target apps, id lists, overrides, metrics,
  the conditions of a rule...) does not count; rules and groups keep their order;
* an experiment override names its gate or segment by ``id`` or by ``name`` (the spec's request
  DTO says ``id``, its answers' examples say ``name``): either is the same override.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bulkops.engine import compare
from bulkops.engine.compare import Semantics

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
        "passingUserIDs",  # gate and holdout overrides: sets of ids
        "failingUserIDs",
        "passingCustomIDs",
        "failingCustomIDs",
        "environmentOverrides",
        "passingIDs",
        "failingIDs",
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


def _override_item(item: dict[str, Any]) -> dict[str, Any]:
    """An experiment override's gate or segment under one key, however the server named it."""
    if item.get("type") not in ("gate", "segment"):
        return item
    target = next((item[k] for k in _OVERRIDE_TARGET if item.get(k)), None)
    rest = {k: v for k, v in item.items() if k not in _OVERRIDE_TARGET}
    return {**rest, "(target)": target}


SEMANTICS = Semantics(
    ignored=SERVER_ASSIGNED, unordered=UNORDERED, canonical_items={"overrides": _override_item}
)


def normalize(value: Any, *, keep: frozenset[str] = frozenset()) -> Any:
    """``value`` in canonical form under the Console API's semantics."""
    return compare.normalize(value, SEMANTICS, keep=keep)


def differences(current: dict[str, Any] | None, expected: dict[str, Any]) -> dict[str, Any]:
    """Field -> {"expected", "actual"} for every expected field the entity does not match."""
    return compare.differences(current, expected, SEMANTICS)


def guard_of(entity: dict[str, Any], fields: Iterable[str] = ()) -> dict[str, Any]:
    """The precondition that pins an entity as read: its version and last modification time.

    Both are optional in the spec's DTOs (``version`` may be absent, ``lastModifiedTime`` null):
    with neither, a pin would hold whatever became of the entity, so the entity's ``fields`` as
    read are the guard instead, compared by meaning (docs/api-assumptions.md #33).
    """
    pins = {"version": entity.get("version"), "lastModifiedTime": entity.get("lastModifiedTime")}
    if any(value is not None for value in pins.values()) or not fields:
        return pins
    return {"fields": {field: entity.get(field) for field in fields}}
