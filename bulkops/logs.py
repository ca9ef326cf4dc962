"""Structured logging: every event to ``<state>/log.jsonl``, and readable lines (or JSON) on stderr.

Events have dotted names (``bulkops.task.failed``) and flat fields. ``job``, ``run_id``, ``task_id``
and ``project`` are on every event (null where they do not apply); the first three are bound through
``structlog.contextvars``. Secrets are masked before any sink sees an event. The log file is
appended through the writer thread (``bulkops.writer``), so logging never waits for the disk.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import orjson
import structlog

from bulkops import human, redact
from bulkops.writer import AppendFile

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50, "exception": 40}
_CONTEXT_FIELDS = ("job", "run_id", "task_id", "project")


class _LiveLine:
    """One status line at the bottom of a terminal; log lines print above it without tearing."""

    def __init__(self) -> None:
        self.active = False
        self._shown = ""

    def show(self, text: str) -> None:
        self._shown = text
        sys.stderr.write("\r\x1b[2K" + text)
        sys.stderr.flush()

    def clear(self) -> None:
        if self._shown:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()

    def print_above(self, line: str) -> None:
        if not self.active:
            human.say(line, err=True)
            return
        sys.stderr.write("\r\x1b[2K" + line + "\n" + self._shown)
        sys.stderr.flush()


live_line = _LiveLine()


class _Sinks:
    """The last processor: write the event to the file and stderr, then drop it."""

    def __init__(self) -> None:
        self.file: AppendFile | None = None
        self.stderr_format = "console"
        self.stderr_level = logging.INFO

    def __call__(self, logger: Any, name: str, event: MutableMapping[str, Any]) -> Any:
        level = _LEVELS.get(event.get("level", "info"), 20)
        if self.file is not None and self.file.error is None:
            # A log file that cannot be written (disk full) drops its lines: the journal and
            # run.json live on the same disk and report it, with a message that says what to do.
            self.file.append(orjson.dumps(event, default=str) + b"\n")
        if level >= self.stderr_level:
            if self.stderr_format == "json":
                line = orjson.dumps(event, default=str).decode()
            else:
                line = console_line(event)
            live_line.print_above(line)
        raise structlog.DropEvent


_sinks = _Sinks()

#: Fields every event carries for the log file; on a terminal they are noise.
_HIDDEN_ON_CONSOLE = frozenset({"timestamp", "level", "event", "job", "run_id"})


def console_line(event: Mapping[str, Any]) -> str:
    """``[warning] bulkops.task.failed  error="..." label=source 'Orders' page 3``.

    Nested values are flattened to dotted keys (``tasks.done=65``), lists joined with commas;
    empty values are left out, so no Python repr (``None``, ``[]``, ``{'a': 1}``) reaches stderr.
    An event with a ``text`` field (progress) already says it in a sentence: that is shown alone.
    """
    level = str(event.get("level", "info"))
    if isinstance(event.get("text"), str):
        return f"[{level:<7}] {event['text']}"
    fields = " ".join(
        f"{key}={_field_text(value)}"
        for key, value in _flat_fields(event)
        if key not in _HIDDEN_ON_CONSOLE
    )
    head = f"[{level:<7}] {event.get('event', '')}"
    return f"{head}  {fields}" if fields else head


def _flat_fields(mapping: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key in sorted(mapping) if not prefix else mapping:
        value = mapping[key]
        if value is None or (isinstance(value, list | tuple | dict) and not value):
            continue
        if isinstance(value, Mapping):
            yield from _flat_fields(value, f"{prefix}{key}.")
        elif key.endswith(("_s", "_seconds")) and isinstance(value, int | float):
            yield f"{prefix}{key}", human.duration(float(value))  # 9960 → "2 h 46 min"
        else:
            yield f"{prefix}{key}", value


def _field_text(value: Any) -> str:
    if isinstance(value, str) and not value.startswith("Traceback"):
        return f'"{value}"' if (" " in value or not value) else value
    if isinstance(value, list | tuple):
        return ",".join(_field_text(v) for v in value)
    if isinstance(value, str):
        return "\n" + value  # a traceback (from log.exception) reads best on lines of its own
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return human.value(value)


def _ensure_context(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for field in _CONTEXT_FIELDS:
        event.setdefault(field, None)
    return event


def configure(*, stderr_format: str = "console", verbose: bool = False) -> None:
    _sinks.stderr_format = stderr_format
    _sinks.stderr_level = logging.DEBUG if verbose else logging.INFO
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _ensure_context,
            redact.processor,
            _sinks,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=False,
    )


def stderr_is_json() -> bool:
    return _sinks.stderr_format == "json"


def open_log_file(path: Path) -> None:
    """Log to ``path`` too, from now on (the writer thread creates it on the first line)."""
    if _sinks.file is not None:
        _sinks.file.close_soon()
    _sinks.file = AppendFile(path, mode=0o644)


def close_log_file() -> None:
    """Stop logging to the file; blocks until its lines are written (outside a loop only)."""
    file, _sinks.file = _sinks.file, None
    if file is not None:
        with contextlib.suppress(OSError):
            file.close_sync()


async def aclose_log_file() -> None:
    """``close_log_file`` with the event loop free meanwhile."""
    file, _sinks.file = _sinks.file, None
    if file is not None:
        with contextlib.suppress(OSError):
            await file.aclose()
