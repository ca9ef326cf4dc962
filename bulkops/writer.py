"""Appending to files off the event loop: one writer thread, in order, fsync on request.

Every append in the package (journal records, mutation send times, log lines) is handed to one
daemon thread through a lock-free queue, so neither the event loop nor a worker thread ever waits
for the disk unless it asks to. The thread takes items in the order they were handed over, never
reorders them, writes each batch with as few ``write`` calls as it can and fsyncs a file once per
batch when any item of it asked for durability (group commit). A crash therefore leaves each file
as a prefix of what was appended: at most one torn last line.

Waiting for an append is explicit: ``await file.append_durable(data)`` returns once the data is
fsync'ed, with the event loop free meanwhile; ``file.append_durable_sync(data)`` blocks, for threads
and code outside a loop. A write that fails (disk full) fails every later append to that file with
the same error, so a record is never silently skipped while later ones land.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path

#: How to tell a waiter that its item was written: an asyncio future of a running loop (resolved
#: on that loop's thread), or a concurrent future for a blocking caller.
_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"] | concurrent.futures.Future[None]


@dataclass(slots=True)
class _Item:
    file: AppendFile
    data: bytes
    durable: bool = False
    close: bool = False
    waiter: _Waiter | None = None


def write_all(fd: int, data: bytes) -> None:
    """Every byte of ``data`` to ``fd`` (``os.write`` may write less), with plain ``os`` calls,
    each of which lets go of the GIL."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class AppendFile:
    """One file opened for appending through the writer thread; safe to use from any thread.

    ``fd``: an already open descriptor to use (the journal opens and repairs its file first);
    otherwise the file (and its folder) is created on the first append, on the writer thread.
    ``keep_open=False``: the writer closes the file after each batch, for files nobody closes
    (a governor's send times), so no descriptor outlives its use.
    """

    def __init__(
        self, path: Path, *, fd: int | None = None, mode: int = 0o600, keep_open: bool = True
    ) -> None:
        self.path = path
        self._fd = -1 if fd is None else fd
        self._mode = mode
        self._keep_open = keep_open
        self._unsynced = False
        self._closed = False
        #: The first OSError a write of this file met; every later append raises it.
        self.error: OSError | None = None

    # -- handing items over (any thread, never blocks) ---------------------------------------
    def append(self, data: bytes) -> None:
        """Queue ``data``: written whole and in order, not fsync'ed; returns at once."""
        self._check()
        _writer().put(_Item(self, data))

    async def append_durable(self, data: bytes = b"") -> None:
        """Queue ``data`` and return once it (and everything queued before it) is fsync'ed."""
        self._check()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        _writer().put(_Item(self, data, durable=True, waiter=(loop, done)))
        await done
        if self.error is not None:
            raise self.error

    def append_durable_sync(self, data: bytes = b"") -> None:
        """``append_durable`` for code outside an event loop: blocks until fsync'ed."""
        self._check()
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        _writer().put(_Item(self, data, durable=True, waiter=done))
        done.result()
        if self.error is not None:
            raise self.error

    def flush_sync(self) -> None:
        """Block until everything queued so far is written (not fsync'ed)."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        _writer().put(_Item(self, b"", waiter=done))
        done.result()

    def close_sync(self) -> None:
        """Write what is queued, fsync it, close the file; blocks. Raises a write's error."""
        if not self._closed:
            self._closed = True
            done: concurrent.futures.Future[None] = concurrent.futures.Future()
            _writer().put(_Item(self, b"", close=True, waiter=done))
            done.result()
        if self.error is not None:
            raise self.error

    def close_soon(self) -> None:
        """Queue the close (after what is queued) and return at once; errors are dropped."""
        if not self._closed:
            self._closed = True
            _writer().put(_Item(self, b"", close=True))

    async def aclose(self) -> None:
        """``close_sync`` with the event loop free meanwhile."""
        if not self._closed:
            self._closed = True
            loop = asyncio.get_running_loop()
            done: asyncio.Future[None] = loop.create_future()
            _writer().put(_Item(self, b"", close=True, waiter=(loop, done)))
            await done
        if self.error is not None:
            raise self.error

    @property
    def closed(self) -> bool:
        return self._closed

    def _check(self) -> None:
        if self.error is not None:
            raise self.error
        if self._closed:
            raise ValueError(f"{self.path} is closed")

    # -- on the writer thread ----------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self._fd < 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, self._mode)
        write_all(self._fd, data)
        self._unsynced = True

    def _sync(self) -> None:
        if self._fd >= 0 and self._unsynced:
            os.fsync(self._fd)
        self._unsynced = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<AppendFile {self.path} {state}{' failed' if self.error else ''}>"


