"""An append-only, crash-safe journal of JSON records, one per line.

Each record is written whole with a single ``write``, so after a crash or a SIGKILL the file holds
every acknowledged record plus at most one torn last line. Records that must be on disk before the
next step (a mutation's intent, before the mutation is sent) are fsync'ed before ``append``
returns; the others reach the disk with the next durable record or on close. A power cut can lose
those, which costs a re-fetched page or a reconciling read, never a duplicated mutation. Opening
the journal drops that torn line (it was never acknowledged) and truncates it away, so the next
append starts on a clean line. A damaged line anywhere else is real corruption: CheckpointError.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from bulkops.errors import CheckpointError, writing


class Journal:
    def __init__(self, path: Path, records: list[dict[str, Any]], fd: int) -> None:
        self.path = path
        self.records = records
        self._fd = fd
        self._unsynced = False
        self.torn_tail_dropped = False

    @classmethod
    def open(cls, path: Path) -> Journal:
        path.parent.mkdir(parents=True, exist_ok=True)
        records, good_length, torn = _read_records(path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        if torn:
            os.ftruncate(fd, good_length)
            os.fsync(fd)
        journal = cls(path, records, fd)
        journal.torn_tail_dropped = torn
        return journal

    def append(self, record: dict[str, Any], *, durable: bool = True) -> None:
        if self._fd < 0:
            raise CheckpointError(f"journal {self.path} is closed")
        line = orjson.dumps(record) + b"\n"
        with writing(self.path):
            os.write(self._fd, line)
            if durable:
                os.fsync(self._fd)
        self._unsynced = not durable
        self.records.append(record)

    def close(self) -> None:
        if self._fd >= 0:
            if self._unsynced:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else "open"
        return f"<Journal {self.path} records={len(self.records)} {state}>"


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The acknowledged records of a journal, without opening it for writing."""
    return _read_records(path)[0]


def _read_records(path: Path) -> tuple[list[dict[str, Any]], int, bool]:
    """Parse every complete record; report the byte length of the good prefix and a torn tail."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0, False
    records: list[dict[str, Any]] = []
    offset = 0
    lines = data.split(b"\n")
    for index, line in enumerate(lines):
        is_last = index == len(lines) - 1
        if is_last and not line:
            break  # the file ends with a newline: nothing torn
        try:
            record = orjson.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError:
            if is_last:
                return records, offset, True  # torn last record: never acknowledged
            raise CheckpointError(
                f"journal {path} is damaged at line {index + 1} (not a torn last record); "
                "restore it from a backup or start over with --fresh"
            ) from None
        if is_last:
            return records, offset, True  # complete JSON but no newline: treat as torn too
        records.append(record)
        offset += len(line) + 1
    return records, offset, False
