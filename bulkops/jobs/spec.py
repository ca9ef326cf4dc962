"""Reading a job file: TOML syntax, the job kind, then the kind's schema, with errors that teach the fix.

The shared tables (`[source]`/`[target]` projects, `[limits]`) live here; each job kind adds its own
model in its module and registers it in ``bulkops.jobs``.
"""

from __future__ import annotations

import datetime
import hashlib
import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Annotated, Any, ClassVar, Generic, Literal, Self, TypeVar, get_args

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ErrorType

from bulkops.api.urls import ledger_url_problem, redacted, url_problem
from bulkops.api.windows import RateWindow
from bulkops.errors import JobFileError

DEFAULT_BASE_URL = "https://statsigapi.net"
DEFAULT_MUTATION_RATE = ("100/10s", "900/15min")

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$", re.ASCII)
#: A job's name names its state directory: it starts with a letter or digit (never ``.``,
#: ``..`` or a hidden folder) and stays short enough for any file system.
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$", re.ASCII)


# -- strict types ----------------------------------------------------------------------------
T = TypeVar("T")


def _list_as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


#: A TOML array, item by item. Strict tuples refuse lists, which is all TOML has.
Items = Annotated[tuple[T, ...], BeforeValidator(_list_as_tuple)]


def expect(what: str) -> WrapValidator:
    """Say "expected <what>" when the type or a constraint refuses the value.

    The validator's own words ("Input should be a valid integer", a regex) are not for people;
    a message of our own (a ValueError raised by a check) is kept as it is.
    """

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            if any(e["loc"] or e["type"] not in _BUILT_IN for e in exc.errors()):
                raise
            if any(e["type"] == "value_error" for e in exc.errors()):
                raise
            raise PydanticCustomError("expected", "expected {what}", {"what": what}) from None

    return WrapValidator(validate)


