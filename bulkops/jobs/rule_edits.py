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
condition, then replace its value), and a python edit may not be idempotent at all ("halve every
rollout"), so ``edit_entity`` applies the list a second time to its own result: if that changes
anything, the result of the *first* pass is still what gets planned, flagged ``idempotent=False``
so the plan can warn that running the job again would apply it again. ``Slot`` remembers where
each resulting rule came from, for the plan's diff.

A python edit is a guest: whatever it raises (``SystemExit`` and ``KeyboardInterrupt`` too) fails
that entity only, and what it returns is checked like a job file's rule before it is planned.
"""

from __future__ import annotations

import copy
import fnmatch
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeGuard

from pydantic import (
    AfterValidator,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from bulkops.errors import EditFailed, FunctionFailed, NotARule
from bulkops.jobs.semantics import normalize
from bulkops.jobs.spec import Items, NonEmpty, Strict, expect, explain_all, quoted, show

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


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _scalar(value: Any) -> str | int | float:
    if isinstance(value, str) or _number(value):
        return value
    raise PydanticCustomError("expected", "expected a string or a number")


def _target_value(value: Any) -> str | int | float | list[Any]:
    if isinstance(value, str) or _number(value):
        return value
    if isinstance(value, list | tuple) and (
        all(isinstance(item, str) for item in value) or all(_number(item) for item in value)
    ):
        return list(value)
    raise PydanticCustomError(
        "expected", "expected a string, a number, or a list of strings or of numbers"
    )


#: One value or a list of them; no booleans (true is not 1), no mixed lists.
TargetValue = Annotated[str | int | float | list[Any], PlainValidator(_target_value)]
Scalar = Annotated[str | int | float, PlainValidator(_scalar)]
_FUNCTION = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$", re.ASCII)


class Condition(Strict):
    """One condition of a rule, checked against the spec's type enum and documented operators."""

    type: ConditionType
    operator: str | None = None
    targetValue: TargetValue | None = None
    field: NonEmpty | None = None
    customID: NonEmpty | None = None

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
                f"{quoted(value)} is not an operator of {kind} conditions; expected one of "
                + ", ".join(quoted(op) for op in allowed)
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


def _percentage(value: float) -> float:
    if not 0 <= value <= 100:
        raise ValueError(f"expected a number from 0 to 100, got {show(value)}")
    if abs(round(value * 100) - value * 100) > 1e-6:
        raise ValueError(
            f"expected a number from 0 to 100 with at most two decimals, got {show(value)}"
        )
    return int(value) if float(value).is_integer() else value


#: 0 to 100 with two decimals at most (the server keeps two: rule ids end in ``:12.50:1``).
Percentage = Annotated[float, expect("a number from 0 to 100"), AfterValidator(_percentage)]


class NewRule(Strict):
    """A rule written in the job file (``add_rule``)."""

    name: NonEmpty
    passPercentage: Percentage
    conditions: Items[Condition]
    environments: Items[str] | None = None
    returnValue: dict[str, Any] | None = None

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
    value: Percentage

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
                f'expected a function reference written as "module:function", e.g. '
                '"edits:add_employees" for def add_employees(entity, rule) in edits.py beside '
                f"the job file, got {quoted(value)}"
            )
        return value

    def apply(
        self, rule: Rule, entity: Entity, function: RuleFunction | None, *, config: bool = False
    ) -> Rule | None:
        """Call the guest function on copies; its answer, checked (NotARule if it is not one)."""
        assert function is not None, "load_functions() resolves every python edit first"
        result = function(copy.deepcopy(entity), copy.deepcopy(rule))
        return checked_rule(result, rule, config=config)


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


