"""Page bodies fetched by finished tasks, kept on disk so memory stays flat and resumes re-read nothing.

Each file holds one page's rows as JSON lines, exactly as the API returned them. It is written under
a temporary name, fsync'ed and renamed before the task's ``task_done`` record names it, so a journal
record never points at a partial file.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import itertools
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from bulkops.errors import CheckpointError, writing
from bulkops.output.files import write_file

#: One page to write (file name, encoded rows), and the future its fetching task waits on.
_Pending = tuple[str, bytes, "asyncio.Future[str]"]
#: Threads writing one spool's batches: one fsyncs while the other writes; more only fight for
#: the GIL. The spools of a job over several projects share pools of these: at most
#: ``SPOOL_POOLS`` of them, handed out in turn, so 50 projects fsync 8 pages at a time with 16
#: threads rather than 100 (a pool each), or queue every page behind 2 (one pool for all, which
#: held 90 MB of pages waiting in an org export).
SPOOL_THREADS = 2
SPOOL_POOLS = 8
_POOLS: list[concurrent.futures.ThreadPoolExecutor] = []
_POOL_LOCK = threading.Lock()
_handed_out = itertools.count()


def _next_pool() -> concurrent.futures.ThreadPoolExecutor:
    with _POOL_LOCK:
        turn = next(_handed_out) % SPOOL_POOLS
        while len(_POOLS) <= turn:
            _POOLS.append(
                concurrent.futures.ThreadPoolExecutor(
                    SPOOL_THREADS, thread_name_prefix="bulkops-spool"
                )
            )
        return _POOLS[turn]


def encode_rows(rows: Iterable[Any]) -> bytes:
    """The rows as JSON lines, each newline-terminated."""
    return b"".join(orjson.dumps(row) + b"\n" for row in rows)


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._batch: list[_Pending] | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._made = False

    def write(self, key: str, rows: Iterable[Any]) -> str:
        return self._write_payload(self.name_of(key), encode_rows(rows))

    @staticmethod
    def name_of(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()[:24] + ".jsonl"

    def _write_payload(self, name: str, payload: bytes) -> str:
        """Write, fsync and rename one page's file: plain ``os`` calls, each of which lets go of
        the GIL, so the spool thread holds it as little as it can."""
        if not self._made:
            self.root.mkdir(parents=True, exist_ok=True)
            self._made = True
        final = os.path.join(self.root, name)
        tmp = os.path.join(self.root, f".{name}.tmp")
        with writing(tmp):
            write_file(tmp, payload, sync=True)
            os.replace(tmp, final)
        return name

    async def write_async(self, key: str, rows: list[Any]) -> str:
        """``write`` on a worker thread: the fsync must not stall every other request.

        Pages handed over in the same iteration of the event loop go to the thread together, as
        one batch (one hand-off instead of one per page: the hand-offs, not the writes, were most
        of the export's CPU). Each page is still written, fsync'ed and renamed on its own, and its
        caller resumes only once its file is in place.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        if self._batch is None:
            self._batch = []
            loop.call_soon(self._send_batch, loop)
        # Encoded here, on the loop: the same CPU either way, and the thread then runs system
        # calls only instead of fighting the loop for the GIL.
        self._batch.append((self.name_of(key), encode_rows(rows), future))
        # Let go of the parsed rows while the file is written and fsync'ed (a caller that keeps
        # no reference of its own frees them now): in an org export hundreds of pages wait on
        # the disk at once, and their rows are what the garbage collector kept traversing.
        del rows
        return await future

    def _send_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._batch = self._batch or [], None
        if self._pool is None:
            self._pool = _next_pool()
        done = loop.run_in_executor(self._pool, self._write_batch, batch)
        done.add_done_callback(functools.partial(_settle, batch))

    def _write_batch(self, batch: list[_Pending]) -> list[str | BaseException]:
        outcomes: list[str | BaseException] = []
        for name, payload, _ in batch:
            try:
                outcomes.append(self._write_payload(name, payload))
            except Exception as exc:  # each page's caller gets its own error
                outcomes.append(exc)
        return outcomes

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


def _settle(batch: list[_Pending], done: asyncio.Future[list[str | BaseException]]) -> None:
    """On the loop: resume each page's caller with its file name or its error."""
    if done.cancelled():
        outcomes: list[str | BaseException] = [asyncio.CancelledError()] * len(batch)
    elif done.exception() is not None:
        outcomes = [done.exception() or RuntimeError("spool write failed")] * len(batch)
    else:
        outcomes = done.result()
    for (_, _, future), outcome in zip(batch, outcomes, strict=True):
        if future.done():  # its task was cancelled meanwhile
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
