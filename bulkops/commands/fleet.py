"""Jobs over several projects (``[[sources]]``, ``[[targets]]``): one single-project job each, at once.

A job naming N projects fans out into N *members*: the same job with ``[source]``/``[target]``
set to one project (``JobDefinition.members``), its state in ``<state>/projects/<name>/``, an
export's output in ``<dir>/<name>/``. They run concurrently in one event loop, each through the
very pipeline a one-project job runs (``run.run_job``, ``planned.*``; ``bulkops.commands.member``
names the few seams), with clients of its own and so a governor lane of its own: a project
paused on a 429, or waiting for its windows, never holds another up. A project every member
uses (a clone's source) has one lane for all of them, and its answers are read once
(``session.SharedLanes``).

The fleet itself holds the lock of the top state directory, checks every key and output folder
before the first request, opens every project (one sandbox for all), refuses targets that are
one project, runs the members under one signal guard and one progress board, and ends with one
summary; an export then writes ``<dir>/manifest.json``, last. A member that fails does not stop
the others; a re-run resumes each project where it stopped and leaves finished ones alone.

Layout::

    <state>/lock, run.json, log.jsonl   the fleet's run: each project's outcome and summary
    <state>/job.toml                    the job file as planned (a fleet's undo needs it)
    <state>/projects/<name>/            each project's state, exactly as a single job's
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import structlog

from bulkops import human, logs, redact
from bulkops.commands import member, signals
from bulkops.commands.member import Member
from bulkops.commands.progress import Board
from bulkops.commands.run import EXIT_ABORTED, EXIT_FAILED_ITEMS, EXIT_INTERRUPTED, EXIT_OK
from bulkops.commands.session import (
    Connection,
    ProjectAccess,
    RunOptions,
    SharedLanes,
    api_key,
    open_projects,
    resolve_state_dir,
    same_projects_flags,
)
from bulkops.engine.state import COMPLETE, StateDir
from bulkops.errors import BulkopsError, Interrupted, UserError
from bulkops.jobs import is_planned, kind_of, reading_kind
from bulkops.jobs.spec import JobDefinition, JobSpec
from bulkops.output.files import write_json_atomic_async
from bulkops.output.publish import publish_org_manifest

log = structlog.get_logger("bulkops.fleet")

PROJECTS = "projects"
#: One project's command: ``run_job``, ``planned.plan_command``, ... (its job, its options).
MemberCommand = Callable[[JobDefinition[JobSpec], RunOptions], Awaitable[int]]
#: A job's single-project jobs by project name (``JobDefinition.members``): built once per
#: command and handed down, as building them copies and validates the spec once per project.
Members = dict[str, JobDefinition[JobSpec]]


def is_fleet_state(state: StateDir) -> bool:
    """Whether a state directory holds the run of a job over several projects."""
    run = state.read_run() or {}
    return isinstance(run.get(PROJECTS), dict)


def member_state(state: StateDir, name: str) -> StateDir:
    return StateDir(state.root / PROJECTS / name)


# -- commands -------------------------------------------------------------------------------
async def run_fleet(job: JobDefinition[JobSpec], options: RunOptions) -> int:
    """``bulkops run`` of a job over several projects (an export, or plan-and-apply)."""
    from bulkops.commands import planned
    from bulkops.commands.run import run_job

    command = planned.run_planned if is_planned(job.kind) else run_job
    return await _fan_out(job, options, command, resume=True)


async def plan_fleet(job: JobDefinition[JobSpec], options: RunOptions) -> int:
    """``bulkops plan`` of a job over several projects: one plan per project."""
    from bulkops.commands import planned

    return await _fan_out(job, options, planned.plan_command, resume=False)


async def saved_fleet(state: StateDir, options: RunOptions) -> int:
    """``bulkops apply`` / ``undo`` of a fleet's plans: each project's, at once."""
    from bulkops.commands import planned

    undo = options.command == "undo"
    saved = planned.undo_command if undo else planned.apply_command

    async def command(job: JobDefinition[JobSpec], options: RunOptions) -> int:
        return await saved(options)

    async with state.exclusive_async(options.command):
        logs.open_log_file(state.log_file)
        run, job = await anyio.to_thread.run_sync(_saved_job, state, undo)
        members = job.members()
        names = [name for name in run.get(PROJECTS, {}) if name in members]
        async with _opened(job, members, options, state, names) as (connections, failed):
            _refuse_one_project_twice(job, connections)
            if undo:  # kept beside the plan's run, as a single job's undo is
                record = _undo_record(run)
                file = state.root / "undo" / "run.json"
            else:
                record, file = run, state.run_file
                run.update(command="apply", status="running", resumed_at=time.time())
            return await _run_members(
                job, members, options, state, record, file, command, connections, failed
            )


def _saved_job(state: StateDir, undo: bool) -> tuple[dict[str, Any], JobDefinition[JobSpec]]:
    """The fleet's saved run and the job its plans were made from."""
    from bulkops.commands import planned

    run = state.read_run() or {}
    return run, planned.planned_job(state, run, for_undo=undo)


