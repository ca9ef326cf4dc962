"""Rules and conditions (reference §8.1) shared by gates, dynamic configs and segments.

**Rule ids.** Every rule gets a server-assigned ``baseID`` (22 base62 characters) that never
changes, and an ``id`` of the documented form ``<baseID>:<passPercentage, 2 decimals>:<n>``.
``n`` is the rule's revision: 1 when the rule is created, +1 each time any of its content
(name, passPercentage, conditions, environments, return value, variants) changes. That reading
follows the spec's own examples, where one rule goes from ``2IIQAN6wbUyHJiLbrcBuvx:80.00:1`` to
``…:80.00:4`` across updates that kept it at 80%. So a passPercentage change always changes
``id`` (both its middle and its ``n``) and never ``baseID``; re-sending a rule unchanged keeps its
``id``.

**Matching client rules to stored ones.** Server-assigned fields are never taken on trust: in a
full rules list, an incoming rule whose ``id`` or ``baseID`` names an existing rule of this
entity updates that rule (keeping its ``baseID`` and automated-rollout history); any other
incoming rule, including one carrying an unknown or foreign id, is new and gets a fresh
``baseID``. ``id`` must be the rule's *current* id (a stale one, from before a revision, does not
match); ``baseID`` always matches, so clients should send rules back as they read them. Two
incoming rules naming the same stored rule are a 400. The "update list" endpoints (``PATCH
…/rules``) only update: every item must name an existing rule.

**What a matched rule keeps** (docs/api-assumptions.md #25). The spec does not say what a full
rules list does to the fields of a matched rule that its item leaves out. ``EmulatorConfig.
rule_fields="reset"`` (default, the harsher reading) takes the item whole: ``environments``
left out is null, ``returnValue`` ``{}``, ``variants`` none, the automated-rollout histories
empty; only ``baseID`` survives. ``"kept"`` merges the item over the stored rule (what it
leaves out keeps its stored value, so a null must be *sent* to clear ``environments``). Either
way, automated-rollout histories an item sends are stored as sent (the request DTO has them).

**References.** ``passes_gate``/``fails_gate`` must name an existing gate, ``passes_segment``/
``fails_segment`` an existing segment, ``target_app`` existing target apps and ``unit_id``'s
``customID`` an existing unit id type (see :mod:`._refs` for why dangling references are 400s).
"""

from __future__ import annotations

from typing import Any

import orjson

from .._errors import bad_field, not_found, validation_failed
from .._ids import stable_id
from .._store import Entity, Project
from .._validation import Enum, ListOf, Node, Num, Obj, OneOf, Str
from ._entities import GATES, SEGMENTS
from ._refs import Errors, check_references
from .directory import unit_id_types
from .target_apps import target_apps

__all__ = [
    "CONDITION_TYPES",
    "SEGMENT_CONDITION_TYPES",
    "check_with_rules",
    "condition_errors",
    "find_rule",
    "find_rule_or_404",
    "json5_pair",
    "merge_rules",
    "new_rules",
    "revise_rule",
    "rule_schema",
    "update_rules",
]

CONDITION_TYPES = (
    "app_version",
    "browser_name",
    "browser_version",
    "country",
    "custom_field",
    "email",
    "environment_tier",
    "fails_gate",
    "fails_segment",
    "ip_address",
    "locale",
    "os_name",
    "os_version",
    "passes_gate",
    "passes_segment",
    "public",
    "time",
    "unit_id",
    "user_id",
    "url",
    "javascript",
    "device_model",
    "target_app",
)
SEGMENT_CONDITION_TYPES = (
    "app_version",
    "browser_name",
    "browser_version",
    "country",
    "custom_field",
    "email",
    "environment_tier",
    "fails_segment",
    "ip_address",
    "os_name",
    "os_version",
    "passes_segment",
    "unit_id",
    "user_id",
)

PASS_PERCENTAGE = Num(minimum=0, maximum=100, multiple_of=0.01)
_ROLLOUTS = ListOf(
    Obj(fields={"time": Num(), "passPercent": Num()}, required=("time", "passPercent"))
)
_OBJECT = Obj(keep_unknown=True)
_VARIANTS = ListOf(
    Obj(
        fields={
            "id": Str(),
            "name": Str(),
            "passPercentage": PASS_PERCENTAGE,
            "returnValue": _OBJECT,
            "returnValueJson5": Str(),
        },
        required=("name", "passPercentage"),
    )
)
_CONTENT = ("name", "passPercentage", "conditions", "environments")
_CONFIG_CONTENT = ("returnValue", "returnValueJson5", "variants")
_ROLLOUT_KEYS = ("completedAutomatedRollouts", "pendingAutomatedRollouts")
_REFERENCE_KINDS = {
    "passes_gate": GATES,
    "fails_gate": GATES,
    "passes_segment": SEGMENTS,
    "fails_segment": SEGMENTS,
}


