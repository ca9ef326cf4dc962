"""A small declarative validator for request DTOs, reporting every error at once.

The Console API validates bodies with zod and answers ``400 {"message": "Bad Request Exception",
"errors": [{"property", "errorMessage"}]}`` listing each failure (reference §3.1). The rules here
mirror the spec DTOs (required fields, types, enums, lengths, patterns) and the messages mirror
zod's, e.g. ``Required`` or ``Expected string, received boolean``. Unknown keys are stripped, as
zod does by default.

A schema is built from a handful of node types: :class:`Str`, :class:`Num`, :class:`Bool`,
:class:`Enum`, :class:`ListOf`, :class:`Obj`, :class:`OneOf`, :class:`AnyValue`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._errors import validation_failed

__all__ = [
    "AnyValue",
    "Bool",
    "Enum",
    "ListOf",
    "Node",
    "Num",
    "Obj",
    "OneOf",
    "Str",
    "kind_of",
    "validate",
    "validate_value",
]

Errors = list[dict[str, str]]


def kind_of(value: object) -> str:
    """The zod name of a JSON value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


class Node:
    """A schema node; ``check`` appends errors and returns the cleaned value."""

    nullable: bool = False

    def check(self, value: Any, path: str, errors: Errors) -> Any:
        if value is None and self.nullable:
            return None
        return self._check(value, path, errors)

    def _check(self, value: Any, path: str, errors: Errors) -> Any:
        raise NotImplementedError

    @staticmethod
    def _fail(errors: Errors, path: str, message: str) -> None:
        errors.append({"property": path, "errorMessage": message})


def _type_error(expected: str, value: Any) -> str:
    return f"Expected {expected}, received {kind_of(value)}"


@dataclass
class Str(Node):
    min_len: int | None = None
    max_len: int | None = None
    pattern: str | None = None
    nullable: bool = False

    def _check(self, value: Any, path: str, errors: Errors) -> Any:
        if not isinstance(value, str):
            self._fail(errors, path, _type_error("string", value))
            return value
        if self.min_len is not None and len(value) < self.min_len:
            self._fail(errors, path, f"String must contain at least {self.min_len} character(s)")
        if self.max_len is not None and len(value) > self.max_len:
            self._fail(errors, path, f"String must contain at most {self.max_len} character(s)")
        if self.pattern is not None and re.fullmatch(self.pattern, value) is None:
            self._fail(errors, path, "Invalid")
        return value


@dataclass
class Num(Node):
    """A number; ``integer``, ``exclusive_minimum`` and ``multiple_of`` mirror the spec's keywords.

    ``multiple_of`` is checked with a tolerance (``33.33`` is a multiple of ``0.01``), as zod
    does, rather than by float division.
    """

    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False
    integer: bool = False
    exclusive_minimum: bool = False
    multiple_of: float | None = None

    def _check(self, value: Any, path: str, errors: Errors) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._fail(errors, path, _type_error("number", value))
            return value
        if self.integer and not float(value).is_integer():
            self._fail(errors, path, "Expected integer, received float")
        if self.minimum is not None:
            if self.exclusive_minimum and value <= self.minimum:
                self._fail(errors, path, f"Number must be greater than {self.minimum:g}")
            elif value < self.minimum:
                self._fail(
                    errors, path, f"Number must be greater than or equal to {self.minimum:g}"
                )
        if self.maximum is not None and value > self.maximum:
            self._fail(errors, path, f"Number must be less than or equal to {self.maximum:g}")
        if self.multiple_of is not None:
            steps = value / self.multiple_of
            if abs(steps - round(steps)) > 1e-6:
                self._fail(errors, path, f"Number must be a multiple of {self.multiple_of:g}")
        return value


@dataclass
class Bool(Node):
    nullable: bool = False

    def _check(self, value: Any, path: str, errors: Errors) -> Any:
        if not isinstance(value, bool):
            self._fail(errors, path, _type_error("boolean", value))
        return value


@dataclass
class Enum(Node):
    values: tuple[str, ...] = ()
    nullable: bool = False

    def _check(self, value: Any, path: str, errors: Errors) -> Any:
        if value not in self.values:
            allowed = " | ".join(f"'{v}'" for v in self.values)
            received = f"'{value}'" if isinstance(value, str) else kind_of(value)
            self._fail(errors, path, f"Invalid enum value. Expected {allowed}, received {received}")
        return value


@dataclass
class AnyValue(Node):
    nullable: bool = True

    def _check(self, value: Any, path: str, errors: Errors) -> Any:
        return value


@dataclass
class ListOf(Node):
    item: Node = field(default_factory=AnyValue)
    max_items: int | None = None
    nullable: bool = False

    def _check(self, value: Any, path: str, errors: Errors) -> Any:
        if not isinstance(value, list):
            self._fail(errors, path, _type_error("array", value))
            return value
        if self.max_items is not None and len(value) > self.max_items:
            self._fail(errors, path, f"Array must contain at most {self.max_items} element(s)")
        return [self.item.check(v, _join(path, str(i)), errors) for i, v in enumerate(value)]


@dataclass
class Obj(Node):
    """An object; ``fields`` are checked, unknown keys dropped unless ``keep_unknown``."""

    fields: Mapping[str, Node] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    keep_unknown: bool = False
    nullable: bool = False

    def _check(self, value: Any, path: str, errors: Errors) -> Any:
        if not isinstance(value, dict):
            self._fail(errors, path, _type_error("object", value))
            return value
        out: dict[str, Any] = dict(value) if self.keep_unknown else {}
        for name in self.required:
            if name not in value:
                self._fail(errors, _join(path, name), "Required")
        for name, node in self.fields.items():
            if name in value:
                out[name] = node.check(value[name], _join(path, name), errors)
        return out


@dataclass
class OneOf(Node):
    options: tuple[Node, ...] = ()
    nullable: bool = False

    def _check(self, value: Any, path: str, errors: Errors) -> Any:
        for option in self.options:
            trial: Errors = []
            cleaned = option.check(value, path, trial)
            if not trial:
                return cleaned
        self._fail(errors, path, "Invalid input")
        return value


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def validate(schema: Obj, body: Any) -> dict[str, Any]:
    """Check ``body`` against ``schema``; the cleaned dict, or raise a 400 listing every error."""
    errors: Errors = []
    cleaned = schema.check(body, "", errors)
    if errors:
        raise validation_failed(errors)
    assert isinstance(cleaned, dict)
    return cleaned


def validate_value(schema: Node, body: Any) -> Any:
    """Like :func:`validate` for any node (bare-array bodies such as segment rules)."""
    errors: Errors = []
    cleaned = schema.check(body, "", errors)
    if errors:
        raise validation_failed(errors)
    return cleaned