def _undo_record(run: dict[str, Any]) -> dict[str, Any]:
    return {
        **{k: run.get(k) for k in ("job", "kind", "job_file", "job_digest")},
        "run_id": uuid.uuid4().hex[:12],
        "parent_run_id": run.get("run_id"),
        "command": "undo",
        "status": "running",
        "started_at": time.time(),
        PROJECTS: {},
    }


async def _fan_out(
    job: JobDefinition[JobSpec], options: RunOptions, command: MemberCommand, *, resume: bool
) -> int:
    state = await resolve_state_dir(job, options)
    members = job.members()  # built once: each is a copy of the job's spec (pydantic validates)
    await anyio.to_thread.run_sync(_check_members, job, members, options)
    _refuse_one_key_twice(job, options)
    async with state.exclusive_async(options.command):
        if is_planned(job.kind):  # before the fleet's own run record is replaced
            from bulkops.commands import planned

            for name in members:
                await anyio.to_thread.run_sync(
                    planned.refuse_replacing_another_plan, member_state(state, name), job, options
                )
        logs.open_log_file(state.log_file)
        resume, finished = await anyio.to_thread.run_sync(_left_to_run, state, job, options, resume)
        names = [name for name in members if name not in finished]
        async with _opened(job, members, options, state, names) as (connections, failed):
            _refuse_one_project_twice(job, connections)
            run, _ = await state.begin_async(
                job, fresh=options.fresh, command=options.command, resume=resume
            )
            kept = {name: run.get(PROJECTS, {}).get(name, {}) for name in finished}
            run[PROJECTS] = {name: kept.get(name, {}) for name in members}
            await state.write_run_async(run)
            if finished:
                log.info(
                    "bulkops.fleet.resumed",
                    done=sorted(finished),
                    left=names,
                    text=f"resuming: {human.listing(sorted(finished))} finished already",
                )
            return await _run_members(
                job, members, options, state, run, state.run_file, command, connections, failed
            )


def _check_members(job: JobDefinition[JobSpec], members: Members, options: RunOptions) -> None:
    """Every member's keys and (for an export) output folder, before any request."""
    many = job.spec.many_role
    for name, single in members.items():
        for role, project in ({} if options.sandbox else single.spec.projects()).items():
            api_key(project.api_key_env, f"api_key_env of {_table(role, many, name)} in {job.path}")
        if not is_planned(job.kind):
            reading_kind(job.kind).preflight(single)


def _left_to_run(
    state: StateDir, job: JobDefinition[JobSpec], options: RunOptions, resume: bool
) -> tuple[bool, set[str]]:
    """Whether this run resumes the fleet's last one, and the projects that finished already."""
    resume = resume and _resumes(state, job)
    return resume, _finished_members(state) if resume and not options.fresh else set()


def _resumes(state: StateDir, job: JobDefinition[JobSpec]) -> bool:
    """Whether ``run`` resumes the fleet's last run: an export's unfinished one (as a single
    export does); a job that writes only after an apply cut short or with failed projects,
    of the same job file (otherwise it plans anew, as a single one does)."""
    previous = state.read_run() or {}
    if not is_planned(job.kind):
        return True
    return previous.get("status") in ("running", "interrupted", "aborted", "incomplete") and (
        previous.get("job_digest") == job.digest and previous.get("command") == "run"
    )