class Strict(BaseModel):
    """No coercion and no unknown keys: `"8"` is not 8, and a typo is not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


EnvName = Annotated[
    str,
    Field(pattern=_ENV_NAME.pattern),
    expect("an environment variable name (letters, digits and _, not starting with a digit)"),
]
NonEmpty = Annotated[str, Field(min_length=1), expect("a non-empty string")]


def _base_url(value: str) -> str:
    problem = url_problem(value)
    if problem:
        raise ValueError(f"expected an http:// or https:// URL, got {show(value)}: {problem}")
    return value.rstrip("/")


BaseUrl = Annotated[str, expect("an http:// or https:// URL"), AfterValidator(_base_url)]


class ProjectSpec(Strict):
    api_key_env: EnvName
    base_url: BaseUrl = DEFAULT_BASE_URL


#: A name that becomes a directory (a job's state, a project's folder in a multi-project job).
SafeName = Annotated[
    str,
    Field(min_length=1, pattern=_JOB_NAME.pattern),
    expect(
        "a name of up to 100 letters, digits, '.', '_' and '-', starting with a letter or digit"
    ),
]


class NamedProjectSpec(ProjectSpec):
    """One project of ``[[sources]]`` or ``[[targets]]``: its name names its folder."""

    name: SafeName


def _distinct_projects(
    value: tuple[NamedProjectSpec, ...], info: ValidationInfo
) -> tuple[NamedProjectSpec, ...]:
    """At least one project; names distinct even ignoring case (each names a directory, and
    some file systems ignore case); no project given twice."""
    table = info.field_name or "projects"
    if not value:
        raise ValueError(
            f"needs at least one project: add a [[{table}]] table per project, each with a "
            f'name and an api_key_env (e.g. name = "eu", api_key_env = "EU_STATSIG_KEY")'
        )
    names: dict[str, int] = {}
    keys: dict[tuple[str, str], int] = {}
    for index, project in enumerate(value):
        earlier = names.setdefault(project.name.casefold(), index)
        if earlier != index:
            raise ValueError(
                f"entry {index} is named {quoted(project.name)}, like entry {earlier} "
                f"({quoted(value[earlier].name)}); names are compared ignoring case, since each "
                "names a directory: give every project its own name"
            )
        first = keys.setdefault((project.api_key_env, project.base_url), index)
        if first != index:
            raise ValueError(
                f"{quoted(value[first].name)} and {quoted(project.name)} both take their key "
                f"from ${project.api_key_env} at {project.base_url}, so they are the same "
                "project; give each project the variable holding its own key"
            )
    return value


#: ``[[sources]]`` / ``[[targets]]``: several named projects in one job.
NamedProjects = Annotated[Items[NamedProjectSpec], AfterValidator(_distinct_projects)]


def _window(text: str) -> str:
    RateWindow.parse(text)
    return text


Window = Annotated[str, expect('a rate window such as "100/10s"'), AfterValidator(_window)]


def _a_list_of_windows(value: Any) -> Any:
    if isinstance(value, str):
        raise ValueError(f'expected a list of rate windows, e.g. ["{value}"], got {show(value)}')
    return value


def _ledger_url(value: str) -> str:
    problem = ledger_url_problem(value)
    if problem:
        raise ValueError(
            f"expected the URL of a quota ledger (redis://HOST:PORT/DB or sqlite:///PATH), got "
            f"{show(redacted(value))}: {problem}"
        )
    return value


LedgerUrl = Annotated[
    str,
    expect("the URL of a quota ledger (redis://HOST:PORT/DB or sqlite:///PATH)"),
    AfterValidator(_ledger_url),
]


class LimitsSpec(Strict):
    concurrency: Annotated[int, Field(ge=1, le=256), expect("an integer from 1 to 256")] = 8
    mutation_rate: Annotated[Items[Window], BeforeValidator(_a_list_of_windows)] = (
        DEFAULT_MUTATION_RATE
    )
    read_rate: Annotated[Items[Window], BeforeValidator(_a_list_of_windows)] = ()
    #: The quota ledger shared with other processes; $BULKOPS_QUOTA_URL wins over it.
    ledger: LedgerUrl | None = None
    #: Who reserves first when several jobs wait on one project's windows.
    priority: Literal["high", "normal", "low"] = "normal"

    @field_validator("mutation_rate")
    @classmethod
    def _some_window(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError('needs at least one window, e.g. ["100/10s", "900/15min"]')
        return value

    def mutation_windows(self) -> tuple[RateWindow, ...]:
        return tuple(RateWindow.parse(text) for text in self.mutation_rate)

    def mutation_rate_given(self) -> bool:
        """The job file states ``mutation_rate`` (the user's word for the server's windows)."""
        return "mutation_rate" in self.model_fields_set

    def read_windows(self) -> tuple[RateWindow, ...]:
        return tuple(RateWindow.parse(text) for text in self.read_rate)


class JobSpec(Strict):
    """Fields every job file has; each job kind subclasses it."""

    kind: ClassVar[str]
    #: The project tables this kind reads, in order (e.g. ("source",) or ("source", "target")).
    roles: ClassVar[tuple[str, ...]]

    #: The role that may instead be given as a list of named projects (``[[sources]]`` in place
    #: of ``[source]``), or None. Such a kind declares ``<role>: ProjectSpec | None`` and
    #: ``<role>s: NamedProjects | None``; exactly one of the two is given.
    many_role: ClassVar[str | None] = None

    job: str
    name: SafeName | None = None
    limits: LimitsSpec = LimitsSpec()

    @classmethod
    def tidy_errors(cls, errors: list[ErrorDetails]) -> list[ErrorDetails]:
        """A kind's chance to reword its own validation errors before they are explained."""
        return errors

    @classmethod
    def cross_field_errors(cls, data: Mapping[str, Any]) -> list[ErrorDetails]:
        """Checks across fields, on the parsed TOML, so they are reported beside the field errors
        (a model validator would only run once every field is valid)."""
        return []

    @model_validator(mode="before")
    @classmethod
    def _many_in_place_of_one(cls, data: Any) -> Any:
        """``[[sources]]`` alone stands in for ``[source]`` (then left empty, as None)."""
        role = cls.many_role
        if role and isinstance(data, dict) and f"{role}s" in data and role not in data:
            return {**data, role: None}
        return data

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        role = self.many_role
        if role and getattr(self, role) is not None and getattr(self, f"{role}s") is not None:
            raise PydanticCustomError(
                "project_forms",
                "both [{role}] and [[{role}s]] are given; keep [{role}] for one project, or "
                "[[{role}s]] (one table per project, each with a name) for several",
                {"role": role},
            )
        return self

    def projects(self) -> dict[str, ProjectSpec]:
        """The single projects of the job, by role (a role given as a list is not among them)."""
        found = {role: getattr(self, role) for role in self.roles}
        return {role: spec for role, spec in found.items() if spec is not None}

    def many(self) -> tuple[NamedProjectSpec, ...]:
        """The named projects of ``[[sources]]``/``[[targets]]``; empty in the single form."""
        role = self.many_role
        return (getattr(self, f"{role}s") or ()) if role else ()

    def for_project(self, name: str) -> Self:
        """This job for one of its named projects: ``[<role>]`` is that project, the list gone."""
        role = self.many_role
        assert role is not None, f"{self.kind} jobs take no list of projects"
        entry = next(project for project in self.many() if project.name == name)
        single = ProjectSpec(api_key_env=entry.api_key_env, base_url=entry.base_url)
        return self.model_copy(update={role: single, f"{role}s": None, **self.member_fields(name)})

    def member_fields(self, name: str) -> dict[str, Any]:
        """Fields a kind changes for one named project (an export: its folder under the dir)."""
        return {}


