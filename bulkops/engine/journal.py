"""An append-only, crash-safe journal of typed records, one JSON object per line.

Records are frozen dataclasses (``TaskDone``, ``TaskFailed``, ``TaskInvalidated``, ``Intent``,
``Outcome``); ``encode`` and ``decode`` are the only places that know their JSON shape.

Appends go through the writer thread (``bulkops.writer``), so neither the event loop nor a worker
thread waits for the disk, and appending from several threads at once is safe: each record is
written whole, in the order it was appended, never reordered. Records that must be on disk before
the next step (a mutation's intent, before the mutation is sent) are appended with ``await
append_durable``, which returns once the writer has fsync'ed them; the others reach the disk soon
after, and are fsync'ed with the next durable record or on close. A crash can lose those, which
costs a re-fetched page or a reconciling read, never a duplicated mutation, and leaves at most one
torn last line. Opening the journal drops that torn line (it was never acknowledged) and truncates
it away, so the next append starts on a clean line. A damaged line anywhere else is real
corruption: CheckpointError.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import orjson

from bulkops.errors import CheckpointError, writing
from bulkops.writer import AppendFile


# -- records --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class TaskDone:
    """A task's body finished; ``result`` (JSON data) rebuilds its children on resume."""

    type: Literal["task_done"] = field(default="task_done", init=False)
    task: str
    result: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFailed:
    """A task's body failed; a later run retries it."""

    type: Literal["task_failed"] = field(default="task_failed", init=False)
    task: str
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskInvalidated:
    """Earlier ``TaskDone`` records of these tasks no longer count (a list changed under us)."""

    type: Literal["task_invalidated"] = field(default="task_invalidated", init=False)
    tasks: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Intent:
    """Operation ``op`` is about to be sent: fsync'ed before the mutation leaves."""

    type: Literal["intent"] = field(default="intent", init=False)
    op: str
    at: float


OutcomeStatus = Literal["applied", "already_applied", "pending_review", "failed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """How operation ``op`` ended. ``sent``: a mutation of ours reached the target; ``after``: the
    entity's version guard (``version``, ``lastModifiedTime``) after it, for undo."""

    type: Literal["outcome"] = field(default="outcome", init=False)
    op: str
    status: OutcomeStatus
    sent: bool = False
    after: dict[str, Any] = field(default_factory=dict)
    error: str = ""


Record = TaskDone | TaskFailed | TaskInvalidated | Intent | Outcome

_RECORD_TYPES: dict[str, type[Record]] = {
    cls.__dataclass_fields__["type"].default: cls  # type: ignore[misc]
    for cls in (TaskDone, TaskFailed, TaskInvalidated, Intent, Outcome)
}
_OUTCOME_STATUSES = frozenset(("applied", "already_applied", "pending_review", "failed"))


def encode(record: Record) -> bytes:
    """One record as one JSON line (with its newline); ``type`` comes first."""
    return orjson.dumps(record) + b"\n"


def decode(data: Any) -> Record:
    """One parsed JSON line as its record; ValueError says what is wrong with it."""
    if not isinstance(data, dict):
        raise ValueError("not an object")
    fields = dict(data)
    cls = _RECORD_TYPES.get(fields.pop("type", None))
    if cls is None:
        raise ValueError(f"unknown record type {data.get('type')!r}")
    if cls is TaskInvalidated and isinstance(fields.get("tasks"), list):
        fields["tasks"] = tuple(fields["tasks"])
    try:
        record = cls(**fields)
    except TypeError as exc:  # a missing or unexpected field
        raise ValueError(str(exc)) from None
    _check_fields(record)
    return record


def _check_fields(record: Record) -> None:
    if isinstance(record, TaskDone | TaskFailed) and not isinstance(record.task, str):
        raise ValueError("task is not a string")
    if isinstance(record, TaskInvalidated) and not all(isinstance(t, str) for t in record.tasks):
        raise ValueError("tasks is not a list of strings")
    if isinstance(record, Intent | Outcome) and not isinstance(record.op, str):
        raise ValueError("op is not a string")
    if isinstance(record, Outcome) and (
        record.status not in _OUTCOME_STATUSES or not isinstance(record.after, dict)
    ):
        raise ValueError("outcome with an unknown status or a malformed after")


# -- the journal ----------------------------------------------------------------------------
class Journal:
    def __init__(self, path: Path, records: list[Record], file: AppendFile) -> None:
        self.path = path
        #: Every record read at open and appended since (each thread's in its own order).
        self.records = records
        self._file = file
        self.torn_tail_dropped = False

    @classmethod
    def open(cls, path: Path) -> Journal:
        """Read and repair the journal (blocking: outside a loop, or through ``open_async``)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        records, good_length, torn = _read_records(path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        if torn:
            os.ftruncate(fd, good_length)
            os.fsync(fd)
        journal = cls(path, records, AppendFile(path, fd=fd))
        journal.torn_tail_dropped = torn
        return journal

    @classmethod
    async def open_async(cls, path: Path) -> Journal:
        return await anyio.to_thread.run_sync(cls.open, path)

    def append(self, record: Record) -> None:
        """Append ``record`` without waiting: written whole and in order, not fsync'ed."""
        line = self._encode(record)
        with writing(self.path):
            self._file.append(line)
        self.records.append(record)

    async def append_durable(self, record: Record) -> None:
        """Append ``record`` and return once it is on disk (fsync'ed); the loop runs meanwhile."""
        line = self._encode(record)
        self.records.append(record)
        with writing(self.path):
            await self._file.append_durable(line)

    def append_durable_sync(self, record: Record) -> None:
        """``append_durable`` for threads and code outside an event loop: blocks until on disk."""
        line = self._encode(record)
        self.records.append(record)
        with writing(self.path):
            self._file.append_durable_sync(line)

    def flush_sync(self) -> None:
        """Block until every record appended so far is written (not necessarily fsync'ed)."""
        self._file.flush_sync()

    def close(self) -> None:
        """Write and fsync what is left, then close (blocking: outside a loop, or ``aclose``)."""
        with writing(self.path):
            self._file.close_sync()

    async def aclose(self) -> None:
        with writing(self.path):
            await self._file.aclose()

    def _encode(self, record: Record) -> bytes:
        if self._file.closed:
            raise CheckpointError(f"journal {self.path} is closed")
        return encode(record)

    def __repr__(self) -> str:
        state = "closed" if self._file.closed else "open"
        return f"<Journal {self.path} records={len(self.records)} {state}>"


def read_journal(path: Path) -> list[Record]:
    """The acknowledged records of a journal, without opening it for writing."""
    return _read_records(path)[0]


def _read_records(path: Path) -> tuple[list[Record], int, bool]:
    """Parse every complete record; report the byte length of the good prefix and a torn tail."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0, False
    records: list[Record] = []
    offset = 0
    lines = data.split(b"\n")
    for index, line in enumerate(lines):
        is_last = index == len(lines) - 1
        if is_last and not line:
            break  # the file ends with a newline: nothing torn
        try:
            record = decode(orjson.loads(line))
        except ValueError as exc:
            if is_last:
                return records, offset, True  # torn last record: never acknowledged
            raise CheckpointError(
                f"journal {path} is damaged at line {index + 1} (not a torn last record: {exc}); "
                "restore it from a backup or start over with --fresh"
            ) from None
        if is_last:
            return records, offset, True  # complete JSON but no newline: treat as torn too
        records.append(record)
        offset += len(line) + 1
    return records, offset, False
