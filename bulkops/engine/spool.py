"""Page bodies fetched by finished tasks, kept on disk so memory stays flat and resumes re-read nothing.

Each file holds one page's rows as JSON lines, exactly as the API returned them. It is written under
a temporary name, fsync'ed and renamed before the task's ``task_done`` record names it, so a journal
record never points at a partial file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from bulkops.errors import CheckpointError


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, key: str, rows: Iterable[Any]) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(key.encode()).hexdigest()[:24] + ".jsonl"
        tmp = self.root / f".{name}.tmp"
        with tmp.open("wb") as handle:
            for row in rows:
                handle.write(orjson.dumps(row) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.root / name)
        return name

    def lines(self, name: str) -> Iterator[bytes]:
        """The rows of one spooled page, as raw JSON lines (with their newline)."""
        try:
            with (self.root / name).open("rb") as handle:
                yield from handle
        except FileNotFoundError:
            raise CheckpointError(
                f"spooled page {self.root / name} is missing although the journal says it was "
                "fetched; re-run with --fresh to fetch everything again"
            ) from None

    def rows(self, name: str) -> Iterator[Any]:
        for line in self.lines(name):
            yield orjson.loads(line)
