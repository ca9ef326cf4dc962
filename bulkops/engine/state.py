"""The state directory of a job: what run is in it, and whether a command may resume it.

Layout::

    <state>/lock             held (flock) by the one bulkops process using the directory; says who
    <state>/run.json         the current run: id, job, job-file digest, status, summary (atomic writes)
    <state>/journal.jsonl    append-only task outcomes and mutation intents (bulkops.engine.journal)
    <state>/log.jsonl        every log event of every run, as JSON lines
    <state>/spool/           page bodies fetched by finished tasks, referenced from the journal
    <state>/governor/        mutation send times per project (the 15-minute window outlives a run)
    <state>/previous/        the journal of the last finished run, kept for inspection

A run that finished with exit 0 is *complete*: the next command starts a new run. Any other run is
resumable, unless the job file changed since it began (refused unless ``--fresh``).
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio
import orjson

from bulkops.engine.journal import Outcome, read_journal
from bulkops.errors import StateBusy, StateError, writing
from bulkops.output.files import write_json_atomic, write_json_atomic_async


class RunSubject(Protocol):
    """What a state directory needs of a job: its name, kind, file and the file's digest."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def path(self) -> Path: ...

    @property
    def digest(self) -> str: ...


COMPLETE = "complete"
JOURNAL = "journal.jsonl"
#: The files of one run; ``job.toml`` is the job file as planned (undo works from it).
RUN_FILES = (JOURNAL, "run.json", "plan.json", "verify.json", "job.toml")
RUNNING = "running"


def default_state_dir(job_folder: Path, job_name: str) -> Path:
    """``.bulkops/<job name>`` beside the job file: one job has one state wherever it is run
    from, so a finished apply is known (and not repeated by accident) from any directory."""
    return job_folder / ".bulkops" / job_name


def _wrote(journal: Path) -> bool:
    """Did the run of this journal send a mutation that took effect?"""
    return any(isinstance(r, Outcome) and r.sent for r in read_journal(journal))


def _lock_holder(fd: int) -> str:
    try:
        holder = orjson.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, orjson.JSONDecodeError):
        holder = {}
    if not isinstance(holder, dict) or "pid" not in holder:
        return "pid unknown"
    return f"pid {holder['pid']}, command {holder.get('command', 'unknown')}"