class _Writer:
    """The thread: takes every queued item, batches them per file, writes, syncs, answers."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[_Item | list[_Item]] = queue.SimpleQueue()  # lock-free
        #: Items handed over on an event loop's thread, not yet queued: one list per loop, queued
        #: whole at the end of the loop's current iteration (one wake-up of the thread for every
        #: record and log line of that iteration, instead of one each).
        self._pending: dict[asyncio.AbstractEventLoop, list[_Item]] = {}
        self.pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="bulkops-writer", daemon=True)
        self._thread.start()

    def put(self, item: _Item) -> None:
        """Hand ``item`` over, after everything this thread handed over before it.

        On an event loop's thread the item waits in that loop's pending list until the loop's
        current iteration ends; an item someone blocks on (a concurrent future) flushes the list
        and goes at once, so a blocking call on the loop thread can never wait on itself.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or isinstance(item.waiter, concurrent.futures.Future):
            if loop is not None:
                self._flush(loop)
            # list() copies the keys in one step under the GIL: a loop thread adds and removes
            # its entry every iteration, and iterating the dict itself here could then raise.
            for stopped in [other for other in list(self._pending) if not other.is_running()]:
                self._flush(stopped)  # a loop that ended before its flush ran: its items first
            self._queue.put(item)
            return
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._flush, loop)
        pending.append(item)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        pending = self._pending.pop(loop, None)
        if pending:
            self._queue.put(pending)

    def drain(self) -> None:
        """Wait until everything queued so far is written (at interpreter exit)."""
        for loop in list(self._pending):  # a loop that closed before its flush ran
            self._flush(loop)
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._queue.put(_Item(_NOWHERE, b"", waiter=done))
        done.result(timeout=30)

    def _run(self) -> None:
        while True:
            batch: list[_Item] = []
            got = self._queue.get()
            while True:
                if isinstance(got, list):
                    batch.extend(got)
                elif got is not None:
                    batch.append(got)
                try:
                    got = self._queue.get_nowait()
                except queue.Empty:
                    break
            self._process(batch)

    def _process(self, batch: list[_Item]) -> None:
        """Consecutive items of one file become one write (and at most one fsync); a close ends
        its file's run. Items are answered only after their file is written."""
        run: list[_Item] = []
        for item in batch:
            if run and run[0].file is not item.file:
                self._process_run(run)
                run = []
            run.append(item)
            if item.close:
                self._process_run(run)
                run = []
        if run:
            self._process_run(run)

    def _process_run(self, run: list[_Item]) -> None:
        file = run[0].file
        try:
            if file is not _NOWHERE and file.error is None:
                data = b"".join(item.data for item in run)
                if data:
                    file._write(data)
                if any(item.durable or item.close for item in run):
                    file._sync()
            if run[-1].close or not file._keep_open:
                _close_quietly(file)
        except OSError as exc:
            file.error = exc
            _close_quietly(file)
        except Exception as exc:  # a bug here must not kill the thread and leave waiters hanging
            file.error = OSError(f"bulkops writer failed: {exc!r}")
            _close_quietly(file)
        for item in run:
            _answer(item.waiter)


def _close_quietly(file: AppendFile) -> None:
    if file._fd >= 0:
        with contextlib.suppress(OSError):
            os.close(file._fd)
        file._fd = -1


def _answer(waiter: _Waiter | None) -> None:
    if waiter is None:
        return
    if isinstance(waiter, concurrent.futures.Future):
        waiter.set_result(None)
        return
    loop, future = waiter

    def resolve() -> None:
        if not future.done():  # the waiting task may have been cancelled meanwhile
            future.set_result(None)

    with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
        loop.call_soon_threadsafe(resolve)


_NOWHERE = AppendFile(Path(os.devnull))
_the_writer: _Writer | None = None
_start_lock = threading.Lock()


def _writer() -> _Writer:
    """The process's writer thread, started on first use (and anew in a forked child)."""
    global _the_writer
    writer = _the_writer
    if writer is None or writer.pid != os.getpid():
        with _start_lock:
            if _the_writer is None or _the_writer.pid != os.getpid():
                _the_writer = _Writer()
            writer = _the_writer
    return writer


def wait_for_queued() -> None:
    """Block until everything queued so far, to any file, is written (not fsync'ed)."""
    if _the_writer is not None and _the_writer.pid == os.getpid():
        _the_writer.drain()


atexit.register(wait_for_queued)
