"""The edits of a ``batch_rule_update`` job: their job-file schema, and what each does to a rule.

Every edit is a pure function over plain JSON-like dicts (it never mutates its input) and is
idempotent: applied to a rule it already edited, it returns an equal rule. That is what makes a
re-run or a resumed run send nothing twice.

- ``add_condition``: append the condition unless an equal one is there.
- ``set_pass_percentage``: set ``passPercentage``.
- ``remove_condition``: drop every condition that ``match`` describes.
- ``replace_target_value``: in the conditions ``match`` describes, swap ``from`` for ``to``
  in ``targetValue`` (a string, a number, or one item of a list).
- ``add_rule``: insert the rule first or last, unless the entity has a rule of that name already.
- ``delete_rule``: drop the rule.
- ``python``: call ``function(entity, rule)``; it returns the new rule, or None to delete it.

``add_rule`` works on an entity's rule list; every other edit on each selected rule in turn, in
the job file's order. Idempotent edits can still combine into a list that is not (add a
condition, then replace its value), and a python edit may not be idempotent at all, so
``edit_entity`` applies the list twice and fails the entity when the second pass changes
anything. ``Slot`` remembers where each resulting rule came from, for the plan's diff.
"""

from __future__ import annotations

import copy
import fnmatch
import re
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from bulkops.engine.compare import normalize
from bulkops.jobs.spec import Strict

Rule = dict[str, Any]
Entity = dict[str, Any]
RuleFunction = Callable[[Entity, Rule], Any]

# -- conditions (reference §8.1) -------------------------------------------------------------
ConditionType = Literal[
    "app_version", "browser_name", "browser_version", "country", "custom_field", "email",
    "environment_tier", "fails_gate", "fails_segment", "ip_address", "locale", "os_name",
    "os_version", "passes_gate", "passes_segment", "public", "time", "unit_id", "user_id", "url",
    "javascript", "device_model", "target_app",
]  # fmt: skip

_ANY_NONE = ("any", "none")
_STRINGS = (*_ANY_NONE, "str_contains_any", "str_contains_none")
_VERSIONS = (*_ANY_NONE, "version_lt", "version_gt", "version_lte", "version_gte")
#: Operators per condition type, from [RULES-DOC]. A type absent from this table (locale, url,
#: javascript, device_model, target_app) has no documented operators, so any is accepted.
OPERATORS: dict[str, tuple[str, ...]] = {
    "public": (),
    "passes_gate": (),
    "fails_gate": (),
    "passes_segment": (),
    "fails_segment": (),
    "user_id": _ANY_NONE,
    "email": _STRINGS,
    "custom_field": (*_STRINGS, "lt", "gt", *_VERSIONS[2:], "before", "after", "on"),
    "unit_id": (*_STRINGS, "is_null", "is_not_null"),
    "app_version": _VERSIONS,
    "browser_version": _VERSIONS,
    "os_version": _VERSIONS,
    "browser_name": _ANY_NONE,
    "os_name": _ANY_NONE,
    "country": _ANY_NONE,
    "ip_address": _ANY_NONE,
    "environment_tier": _ANY_NONE,
    "time": ("after", "before", *_ANY_NONE, "lt", "gt"),
}
_NO_TARGET_OPERATORS = ("is_null", "is_not_null")

TargetValue = str | int | float | list[str] | list[int | float]
Scalar = str | int | float
_FUNCTION = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$", re.ASCII)


