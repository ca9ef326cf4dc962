"""ID overrides of gates and holdouts (reference §8.2): ``GET/POST/PATCH/DELETE …/{id}/overrides``.

Body ``UpdateOverridesContractDto`` is one of ``{environmentOverrides: [{environment, unitID,
passingIDs, failingIDs}]}`` or ``{passingUserIDs, failingUserIDs, passingCustomIDs?,
failingCustomIDs?}``; the answer is the whole ``OverrideDto`` (both forms, every list present).
A body of both forms is refused (400), as a ``oneOf`` that both branches match is.
POST replaces everything with the given lists, PATCH adds them (a union, order kept), DELETE
removes them (its body, in the same shape, is documented in the 2024 docs only; a DELETE
without a body, as the current spec draws it, removes every override).
``environmentOverrides`` entries are keyed by ``(environment, unitID)``; an entry left with no ids
is dropped. Every call that changes overrides bumps the owning entity's ``version``.

Gate override operations answer **201**, even GET (a spec quirk kept on purpose); holdouts 200.
"""

from __future__ import annotations

from typing import Any

from .._context import Call, Reply
from .._envelopes import single
from .._errors import NOT_FOUND, validation_failed
from .._routing import Router
from .._store import Entity
from .._validation import ListOf, Obj, Str, validate
from ._common import overrides_read
from ._entities import HOLDOUTS, Kind, clears_all, get_entity, save_overrides

__all__ = ["EMPTY_OVERRIDES", "OVERRIDES_SCHEMA", "register_id_overrides"]

_IDS = ListOf(Str(min_len=1), max_items=2000)
_USER_KEYS = ("passingUserIDs", "failingUserIDs", "passingCustomIDs", "failingCustomIDs")
_ENV = Obj(
    fields={
        "environment": Str(nullable=True),
        "unitID": Str(nullable=True),
        "passingIDs": ListOf(Str()),
        "failingIDs": ListOf(Str()),
    },
    required=("unitID", "passingIDs", "failingIDs"),
)
OVERRIDES_SCHEMA = Obj(
    fields={"environmentOverrides": ListOf(_ENV), **{k: _IDS for k in _USER_KEYS}}
)
EMPTY_OVERRIDES: dict[str, Any] = {**{k: [] for k in _USER_KEYS}, "environmentOverrides": []}


def _parse(call: Call) -> dict[str, Any]:
    body = validate(OVERRIDES_SCHEMA, call.json_body())
    mixed = [k for k in _USER_KEYS if k in body]
    if "environmentOverrides" in body and mixed:
        # The DTO is a oneOf whose branches allow other keys: a body of both forms matches
        # both, which a oneOf refuses (docs/api-assumptions.md #32).
        raise validation_failed(
            [
                {"property": k, "errorMessage": "Send environmentOverrides or the id lists"}
                for k in ("environmentOverrides", *mixed)
            ]
        )
    if "environmentOverrides" in body:
        return body
    missing = [k for k in ("passingUserIDs", "failingUserIDs") if k not in body]
    if missing:
        raise validation_failed(
            [
                {"property": k, "errorMessage": "Required (or send environmentOverrides)"}
                for k in missing
            ]
        )
    return body


def _union(a: list[str], b: list[str]) -> list[str]:
    return list(dict.fromkeys([*a, *b]))


def _minus(a: list[str], b: list[str]) -> list[str]:
    drop = set(b)
    return [x for x in a if x not in drop]


def _env_key(entry: dict[str, Any]) -> tuple[str | None, str | None]:
    return entry.get("environment"), entry.get("unitID")


def _merge_env(
    current: list[dict[str, Any]], given: list[dict[str, Any]], add: bool
) -> list[dict[str, Any]]:
    out = {_env_key(e): dict(e) for e in current}
    for entry in given:
        key = _env_key(entry)
        old = out.get(
            key, {"environment": key[0], "unitID": key[1], "passingIDs": [], "failingIDs": []}
        )
        op = _union if add else _minus
        out[key] = {
            **old,
            "passingIDs": op(old["passingIDs"], entry["passingIDs"]),
            "failingIDs": op(old["failingIDs"], entry["failingIDs"]),
        }
    return [e for e in out.values() if e["passingIDs"] or e["failingIDs"]]


def apply_overrides(current: dict[str, Any], body: dict[str, Any], op: str) -> dict[str, Any]:
    """``op`` is "replace", "add" or "remove"."""
    base = dict(EMPTY_OVERRIDES) if op == "replace" else dict(current)
    combine = _minus if op == "remove" else _union
    for key in _USER_KEYS:
        if key in body:
            base[key] = combine(base[key], body[key])
    if "environmentOverrides" in body:
        base["environmentOverrides"] = _merge_env(
            base["environmentOverrides"], body["environmentOverrides"], add=op != "remove"
        )
    return base


def register_id_overrides(router: Router, base: str, kind: Kind, status: int) -> None:
    """Register the four override routes of ``kind`` under ``base``/{id}/overrides."""
    read_msg = f"{kind.label} Overrides read successfully."
    write_msg = f"{kind.label} Overrides updated successfully."

    def current(call: Call) -> tuple[Entity, dict[str, Any]]:
        # The spec's one exception to the kind's 404 text: DELETE /holdouts/{id}/overrides.
        generic = kind is HOLDOUTS and call.method == "DELETE"
        entity = get_entity(
            call.project, kind, call.params["id"], not_found=NOT_FOUND if generic else None
        )
        stored = kind.overrides(call.project).get(entity["id"])
        return entity, dict(stored or EMPTY_OVERRIDES)

    async def read(call: Call) -> Reply:
        _, overrides = current(call)
        return overrides_read(call, read_msg, overrides, status)

    def writer(op: str) -> Any:
        async def write(call: Call) -> Reply:
            entity, overrides = current(call)
            if clears_all(call, op):
                updated = dict(EMPTY_OVERRIDES)
            else:
                updated = apply_overrides(overrides, _parse(call), op)
            save_overrides(call, kind, entity, updated)
            return single(write_msg, updated, status)

        return write

    path = f"{base}/{{id}}/overrides"
    router.add("GET", path, read)
    router.add("POST", path, writer("replace"))
    router.add("PATCH", path, writer("add"))
    router.add("DELETE", path, writer("remove"))
