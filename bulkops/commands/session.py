"""A command's open projects: options, keys, one client per project, and who each key opens.

``connect`` opens every project of a job (starting the sandbox emulator when asked) and reads
``GET /console/v1/project`` for each, before the state directory changes, so a refusal after it
loses nothing; ``started`` binds a run's id to every log event while it lasts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shlex
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import structlog

from bulkops import logs
from bulkops.api._learning import SendTimeStore
from bulkops.api.client import ConsoleClient, ProjectIdentity, RetryPolicy, SharedReads
from bulkops.api.governor import RateGovernor
from bulkops.api.ledger import (
    QuotaLedger,
    Waiter,
    ledger_url,
    open_ledger,
    project_key,
)
from bulkops.commands import member
from bulkops.commands.sandbox import sandbox_projects
from bulkops.commands.signals import interruptible
from bulkops.engine.concurrency import gather
from bulkops.engine.state import StateDir, default_state_dir
from bulkops.errors import LedgerUnavailable, MissingKeyError, UserError
from bulkops.jobs import is_planned, kind_of
from bulkops.jobs.spec import JobDefinition, JobSpec, ProjectSpec

log = structlog.get_logger("bulkops.run")

#: A sandbox run's own quota ledger, in its state directory.
SANDBOX_LEDGER = "sandbox-quota.sqlite"


@dataclass(frozen=True)
class RunOptions:
    state_dir: Path | None = None
    fresh: bool = False
    base_url: str | None = None
    concurrency: int | None = None
    sandbox: bool = False
    #: ``--sandbox-from [ROLE=]SNAP``: (role or None, snapshot directory) pairs; implies sandbox.
    sandbox_from: tuple[tuple[str | None, Path], ...] = ()
    command: str = "run"
    progress: bool | None = None  # None: live on a terminal, periodic events elsewhere
    retry: RetryPolicy | None = None
    force: bool = False  # apply/undo: overwrite entities changed since the plan
    again: bool = False  # run/plan: plan anew over a finished non-idempotent apply


def same_projects_flags(options: RunOptions) -> str:
    """The options a later command needs to reach the projects this one reached (`` --sandbox``,
    `` --base-url URL``, ...), so a suggested next step works when pasted as it is."""
    if options.sandbox_from:
        return "".join(
            " --sandbox-from " + shlex.quote(f"{role}={path}" if role else str(path))
            for role, path in options.sandbox_from
        )
    if options.sandbox:
        return " --sandbox"
    if options.base_url:
        return " --base-url " + shlex.quote(options.base_url)
    return ""


@dataclass(frozen=True)
class ProjectAccess:
    role: str
    base_url: str
    api_key: str
    #: The env var the key came from (None in a sandbox), for messages that name it.
    key_env: str | None = None


async def resolve_state_dir(job: JobDefinition[JobSpec], options: RunOptions) -> StateDir:
    """The job's state directory, its path made absolute (resolving it reads the disk)."""
    path = options.state_dir or default_state_of(job)
    return StateDir(await anyio.to_thread.run_sync(path.resolve))


def default_state_of(job: JobDefinition[Any]) -> Path:
    """Where a job's state lives unless ``--state`` says otherwise."""
    return default_state_dir(job.folder, job.name)


def resolve_keys(job: JobDefinition[JobSpec], options: RunOptions) -> dict[str, ProjectSpec]:
    """Check every key variable is set and usable before anything starts (sandboxes need none)."""
    projects = job.spec.projects()
    if options.sandbox:
        return projects
    for role, project in projects.items():
        api_key(project.api_key_env, f"api_key_env of [{role}] in {job.path}")
    return projects


def api_key(variable: str, named_by: str, *, or_else: str = ", or rehearse with --sandbox") -> str:
    """The key in ``variable``, stripped of surrounding whitespace (``$(cat keyfile)`` leaves a
    newline); a missing or empty one, or one with control characters inside, is refused."""
    raw = os.environ.get(variable)
    value = (raw or "").strip()
    if raw is not None and not value:
        raise MissingKeyError(
            f"the environment variable {variable} ({named_by}) is set but empty (only "
            f"whitespace). Put the project's Console API key in it, e.g. "
            f"`export {variable}=console-...`{or_else}."
        )
    if not value:
        raise MissingKeyError(
            f"the environment variable {variable} ({named_by}) is not set. Export it with the "
            f"project's Console API key, e.g. `export {variable}=console-...`{or_else}."
        )
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise MissingKeyError(
            f"the environment variable {variable} ({named_by}) holds a control character (a "
            "newline, tab or escape) inside the key; set it to the key alone, e.g. "
            f"`export {variable}=console-...`."
        )
    return value


@dataclass
class Connection:
    """A job's open projects: one client per role and who each key opens."""

    job: JobDefinition[JobSpec]
    options: RunOptions
    state: StateDir
    access: dict[str, ProjectAccess]
    clients: dict[str, ConsoleClient]
    identities: dict[str, ProjectIdentity]


