"""Running a job: the task graph under signals and progress, the exit code and the summary.

Exit codes: 0 complete; 3 finished but some items failed; 4 aborted by a fatal error (resumable);
130 interrupted (resumable). Usage and job-file errors (2) are raised before anything starts.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import orjson
import structlog

from bulkops import logs, redact
from bulkops.api.client import ConsoleClient
from bulkops.commands import member
from bulkops.commands.session import (
    RunOptions,
    Session,
    connect,
    resolve_keys,
    resolve_state_dir,
    started,
)
from bulkops.commands.signals import run_with_signals
from bulkops.engine.graph import Scheduler, Task
from bulkops.engine.journal import Journal
from bulkops.engine.spool import Spool
from bulkops.engine.state import COMPLETE, StateDir
from bulkops.jobs import reading_kind
from bulkops.jobs.base import Count, RunContext
from bulkops.jobs.spec import JobDefinition, JobSpec

log = structlog.get_logger("bulkops.run")

EXIT_OK, EXIT_USAGE, EXIT_FAILED_ITEMS, EXIT_ABORTED, EXIT_INTERRUPTED = 0, 2, 3, 4, 130


async def run_job(job: JobDefinition[JobSpec], options: RunOptions) -> int:
    """``bulkops run`` for kinds without a plan phase (exports)."""
    state = await resolve_state_dir(job, options)
    kind = reading_kind(job.kind)
    projects = resolve_keys(job, options)
    await anyio.to_thread.run_sync(kind.preflight, job)  # it probes the output folder
    async with state.exclusive_async(options.command):
        async with connect(job, options, state, projects) as connection:
            run, resumed = await state.begin_async(
                job, fresh=options.fresh, command=options.command
            )
            with started(connection, run, resumed=resumed) as session:
                exit_code, summary = await execute(
                    session, kind.root_tasks, kind.summary, units=kind.progress
                )
        return await finish(state, run, exit_code, summary)


async def execute(
    session: Session,
    root_tasks: Callable[[RunContext[JobSpec]], list[Task]],
    job_summary: Callable[[RunContext[JobSpec]], dict[str, Any]],
    *,
    units: Callable[[RunContext[JobSpec]], Count | None],
    journal_file: Path | None = None,
) -> tuple[int, dict[str, Any]]:
    """Run a task graph to its end under signals and progress; return (exit code, summary).

    ``units``: progress in the job's own units (None from it: count the graph's settled tasks).
    """
    from bulkops.commands.progress import Progress, task_units

    job, options, state, clients = session.job, session.options, session.state, session.clients
    journal = await Journal.open_async(journal_file or state.journal_file)
    concurrency = options.concurrency or job.spec.limits.concurrency
    scheduler = Scheduler(journal, max_running=max(16, 4 * concurrency * len(clients)))
    ctx = RunContext(
        job=job,
        run_id=session.run["run_id"],
        state=state,
        journal=journal,
        scheduler=scheduler,
        spool=Spool(state.spool),
        clients=clients,
        started_at=float(session.run["started_at"]),
    )
    for task in root_tasks(ctx):
        scheduler.add(task)
    progress = Progress(
        scheduler,
        clients.values(),
        units=lambda: units(ctx) or task_units(scheduler),
        live=options.progress,
    )
    started = time.monotonic()
    exit_code = EXIT_OK
    fatal: str | None = None
    try:
        interrupted, aborted = await run_with_signals(scheduler, member.watched(progress))
    finally:
        with anyio.CancelScope(shield=True):  # what was appended reaches the disk, even now
            await journal.aclose()
    if aborted is not None:
        exit_code, fatal = EXIT_ABORTED, redact.text(str(aborted.cause))
    elif interrupted:
        exit_code = EXIT_INTERRUPTED
    elif scheduler.failures():
        exit_code = EXIT_FAILED_ITEMS
    summary = {
        "exit_code": exit_code,
        "elapsed_s": round(time.monotonic() - started, 3),
        "tasks": {k: v for k, v in scheduler.counts().items() if v},
        "tasks_replayed_from_checkpoint": scheduler.replayed,
        "failures": [
            {"task": task_id, "what": label, "error": error}
            for task_id, label, error in scheduler.failures()
        ],
        "fatal": fatal,
        "requests": {role: client.stats.as_dict() for role, client in clients.items()},
        "job": job_summary(ctx),
    }
    return exit_code, summary


def aborted_summary(
    exit_code: int, error: str, clients: dict[str, ConsoleClient] | None = None
) -> dict[str, Any]:
    """The summary of a command that stopped before or after its task graph."""
    return {
        "exit_code": exit_code,
        "elapsed_s": 0.0,
        "tasks": {},
        "failures": [],
        "fatal": redact.text(error) if error else None,
        "requests": {role: c.stats.as_dict() for role, c in (clients or {}).items()},
        "job": {},
    }


async def finish(
    state: StateDir, run: dict[str, Any], exit_code: int, summary: dict[str, Any]
) -> int:
    """Record the run's end in ``run.json`` and the log, then show its summary (a fleet shows
    one summary for all its projects, once all are done)."""
    status = {
        EXIT_OK: COMPLETE,
        EXIT_USAGE: "invalid",
        EXIT_FAILED_ITEMS: "incomplete",
        EXIT_ABORTED: "aborted",
        EXIT_INTERRUPTED: "interrupted",
    }[exit_code]
    run.update(status=status, finished_at=time.time(), exit_code=exit_code, summary=summary)
    await state.write_run_async(redact.deep(run))
    log.info(
        "bulkops.run.finished",
        job=run["job"],
        run_id=run["run_id"],
        status=status,
        **{k: summary[k] for k in ("exit_code", "tasks")},
    )
    if not member.finished(run, exit_code):
        return exit_code
    if logs.stderr_is_json():  # keep stderr machine-readable: the summary as one more event
        log.info("bulkops.run.summary", job=run["job"], run_id=run["run_id"], status=status,
                 summary=summary)  # fmt: skip
    else:
        await show_summary(run, state.root)
    await logs.aclose_log_file()
    return exit_code


async def show_summary(run: dict[str, Any], state: Path) -> None:
    """``print_summary`` to stderr, on a worker thread (its relative paths read the disk)."""
    file = sys.stderr
    await anyio.to_thread.run_sync(lambda: print_summary(run, file=file, state=state))


def print_summary(run: dict[str, Any], *, file: Any, state: Path | None = None) -> None:
    """The run's summary for people (``state``: its directory, to point at ``verify.json``)."""
    from bulkops.output.summary import summary_lines

    print("\n".join(summary_lines(run, state=state)), file=file, flush=True)


def rehearsal_flag(state: StateDir) -> str:
    """The flag a rehearsal's plan must be applied with (its projects are the emulator's)."""
    try:
        projects = orjson.loads(state.plan_file.read_bytes()).get("projects") or {}
    except (OSError, orjson.JSONDecodeError, AttributeError):
        return ""  # apply itself says what is wrong with the plan file
    if any(isinstance(p, dict) and p.get("sandbox") for p in projects.values()):
        return " --sandbox (or the --sandbox-from it was planned with)"
    return ""