def tidy_edit_errors(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """Errors of ``edits`` with plain paths: ``edits.1.op``, ``edits.0.condition.type``.

    pydantic puts the union's tag into the path (``edits.0.add_condition.condition``) and reports an
    unknown ``op`` on the list item itself; this rewrites both, keeping every error.
    """
    edit_errors = [e for e in errors if e["loc"][:1] == ("edits",)]
    if any(len(e["loc"]) > 1 for e in edit_errors):
        # A bad edit is dropped before the length check runs, which then also complains that
        # the list is empty: noise naming a field that is fine.
        errors = [e for e in errors if not (e["loc"] == ("edits",) and e["type"] == "too_short")]
    return [_plain_error(error) for error in errors]


def _plain_error(error: ErrorDetails) -> ErrorDetails:
    loc = tuple(error["loc"])
    if loc[:1] != ("edits",):
        return error
    if len(loc) >= 3 and loc[2] in OP_NAMES:
        loc = loc[:2] + loc[3:]
    ctx = error.get("ctx") or {}
    if error["type"] == "union_tag_invalid":
        return {**error, "type": "literal_error", "loc": (*loc, "op"), "input": ctx.get("tag"),
                "ctx": {"expected": str(ctx.get("expected_tags", ""))}}  # fmt: skip
    if error["type"] == "union_tag_not_found":
        return {**error, "type": "missing", "loc": (*loc, "op")}
    return {**error, "loc": loc}


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


class UnwritableEdit(ValueError):
    """An edit whose result the API would reject (the message says why, for a person)."""


#: Conditions whose ``targetValue`` is one gate or segment id (a string).
REFERENCE_TYPES = ("passes_gate", "fails_gate", "passes_segment", "fails_segment")


def replace_target_value(rule: Rule, match: Mapping[str, Any], old: Scalar, new: Scalar) -> Rule:
    """UnwritableEdit if a swapped value gives a ``targetValue`` the spec's types reject."""
    conditions = []
    for condition in rule.get("conditions") or []:
        condition = copy.deepcopy(condition)
        if condition_matches(condition, match):
            target = condition.get("targetValue")
            condition["targetValue"] = _replaced(target, old, new)
            if not _same(condition["targetValue"], target):
                _check_target_value(rule, condition)
        conditions.append(condition)
    return {**copy.deepcopy(rule), "conditions": conditions}


def _check_target_value(rule: Rule, condition: Mapping[str, Any]) -> None:
    """The spec's ``targetValue`` is a string, a number, or a list of strings or of numbers."""
    value, kind = condition.get("targetValue"), condition.get("type")
    where = f"in rule {quoted(str(rule.get('name', '?')))}, the {kind} condition's targetValue"
    if kind in REFERENCE_TYPES and not isinstance(value, str):
        raise UnwritableEdit(
            f"{where} would become {show(value)}, but {kind} conditions take a gate or segment "
            "id (a string); make `to` a string"
        )
    if isinstance(value, list) and not (
        all(isinstance(v, str) for v in value) or all(_number(v) for v in value)
    ):
        raise UnwritableEdit(
            f"{where} would become {show(value)}, mixing strings and numbers, which the API "
            "rejects (a list of strings or a list of numbers); make `to` the same type as "
            "the values beside it"
        )


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


class _RolloutStep(Strict):
    time: float
    passPercent: float


def _plain_json(value: Any) -> Any:
    """JSON data only (a Python set or object cannot be planned, sent or compared)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if not all(isinstance(key, str) for key in item):
                raise ValueError("expected an object whose keys are strings")
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"expected JSON data, found the number {item}")
        elif not (item is None or isinstance(item, str | int | float | bool)):
            raise ValueError(f"expected JSON data, found a Python {type(item).__name__}")
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_plain_json)]


class _Variant(Strict):
    id: str | None = None
    name: NonEmpty
    passPercentage: Percentage
    returnValue: JsonObject | None = None
    returnValueJson5: str | None = None


class ReturnedRule(Strict):
    """A gate rule as a python edit may return it: the fields of the API's rule (RuleDto)."""

    id: str | None = None
    baseID: str | None = None
    name: NonEmpty
    passPercentage: Percentage
    conditions: list[Any]  # each checked as add_condition checks its condition, see checked_rule
    environments: list[str] | None = None
    returnValue: JsonObject | None = None
    completedAutomatedRollouts: list[_RolloutStep] | None = None
    pendingAutomatedRollouts: list[_RolloutStep] | None = None


class ReturnedConfigRule(ReturnedRule):
    """A dynamic-config rule adds its return value's JSON5 text and variants."""

    returnValueJson5: str | None = None
    variants: list[_Variant] | None = None


def checked_rule(result: Any, given: Rule, *, config: bool = False) -> Rule | None:
    """What a python edit returned, as a rule the API accepts (or None); NotARule otherwise.

    Checked like a job file's rule: the fields of the API's rule only, numbers that are numbers,
    and every condition the function made passing the checks of ``add_condition``. What the
    function passed through unchanged from the rule it was given (conditions, or fields the
    server added) is the server's own and is not second-guessed.
    """
    if result is None:
        return None
    if not isinstance(result, dict):
        raise NotARule(f"{show(result, python=True)}, not a rule (an object) or None")
    model = ReturnedConfigRule if config else ReturnedRule
    known = model.model_fields
    problems = [
        f"{key}: not a field of a rule; a rule has {', '.join(known)}"
        for key in result
        if key not in known and (key not in given or not _same(result[key], given[key]))
    ]
    fields = {key: value for key, value in result.items() if key in known}
    try:
        checked = model.model_validate(fields)
    except ValidationError as exc:
        problems[:0] = explain_all(exc.errors(), python=True)
        checked = None
    carried = [canonical(c) for c in given.get("conditions") or []]
    conditions = result.get("conditions")
    for index, condition in enumerate(conditions if isinstance(conditions, list) else []):
        if canonical(condition) in carried:
            continue
        try:
            Condition.model_validate(condition)
        except ValidationError as exc:
            problems.extend(explain_all(exc.errors(), ("conditions", index), python=True))
    if problems:
        raise NotARule(f"a rule that cannot be written: {'; '.join(problems)}")
    assert checked is not None
    rule = copy.deepcopy(result)
    rule["passPercentage"] = checked.passPercentage
    return rule


# -- applying a job's edits to one entity ----------------------------------------------------
@dataclass(frozen=True)
class Slot:
    """A rule of the edited list, and the index of the rule it came from (None: added)."""

    origin: int | None
    rule: Rule


@dataclass(frozen=True)
class Edited:
    """The edited rules of one entity, and whether editing them again would change them."""

    slots: list[Slot]
    #: False: the edits applied to their own result change it again (or fail), so running the job
    #: again after it finishes would apply them again. ``again`` says what happened.
    idempotent: bool = True
    again: str = ""


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
    config: bool = False,
) -> Edited:
    """``run_edits``, and whether applying the edits again to the result would change it again.

    Idempotent edits let a re-run of a finished job, or a re-plan after a partial apply, find
    nothing more to send. Edits that are not ("halve every rollout") are still planned, once:
    the caller warns that running the job again would apply them again.
    """
    slots = run_edits(entity, edits, rule_name=rule_name, functions=functions, config=config)
    result = [slot.rule for slot in slots]
    try:
        again = run_edits({**entity, "rules": result}, edits, rule_name=rule_name,
                          functions=functions, config=config)  # fmt: skip
    except EditFailed as exc:
        return Edited(slots, idempotent=False, again=f"applied again, {exc}")
    second = [slot.rule for slot in again]
    if normalize(second) != normalize(result):
        changed = next(
            (r.get("name", "?") for r in result if normalize(r) not in normalize(second)),
            second[0].get("name", "?") if second else "?",
        )
        return Edited(slots, idempotent=False, again=f"applied again, they change rule "
                      f"{quoted(str(changed))} again")  # fmt: skip
    return Edited(slots)