def _condition(types: tuple[str, ...]) -> Obj:
    target = OneOf(options=(ListOf(Str()), ListOf(Num()), Str(), Num()), nullable=True)
    return Obj(
        fields={
            "type": Enum(values=types),
            "operator": Str(),
            "targetValue": target,
            "field": Str(nullable=True),
            "customID": Str(nullable=True),
        },
        required=("type",),
    )


def rule_schema(*, config: bool = False, segment: bool = False, partial: bool = False) -> Obj:
    """``RuleDto`` (or its all-optional update form); dynamic-config rules add return values."""
    types = SEGMENT_CONDITION_TYPES if segment else CONDITION_TYPES
    fields: dict[str, Node] = {
        "name": Str(),
        "passPercentage": PASS_PERCENTAGE,
        "conditions": ListOf(_condition(types)),
        "environments": ListOf(Str(), nullable=True),
        "id": Str(),
        "baseID": Str(),
        "returnValue": _OBJECT,
        "completedAutomatedRollouts": _ROLLOUTS,
        "pendingAutomatedRollouts": _ROLLOUTS,
    }
    if config:
        fields.update(returnValueJson5=Str(), variants=_VARIANTS)
    required = () if partial else ("name", "passPercentage", "conditions")
    return Obj(fields=fields, required=required)


def json5_pair(value: Any, json5: str | None, prop: str) -> tuple[dict[str, Any], str]:
    """A JSON object and its JSON5 text, each filled from the other; 400 if they disagree.

    JSON5 that is not plain JSON (comments, trailing commas) cannot be checked here and is kept
    as sent beside the object.
    """
    if json5 is None:
        obj = value if isinstance(value, dict) else {}
        return obj, orjson.dumps(obj).decode()
    try:
        parsed = orjson.loads(json5)
    except orjson.JSONDecodeError:
        return (value if isinstance(value, dict) else {}), json5
    if not isinstance(parsed, dict):
        raise bad_field(f"{prop}Json5", "Expected a JSON object")
    if value is not None and value != parsed:
        raise bad_field(f"{prop}Json5", f"Must parse to the same JSON as {prop}")
    return parsed, json5


def _rule_id(base_id: str, pct: float, revision: int) -> str:
    return f"{base_id}:{pct:.2f}:{revision}"


def _revision(rule: Entity) -> int:
    tail = str(rule["id"]).rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 1


def _content(fields: dict[str, Any], *, config: bool, fill: bool) -> dict[str, Any]:
    keys = _CONTENT + (_CONFIG_CONTENT if config else ())
    out = {k: fields[k] for k in keys if k in fields}
    if fill:
        out.setdefault("environments", None)
    if config and (fill or "returnValue" in out or "returnValueJson5" in out):
        value, text = json5_pair(out.get("returnValue"), out.get("returnValueJson5"), "returnValue")
        out.update(returnValue=value, returnValueJson5=text)
    return out


def new_rules(project: Project, incoming: list[dict[str, Any]], *, config: bool) -> list[Entity]:
    """Fresh rules (new ``baseID`` each, revision 1), ignoring any client ``id``/``baseID``."""
    out = []
    for fields in incoming:
        base_id = stable_id("rule", project.name, project.next_seq("rules"))
        content = _content(fields, config=config, fill=True)
        out.append(
            {
                "id": _rule_id(base_id, content["passPercentage"], 1),
                "baseID": base_id,
                **content,
                **{key: list(fields.get(key) or []) for key in _ROLLOUT_KEYS},
            }
        )
    return out


def revise_rule(
    old: Entity, changes: dict[str, Any], *, config: bool, fill: bool, whole: bool = False
) -> Entity:
    """``old`` with ``changes`` applied; a content change bumps the revision and the ``id``.

    ``whole``: ``changes`` is the whole rule (``rule_fields="reset"``), so what it leaves out
    is reset rather than kept (``fill`` resets ``environments`` and ``returnValue`` only).
    """
    content = _content(changes, config=config, fill=fill or whole)
    new = {**old, **content}
    for key in _ROLLOUT_KEYS:
        if key in changes or whole:
            new[key] = list(changes.get(key) or [])
    if whole and config and "variants" not in changes:
        new.pop("variants", None)
    keys = _CONTENT + (_CONFIG_CONTENT if config else ())
    if any(not _same(new.get(k), old.get(k)) for k in keys):
        new["id"] = _rule_id(old["baseID"], new["passPercentage"], _revision(old) + 1)
    return new


def _same(a: Any, b: Any) -> bool:
    """Equal content; absent, ``null`` and empty are one "nothing" (``variants: []`` sent back
    for a rule stored without any is no change)."""
    return a == b or (a in (None, [], {}, "") and b in (None, [], {}, ""))