class Condition(Strict):
    """One condition of a rule, checked against the spec's type enum and documented operators."""

    type: ConditionType
    operator: str | None = None
    targetValue: TargetValue | None = None
    field: str | None = Field(default=None, min_length=1)
    customID: str | None = Field(default=None, min_length=1)

    @field_validator("operator")
    @classmethod
    def _documented_operator(cls, value: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("type")
        allowed = OPERATORS.get(kind) if isinstance(kind, str) else None
        if allowed is None or value is None:
            return value
        if not allowed:
            raise ValueError(f"{kind} conditions take no operator; remove it")
        if value not in allowed:
            raise ValueError(
                f"{value!r} is not an operator of {kind} conditions; use one of "
                + ", ".join(allowed)
            )
        return value

    @model_validator(mode="after")
    def _complete(self) -> Condition:
        allowed = OPERATORS.get(self.type)
        if allowed and self.operator is None:
            raise ValueError(
                f"{self.type} conditions need an `operator`, one of {', '.join(allowed)}"
            )
        if self.type == "custom_field" and self.field is None:
            raise ValueError("custom_field conditions need `field`, the name of the custom field")
        needs_target = self.type != "public" and self.operator not in _NO_TARGET_OPERATORS
        if needs_target and self.targetValue is None:
            raise ValueError(f"{self.type} conditions need a `targetValue`")
        if self.type in ("passes_gate", "fails_gate", "passes_segment", "fails_segment") and not (
            isinstance(self.targetValue, str)
        ):
            raise ValueError(f"{self.type} conditions take the gate or segment id as `targetValue`")
        return self

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class ConditionMatch(Strict):
    """Which conditions an edit acts on: every key given must equal the condition's."""

    type: ConditionType | None = None
    operator: str | None = None
    targetValue: TargetValue | None = None
    field: str | None = None
    customID: str | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> ConditionMatch:
        if not self.as_json():
            raise ValueError(
                "an empty match would select every condition; give at least one of type, "
                "operator, targetValue, field, customID"
            )
        return self

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


def _percentage(value: float) -> float | int:
    if not 0 <= value <= 100:
        raise ValueError("must be between 0 and 100")
    if abs(round(value * 100) - value * 100) > 1e-6:
        raise ValueError("must be a multiple of 0.01 (two decimals at most)")
    return int(value) if float(value).is_integer() else value


class NewRule(Strict):
    """A rule written in the job file (``add_rule``)."""

    name: str = Field(min_length=1)
    passPercentage: float
    conditions: tuple[Condition, ...]
    environments: tuple[str, ...] | None = None
    returnValue: dict[str, Any] | None = None

    @field_validator("passPercentage")
    @classmethod
    def _pct(cls, value: float) -> float:
        return _percentage(value)

    def as_json(self) -> Rule:
        rule: Rule = {
            "name": self.name,
            "passPercentage": _percentage(self.passPercentage),
            "conditions": [c.as_json() for c in self.conditions],
        }
        if self.environments is not None:
            rule["environments"] = list(self.environments)
        if self.returnValue is not None:
            rule["returnValue"] = copy.deepcopy(self.returnValue)
        return rule


# -- the edits -------------------------------------------------------------------------------
class AddCondition(Strict):
    op: Literal["add_condition"]
    condition: Condition

    def apply(self, rule: Rule, entity: Entity, function: RuleFunction | None) -> Rule | None:
        return add_condition(rule, self.condition.as_json())


class SetPassPercentage(Strict):
    op: Literal["set_pass_percentage"]
    value: float

    @field_validator("value")
    @classmethod
    def _pct(cls, value: float) -> float:
        return _percentage(value)

    def apply(self, rule: Rule, entity: Entity, function: RuleFunction | None) -> Rule | None:
        return set_pass_percentage(rule, self.value)


class RemoveCondition(Strict):
    op: Literal["remove_condition"]
    match: ConditionMatch

    def apply(self, rule: Rule, entity: Entity, function: RuleFunction | None) -> Rule | None:
        return remove_condition(rule, self.match.as_json())


class ReplaceTargetValue(Strict):
    op: Literal["replace_target_value"]
    match: ConditionMatch
    old: Scalar = Field(alias="from")
    new: Scalar = Field(alias="to")

    @model_validator(mode="after")
    def _different(self) -> ReplaceTargetValue:
        if _same(self.old, self.new):
            raise ValueError("`from` and `to` are equal, so this edit would change nothing")
        return self

    def apply(self, rule: Rule, entity: Entity, function: RuleFunction | None) -> Rule | None:
        return replace_target_value(rule, self.match.as_json(), self.old, self.new)


class AddRule(Strict):
    op: Literal["add_rule"]
    rule: NewRule
    position: Literal["first", "last"] = "last"


class DeleteRule(Strict):
    op: Literal["delete_rule"]

    def apply(self, rule: Rule, entity: Entity, function: RuleFunction | None) -> Rule | None:
        return None


class PythonEdit(Strict):
    op: Literal["python"]
    function: str

    @field_validator("function")
    @classmethod
    def _reference(cls, value: str) -> str:
        if not _FUNCTION.match(value):
            raise ValueError(
                f'{value!r} is not a function reference; write it as "module:function", e.g. '
                '"edits:add_employees" for def add_employees(entity, rule) in edits.py beside '
                "the job file"
            )
        return value

    def apply(self, rule: Rule, entity: Entity, function: RuleFunction | None) -> Rule | None:
        assert function is not None, "load_functions() resolves every python edit first"
        result = function(copy.deepcopy(entity), copy.deepcopy(rule))
        return _checked_rule(result)


Edit = Annotated[
    AddCondition
    | SetPassPercentage
    | RemoveCondition
    | ReplaceTargetValue
    | AddRule
    | DeleteRule
    | PythonEdit,
    Field(discriminator="op"),
]
OP_NAMES = (
    "add_condition", "set_pass_percentage", "remove_condition", "replace_target_value",
    "add_rule", "delete_rule", "python",
)  # fmt: skip


def edits_with_plain_paths(value: Any, handler: Callable[[Any], Any]) -> Any:
    """Validate ``edits`` so that errors read ``edits.1.op`` and ``edits.0.condition.type``.

    pydantic puts the union's tag into the path (``edits.0.add_condition.condition``) and reports an
    unknown ``op`` on the list item itself; this rewrites both, keeping every error.
    """
    try:
        return handler(value)
    except ValidationError as exc:
        errors = exc.errors()
        if any(error["loc"] for error in errors):
            # A bad edit is dropped before the length check runs, which then also complains that
            # the list is empty: noise naming a field that is fine.
            errors = [e for e in errors if e["loc"] or e["type"] != "too_short"]
        raise ValidationError.from_exception_data(
            exc.title, [_plain_error(error) for error in errors]
        ) from None


def _plain_error(error: Any) -> InitErrorDetails:
    loc = tuple(error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    kind = error["type"]
    if len(loc) >= 2 and loc[1] in OP_NAMES:
        loc = loc[:1] + loc[2:]
    if kind == "union_tag_invalid":
        loc, message = (
            (*loc, "op"),
            (f"unknown op {error['ctx']['tag']!r}; use one of {', '.join(OP_NAMES)}"),
        )
    elif kind == "union_tag_not_found":
        loc, kind = (*loc, "op"), "missing"
    elif kind == "literal_error" and loc[-1:] == ("type",):
        message = f"{error.get('input')!r} is not a condition type; use one of " + ", ".join(
            get_args(ConditionType)
        )
    return InitErrorDetails(
        type=PydanticCustomError(kind, message),  # no context: braces in it stay as they are
        loc=loc,
        input=error.get("input"),
    )


# -- the pure functions ----------------------------------------------------------------------
def canonical(value: Any) -> Any:
    """Compare form: normalised (server-assigned, null and empty dropped), lists as multisets."""
    value = normalize(value)
    if isinstance(value, dict):
        return {key: canonical(item) for key, item in value.items()}
    if isinstance(value, list):
        items = [canonical(item) for item in value]
        return sorted(items, key=repr)
    return value


def _same(a: Any, b: Any) -> bool:
    return bool(canonical(a) == canonical(b))


def condition_matches(condition: Mapping[str, Any], match: Mapping[str, Any]) -> bool:
    return all(_same(condition.get(key), want) for key, want in match.items())


def add_condition(rule: Rule, condition: Mapping[str, Any]) -> Rule:
    conditions = list(rule.get("conditions") or [])
    if any(_same(existing, condition) for existing in conditions):
        return copy.deepcopy(rule)
    return {**copy.deepcopy(rule), "conditions": [*copy.deepcopy(conditions), dict(condition)]}


def set_pass_percentage(rule: Rule, value: float) -> Rule:
    return {**copy.deepcopy(rule), "passPercentage": value}


def remove_condition(rule: Rule, match: Mapping[str, Any]) -> Rule:
    conditions = rule.get("conditions") or []
    kept = [copy.deepcopy(c) for c in conditions if not condition_matches(c, match)]
    return {**copy.deepcopy(rule), "conditions": kept}


def replace_target_value(rule: Rule, match: Mapping[str, Any], old: Scalar, new: Scalar) -> Rule:
    conditions = []
    for condition in rule.get("conditions") or []:
        condition = copy.deepcopy(condition)
        if condition_matches(condition, match):
            condition["targetValue"] = _replaced(condition.get("targetValue"), old, new)
        conditions.append(condition)
    return {**copy.deepcopy(rule), "conditions": conditions}


def _replaced(target: Any, old: Scalar, new: Scalar) -> Any:
    if isinstance(target, list):
        if not any(_same(item, old) for item in target):
            return target
        result: list[Any] = []
        for item in target:
            item = new if _same(item, old) else item
            if not any(_same(item, seen) for seen in result):
                result.append(item)  # swapping into a list that holds `to` already: keep one
        return result
    return new if target is not None and _same(target, old) else target


def add_rule(rules: Sequence[Rule], rule: Rule, position: str) -> list[Rule]:
    kept = copy.deepcopy(list(rules))
    if any(existing.get("name") == rule.get("name") for existing in kept):
        return kept
    return [copy.deepcopy(rule), *kept] if position == "first" else [*kept, copy.deepcopy(rule)]


class NotARule(TypeError):
    """What a python edit returned is neither a rule nor None."""


def _checked_rule(result: Any) -> Rule | None:
    """What a python edit returned, if it is a rule (or None); NotARule otherwise."""
    if result is None:
        return None
    if not isinstance(result, Mapping):
        raise NotARule(f"{type(result).__name__}, not a rule (a dict) or None")
    rule = copy.deepcopy(dict(result))
    if not isinstance(rule.get("name"), str) or not rule["name"]:
        raise NotARule("a rule without a `name`")
    if not isinstance(rule.get("conditions", []), list):
        raise NotARule("a rule whose `conditions` is not a list")
    pct = rule.get("passPercentage")
    if pct is not None and (not isinstance(pct, int | float) or not 0 <= pct <= 100):
        raise NotARule(f"passPercentage {pct!r}; it must be a number from 0 to 100")
    return rule


# -- applying a job's edits to one entity ----------------------------------------------------
@dataclass(frozen=True)
class Slot:
    """A rule of the edited list, and the index of the rule it came from (None: added)."""

    origin: int | None
    rule: Rule


class EditFailed(Exception):
    """The edits cannot be applied to one entity; that entity fails, the job goes on."""

    index: int | None = None
    traceback: str = ""


class FunctionFailed(EditFailed):
    """A ``python`` edit raised, or returned something that is not a rule."""

    def __init__(self, index: int, function: str, error: BaseException) -> None:
        self.index = index
        self.function = function
        self.error = error
        self.traceback = "".join(traceback.format_exception(error))
        what = (f"returned {error}" if isinstance(error, NotARule)
                else f"raised {type(error).__name__}: {error}")  # fmt: skip
        super().__init__(f"edits.{index} (python {function}) {what}")


class NotIdempotent(EditFailed):
    """Applying the edits to their own result would change the entity again."""

    def __init__(self, entity_id: str, rule: str) -> None:
        super().__init__(
            f"the edits are not idempotent on {entity_id!r}: applied to their own result they "
            f"change rule {rule!r} again, so every re-run would write it anew. Make each edit "
            "leave an already-edited rule unchanged (a python edit should set values, not "
            "increment them)"
        )


def rule_selected(rule: Rule, rule_name: str | None) -> bool:
    if rule_name is None:
        return True
    name = rule.get("name")
    return isinstance(name, str) and fnmatch.fnmatchcase(name, rule_name)


def edit_entity(
    entity: Entity,
    edits: Sequence[Any],
    *,
    rule_name: str | None = None,
    functions: Mapping[int, RuleFunction] | None = None,
) -> list[Slot]:
    """``run_edits``, checked to converge: the edits applied again to the result change nothing.

    That check is what lets a re-run of a finished job, or a re-plan after a partial apply, find
    nothing more to send. A failure names the first rule that would change again.
    """
    slots = run_edits(entity, edits, rule_name=rule_name, functions=functions)
    result = [slot.rule for slot in slots]
    again = run_edits({**entity, "rules": result}, edits, rule_name=rule_name, functions=functions)
    second = [slot.rule for slot in again]
    if normalize(second) != normalize(result):
        names = [r.get("name") for r in second]
        changed = next(
            (r.get("name", "?") for r in result if normalize(r) not in normalize(second)),
            names[0] if names else "?",
        )
        raise NotIdempotent(str(entity.get("id")), str(changed))
    return slots


def run_edits(
    entity: Entity,
    edits: Sequence[Any],
    *,
    rule_name: str | None = None,
    functions: Mapping[int, RuleFunction] | None = None,
) -> list[Slot]:
    """Apply ``edits`` in order to ``entity``'s rules; FunctionFailed if a python edit fails.

    Rule edits act on the rules ``rule_name`` selects, except the rules this job's ``add_rule``
    edits define (by name): those are exactly as the job file writes them, on every run.
    """
    functions = functions or {}
    added = {edit.rule.name for edit in edits if isinstance(edit, AddRule)}
    slots = [Slot(i, copy.deepcopy(rule)) for i, rule in enumerate(entity.get("rules") or [])]
    for index, edit in enumerate(edits):
        if isinstance(edit, AddRule):
            slots = _add_rule_slot(slots, edit)
            continue
        edited = []
        for slot in slots:
            if slot.rule.get("name") in added or not rule_selected(slot.rule, rule_name):
                edited.append(slot)
                continue
            try:
                rule = edit.apply(slot.rule, entity, functions.get(index))
            except Exception as exc:  # a user's function may raise anything
                if isinstance(edit, PythonEdit):
                    raise FunctionFailed(index, edit.function, exc) from exc
                raise
            if rule is not None:
                edited.append(Slot(slot.origin, rule))
        slots = edited
    return slots


def _add_rule_slot(slots: list[Slot], edit: AddRule) -> list[Slot]:
    rule = edit.rule.as_json()
    if any(slot.rule.get("name") == rule["name"] for slot in slots):
        return slots
    added = Slot(None, rule)
    return [added, *slots] if edit.position == "first" else [*slots, added]