def _finished_members(state: StateDir) -> set[str]:
    """Projects the fleet's unfinished run finished already: left alone when it resumes."""
    run = state.read_run() or {}
    if run.get("status") == COMPLETE:
        return set()
    done = set()
    for name, outcome in (run.get(PROJECTS) or {}).items():
        mine = member_state(state, name).read_run() or {}
        ok = outcome.get("exit_code") == EXIT_OK and mine.get("status") == COMPLETE
        if ok and mine.get("run_id") == outcome.get("run_id"):
            done.add(name)
    return done


def _refuse_one_key_twice(job: JobDefinition[JobSpec], options: RunOptions) -> None:
    """Two of ``[[targets]]`` whose variables hold one key are one project: writing it twice
    is refused before anything is sent (the job file already refuses one variable twice)."""
    if options.sandbox or not is_planned(job.kind):
        return
    role = job.spec.many_role
    seen: dict[tuple[str, str], str] = {}
    for project in job.spec.many():
        key = (api_key(project.api_key_env, f"[[{role}s]] {project.name}"), project.base_url)
        if key in seen:
            raise UserError(
                f"[[{role}s]] {seen[key]!r} and {project.name!r} hold the same key, so they are "
                f"the same project; set ${project.api_key_env} to the key of the project "
                f"{project.name!r} names."
            )
        seen[key] = project.name


# -- running the members --------------------------------------------------------------------
async def _run_members(
    job: JobDefinition[JobSpec],
    jobs: Members,
    options: RunOptions,
    state: StateDir,
    run: dict[str, Any],
    record: Path,
    command: MemberCommand,
    connections: dict[str, Connection],
    failed: dict[str, tuple[int, str]],
) -> int:
    """Every opened project's command at once, under one progress board; then the end."""
    structlog.contextvars.bind_contextvars(job=job.name, run_id=run["run_id"])
    started = time.monotonic()
    errors = dict(failed)
    line = member.StartLine(connections)
    members = {name: Member(name, conn, start=line) for name, conn in connections.items()}
    try:
        board = Board(members, live=options.progress)
        async with anyio.create_task_group() as group:
            group.start_soon(board.run)
            async with anyio.create_task_group() as lanes:
                for one in members.values():
                    lanes.start_soon(_lane, one, jobs[one.name], options, state, command, errors)
            group.cancel_scope.cancel()
        for one in members.values():
            _show_lines(one)
        return await _finish(
            job, state, run, record, members, errors, time.monotonic() - started, options
        )
    finally:
        structlog.contextvars.unbind_contextvars("job", "run_id")


@asynccontextmanager
async def _opened(
    job: JobDefinition[JobSpec],
    members: Members,
    options: RunOptions,
    state: StateDir,
    names: list[str],
) -> Any:
    """Open every project at once (each its own clients); a project that cannot be opened is
    a failed project, not a failed fleet. A project every member uses (a clone's source) has one
    lane for all of them (``SharedLanes``)."""
    async with AsyncExitStack() as stack:
        access = await stack.enter_async_context(_access(job, members, options, names))
        common = {role for one in members.values() for role in one.spec.projects()}
        shared = SharedLanes(stack, frozenset(common - {job.spec.many_role}))
        connections: dict[str, Connection] = {}
        failed: dict[str, tuple[int, str]] = {}

        async def open_one(name: str) -> None:
            single = members[name]
            mine = dataclasses.replace(options, state_dir=member_state(state, name).root)
            where = member_state(state, name)
            try:
                connections[name] = await stack.enter_async_context(
                    open_projects(single, mine, where, access[name], shared)
                )
            except (BulkopsError, Interrupted) as exc:
                failed[name] = _failure(exc)

        async with anyio.create_task_group() as group:
            for name in names:
                group.start_soon(open_one, name)
        yield {name: connections[name] for name in names if name in connections}, failed


@asynccontextmanager
async def _access(
    job: JobDefinition[JobSpec], members: Members, options: RunOptions, names: list[str]
) -> Any:
    """Per member, where each of its roles is: the job file's keys, or one sandbox for all."""
    many = job.spec.many_role
    if not options.sandbox:
        found = {}
        for name in names:
            found[name] = {
                role: ProjectAccess(
                    role,
                    options.base_url or spec.base_url,
                    api_key(spec.api_key_env, f"api_key_env of {_table(role, many, name)}"),
                    spec.api_key_env,
                )
                for role, spec in members[name].spec.projects().items()
            }
        yield found
        return
    from bulkops.commands.sandbox import sandbox_fleet

    demo = kind_of(job.kind).sandbox_projects
    templates = {role: demo.get(role, role) for role in job.spec.projects()}  # shared roles
    templates.update({name: demo.get(str(many), str(many)) for name in names})
    async with sandbox_fleet(templates, _seeded(job, options)) as (base_url, keys):
        yield {
            name: {
                role: ProjectAccess(role, base_url, keys[name if role == many else role])
                for role in members[name].spec.projects()
            }
            for name in names
        }


