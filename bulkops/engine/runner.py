"""Running a job: state, projects, graph, signals, progress, summary, exit code.

Exit codes: 0 complete; 3 finished but some items failed; 4 aborted by a fatal error (resumable);
130 interrupted (resumable). Usage and job-file errors (2) are raised before anything starts.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import anyio
import structlog
from anyio.abc import TaskStatus

from bulkops import logs, redact, stopping
from bulkops.api.client import ConsoleClient, ProjectIdentity, RetryPolicy
from bulkops.api.governor import RateGovernor, SendTimeStore
from bulkops.engine.concurrency import gather, most_telling
from bulkops.engine.graph import Aborted, Scheduler, Task
from bulkops.engine.journal import Journal
from bulkops.engine.spool import Spool
from bulkops.engine.state import COMPLETE, StateDir, default_state_dir
from bulkops.errors import Interrupted, MissingKeyError
from bulkops.jobs import kind_module
from bulkops.jobs.base import RunContext
from bulkops.jobs.spec import JobDefinition, ProjectSpec
from bulkops.output import human

log = structlog.get_logger("bulkops.run")

EXIT_OK, EXIT_USAGE, EXIT_FAILED_ITEMS, EXIT_ABORTED, EXIT_INTERRUPTED = 0, 2, 3, 4, 130
T = TypeVar("T")
#: After the first SIGINT/SIGTERM, in-flight requests get this long to finish before being cut.
GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class RunOptions:
    state_dir: Path | None = None
    fresh: bool = False
    base_url: str | None = None
    concurrency: int | None = None
    sandbox: bool = False
    command: str = "run"
    progress: bool | None = None  # None: live on a terminal, periodic events elsewhere
    retry: RetryPolicy | None = None
    force: bool = False  # apply/undo: overwrite entities changed since the plan
    again: bool = False  # run/plan: plan anew over a finished non-idempotent apply


@dataclass(frozen=True)
class ProjectAccess:
    role: str
    base_url: str
    api_key: str
    #: The env var the key came from (None in a sandbox), for messages that name it.
    key_env: str | None = None


def resolve_state_dir(job: JobDefinition, options: RunOptions) -> StateDir:
    return StateDir((options.state_dir or default_state_dir(job.name)).resolve())


def resolve_keys(job: JobDefinition, options: RunOptions) -> dict[str, ProjectSpec]:
    """Check every key variable is set and usable before anything starts (sandboxes need none)."""
    projects = job.spec.projects()
    if options.sandbox:
        return projects
    for role, project in projects.items():
        api_key(project.api_key_env, f"api_key_env of [{role}] in {job.path}")
    return projects


def api_key(variable: str, named_by: str) -> str:
    """The key in ``variable``, stripped of surrounding whitespace (``$(cat keyfile)`` leaves a
    newline); a missing or empty one, or one with control characters inside, is refused."""
    value = os.environ.get(variable, "").strip()
    if not value:
        raise MissingKeyError(
            f"the environment variable {variable} ({named_by}) is not set. Export it with the "
            f"project's Console API key, e.g. `export {variable}=console-...`, or rehearse with "
            "--sandbox."
        )
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise MissingKeyError(
            f"the environment variable {variable} ({named_by}) holds a control character (a "
            "newline, tab or escape) inside the key; set it to the key alone, e.g. "
            f"`export {variable}=console-...`."
        )
    return value


async def run_job(job: JobDefinition, options: RunOptions) -> int:
    """``bulkops run`` for kinds without a plan phase (exports)."""
    state = resolve_state_dir(job, options)
    kind = kind_module(job.kind)
    projects = resolve_keys(job, options)
    check_output = getattr(kind, "check_output", None)
    if check_output is not None:
        check_output(job)
    with state.exclusive(options.command):
        async with connect(job, options, state, projects) as connection:
            run, resumed = state.begin(job, fresh=options.fresh, command=options.command)
            with started(connection, run, resumed=resumed) as session:
                exit_code, summary = await execute(session, kind.root_tasks, kind.summary)
        return finish(state, run, exit_code, summary)


@dataclass
class Connection:
    """A job's open projects: one client per role and who each key opens."""

    job: JobDefinition
    options: RunOptions
    state: StateDir
    access: dict[str, ProjectAccess]
    clients: dict[str, ConsoleClient]
    identities: dict[str, ProjectIdentity]