@dataclass
class Session:
    """A run's open resources: its state, run record and one client per role."""

    job: JobDefinition[JobSpec]
    options: RunOptions
    state: StateDir
    run: dict[str, Any]
    clients: dict[str, ConsoleClient]
    connection: Connection | None = None


@asynccontextmanager
async def connect(
    job: JobDefinition[JobSpec],
    options: RunOptions,
    state: StateDir,
    projects: dict[str, ProjectSpec],
) -> AsyncIterator[Connection]:
    """Open every project of the job and read who each key opens (the run's first request);
    nothing in the state directory changes here, so a refusal after it loses nothing.

    One project of a job over several gets the connection its fleet opened for it."""
    opened = member.current()
    if opened is not None:  # its clients, but this command's state (an undo has its own)
        yield dataclasses.replace(opened.connection, state=state)
        return
    logs.open_log_file(state.log_file)
    async with AsyncExitStack() as stack:
        sandbox_names = kind_of(job.kind).sandbox_projects
        access = await stack.enter_async_context(_project_access(projects, options, sandbox_names))
        yield await stack.enter_async_context(open_projects(job, options, state, access))


@asynccontextmanager
async def open_projects(
    job: JobDefinition[JobSpec],
    options: RunOptions,
    state: StateDir,
    access: dict[str, ProjectAccess],
    shared: SharedLanes | None = None,
) -> AsyncIterator[Connection]:
    """A client per project of ``access`` (its governor keeping send times in ``state``), and
    who each key opens. ``shared``: the lanes of projects other jobs of a fleet use too."""
    async with AsyncExitStack() as stack:
        clients = await _open_clients(stack, job, options, state, access, shared)
        identities = await interruptible(lambda: _identify(clients))
        if is_planned(job.kind) and options.command != "plan":
            sandbox_ledger = state.root / SANDBOX_LEDGER if options.sandbox else None
            await _bind_ledger(stack, job, clients, identities, sandbox_ledger)
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


def check_ledger_folder(url: str, *, before: str = "Nothing was sent. ") -> None:
    """A SQLite ledger's folder can be made: no file stands where a folder of its path must be
    (``BULKOPS_HOME`` set to a file, say), which would otherwise read as "File exists"."""
    if not url.startswith("sqlite://"):
        return
    path = Path(url.removeprefix("sqlite://"))
    for folder in path.parents:  # the nearest one that exists must be a folder
        if not folder.exists():
            continue
        if folder.is_dir():
            return
        home = os.environ.get("BULKOPS_HOME", "")
        named = (
            f" (BULKOPS_HOME is {home})" if home and path.parent == Path(home).expanduser() else ""
        )
        raise LedgerUnavailable(
            f"the quota ledger {url} cannot be made: {folder} is a file, not a folder{named}. "
            f"{before}Point BULKOPS_HOME at a folder (or unset it), or set "
            "BULKOPS_QUOTA_URL to another ledger, then run the same command again."
        )


async def _bind_ledger(
    stack: AsyncExitStack,
    job: JobDefinition[JobSpec],
    clients: dict[str, ConsoleClient],
    identities: dict[str, ProjectIdentity],
    sandbox_ledger: Path | None = None,
) -> None:
    """Meter every mutation through the quota ledger shared with other processes.

    Before the first mutation: a ledger that cannot be used stops the job here (exit 4), so
    nothing is ever sent unmetered. Each distinct project is keyed by its identity.
    ``sandbox_ledger``: a sandbox's projects live in this process alone, so their reservations
    go to a ledger of the run's own, never into the one real projects share.
    """
    if sandbox_ledger is not None:
        url, source = f"sqlite://{sandbox_ledger}", "--sandbox"
    else:
        url, source = ledger_url(job.spec.limits.ledger)
    await anyio.to_thread.run_sync(check_ledger_folder, url)
    ledger = await stack.enter_async_context(_process_ledger(url))
    log.info("bulkops.run.quota_ledger", ledger=ledger.url, chosen_by=source)
    bound: set[int] = set()
    for role, client in clients.items():
        if id(client) in bound or client.governor.has_ledger:  # a fleet's shared lane: bound once
            continue
        bound.add(id(client))
        key = project_key(identities[role].id, client.base_url)
        waiter = Waiter(f"{job.name}:{role}:{os.getpid()}:{uuid.uuid4().hex[:8]}", job.name,
                        job.spec.limits.priority)  # fmt: skip
        client.governor.bind_ledger(ledger, key, waiter)
        stack.push_async_callback(_leave, ledger, key, waiter.id)


@dataclass
class _SharedLedger:
    ledger: QuotaLedger
    users: int = 0


#: The ledgers open in this process, by URL: the projects of a job over several share one
#: (one connection, one lock), rather than a connection each that waits on the others' locks.
_OPEN_LEDGERS: dict[str, _SharedLedger] = {}


