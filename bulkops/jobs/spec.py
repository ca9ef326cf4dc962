"""Reading a job file: TOML syntax, the job kind, then the kind's schema, with errors that teach the fix.

The shared tables (`[source]`/`[target]` projects, `[limits]`) live here; each job kind adds its own
model in its module and registers it in ``bulkops.jobs``.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from bulkops.errors import JobFileError

DEFAULT_BASE_URL = "https://statsigapi.net"
DEFAULT_MUTATION_RATE = ("100/10s", "900/15min")

_WINDOW = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?|\.\d+)?\s*(s|sec|min|m|h)\s*$")
_UNIT_SECONDS = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class RateWindow:
    """At most ``limit`` events in any ``seconds``-long span."""

    limit: int
    seconds: float

    @classmethod
    def parse(cls, text: str) -> RateWindow:
        match = _WINDOW.match(text)
        if not match or int(match.group(1)) < 1:
            raise ValueError(
                f"{text!r} is not a rate window; write it as COUNT/DURATION with a unit of "
                's, min or h, e.g. "100/10s" or "900/15min"'
            )
        count, amount, unit = match.groups()
        seconds = (float(amount) if amount else 1.0) * _UNIT_SECONDS[unit]
        if seconds <= 0:
            raise ValueError(f"{text!r} has a zero duration")
        return cls(int(count), seconds)

    def __str__(self) -> str:
        for unit, size in (("h", 3600.0), ("min", 60.0)):
            if self.seconds >= size and self.seconds % size == 0:
                return f"{self.limit}/{self.seconds / size:g}{unit}"
        return f"{self.limit}/{self.seconds:g}s"


class Strict(BaseModel):
    """Unknown keys are errors: a typo in a job file must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ProjectSpec(Strict):
    api_key_env: str = Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    base_url: str = DEFAULT_BASE_URL

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must start with http:// or https:// followed by a host")
        return value.rstrip("/")


class LimitsSpec(Strict):
    concurrency: int = Field(default=8, ge=1, le=256)
    mutation_rate: tuple[str, ...] = DEFAULT_MUTATION_RATE
    read_rate: tuple[str, ...] = ()

    @field_validator("mutation_rate", "read_rate", mode="before")
    @classmethod
    def _a_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(f'must be a list of windows, e.g. ["{value}"]')
        return value

    @field_validator("mutation_rate", "read_rate")
    @classmethod
    def _windows(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        for text in value:
            RateWindow.parse(text)
        if info.field_name == "mutation_rate" and not value:
            raise ValueError('needs at least one window, e.g. ["100/10s", "900/15min"]')
        return value

    def mutation_windows(self) -> tuple[RateWindow, ...]:
        return tuple(RateWindow.parse(text) for text in self.mutation_rate)

    def read_windows(self) -> tuple[RateWindow, ...]:
        return tuple(RateWindow.parse(text) for text in self.read_rate)


class JobSpec(Strict):
    """Fields every job file has; each job kind subclasses it."""

    kind: ClassVar[str]
    #: The project tables this kind reads, in order (e.g. ("source",) or ("source", "target")).
    roles: ClassVar[tuple[str, ...]]

    job: str
    name: str | None = Field(default=None, min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    limits: LimitsSpec = LimitsSpec()

    def projects(self) -> dict[str, ProjectSpec]:
        return {role: getattr(self, role) for role in self.roles}


@dataclass(frozen=True)
class JobDefinition:
    """A validated job file: its spec plus where it came from."""

    path: Path
    spec: JobSpec
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

    def resolve_path(self, value: str) -> Path:
        """Resolve a path from the job file: relative to the job file's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.folder / path).resolve()


def load_job(path: str | Path, kinds: Mapping[str, type[JobSpec]]) -> JobDefinition:
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
    try:
        spec = model.model_validate(data)
    except ValidationError as exc:
        raise JobFileError(_describe_validation(path, exc)) from None
    return JobDefinition(path=path.resolve(), spec=spec, digest=hashlib.sha256(raw).hexdigest())


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
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JobFileError(
            f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8."
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = re.search(r"\(at line (\d+), column (\d+)\)", message)
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", message)
        at = f"line {where.group(1)}, column {where.group(2)}" if where else "end of file"
        raise JobFileError(f"{path}:{at}: TOML syntax error: {reason}.") from None


def _describe_validation(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: the job file has {exc.error_count()} invalid field(s):"]
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key; remove it or check its spelling"
        elif error["type"] == "missing":
            message = "required key is missing"
        lines.append(f"  - {where}: {message}")
    return "\n".join(lines)