@dataclass
class Session:
    """A run's open resources: its state, run record and one client per role."""

    job: JobDefinition
    options: RunOptions
    state: StateDir
    run: dict[str, Any]
    clients: dict[str, ConsoleClient]
    connection: Connection | None = None


@asynccontextmanager
async def connect(
    job: JobDefinition, options: RunOptions, state: StateDir, projects: dict[str, ProjectSpec]
) -> AsyncIterator[Connection]:
    """Open every project of the job and read who each key opens (the run's first request);
    nothing in the state directory changes here, so a refusal after it loses nothing."""
    logs.open_log_file(state.log_file)
    async with AsyncExitStack() as stack:
        sandbox_names = getattr(job.spec, "sandbox_projects", {})
        access = await stack.enter_async_context(_project_access(projects, options, sandbox_names))
        clients = await _open_clients(stack, job, options, state, access)
        identities = await interruptible(lambda: _identify(clients))
        yield Connection(job, options, state, access, clients, identities)


@contextmanager
def started(connection: Connection, run: dict[str, Any], *, resumed: bool) -> Iterator[Session]:
    """The run's session: its id bound to every log event while it lasts."""
    job, options, state = connection.job, connection.options, connection.state
    structlog.contextvars.bind_contextvars(job=job.name, run_id=run["run_id"])
    log.info(
        "bulkops.run.started",
        kind=job.kind,
        command=options.command,
        state=str(state.root),
        resumed=resumed,
        projects={role: i.id for role, i in connection.identities.items()},
    )
    try:
        yield Session(job, options, state, run, connection.clients, connection)
    finally:
        structlog.contextvars.unbind_contextvars("job", "run_id")


async def _identify(clients: dict[str, ConsoleClient]) -> dict[str, ProjectIdentity]:
    """``GET /console/v1/project`` once per distinct client; roles sharing one share the answer."""
    by_client: dict[int, ProjectIdentity] = {}

    async def identify(client: ConsoleClient) -> None:
        by_client[id(client)] = await client.identify()

    distinct = {id(client): client for client in clients.values()}
    await gather(functools.partial(identify, client) for client in distinct.values())
    return {role: by_client[id(client)] for role, client in clients.items()}


@asynccontextmanager
async def _project_access(
    projects: dict[str, ProjectSpec], options: RunOptions, sandbox_names: dict[str, str]
) -> AsyncIterator[dict[str, ProjectAccess]]:
    """Where each role's project is; ``sandbox_names`` maps a role to a demo project's name."""
    if not options.sandbox:
        yield {
            role: ProjectAccess(
                role,
                options.base_url or spec.base_url,
                api_key(spec.api_key_env, f"api_key_env of [{role}]"),
                spec.api_key_env,
            )
            for role, spec in projects.items()
        }
        return
    from bulkops.emulator import EmulatorConfig, build_demo_world, running_emulator

    world = build_demo_world()
    async with running_emulator(world, EmulatorConfig()) as base_url:
        log.info("bulkops.sandbox.started", base_url=base_url)
        yield {
            role: ProjectAccess(
                role, base_url, world.projects[sandbox_names.get(role, role)].console_key
            )
            for role in projects
        }