def _table(role: str, many: str | None, name: str) -> str:
    return f"[[{role}s]] {name!r}" if role == many else f"[{role}]"


def _seeded(job: JobDefinition[JobSpec], options: RunOptions) -> dict[str, Path] | None:
    """``--sandbox-from NAME=SNAP`` (a project of the list, or a shared role such as a clone's
    ``source``); a bare SNAP seeds the shared ``source`` if there is one."""
    if not options.sandbox_from:
        return None
    names = [project.name for project in job.spec.many()]
    shared = list(job.spec.projects())
    seeded: dict[str, Path] = {}
    for given, snapshot in options.sandbox_from:
        key = given or (shared[0] if shared else None)
        if key is None or key not in [*names, *shared]:
            choices = ", ".join([*(f"[{r}]" for r in shared), *names])
            what = f"{given}={snapshot}" if given else str(snapshot)
            raise UserError(
                f"--sandbox-from {what}: give the name of the project to seed, NAME=SNAP; "
                f"this job's projects are {choices}"
            )
        if key in seeded:
            raise UserError(f"--sandbox-from gives {key!r} two snapshots; give it one")
        seeded[key] = snapshot
    return seeded


def _refuse_one_project_twice(
    job: JobDefinition[JobSpec], connections: dict[str, Connection]
) -> None:
    """Two targets that open one project (two keys of it) would write it twice: refused
    before anything is sent; so is a target that is the clone's source."""
    many = job.spec.many_role
    if not is_planned(job.kind) or many is None:
        return
    seen: dict[str, str] = {}
    for name, connection in connections.items():
        identity = connection.identities[many]
        if identity.id in seen:
            raise UserError(
                f"[[{many}s]] {seen[identity.id]!r} and {name!r} are the same project "
                f"({identity.describe()}): both keys open it. Give each its own project's key."
            )
        seen[identity.id] = name


async def _lane(
    one: Member,
    single: JobDefinition[JobSpec],
    options: RunOptions,
    state: StateDir,
    command: MemberCommand,
    errors: dict[str, tuple[int, str]],
) -> None:
    """One project's command, through the single-project pipeline; its failure is its own."""
    mine = dataclasses.replace(options, state_dir=member_state(state, one.name).root)
    structlog.contextvars.bind_contextvars(project_name=one.name)
    with member.acting_as(one):
        try:
            one.exit_code = await signals.member(command, single, mine)
        except (BulkopsError, Interrupted) as exc:
            errors[one.name] = _failure(exc)
            one.exit_code = errors[one.name][0]
        finally:  # ended, however: the others need not wait for it to start applying
            if one.start is not None:
                one.start.reach(one.name)


def _failure(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, Interrupted):
        return EXIT_INTERRUPTED, "interrupted before it finished"
    code = exc.exit_code if isinstance(exc, BulkopsError) else EXIT_ABORTED
    return code, redact.text(str(exc))


def _show_lines(one: Member) -> None:
    """What a project's pipeline said for people (its plan), under the project's name."""
    if not one.lines:
        return
    human.say(f"== {one.name} ==")
    for text, err in one.lines:
        human.say(text, err=err)


# -- the end --------------------------------------------------------------------------------
def fleet_exit(codes: list[int]) -> int:
    """One exit code for the fleet: 130 if any project was interrupted; 0 if all are complete;
    the projects' own code if they all failed alike (4: all aborted); else 3 (some failed)."""
    if EXIT_INTERRUPTED in codes:
        return EXIT_INTERRUPTED
    failing = {code for code in codes if code != EXIT_OK}
    if not failing:
        return EXIT_OK
    if len(failing) == 1 and EXIT_OK not in codes:
        return failing.pop()
    return EXIT_FAILED_ITEMS