def find_rule(rules: list[Entity], key: str | None) -> int | None:
    """Index of the rule whose ``id`` or ``baseID`` is ``key``."""
    if not key:
        return None
    for i, rule in enumerate(rules):
        if key in (rule["id"], rule["baseID"]):
            return i
    return None


def find_rule_or_404(rules: list[Entity], key: str, owner: str) -> int:
    index = find_rule(rules, key)
    if index is None:
        raise not_found(f"Not Found. No rule with id or baseID {key!r} in {owner}.")
    return index


def merge_rules(
    project: Project,
    existing: list[Entity],
    incoming: list[dict[str, Any]],
    *,
    config: bool,
    rule_fields: str = "reset",
) -> list[Entity]:
    """A full replacement rules list (module docstring: matching by ``id``/``baseID``, and
    ``rule_fields``, what a matched rule keeps of the fields its item leaves out)."""
    out: list[Entity] = []
    used: dict[str, int] = {}
    errors: Errors = []
    for i, fields in enumerate(incoming):
        index = find_rule(existing, fields.get("id"))
        if index is None:
            index = find_rule(existing, fields.get("baseID"))
        if index is None:
            out.extend(new_rules(project, [fields], config=config))
            continue
        base_id = existing[index]["baseID"]
        if base_id in used:
            errors.append(
                {
                    "property": f"rules.{i}.id",
                    "errorMessage": f"Rule {base_id!r} also given at rules.{used[base_id]}; "
                    "each stored rule may appear once",
                }
            )
            continue
        used[base_id] = i
        whole = rule_fields == "reset"
        out.append(revise_rule(existing[index], fields, config=config, fill=False, whole=whole))
    if errors:
        raise validation_failed(errors)
    return out


def update_rules(
    existing: list[Entity], updates: list[dict[str, Any]], *, config: bool, owner: str
) -> list[Entity]:
    """``PATCH …/rules``: update the named rules in place; never adds or removes one."""
    rules = list(existing)
    errors: Errors = []
    for i, upd in enumerate(updates):
        key = upd.get("id") or upd.get("baseID")
        index = find_rule(rules, upd.get("id"))
        if index is None:
            index = find_rule(rules, upd.get("baseID"))
        if index is None:
            message = (
                (
                    f"No rule with id or baseID {key!r} in {owner}; this endpoint only "
                    "updates existing rules (GET them first)"
                )
                if key
                else "Required: the id or baseID of the rule to update"
            )
            errors.append({"property": f"rules.{i}.id", "errorMessage": message})
            continue
        rules[index] = revise_rule(rules[index], upd, config=config, fill=False)
    if errors:
        raise validation_failed(errors)
    return rules


def condition_errors(project: Project, rules: list[dict[str, Any]], prefix: str) -> Errors:
    """Dangling gate / segment / target-app / unit-id-type references in rule conditions.

    ``prefix`` is the body path of the rules list (``"rules"``), or ``""`` for a body that is
    one rule.
    """
    errors: Errors = []
    for i, rule in enumerate(rules):
        head = f"{prefix}.{i}." if prefix else ""
        for j, cond in enumerate(rule.get("conditions") or []):
            errors.extend(_one_condition(project, cond, f"{head}conditions.{j}"))
    return errors


def check_with_rules(project: Project, fields: dict[str, Any]) -> None:
    """Check a body's references and its rules' conditions, reporting all of them in one 400."""
    check_references(project, fields, condition_errors(project, fields.get("rules", []), "rules"))


def _one_condition(project: Project, cond: dict[str, Any], path: str) -> Errors:
    kind_name, target = cond["type"], cond.get("targetValue")
    values = target if isinstance(target, list) else [target] if target is not None else []
    errors: Errors = []
    kind = _REFERENCE_KINDS.get(kind_name)
    if kind is not None:
        if not values:
            errors.append(
                {
                    "property": f"{path}.targetValue",
                    "errorMessage": f"Required: the {kind.label.lower()} id",
                }
            )
        for value in values:
            if str(value) not in kind.coll(project):
                errors.append(
                    {
                        "property": f"{path}.targetValue",
                        "errorMessage": f"{kind.label} {value!r} does not exist in project "
                        f"{project.name!r}; create it before rules that reference it",
                    }
                )
    elif kind_name == "target_app":
        for value in values:
            if str(value) not in target_apps(project):
                errors.append(
                    {
                        "property": f"{path}.targetValue",
                        "errorMessage": f"Target app {value!r} does not exist",
                    }
                )
    custom = cond.get("customID")
    if kind_name == "unit_id" and custom and custom not in unit_id_types(project):
        errors.append(
            {
                "property": f"{path}.customID",
                "errorMessage": f"Unit id type {custom!r} does not exist",
            }
        )
    return errors