#: The spec model of one job kind. Covariant: a job of any one kind is a job.
SpecT_co = TypeVar("SpecT_co", bound=JobSpec, covariant=True)


@dataclass(frozen=True)
class JobDefinition(Generic[SpecT_co]):
    """A validated job file: its spec (of its kind's model) plus where it came from."""

    path: Path
    spec: SpecT_co
    digest: str

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def name(self) -> str:
        return self.spec.name or self.path.stem

    @property
    def folder(self) -> Path:
        return self.path.parent

    def members(self) -> dict[str, JobDefinition[SpecT_co]]:
        """A job over several named projects as one single-project job per name, in file order
        (empty for a single-project job). Each has the same file, digest and name."""
        return {
            project.name: JobDefinition(self.path, self.spec.for_project(project.name), self.digest)
            for project in self.spec.many()
        }

    def resolve_path(self, value: str) -> Path:
        """Resolve a path from the job file: relative to the job file's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.folder / path).resolve()


def load_job(path: str | Path, kinds: Mapping[str, type[JobSpec]]) -> JobDefinition[JobSpec]:
    """Read, parse and validate a job file, or raise JobFileError naming everything wrong."""
    path = Path(path)
    raw = _read(path)
    data = _parse_toml(path, raw)
    kind = data.get("job")
    if "job" in data and not isinstance(kind, str):
        raise JobFileError(
            f"{path}: `job` must be a string naming the kind of job, e.g. "
            f'`job = "export_metrics"`. Known kinds: {", ".join(sorted(kinds))}.'
        )
    if not isinstance(kind, str):
        raise JobFileError(
            f"{path}: missing the top-level key `job` that names the kind of job; "
            f'add e.g. `job = "export_metrics"`. Known kinds: {", ".join(sorted(kinds))}.'
        )
    model = kinds.get(kind)
    if model is None:
        raise JobFileError(
            f"{path}: unknown job kind {kind!r}. Known kinds: {', '.join(sorted(kinds))}."
        )
    errors = model.cross_field_errors(data)
    try:
        spec = model.model_validate(data)
    except ValidationError as exc:
        errors = [*model.tidy_errors(_tidy_project_tables(model, exc.errors())), *errors]
    if errors:
        lines = explain_all(errors)
        heading = f"{path}: the job file has {len(lines)} invalid field(s):"
        raise JobFileError("\n".join([heading, *(f"  - {line}" for line in lines)])) from None
    return JobDefinition(path=path.resolve(), spec=spec, digest=hashlib.sha256(raw).hexdigest())


def field_error(loc: tuple[int | str, ...], message: str, given: Any = None) -> ErrorDetails:
    """One error of our own, in the validator's shape, so it is explained like the others."""
    return {"type": "value_error", "loc": loc, "msg": message, "input": given}


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise JobFileError(f"job file {path} does not exist; check the path.") from None
    except IsADirectoryError:
        raise JobFileError(f"{path} is a directory; give the path of a .toml job file.") from None
    except OSError as exc:
        raise JobFileError(f"cannot read job file {path}: {exc.strerror}.") from None


