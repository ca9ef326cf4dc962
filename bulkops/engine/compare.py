"""Comparing what an entity is with what it should be: by meaning, not by spelling.

Used three times with one meaning: reconciling a mutation whose answer was lost, checking a
precondition before a write, and verifying after apply. What "meaning" is belongs to the API
(``Semantics``: keys never compared, lists whose order does not count, items written two ways);
the API's own semantics live with the jobs (``bulkops.jobs.semantics``). Everywhere, absent,
``null``, ``""``, ``[]`` and ``{}`` are all "nothing".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

ItemCanonicalizer = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Semantics:
    """What counts as a difference between two JSON documents of one API."""

    #: Keys never compared, at any depth (assigned by the server).
    ignored: frozenset[str] = frozenset()
    #: Keys whose lists compare as multisets (the API does not order them).
    unordered: frozenset[str] = frozenset()
    #: Per key, a function giving the items of its list one canonical spelling.
    canonical_items: Mapping[str, ItemCanonicalizer] = field(default_factory=dict)


#: Plain JSON equality, nothing ignored, every list ordered (nothing is still nothing).
PLAIN = Semantics()


def normalize(value: Any, semantics: Semantics, *, keep: frozenset[str] = frozenset()) -> Any:
    """A canonical form: ignored keys dropped (unless in ``keep``), empties too, unordered lists
    sorted, items spelled one way."""
    return _normalize(value, semantics, keep, parent="")


def _normalize(value: Any, semantics: Semantics, keep: frozenset[str], parent: str) -> Any:
    if isinstance(value, dict):
        canonical = semantics.canonical_items.get(parent)
        if canonical is not None:
            value = canonical(value)
        result = {}
        for key, item in value.items():
            if key in semantics.ignored and key not in keep:
                continue
            item = _normalize(item, semantics, keep, parent=key)
            if item is None or item in ("", [], {}):
                continue
            result[key] = item
        return result
    if isinstance(value, list):
        items = [_normalize(item, semantics, keep, parent) for item in value]  # items of `parent`
        return sorted(items, key=_sort_key) if parent in semantics.unordered else items
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _field(value: Any, key: str, semantics: Semantics) -> Any:
    """One top-level field in canonical form; every kind of nothing becomes None."""
    value = _normalize(value, semantics, frozenset(), key)
    return None if value in ("", [], {}) else value


def _sort_key(item: Any) -> bytes:
    return orjson.dumps(item, option=orjson.OPT_SORT_KEYS)


def differences(
    current: dict[str, Any] | None, expected: dict[str, Any], semantics: Semantics
) -> dict[str, Any]:
    """Field -> {"expected", "actual"} for every expected field the entity does not match."""
    if current is None:
        return {"(entity)": {"expected": "present", "actual": "absent"}}
    diff = {}
    for key, want in expected.items():
        have = current.get(key)
        if _field(have, key, semantics) != _field(want, key, semantics):
            diff[key] = {"expected": want, "actual": have}
    return diff


def precondition_holds(
    current: dict[str, Any] | None, precondition: Any, semantics: Semantics
) -> bool:
    """Does the entity still look as it did when the operation was planned?

    ``"absent"``: it must not exist; ``{"fields": {...}}``: those fields must match by meaning;
    any other mapping pins keys to exact values (e.g. a version and a modification time);
    ``None``: it exists, in any state.
    """
    if precondition == "absent":
        return current is None
    if current is None:
        return False
    if precondition is None:
        return True
    if not isinstance(precondition, dict):
        return False
    if "fields" in precondition:
        return not differences(current, precondition["fields"], semantics)
    return all(current.get(k) == v for k, v in precondition.items())