def run_edits(
    entity: Entity,
    edits: Sequence[Any],
    *,
    rule_name: str | None = None,
    functions: Mapping[int, RuleFunction] | None = None,
    config: bool = False,
) -> list[Slot]:
    """Apply ``edits`` in order to ``entity``'s rules; FunctionFailed if a python edit fails.

    Rule edits act on the rules ``rule_name`` selects, except the rules this job's ``add_rule``
    edits define (by name): those are exactly as the job file writes them, on every run.
    ``config``: the rules are a dynamic config's (a python edit may return their return values).
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
            if isinstance(edit, PythonEdit):
                rule = _call_guest(index, edit, slot.rule, entity, functions.get(index), config)
            else:
                rule = _apply_builtin(index, edit, slot.rule, entity)
            if rule is not None:
                edited.append(Slot(slot.origin, rule))
        slots = edited
    return slots


def _apply_builtin(index: int, edit: Any, rule: Rule, entity: Entity) -> Rule | None:
    """A built-in edit's result; EditFailed (this entity only) if the API would reject it."""
    try:
        result: Rule | None = edit.apply(rule, entity, None)
    except UnwritableEdit as exc:
        failed = EditFailed(f"edits.{index} ({edit.op}): {exc}")
        failed.index = index
        raise failed from None
    return result


def _call_guest(
    index: int,
    edit: PythonEdit,
    rule: Rule,
    entity: Entity,
    function: RuleFunction | None,
    config: bool,
) -> Rule | None:
    """A python edit's answer; whatever it raises fails this entity, never the engine."""
    try:
        return edit.apply(rule, entity, function, config=config)
    except BaseException as exc:  # guest code: SystemExit and KeyboardInterrupt too
        raise FunctionFailed(index, edit.function, exc) from None


def _add_rule_slot(slots: list[Slot], edit: AddRule) -> list[Slot]:
    rule = edit.rule.as_json()
    if any(slot.rule.get("name") == rule["name"] for slot in slots):
        return slots
    added = Slot(None, rule)
    return [added, *slots] if edit.position == "first" else [*slots, added]
