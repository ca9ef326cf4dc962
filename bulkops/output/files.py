"""Writing a file so a reader sees the old version or the new one, never half of either."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import orjson

from bulkops.errors import writing


def write_json_atomic(path: Path, value: Any) -> None:
    """Write-to-temp, fsync, rename: a reader sees the old file or the new one, never half."""
    write_bytes_atomic(
        path, orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """``data`` at ``path``, atomically: temp file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with writing(path), tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


async def write_json_atomic_async(path: Path, value: Any) -> None:
    """``write_json_atomic`` on a worker thread: its fsync must not stall the event loop."""
    await anyio.to_thread.run_sync(write_json_atomic, path, value)