@dataclass
class StateDir:
    root: Path
    #: Where mutation send times live; an undo shares its parent run's, so one project's
    #: 15-minute window is counted once across apply and undo.
    governor_root: Path | None = None

    @property
    def run_file(self) -> Path:
        return self.root / "run.json"

    @property
    def held_reviews_file(self) -> Path:
        """Entities this job's changes are held for review on (kept across runs, ``--fresh``
        too: the reviews wait on the server whatever the state directory forgets)."""
        return self.root / "held_reviews.json"

    @property
    def journal_file(self) -> Path:
        return self.root / "journal.jsonl"

    @property
    def log_file(self) -> Path:
        return self.root / "log.jsonl"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def plan_file(self) -> Path:
        return self.root / "plan.json"

    def governor_file(self, project_tag: str) -> Path:
        return (self.governor_root or self.root) / "governor" / f"{project_tag}.times"

    @contextmanager
    def exclusive(self, command: str) -> Iterator[None]:
        """Hold the directory's lock for one command; a second process is refused at once.

        An OS file lock (flock): the kernel drops it when the holder dies, so a SIGKILL never
        leaves a stale lock behind. The file says who holds it, for the refusal message.
        """
        fd = self._lock(command)
        try:
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    @asynccontextmanager
    async def exclusive_async(self, command: str) -> AsyncIterator[None]:
        """``exclusive``, its lock taken on a worker thread: the descriptor is the process's,
        so the lock is held, whichever thread took it, until it is closed when the command ends."""
        with anyio.CancelScope(shield=True):  # a lock taken is never lost to a cancellation
            fd = await anyio.to_thread.run_sync(self._lock, command)
        try:
            yield
        finally:
            os.close(fd)  # no I/O: it drops the descriptor, and with it the lock

    def _lock(self, command: str) -> int:
        """The locked descriptor of the directory's lock file, saying who holds it."""
        self._ensure_usable()
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            os.close(fd)
            raise StateBusy(
                f"state directory {self.root} is in use by bulkops ({holder}); wait for it or "
                "use another --state"
            ) from None
        try:
            with writing(self.root / "lock"):  # os.pwrite's errors name no file
                os.ftruncate(fd, 0)
                os.pwrite(fd, orjson.dumps({"pid": os.getpid(), "command": command}), 0)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def holder(self) -> str | None:
        """Who holds the directory's lock right now (``pid N, command X``), or None."""
        try:
            fd = os.open(self.root / "lock", os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _lock_holder(fd)
        finally:
            os.close(fd)  # closing it releases the shared lock, if we got it
        return None

    def read_run(self) -> dict[str, Any] | None:
        try:
            value = orjson.loads(self.run_file.read_bytes())
        except FileNotFoundError:
            return None
        except orjson.JSONDecodeError:
            raise StateError(
                f"{self.run_file} is not valid JSON; repair it, or start over with --fresh"
            ) from None
        return value if isinstance(value, dict) else None

    async def read_run_async(self) -> dict[str, Any] | None:
        return await anyio.to_thread.run_sync(self.read_run)

    def write_run(self, run: dict[str, Any]) -> None:
        write_json_atomic(self.run_file, run)

    async def write_run_async(self, run: dict[str, Any]) -> None:
        await write_json_atomic_async(self.run_file, run)

    def begin(
        self, job: RunSubject, *, fresh: bool, command: str, resume: bool = True
    ) -> tuple[dict[str, Any], bool]:
        """Start a new run or resume the unfinished one; return (run record, resumed?).

        ``resume=False`` starts a new run even over an unfinished one (keeping its journal in
        ``previous/``): for commands that plan anew, which is always safe.
        """
        self._ensure_usable()
        previous = self.read_run()
        if previous is not None and fresh:
            self.discard()
            previous = None
        if previous is not None:
            self._check_job_name(previous, job)
        if previous is not None and previous.get("status") != COMPLETE and resume:
            self._check_same_job(previous, job)
            previous["status"] = RUNNING
            previous["resumed_at"] = time.time()
            previous["attempts"] = int(previous.get("attempts", 1)) + 1
            self.write_run(previous)
            return previous, True
        if previous is not None:
            self._retire_finished()
        run = {
            "run_id": uuid.uuid4().hex[:12],
            "job": job.name,
            "kind": job.kind,
            "job_file": str(job.path),
            "job_digest": job.digest,
            "command": command,
            "status": RUNNING,
            "started_at": time.time(),
            "attempts": 1,
        }
        self.write_run(run)
        return run, False

    async def begin_async(
        self, job: RunSubject, *, fresh: bool, command: str, resume: bool = True
    ) -> tuple[dict[str, Any], bool]:
        """``begin`` on a worker thread: it reads, retires and writes the run's files."""
        return await anyio.to_thread.run_sync(
            functools.partial(self.begin, job, fresh=fresh, command=command, resume=resume)
        )

    def _ensure_usable(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StateError(
                f"cannot use {self.root} as the state directory ({exc.strerror or exc}); "
                "pass --state with a writable directory."
            ) from None

    def _check_job_name(self, previous: dict[str, Any], job: RunSubject) -> None:
        """A state directory belongs to one job: another job's run (finished or not, with its
        undo data) is never taken over silently."""
        if previous.get("job") != job.name or previous.get("kind") != job.kind:
            finished = "a finished" if previous.get("status") == COMPLETE else "an unfinished"
            raise StateError(
                f"state directory {self.root} holds {finished} run of job "
                f"{previous.get('job')!r} ({previous.get('kind')}), not {job.name!r}. "
                "Use another --state directory, or pass --fresh to discard that run."
            )

    def _check_same_job(self, previous: dict[str, Any], job: RunSubject) -> None:
        if previous.get("job_digest") != job.digest:
            raise StateError(
                f"the job file {job.path} changed since the unfinished run "
                f"{previous.get('run_id')} in {self.root} began. Restore the file to resume that "
                "run, or pass --fresh to discard it and start over."
            )

    def _retire_finished(self) -> None:
        """Move the finished run to ``previous/``, unless it wrote nothing while ``previous/``
        holds a run that did: what undo needs is never pushed out by runs that changed nothing."""
        previous = self.root / "previous"
        if previous.exists() and not _wrote(self.journal_file) and _wrote(previous / JOURNAL):
            self.discard()
            return
        shutil.rmtree(previous, ignore_errors=True)
        previous.mkdir()
        for name in RUN_FILES:
            if (self.root / name).exists():
                (self.root / name).replace(previous / name)
        shutil.rmtree(self.spool, ignore_errors=True)

    def discard(self) -> None:
        """Forget the current run (``--fresh``). Logs and governor send times stay."""
        for name in RUN_FILES:
            (self.root / name).unlink(missing_ok=True)
        shutil.rmtree(self.spool, ignore_errors=True)
