"""Writing a file so a reader sees the old version or the new one, never half of either; and
many files written first and made durable together (``make_durable``)."""

from __future__ import annotations

import ctypes
import os
import platform
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import orjson

from bulkops.errors import LocalIOError, writing
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
            sync_file_system(folders[0])
            return "syncfs"
    with ThreadPoolExecutor(FSYNC_THREADS, thread_name_prefix="bulkops fsync") as pool:
        for _ in pool.map(_fsync_path, [*files, *folders]):
            pass
    return "fsync"


def sync_file_system(folder: str) -> None:
    """One ``syncfs`` of the file system holding ``folder``; a write-back error is raised (and,
    as with fsync, reported once: a caller that swallows it loses it)."""
    assert _syncfs is not None, "only where can_sync_file_system()"
    with writing(folder):
        fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _syncfs(fd) != 0:  # a write-back error: the data may not be on disk
                error = ctypes.get_errno()
                raise OSError(error, os.strerror(error), folder)
        finally:
            os.close(fd)


def can_sync_file_system() -> bool:
    """Whether ``sync_file_system`` is there (Linux 5.8 and later)."""
    return _syncfs is not None


class EarlyWriteBack:
    """Files staged for a later ``make_durable`` are sent to disk while more are still being
    made: a ``syncfs`` on a thread of its own each time ``request`` is called, at most one at a
    time (requests during one run one more after it). So the final sync finds little left.

    Only an optimisation: ``make_durable`` still syncs everything. But a write-back error is
    reported to one syncfs only, so ``finish`` (before that final sync) waits for the one in
    progress and raises the first error any of them met."""

    def __init__(self, folder: Callable[[], str]) -> None:
        self._folder = folder
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._again = False
        self._error: LocalIOError | None = None
        self._finished = False

    def request(self) -> None:
        if not can_sync_file_system():
            return
        with self._lock:
            if self._finished:
                return
            if self._thread is not None:
                self._again = True
                return
            self._thread = threading.Thread(
                target=self._run, name="bulkops write-back", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                sync_file_system(self._folder())
            except LocalIOError as error:
                with self._lock:
                    self._error = self._error or error
            with self._lock:
                if not self._again or self._finished:
                    self._thread = None
                    return
                self._again = False

    def finish(self) -> None:
        """No more early syncs; wait for the one in progress; raise the first error met."""
        with self._lock:
            self._finished = True
            thread = self._thread
        if thread is not None:
            thread.join()
        if self._error is not None:
            raise self._error


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