async def _open_clients(
    stack: AsyncExitStack,
    job: JobDefinition,
    options: RunOptions,
    state: StateDir,
    access: dict[str, ProjectAccess],
) -> dict[str, ConsoleClient]:
    """One session, governor and client per distinct project; roles sharing a key share them."""
    limits = job.spec.limits
    concurrency = options.concurrency or limits.concurrency
    by_project: dict[tuple[str, str], ConsoleClient] = {}
    clients = {}
    for role, project in access.items():
        identity = (project.base_url, project.api_key)
        if identity not in by_project:
            session = await stack.enter_async_context(
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))
            )
            governor = RateGovernor(
                role,
                mutation_windows=limits.mutation_windows(),
                read_windows=limits.read_windows(),
                concurrency=concurrency,
                store=SendTimeStore(state.governor_file(role)),
            )
            by_project[identity] = ConsoleClient(
                project=role,
                base_url=project.base_url,
                api_key=project.api_key,
                session=session,
                governor=governor,
                retry=options.retry,
            )
        clients[role] = by_project[identity]
    return clients


async def execute(
    session: Session,
    root_tasks: Callable[[RunContext], list[Task]],
    job_summary: Callable[[RunContext], dict[str, Any]],
    *,
    journal_file: Path | None = None,
) -> tuple[int, dict[str, Any]]:
    """Run a task graph to its end under signals and progress; return (exit code, summary)."""
    from bulkops.progress import Progress, units_for

    job, options, state, clients = session.job, session.options, session.state, session.clients
    journal = Journal.open(journal_file or state.journal_file)
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
    units = units_for(kind_module(job.kind), ctx)
    progress = Progress(scheduler, clients.values(), units=units, live=options.progress)
    started = time.monotonic()
    exit_code = EXIT_OK
    fatal: str | None = None
    try:
        interrupted, aborted = await _run_with_signals(scheduler, progress)
    finally:
        journal.close()
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


async def _run_with_signals(scheduler: Scheduler, progress: Any) -> tuple[bool, Aborted | None]:
    """Run the graph under the stop switch. The first SIGINT/SIGTERM starts no new task and no new
    request; the requests on the wire get ``GRACE_SECONDS`` to come back, then the rest (tasks
    waiting for a quota slot or a retry) is cancelled. A second signal cancels at once."""
    interrupted = False
    aborted: Aborted | None = None
    switch = stopping.StopSwitch()
    async with anyio.create_task_group() as watchers:
        run_scope = anyio.CancelScope()

        def on_signal(signum: int) -> None:
            nonlocal interrupted
            if not interrupted:
                interrupted = True
                switch.stop()
                scheduler.stop()
                log.warning(
                    "bulkops.run.interrupting",
                    signal=signal.Signals(signum).name,
                    in_flight=switch.in_flight,
                    text=f"{signal.Signals(signum).name}: stopping; letting "
                    f"{human.plural(switch.in_flight, 'request')} on the wire finish "
                    "(press Ctrl-C again to stop at once)",
                )
                watchers.start_soon(_cancel_after, run_scope, switch, GRACE_SECONDS)
            else:
                run_scope.cancel()

        watchers.start_soon(_watch_signals, on_signal)
        watchers.start_soon(progress.run)
        try:
            with stopping.active(switch), run_scope:
                await scheduler.run()
        except Aborted as exc:
            aborted = exc
        finally:
            watchers.cancel_scope.cancel()
    return interrupted, aborted


async def _watch_signals(callback: Callable[[int], None]) -> None:
    """Hand SIGINT/SIGTERM to ``callback`` until cancelled: through the command's signal guard
    when one is running (``guarded``), else with a receiver of its own."""
    guard = _GUARD.get()
    if guard is not None:
        guard.handlers.append(callback)
        try:
            await anyio.sleep_forever()
        finally:
            guard.handlers.remove(callback)
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            callback(signum)