def _parse_toml(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark is harmless: skip it
    except UnicodeDecodeError as exc:
        raise JobFileError(
            f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8."
        ) from None
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise JobFileError(
            f"{path}: nested too deeply to be a job file (arrays or tables inside one another "
            "hundreds of levels deep); check the file."
        ) from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = re.search(r"\(at line (\d+), column (\d+)\)", message)
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", message)
        at = f"line {where.group(1)}, column {where.group(2)}" if where else "end of file"
        raise JobFileError(f"{path}:{at}: TOML syntax error: {reason}.") from None


def member_dir(dir_: str, name: str) -> str:
    """``<dir>/<name>``, as a job file would write it (relative stays relative)."""
    return str(PurePath(dir_) / name)


def _tidy_project_tables(model: type[JobSpec], errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """A project table this kind has not (``[[sources]]`` on a batch edit) says which it has;
    ``[sources]`` written with single brackets says to double them."""
    tables = _project_tables(model)
    tidy: list[ErrorDetails] = []
    for error in errors:
        loc, kind = error["loc"], error["type"]
        top = loc[0] if len(loc) == 1 else None
        if kind == "project_forms":  # a model validator's: say where
            error = error.copy()
            error["loc"] = (f"{model.many_role}s",)
        elif kind == "missing" and model.many_role and top == model.many_role:
            error = error.copy()
            error["type"], error["msg"] = (
                "project_table",
                (f"required: add [{top}] for one project, or [[{top}s]] for several"),
            )
        if kind == "extra_forbidden" and top in ("source", "target", "sources", "targets"):
            table = f"[[{top}]]" if str(top).endswith("s") else f"[{top}]"
            error = error.copy()
            error["type"], error["msg"] = (
                "project_table",
                f"{model.kind} jobs have no {table}; they take {tables}",
            )
        elif (
            kind == "tuple_type"
            and top in ("sources", "targets")
            and isinstance(error.get("input"), Mapping)
        ):
            error = error.copy()
            error["type"], error["msg"] = (
                "project_table",
                (
                    f"expected a list of projects: write [[{top}]] (double brackets) above each "
                    "project's name and key"
                ),
            )
        tidy.append(error)
    return tidy


def _project_tables(model: type[JobSpec]) -> str:
    """``[source] (one project) or [[sources]] (several)``, and so on, for one kind."""
    parts = []
    for role in model.roles:
        if role == model.many_role:
            parts.append(f"[{role}] (one project) or [[{role}s]] (several)")
        else:
            parts.append(f"[{role}]")
    return " and ".join(parts)


# -- validation errors, explained for people -------------------------------------------------
_BUILT_IN = frozenset(get_args(ErrorType))
#: What each of the validator's error types expected, in job-file words.
_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "string_too_short": "a non-empty string",
}


def show(value: Any, *, python: bool = False) -> str:
    """A value as a person reads it in a job file: JSON-like, with what kind of value it is.

    ``python``: the value came from a python edit, where a table is called an object.
    """
    kinds: list[tuple[type | tuple[type, ...], str]] = [
        (bool, "a boolean"), (str, "a string"), (int, "an integer"), (float, "a number"),
        ((list, tuple), "a list"), (Mapping, "an object" if python else "a table"),
        (datetime.datetime, "a date-time"),
        (datetime.date, "a date"), (datetime.time, "a time"),
    ]  # fmt: skip
    kind = next((name for types, name in kinds if isinstance(value, types)), None)
    if value is None:
        return "nothing (null)"
    if isinstance(value, datetime.date | datetime.time):
        text = value.isoformat()
    elif isinstance(value, float) and not math.isfinite(value):
        text = str(value)
    elif isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        text = str(int(value))  # TOML's 150 was validated as 150.0: show it as written
    else:
        try:
            text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:
            text, kind = f"a Python {type(value).__name__}", None
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({kind})" if kind else text


def quoted(text: str) -> str:
    """A string as a job file writes it: ``"100/10s"``."""
    return orjson.dumps(text).decode()


def _one_of(expected: str) -> str:
    """``"'a', 'b' or 'c'"`` (the validator's list of literals) -> ``'"a", "b", "c"'``."""
    values = re.findall(r"'((?:[^'\\]|\\.)*)'", expected)
    return ", ".join(f'"{value}"' for value in values) if values else expected


def where(loc: Iterable[int | str]) -> str:
    """``("limits", "mutation_rate", 0)`` -> ``limits.mutation_rate.0``."""
    return ".".join(str(part) for part in loc) or "(top level)"


def explain(error: ErrorDetails, *, python: bool = False) -> str:
    """One error's message: what was given, what is expected; never the validator's own words.

    ``python``: the value came from a python edit (say "object", not "table").
    """
    kind = error["type"]
    ctx = error.get("ctx") or {}
    given = error.get("input")

    def got() -> str:
        if isinstance(given, float) and "integer" in str(ctx.get("what", "")) + kind:
            return f"{given!r} (a number with a decimal point)"  # 8.0 where 8 was meant
        return show(given, python=python)

    if kind == "extra_forbidden":
        return "unknown key; remove it or check its spelling"
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"])).removeprefix("Value error, ")
    if kind == "literal_error":
        value = quoted(given) if isinstance(given, str) else got()
        return f"expected one of {_one_of(str(ctx.get('expected', '')))}, got {value}"
    if kind in _EXPECTED:
        expected = _EXPECTED[kind]
        if python and expected == "a table":
            expected = "an object"
        return f"expected {expected}, got {got()}"
    bounds = {
        "greater_than_equal": ("at least", "ge"), "greater_than": ("more than", "gt"),
        "less_than_equal": ("at most", "le"), "less_than": ("less than", "lt"),
    }  # fmt: skip
    if kind in bounds:
        words, key = bounds[kind]
        return f"expected {words} {ctx.get(key)}, got {got()}"
    if kind == "too_short":
        return f"expected at least {ctx.get('min_length')} item(s), got none"
    if kind == "too_long":
        return f"expected at most {ctx.get('max_length')} item(s)"
    if kind == "expected":
        return f"{error['msg']}, got {got()}"
    if kind in _BUILT_IN:  # a type this table does not know yet: say what was given, plainly
        return f"not valid here: {got()}"
    return error["msg"]  # one of our own messages (PydanticCustomError), written for people


def explain_all(
    errors: Iterable[ErrorDetails], prefix: tuple[int | str, ...] = (), *, python: bool = False
) -> list[str]:
    """``field.path: message`` per error, in order, each path under ``prefix``."""
    return [f"{where((*prefix, *e['loc']))}: {explain(e, python=python)}" for e in errors]


# -- the shared tables of the exports ---------------------------------------------------------
class OutputSpec(Strict):
    dir: Annotated[
        str,
        Field(min_length=1, pattern=r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"),
        expect("a directory path (not blank, no control characters)"),
    ]


class ExportSpec(JobSpec):
    """What the export kinds share: one ``[source]`` or ``[[sources]]``, and an ``[output]``."""

    roles: ClassVar[tuple[str, ...]] = ("source",)
    many_role: ClassVar[str | None] = "source"

    source: ProjectSpec | None
    sources: NamedProjects | None = None
    output: OutputSpec

    def member_fields(self, name: str) -> dict[str, Any]:
        """One project of ``[[sources]]`` exports to ``<dir>/<name>/``."""
        return {"output": self.output.model_copy(update={"dir": member_dir(self.output.dir, name)})}