@asynccontextmanager
async def _process_ledger(url: str) -> AsyncIterator[QuotaLedger]:
    """The ledger at ``url``, opened once per process and checked usable for each user."""
    shared = _OPEN_LEDGERS.setdefault(url, _SharedLedger(open_ledger(url)))
    shared.users += 1
    try:
        await shared.ledger.check()
        yield shared.ledger
    finally:
        shared.users -= 1
        if not shared.users:
            del _OPEN_LEDGERS[url]
            await shared.ledger.aclose()


async def _leave(ledger: QuotaLedger, key: str, waiter_id: str) -> None:
    """Leave the ledger's queue at the end of a run (a ledger gone by then changes nothing)."""
    with contextlib.suppress(LedgerUnavailable):
        await ledger.leave(key, waiter_id)


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
    projects: dict[str, ProjectSpec], options: RunOptions, sandbox_names: Mapping[str, str]
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
    names = {role: sandbox_names.get(role, role) for role in projects}
    seeded = _seeded_roles(projects, options.sandbox_from)
    async with sandbox_projects(names, seeded) as (base_url, keys):
        yield {role: ProjectAccess(role, base_url, keys[role]) for role in projects}


def _seeded_roles(
    projects: Mapping[str, ProjectSpec], given: tuple[tuple[str | None, Path], ...]
) -> dict[str, Path] | None:
    """``--sandbox-from`` by role: a bare SNAP seeds ``source`` if the job has one, else
    ``target``; a role the job does not have, or one seeded twice, is a usage error."""
    if not given:
        return None
    seeded: dict[str, Path] = {}
    default = "source" if "source" in projects else "target"
    for role, snapshot in given:
        role = role or default
        if role not in projects:
            raise UserError(
                f"--sandbox-from {role}={snapshot}: this job has no [{role}]; its projects are "
                + ", ".join(f"[{r}]" for r in projects)
            )
        if role in seeded:
            raise UserError(f"--sandbox-from gives [{role}] two snapshots; give it one")
        seeded[role] = snapshot
    return seeded


async def _open_clients(
    stack: AsyncExitStack,
    job: JobDefinition[JobSpec],
    options: RunOptions,
    state: StateDir,
    access: dict[str, ProjectAccess],
    shared: SharedLanes | None = None,
) -> dict[str, ConsoleClient]:
    """One session, governor and client per distinct project; roles sharing a key share them.

    A role of ``shared.roles`` gets the lane the fleet keeps for its project (one session, one
    governor, its GET answers shared), in a client of its own (its own request counts)."""
    limits = job.spec.limits
    concurrency = options.concurrency or limits.concurrency
    by_project: dict[tuple[str, str], ConsoleClient] = {}
    clients = {}
    for role, project in access.items():
        identity = (project.base_url, project.api_key)
        if identity not in by_project:

            async def lane(
                opened: AsyncExitStack, role: str = role
            ) -> tuple[aiohttp.ClientSession, RateGovernor]:
                session = await opened.enter_async_context(
                    aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))
                )
                governor = RateGovernor(
                    role,
                    mutation_windows=limits.mutation_windows(),
                    read_windows=limits.read_windows(),
                    concurrency=concurrency,
                    store=SendTimeStore(state.governor_file(role)),
                    windows_given=limits.mutation_rate_given(),
                )
                return session, governor

            reads = None
            if shared is not None and role in shared.roles:
                session, governor, reads = await shared.lane(identity, lane)
            else:
                session, governor = await lane(stack)
            by_project[identity] = ConsoleClient(
                project=role,
                base_url=project.base_url,
                api_key=project.api_key,
                session=session,
                governor=governor,
                retry=options.retry,
                reads=reads,
            )
        clients[role] = by_project[identity]
    return clients


class SharedLanes:
    """The lanes of projects several jobs of a fleet use at once (a clone's source, read by
    every target's job): one session and one governor per project, so its concurrency, windows
    and 429 pauses hold for all of them together, and one set of GET answers, so the project is
    read once. ``roles``: the roles that share (never one a job writes to alone)."""

    def __init__(self, stack: AsyncExitStack, roles: frozenset[str]) -> None:
        self.roles = roles
        self._stack = stack
        self._lanes: dict[tuple[str, str], tuple[aiohttp.ClientSession, RateGovernor, SharedReads]]
        self._lanes = {}
        self._lock = anyio.Lock()

    async def lane(
        self,
        identity: tuple[str, str],
        make: Callable[[AsyncExitStack], Awaitable[tuple[aiohttp.ClientSession, RateGovernor]]],
    ) -> tuple[aiohttp.ClientSession, RateGovernor, SharedReads]:
        async with (
            self._lock
        ):  # the jobs open at once: the first makes the lane, on the fleet's stack
            if identity not in self._lanes:
                session, governor = await make(self._stack)
                self._lanes[identity] = (session, governor, SharedReads())
            return self._lanes[identity]
