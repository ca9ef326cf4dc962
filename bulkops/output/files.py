"""Writing a file so a reader sees the old version or the new one, never half of either; and
many files written first and made durable together (``make_durable``)."""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import orjson

from bulkops.errors import writing
from bulkops.writer import write_all


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


# -- many files, made durable together ---------------------------------------------------------
#: Threads that fsync files at once where the file system cannot be synced whole.
FSYNC_THREADS = 8


def write_bytes_unsynced(path: str, data: bytes) -> None:
    """``data`` at ``path`` (created or truncated), not yet durable: ``make_durable`` follows
    before anything relies on it."""
    with writing(path):
        write_file(path, data, sync=False)


def write_file(path: str, data: bytes, *, sync: bool) -> None:
    """``data`` at ``path`` (created or truncated), fsync'ed if ``sync``: plain ``os`` calls, so
    a worker thread holds the GIL as little as it can."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        write_all(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def make_durable(files: Sequence[str], folders: Sequence[str], *, whole_fs: bool = True) -> str:
    """On stable storage before this returns: the bytes of every one of ``files`` and the entries
    of every one of ``folders`` (each file lies in one of the folders).

    With ``whole_fs``, and all the folders on one file system, one ``syncfs`` of it (Linux 5.8
    and later, where it reports write-back errors as fsync does): one journal commit instead of
    one per file. Otherwise an fsync of each file and folder from ``FSYNC_THREADS`` threads.
    Returns how: ``"syncfs"`` or ``"fsync"``.
    """
    if whole_fs and folders and _syncfs is not None:
        devices = {os.stat(folder).st_dev for folder in folders}
        if len(devices) == 1:
            with writing(folders[0]):
                fd = os.open(folders[0], os.O_RDONLY | os.O_CLOEXEC)
                try:
                    if _syncfs(fd) != 0:  # a write-back error: the data may not be on disk
                        error = ctypes.get_errno()
                        raise OSError(error, os.strerror(error), folders[0])
                finally:
                    os.close(fd)
            return "syncfs"
    with ThreadPoolExecutor(FSYNC_THREADS, thread_name_prefix="bulkops fsync") as pool:
        for _ in pool.map(_fsync_path, [*files, *folders]):
            pass
    return "fsync"


def _fsync_path(path: str) -> None:
    with writing(path):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _find_syncfs() -> Callable[[int], int] | None:
    """libc's ``syncfs`` where it reports write-back errors (Linux 5.8+), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        major, minor = (int(part) for part in platform.release().split(".")[:2])
        if (major, minor) < (5, 8):
            return None
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (ValueError, OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_syncfs = _find_syncfs()