async def _finish(
    job: JobDefinition[JobSpec],
    state: StateDir,
    run: dict[str, Any],
    record: Path,
    members: dict[str, Member],
    errors: dict[str, tuple[int, str]],
    elapsed: float,
    options: RunOptions,
) -> int:
    outcomes: dict[str, dict[str, Any]] = run.setdefault(PROJECTS, {})
    for name in [*members, *errors]:
        one = members.get(name)
        code, error = errors.get(name, (one.exit_code if one else EXIT_ABORTED, ""))
        mine = (one.run if one else None) or {}
        outcomes[name] = {
            "exit_code": code if code is not None else EXIT_ABORTED,
            "status": mine.get("status") or ("invalid" if code == 2 else "failed"),
            "run_id": mine.get("run_id"),
            "state": str(member_state(state, name).root),
            "error": error or None,
            "summary": mine.get("summary") or {},
        }
    codes = [int(outcome["exit_code"]) for outcome in outcomes.values()]
    exit_code = fleet_exit(codes)
    failed = [name for name, outcome in outcomes.items() if outcome["exit_code"] != EXIT_OK]
    summary: dict[str, Any] = {
        "exit_code": exit_code,
        "elapsed_s": round(elapsed, 3),
        "failed_projects": failed,
        "projects": {name: _brief(outcome) for name, outcome in outcomes.items()},
    }
    if not is_planned(job.kind) and exit_code != EXIT_INTERRUPTED:
        summary["manifest"] = await _publish_index(job, state, run, outcomes)
    status = COMPLETE if exit_code == EXIT_OK else _STATUS.get(exit_code, "incomplete")
    run.update(status=status, finished_at=time.time(), exit_code=exit_code, summary=summary)
    await anyio.to_thread.run_sync(lambda: record.parent.mkdir(parents=True, exist_ok=True))
    await write_json_atomic_async(record, redact.deep(run))
    log.info(
        "bulkops.run.finished",
        job=job.name,
        run_id=run["run_id"],
        status=status,
        exit_code=exit_code,
        failed_projects=failed,
    )
    if logs.stderr_is_json():
        log.info(
            "bulkops.run.summary",
            job=job.name,
            run_id=run["run_id"],
            status=status,
            summary=summary,
        )
    else:
        from bulkops.commands.run import show_summary

        await show_summary(run, state.root)
        _next_step(job, state, run, exit_code, options)
    await logs.aclose_log_file()
    return exit_code


_STATUS = {2: "invalid", 3: "incomplete", 4: "aborted", 130: "interrupted"}


def _brief(outcome: dict[str, Any]) -> dict[str, Any]:
    """A project's part of the fleet's summary: its own summary, with how it ended."""
    return {
        "exit_code": outcome["exit_code"],
        "status": outcome["status"],
        "error": outcome["error"],
        "state": outcome["state"],
        **{k: v for k, v in outcome["summary"].items() if k != "exit_code"},
    }


async def _publish_index(
    job: JobDefinition[JobSpec],
    state: StateDir,
    run: dict[str, Any],
    outcomes: dict[str, dict[str, Any]],
) -> str:
    """``<dir>/manifest.json``, written last: every project, and whether its export is complete."""
    entries = [
        {
            "name": name,
            "dir": name,
            "run_id": outcome["run_id"],
            "complete": outcome["exit_code"] == EXIT_OK,
            "status": outcome["status"],
        }
        for name, outcome in outcomes.items()
    ]

    def publish() -> Path:
        return publish_org_manifest(
            job.resolve_path(job.spec.output.dir),  # type: ignore[attr-defined]
            entries,
            job=job.name,
            kind=job.kind,
            run_id=run["run_id"],
            started_at=float(run["started_at"]),
        )

    return str(await anyio.to_thread.run_sync(publish))


def _next_step(
    job: JobDefinition[JobSpec],
    state: StateDir,
    run: dict[str, Any],
    exit_code: int,
    options: RunOptions,
) -> None:
    if run.get("command") == "plan" and exit_code in (EXIT_OK, EXIT_FAILED_ITEMS):
        human.say(
            f"plans written under {state.root / PROJECTS}; apply them with: "
            f"bulkops apply {job.path}{same_projects_flags(options)}",
            err=True,
        )
