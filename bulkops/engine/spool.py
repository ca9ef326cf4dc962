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

import anyio
import orjson

from bulkops.errors import CheckpointError, writing


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, key: str, rows: Iterable[Any]) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(key.encode()).hexdigest()[:24] + ".jsonl"
        tmp = self.root / f".{name}.tmp"
        payload = b"".join(orjson.dumps(row) + b"\n" for row in rows)
        with writing(tmp), tmp.open("wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.root / name)
        return name

    async def write_async(self, key: str, rows: list[Any]) -> str:
        """``write`` on a worker thread: the fsync must not stall every other request."""
        return await anyio.to_thread.run_sync(self.write, key, rows)

    def chunks(self, name: str, size: int = 1 << 18) -> Iterator[bytes]:
        """The raw bytes of one spooled page in large chunks (whole lines, newline-terminated)."""
        try:
            with (self.root / name).open("rb") as handle:
                while chunk := handle.read(size):
                    yield chunk
        except FileNotFoundError:
            raise self._missing(name) from None

    def _missing(self, name: str) -> CheckpointError:
        return CheckpointError(
            f"spooled page {self.root / name} is missing although the journal says it was "
            "fetched; re-run with --fresh to fetch everything again"
        )

    def lines(self, name: str) -> Iterator[bytes]:
        """The rows of one spooled page, as raw JSON lines (with their newline)."""
        try:
            with (self.root / name).open("rb") as handle:
                yield from handle
        except FileNotFoundError:
            raise self._missing(name) from None