class _SignalGuard:
    """One signal receiver for a whole command, so no signal falls between two phases.

    A phase that handles signals (the task graph, planning, verifying) registers its callback;
    a signal that arrives while none is registered (opening projects, writing state between
    phases) cancels the command, which then ends as ``Interrupted`` (exit 130, resumable).
    """

    def __init__(self, scope: anyio.CancelScope) -> None:
        self.handlers: list[Callable[[int], None]] = []
        self.scope = scope
        self.interrupted = False

    async def watch(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                if self.handlers:
                    self.handlers[-1](signum)
                else:
                    log.warning("bulkops.run.interrupting", signal=signal.Signals(signum).name)
                    self.interrupted = True
                    self.scope.cancel()


_GUARD: ContextVar[_SignalGuard | None] = ContextVar("bulkops_signal_guard", default=None)


async def guarded(command: Callable[..., Awaitable[int]], *args: Any) -> int:
    """Run a command under one signal guard for its whole length (the CLI's entry to commands)."""
    results: list[int] = []
    async with anyio.create_task_group() as group:
        guard = _SignalGuard(group.cancel_scope)
        token = _GUARD.set(guard)
        try:
            await group.start(guard.watch)  # receiving before the command's first step
            results.append(await command(*args))
        finally:
            _GUARD.reset(token)
            group.cancel_scope.cancel()
    if guard.interrupted or not results:
        raise Interrupted
    return results[0]


#: Once the last request on the wire is back, how long its task gets to record its result.
SETTLE_SECONDS = 0.2


async def _cancel_after(
    scope: anyio.CancelScope, switch: stopping.StopSwitch, seconds: float
) -> None:
    """Cancel ``scope`` once no request is on the wire (or after ``seconds`` at most)."""
    with anyio.move_on_after(seconds):
        await switch.wait_idle()
        await anyio.sleep(SETTLE_SECONDS)
    scope.cancel()


async def interruptible(phase: Callable[[], Awaitable[T]]) -> T:
    """Run a phase (planning, verifying) so SIGINT/SIGTERM end it cleanly, as ``Interrupted``.

    The phase only reads, so the signal cuts it at once (and no new request starts meanwhile).
    Errors come out unwrapped from anyio's ExceptionGroup, so the CLI can show one message.
    """
    results: list[T] = []
    interrupted = False
    switch = stopping.StopSwitch()
    try:
        with stopping.active(switch):
            async with anyio.create_task_group() as group:

                def on_signal(signum: int) -> None:
                    nonlocal interrupted
                    interrupted = True
                    switch.stop()
                    log.warning("bulkops.run.interrupting", signal=signal.Signals(signum).name)
                    group.cancel_scope.cancel()

                group.start_soon(_watch_signals, on_signal)
                results.append(await phase())
                group.cancel_scope.cancel()
    except BaseExceptionGroup as errors:
        if interrupted:
            raise Interrupted from None
        raise most_telling(errors) from None
    except stopping.StopRequested:
        raise Interrupted from None
    if interrupted or not results:
        raise Interrupted
    return results[0]


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


def finish(state: StateDir, run: dict[str, Any], exit_code: int, summary: dict[str, Any]) -> int:
    status = {
        EXIT_OK: COMPLETE,
        EXIT_USAGE: "invalid",
        EXIT_FAILED_ITEMS: "incomplete",
        EXIT_ABORTED: "aborted",
        EXIT_INTERRUPTED: "interrupted",
    }[exit_code]
    run.update(status=status, finished_at=time.time(), exit_code=exit_code, summary=summary)
    state.write_run(redact.deep(run))
    log.info(
        "bulkops.run.finished",
        job=run["job"],
        run_id=run["run_id"],
        status=status,
        **{k: summary[k] for k in ("exit_code", "tasks")},
    )
    if logs.stderr_is_json():  # keep stderr machine-readable: the summary as one more event
        log.info("bulkops.run.summary", job=run["job"], run_id=run["run_id"], status=status,
                 summary=summary)  # fmt: skip
    else:
        print_summary(run, file=sys.stderr, state=state.root)
    logs.close_log_file()
    return exit_code


def print_summary(run: dict[str, Any], *, file: Any, state: Path | None = None) -> None:
    """The run's summary for people (``state``: its directory, to point at ``verify.json``)."""
    from bulkops.output.summary import summary_lines

    print("\n".join(summary_lines(run, state=state)), file=file, flush=True)
