"""Jobs that write: plan, apply, verify, undo (read → plan → apply → verify).

- ``bulkops plan`` reads the projects, writes ``<state>/plan.json``, prints a readable summary; it
  sends no mutation.
- ``bulkops apply`` applies exactly the saved plan (refusing if the job file changed), then reads
  every written entity back and writes ``<state>/verify.json``.
- ``bulkops run`` plans then applies; a resumed run applies its saved plan without re-planning.
- ``bulkops undo`` turns the before-images of what apply wrote into a plan of its own, guarded the
  same way, and applies it from ``<state>/undo/``.
"""

from __future__ import annotations

import functools
import hashlib
import time
from pathlib import Path
from typing import Any

import anyio
import orjson
import structlog

from bulkops import human, redact
from bulkops.api.client import ConsoleClient, read_entity
from bulkops.commands import member
from bulkops.commands.progress import mutation_units
from bulkops.commands.run import (
    EXIT_ABORTED,
    EXIT_FAILED_ITEMS,
    EXIT_INTERRUPTED,
    aborted_summary,
    execute,
    finish,
    rehearsal_flag,
)
from bulkops.commands.session import (
    Connection,
    RunOptions,
    Session,
    api_key,
    connect,
    resolve_keys,
    resolve_state_dir,
    same_projects_flags,
    started,
)
from bulkops.commands.signals import interruptible
from bulkops.engine.apply import ApplyOptions, operation_task
from bulkops.engine.concurrency import gather
from bulkops.engine.graph import Task
from bulkops.engine.journal import Intent, Outcome, Record, read_journal
from bulkops.engine.plan import HeldReviews, Note, Operation, Plan
from bulkops.engine.state import COMPLETE, StateDir
from bulkops.errors import (
    ApiError,
    BulkopsError,
    Interrupted,
    StateError,
    UserError,
    WrongProject,
)
from bulkops.jobs import is_planned, load, load_spec, planned_kind
from bulkops.jobs.base import RunContext
from bulkops.jobs.semantics import SEMANTICS, differences
from bulkops.jobs.spec import JobDefinition, JobSpec
from bulkops.output.files import write_bytes_atomic, write_json_atomic, write_json_atomic_async

log = structlog.get_logger("bulkops.planned")

PLANNED = "planned"
#: Statuses of an apply that was cut short and must be finished before planning anew.
CUT_SHORT = ("running", "interrupted", "aborted")
#: Statuses of a run whose apply went through (with or without failed items).
APPLIED = ("complete", "incomplete")
#: The plan note a kind writes for an entity whose edit would change its own result again.
NOT_IDEMPOTENT = "not_idempotent"
#: The run record's digest of ``plan.json`` as ``plan`` wrote it.
PLAN_SHA256 = "plan_sha256"
#: The job file as planned, kept in the state directory.
PLANNED_JOB_FILE = "job.toml"


def _apply_options(job: JobDefinition[JobSpec], options: RunOptions) -> ApplyOptions:
    return ApplyOptions(
        semantics=SEMANTICS,
        force=options.force,
        respect_review=planned_kind(job.kind).respect_review(job),
    )


# -- commands -------------------------------------------------------------------------------
async def plan_command(job: JobDefinition[JobSpec], options: RunOptions) -> int:
    state = await resolve_state_dir(job, options)
    projects = resolve_keys(job, options)
    _refuse_same_keys(job, options)
    async with state.exclusive_async("plan"):
        await anyio.to_thread.run_sync(_refuse_planning, state, job, options)
        async with connect(job, options, state, projects) as connection:
            _refuse_same_project(connection)
            run, _ = await state.begin_async(job, fresh=options.fresh, command="plan", resume=False)
            with started(connection, run, resumed=False) as session:
                try:
                    plan = await interruptible(lambda: _make_plan(session))
                except (BulkopsError, Interrupted) as exc:
                    return await _stopped(session, exc)
        run.update(status=PLANNED, mutations_planned=plan.mutation_count())
        await state.write_run_async(run)
    member.hint(
        f"plan written to {state.plan_file}; apply it with: bulkops apply --state {state.root}"
        + same_projects_flags(options)
    )
    failed = [note.subject for note in plan.notes if isinstance(note, Note) and note.fail]
    if failed:  # a script's `plan && apply` must not go on as if every item were planned
        member.say(
            f"bulkops: {human.plural(len(failed), 'item')} could not be planned and will not be "
            "applied (listed above); exit 3",
            err=True,
        )
        return EXIT_FAILED_ITEMS
    return 0


async def apply_command(options: RunOptions) -> int:
    state = await _found_state(options)
    async with state.exclusive_async("apply"):
        run, job, plan = await anyio.to_thread.run_sync(_saved_plan, state)
        _check_rehearsal(plan, options)
        projects = resolve_keys(job, options)
        async with connect(job, options, state, projects) as connection:
            _check_bound(plan, connection)
            run["command"] = "apply"
            with started(connection, run, resumed=True) as session:
                exit_code, summary = await _apply(session, plan)
        return await finish(state, run, exit_code, summary)


async def run_planned(job: JobDefinition[JobSpec], options: RunOptions) -> int:
    state = await resolve_state_dir(job, options)
    projects = resolve_keys(job, options)
    _refuse_same_keys(job, options)
    async with state.exclusive_async("run"):
        # An apply cut short (kill, interrupt, fatal error) is finished as planned, never re-planned;
        # otherwise plan anew: a new plan sees edits made since.
        cut_short, saved = await anyio.to_thread.run_sync(_cut_short_plan, state, job, options)
        if saved is not None:
            _check_rehearsal(saved, options)
        async with connect(job, options, state, projects) as connection:
            if saved is None:
                _refuse_same_project(connection)
            else:
                _check_bound(saved, connection)
            run, resumed = await state.begin_async(
                job, fresh=options.fresh, command="run", resume=cut_short
            )
            with started(connection, run, resumed=resumed) as session:
                if resumed and saved is not None:
                    plan = saved
                else:
                    try:
                        plan = await interruptible(lambda: _make_plan(session))
                    except (BulkopsError, Interrupted) as exc:
                        return await _stopped(session, exc)
                exit_code, summary = await _apply(session, plan)
        return await finish(state, run, exit_code, summary)


def _cut_short_plan(
    state: StateDir, job: JobDefinition[JobSpec], options: RunOptions
) -> tuple[bool, Plan | None]:
    """Was the last apply cut short, and if so its saved plan (None: there is none, so the job
    is planned anew, unless that would repeat a finished apply by accident)."""
    previous = state.read_run() or {}
    cut_short = previous.get("status") in CUT_SHORT and not options.fresh
    saved = _reviewed_plan(state, previous) if cut_short and state.plan_file.exists() else None
    if saved is None:
        _refuse_repeating(state, options)
        refuse_replacing_another_plan(state, job, options)
    return cut_short, saved


async def undo_command(options: RunOptions) -> int:
    state = await _found_state(options)
    async with state.exclusive_async("undo"):
        run, job, plan = await anyio.to_thread.run_sync(_undoable_plan, state)
        _check_rehearsal(plan, options)
        undo_state = StateDir(state.root / "undo", governor_root=state.root)
        projects = resolve_keys(job, options)
        async with connect(job, options, undo_state, projects) as connection:
            _check_bound(plan, connection)
            undo_run, resumed, undo_plan = await anyio.to_thread.run_sync(
                _begin_undo, job, state, undo_state, run, plan
            )
            member.say(f"undo: {undo_plan.mutation_count()} entities to restore", err=True)
            with started(connection, undo_run, resumed=resumed) as session:
                exit_code, summary = await _apply(session, undo_plan)
        return await finish(undo_state, undo_run, exit_code, summary)


async def _found_state(options: RunOptions) -> StateDir:
    """The state directory ``apply``/``undo`` work on (``--state``, or the one under ./.bulkops)."""
    from bulkops.commands.status import find_state_dir

    return await anyio.to_thread.run_sync(find_state_dir, options.state_dir)


def _saved_plan(state: StateDir) -> tuple[dict[str, Any], JobDefinition[JobSpec], Plan]:
    """What ``apply`` applies: the saved run, its job and plan (refused if applied already)."""
    run, job = _saved_run(state)
    _refuse_applying_twice(state, run)
    return run, job, _reviewed_plan(state, run)


def _undoable_plan(state: StateDir) -> tuple[dict[str, Any], JobDefinition[JobSpec], Plan]:
    """What ``undo`` restores from: the saved run, its job and the plan that was applied."""
    run, job = _saved_run(state, for_undo=True)
    if not planned_kind(job.kind).supports_undo:
        raise UserError(
            f"{job.kind} jobs have no undo: what a clone created stays in the target. Delete "
            "the copies there if you must (the plan in the state directory lists them)."
        )
    return run, job, _reviewed_plan(state, run)


def _begin_undo(
    job: JobDefinition[JobSpec],
    state: StateDir,
    undo_state: StateDir,
    run: dict[str, Any],
    plan: Plan,
) -> tuple[dict[str, Any], bool, Plan]:
    """Start (or resume) the undo run of ``run`` and return (its record, resumed?, its plan).

    An unfinished undo of an earlier apply is not resumed over a newer one's results."""
    parent = (undo_state.read_run() or {}).get("parent_run_id")
    undo_run, resumed = undo_state.begin(
        job, fresh=parent not in (None, run["run_id"]), command="undo"
    )
    undo_run["parent_run_id"] = run["run_id"]
    undo_state.write_run(undo_run)
    if not resumed or not undo_state.plan_file.exists():
        _undo_plan(job, state, plan).save(undo_state.plan_file)
    return undo_run, resumed, Plan.load(undo_state.plan_file)


# -- refusals: each before anything is sent or any state changes ----------------------------
def _refuse_planning(state: StateDir, job: JobDefinition[JobSpec], options: RunOptions) -> None:
    """What ``plan`` refuses before it reads anything: an apply to finish, an apply to repeat,
    another job file's plan to replace."""
    _refuse_replanning_over_an_apply(state, options)
    _refuse_repeating(state, options)
    refuse_replacing_another_plan(state, job, options)


def refuse_replacing_another_plan(
    state: StateDir, job: JobDefinition[JobSpec], options: RunOptions
) -> None:
    """A plan not yet applied, made from another job file of the same name, is someone's review
    in progress: replacing it quietly would have ``apply --state`` send a plan nobody read."""
    run = state.read_run()
    if options.fresh or run is None or run.get("status") != PLANNED:
        return
    planned_from = run.get("job_file")
    if not planned_from or planned_from == str(job.path):
        return  # the same file, perhaps edited: planning again is how a review is revised
    raise StateError(
        f"{state.root} holds a plan made from {planned_from} (run {run.get('run_id')}) that "
        f"was not applied; planning {job.path} there would replace it. Give {job.path.name} a "
        "state directory of its own (its own `name`, or --state), pass --fresh to discard that "
        f"plan, or apply it first: bulkops apply {planned_from}{rehearsal_flag(state)}"
    )


def _refuse_applying_twice(state: StateDir, run: dict[str, Any]) -> None:
    """A plan applied to the end is done: its preconditions describe a project that is gone, and
    re-applying it would only verify against a stale after-image. Plan again instead."""
    if run.get("status") != COMPLETE:
        return  # planned, or an apply cut short or with failed items: apply (again) finishes it
    undo = StateDir(state.root / "undo").read_run() or {}
    undone = undo.get("parent_run_id") == run.get("run_id") and undo.get("status") == COMPLETE
    raise StateError(
        f"the plan in {state.root} was applied already (run {run.get('run_id')})"
        + (" and undone since" if undone else "")
        + f"; to change the project again, plan again: `bulkops plan {run.get('job_file')}`."
    )


def _refuse_same_keys(job: JobDefinition[JobSpec], options: RunOptions) -> None:
    """A job that reads one project and writes another must not be given one project twice."""
    projects = job.spec.projects()
    if options.sandbox or not {"source", "target"} <= projects.keys():
        return
    source, target = projects["source"].api_key_env, projects["target"].api_key_env
    if api_key(source, "[source]") == api_key(target, "[target]"):
        raise UserError(
            f"${source} ([source]) and ${target} ([target]) hold the same key, so source and "
            "target are the same project; set the target's variable to the other project's key."
        )


def _refuse_same_project(connection: Connection) -> None:
    identities = connection.identities
    if not {"source", "target"} <= identities.keys():
        return
    if identities["source"].id == identities["target"].id:
        raise UserError(
            f"[source] and [target] are the same project ({identities['source'].describe()}): "
            "both keys open it. A clone needs two different projects; give [target] the key of "
            "the project to copy into."
        )


def _refuse_repeating(state: StateDir, options: RunOptions) -> None:
    """A finished apply of a plan with non-idempotent edits is not planned again by accident."""
    run = state.read_run()
    if options.again or run is None or run.get("status") not in APPLIED:
        return
    entities = _non_idempotent(state.plan_file)
    if not entities:
        return
    example = ", ".join(entities[:3]) + (
        f" and {len(entities) - 3} more" if len(entities) > 3 else ""
    )
    raise StateError(
        f"the last run in {state.root} applied edits that are not idempotent ({example}); "
        "planning the job again would apply them a second time. Pass --again if that is what "
        "you want."
    )


def _non_idempotent(plan_file: Path) -> list[str]:
    try:
        plan = Plan.load(plan_file)
    except StateError:
        return []
    return [note.subject for note in plan.notes if note.kind == NOT_IDEMPOTENT]


def _check_rehearsal(plan: Plan, options: RunOptions) -> None:
    """A sandbox plan is applied to the sandbox only, and a real plan never to a sandbox."""
    rehearsal = any(project.get("sandbox") for project in plan.projects.values())
    if rehearsal and not options.sandbox:
        raise WrongProject(
            "this plan is a rehearsal on the emulator; plan again without --sandbox to change a "
            "real project"
        )
    if options.sandbox and not rehearsal:
        planned = ", ".join(
            f"[{role}] {_describe_planned(p)}" for role, p in sorted(plan.projects.items())
        )
        raise WrongProject(
            f"this plan was made for real projects ({planned}); apply it without --sandbox, or "
            "plan again with --sandbox to rehearse"
        )


def _check_bound(plan: Plan, connection: Connection) -> None:
    """Every role's key must open the project the plan was read from."""
    for role, planned in sorted(plan.projects.items()):
        found = connection.identities.get(role)
        if found is not None and found.id == planned.get("id"):
            here = connection.access[role].base_url if role in connection.access else None
            if here is not None and here != planned.get("base_url"):
                log.warning(
                    "bulkops.plan.other_base_url",
                    role=role,
                    planned=planned.get("base_url"),
                    now=here,
                    text=f"[{role}] is the planned project, reached at {here} (planned at "
                    f"{planned.get('base_url')})",
                )
            continue
        access = connection.access.get(role)
        opened = found.describe() if found else "no project"
        via = f"the key in ${access.key_env}" if access and access.key_env else "the key given"
        at = f" at {access.base_url}" if access else ""
        raise WrongProject(
            f"the plan in {connection.state.root} was made for [{role}] project "
            f"{_describe_planned(planned)}, but {via} opens project {opened}{at}. Apply it with "
            "the key of the planned project, or plan again for this one."
        )


def _describe_planned(project: dict[str, Any]) -> str:
    name = (
        f"{project['name']} (id {project.get('id')})"
        if project.get("name")
        else (f"id {project.get('id')}")
    )
    return f"{name} at {project.get('base_url')}"


async def _stopped(session: Session, exc: BaseException) -> int:
    """A phase outside the task graph stopped: record why in the run, say it, exit."""
    if isinstance(exc, Interrupted):
        code, message = EXIT_INTERRUPTED, "interrupted while planning; nothing was sent."
    else:
        code = exc.exit_code if isinstance(exc, BulkopsError) else EXIT_ABORTED
        message = str(exc)
    return await finish(
        session.state, session.run, code, aborted_summary(code, message, session.clients)
    )


# -- phases ---------------------------------------------------------------------------------
async def _make_plan(session: Session) -> Plan:
    kind = planned_kind(session.job.kind)
    held = await anyio.to_thread.run_sync(_held_reviews, session.state)
    plan = await kind.build_plan(session.job, session.clients, held)
    plan.estimate = _estimate(plan, session.clients)
    plan.projects = _planned_projects(session)
    await plan.save_async(session.state.plan_file)
    session.run[PLAN_SHA256] = await anyio.to_thread.run_sync(_plan_digest, session.state)
    await anyio.to_thread.run_sync(_keep_job_file, session.job, session.state)
    for line in kind.render_plan(plan):
        member.say(line)
    log.info("bulkops.plan.written", mutations=plan.mutation_count(), estimate=plan.estimate)
    return plan


def _planned_projects(session: Session) -> dict[str, dict[str, Any]]:
    """Which project each role was read from, so apply and undo refuse any other."""
    connection = session.connection
    assert connection is not None, "a planning session is always connected"
    return {
        role: {
            "id": identity.id,
            "name": identity.name,
            "base_url": connection.access[role].base_url,
            "sandbox": session.options.sandbox,
        }
        for role, identity in connection.identities.items()
    }


def _estimate(plan: Plan, clients: dict[str, ConsoleClient]) -> dict[str, Any]:
    estimate = {}
    for role, client in clients.items():
        count = sum(1 for op in plan.operations if op.role == role)
        if count:
            estimate[role] = {
                "mutations": count,
                "minimum_seconds": client.governor.minimum_seconds(count),
                "windows": [str(w.configured) for w in client.governor.windows],
                "windows_stated": client.governor.windows_given,
            }
    return estimate


async def _apply(session: Session, plan: Plan) -> tuple[int, dict[str, Any]]:
    session.run["status"] = "running"
    await session.state.write_run_async(session.run)
    # In a fleet, every project's first burst leaves at once (``member.StartLine``): the task
    # graph starts now, its reads too, but no mutation is sent before the line opens.
    opened = member.ready_to_apply()
    for client in session.clients.values():
        client.governor.hold_mutations(opened)
    apply_options = _apply_options(session.job, session.options)

    def tasks(ctx: RunContext[JobSpec]) -> list[Task]:
        return [
            operation_task(op, session.clients, ctx.journal, apply_options)
            for op in plan.operations
        ]

    def summary(ctx: RunContext[JobSpec]) -> dict[str, Any]:
        return _apply_summary(ctx, plan)

    exit_code, summary_data = await execute(
        session,
        tasks,
        summary,
        units=lambda ctx: mutation_units(ctx.scheduler, ctx.clients.values()),
    )
    with anyio.CancelScope(shield=True):  # even after an interrupt: they are held all the same
        held = await anyio.to_thread.run_sync(_record_held, session.state, plan)
    if exit_code == EXIT_INTERRUPTED:
        return exit_code, summary_data
    planned_failures = [note for note in plan.notes if isinstance(note, Note) and note.fail]
    if planned_failures:
        summary_data["failures"] += [
            {"task": "plan", "what": note.subject or "plan", "error": note.message}
            for note in planned_failures
        ]
        if exit_code == 0:
            exit_code = summary_data["exit_code"] = 3
    if exit_code in (0, 3):
        try:
            verification = await interruptible(lambda: _verify(session, plan, held))
        except Interrupted:
            summary_data["exit_code"] = EXIT_INTERRUPTED
            return EXIT_INTERRUPTED, summary_data
        summary_data["verify"] = {k: v for k, v in verification.items() if k != "entities"}
        if verification["differences"] and exit_code == 0:
            exit_code = summary_data["exit_code"] = 3
    return exit_code, summary_data


def _apply_summary(ctx: RunContext[Any], plan: Plan) -> dict[str, Any]:
    outcomes = _outcomes(ctx.journal.records)
    counts: dict[str, int] = {}
    for outcome in outcomes.values():
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    pending = [
        op.entity_id
        for op in plan.operations
        if op.id in outcomes and outcomes[op.id].status == "pending_review"
    ]
    return {
        "planned_mutations": plan.mutation_count(),
        "mutations_sent": sum(1 for o in outcomes.values() if o.sent),
        "outcomes": counts,
        "pending_review": pending,
        "notes": _notes_by_kind(plan),
    }


def _outcomes(records: list[Record]) -> dict[str, Outcome]:
    """The last outcome of each operation."""
    return {record.op: record for record in records if isinstance(record, Outcome)}


def _notes_by_kind(plan: Plan) -> dict[str, list[str]]:
    """What the plan noted, by kind, naming the items (e.g. experiments active in the source)."""
    grouped: dict[str, list[str]] = {}
    for note in plan.notes:
        names = grouped.setdefault(note.kind, [])
        if note.subject not in names:
            names.append(note.subject)
    return grouped


async def _verify(session: Session, plan: Plan, held: set[str]) -> dict[str, Any]:
    """Read every entity the plan wrote back and compare it with the after-images; ``held``:
    the operations whose change the server holds for review (they show the old state).

    The reads go at once; the governor's read lane decides how many are in flight.
    """
    expected: dict[tuple[str, str], dict[str, Any]] = {}
    ops_by_path: dict[tuple[str, str], Operation] = {}
    for op in plan.operations:
        key = (op.role, op.read_path)
        expected.setdefault(key, {}).update(op.expected)
        ops_by_path[key] = op
    found: dict[tuple[str, str], dict[str, Any]] = {}

    async def check(key: tuple[str, str]) -> None:
        op = ops_by_path[key]
        if op.id in held:  # it shows the old state on purpose, until the review is committed
            found[key] = {"role": op.role, "kind": op.kind, "id": op.entity_id,
                          "differences": {}, "pending_review": True}  # fmt: skip
            return
        found[key] = await _verify_one(session, op, expected[key])

    await gather(functools.partial(check, key) for key in expected)
    entities = [found[key] for key in expected]  # in the plan's order, whatever answered first
    report = {
        "checked": len(entities),
        "differences": sum(1 for e in entities if e["differences"]),
        "entities": entities,
    }
    await write_json_atomic_async(session.state.root / "verify.json", report)
    return report


def _held_reviews(state: StateDir) -> HeldReviews:
    """What earlier runs' changes are held for review on (``record_held``), by entity."""
    try:
        rows = orjson.loads(state.held_reviews_file.read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return {}
    if not isinstance(rows, list):
        return {}
    return {
        (row["role"], row["kind"], row["id"]): row["version"]
        for row in rows
        if isinstance(row, dict) and {"role", "kind", "id", "version"} <= set(row)
    }


def _record_held(state: StateDir, plan: Plan) -> set[str]:
    """The operations of this apply whose change the server holds for review. Their entities
    and versions then are remembered: a later plan leaves them alone while they show that
    version (nothing else may say a review is pending: a dynamic config has no ``activeReview``)."""
    ops = {op.id: op for op in plan.operations}
    before = _held_reviews(state)
    held = dict(before)
    pending = set()
    for op_id, outcome in _outcomes(read_journal(state.journal_file)).items():
        op = ops.get(op_id)
        if op is None or outcome.status != "pending_review":
            continue
        pending.add(op_id)
        if outcome.after.get("version") is not None:
            held[(op.role, op.kind, op.entity_id)] = outcome.after["version"]
    if held != before:
        rows = [{"role": r, "kind": k, "id": i, "version": v} for (r, k, i), v in held.items()]
        write_json_atomic(state.held_reviews_file, rows)
    return pending


async def _verify_one(session: Session, op: Operation, want: dict[str, Any]) -> dict[str, Any]:
    """One entity read back: its differences from ``want`` (an unreadable one is reported)."""
    entity: dict[str, Any] = {"role": op.role, "kind": op.kind, "id": op.entity_id}
    try:
        current = await read_entity(session.clients[op.role], op.read_path)
    except ApiError as exc:  # one unreadable entity is reported, not fatal to the rest
        return {**entity, "differences": {"(unverified)": redact.text(str(exc))}}
    diff = differences(current, want)
    if current and current.get("activeReview"):
        diff = {}  # a pending review shows the old state on purpose
    return {**entity, "differences": diff}


# -- state ----------------------------------------------------------------------------------
def _plan_digest(state: StateDir) -> str:
    return hashlib.sha256(state.plan_file.read_bytes()).hexdigest()


def _reviewed_plan(state: StateDir, run: dict[str, Any]) -> Plan:
    """The saved plan, as ``plan`` wrote it: one edited since (by hand, by a script) is refused,
    since what apply and undo send must be what the plan printed for review."""
    written = run.get(PLAN_SHA256)
    if written is not None and state.plan_file.exists() and _plan_digest(state) != written:
        raise StateError(
            f"{state.plan_file} changed since `bulkops plan` wrote it (run {run.get('run_id')}); "
            "a plan is applied or undone only as it was made and reviewed. Plan again: "
            f"`bulkops plan {run.get('job_file') or 'JOB.toml'}`."
        )
    return Plan.load(state.plan_file)


def _refuse_replanning_over_an_apply(state: StateDir, options: RunOptions) -> None:
    run = state.read_run()
    if run is None or run.get("status") not in CUT_SHORT or options.fresh:
        return
    if any(isinstance(r, Intent) for r in read_journal(state.journal_file)):
        raise StateError(
            f"{state.root} holds a plan whose apply began but did not finish. Finish it with "
            f"`bulkops apply --state {state.root}`, or pass --fresh to discard it and plan anew."
        )


def _keep_job_file(job: JobDefinition[JobSpec], state: StateDir) -> None:
    """The job file as planned, beside the plan: undo needs it even after the file is edited,
    moved or deleted (the plan itself holds every before-image)."""
    raw = job.path.read_bytes()
    if hashlib.sha256(raw).hexdigest() == job.digest:
        write_bytes_atomic(state.root / PLANNED_JOB_FILE, raw)


def _saved_run(
    state: StateDir, *, for_undo: bool = False
) -> tuple[dict[str, Any], JobDefinition[JobSpec]]:
    run = state.read_run() or {}
    if not state.plan_file.exists():
        raise StateError(_no_plan(state, run))
    if for_undo:
        _check_something_to_undo(state, run)
    return run, _planned_job(state, run, for_undo=for_undo)


def _planned_job(state: StateDir, run: dict[str, Any], *, for_undo: bool) -> JobDefinition[JobSpec]:
    """The job the plan was made from (one project's part of it, in a fleet)."""
    job = planned_job(state, run, for_undo=for_undo)
    opened = member.current()
    return job if opened is None else job.members()[opened.name]


def planned_job(state: StateDir, run: dict[str, Any], *, for_undo: bool) -> JobDefinition[JobSpec]:
    """The job the plan was made from. ``apply`` refuses a job file changed since (plan again to
    review what it does now); ``undo`` works from the copy kept beside the plan, whatever
    became of the file. Either uses the copy when the file is gone."""
    path = Path(run["job_file"])
    kept = state.root / PLANNED_JOB_FILE
    if kept.exists() and (for_undo or not path.exists()):
        return load_spec(str(kept))
    job = load(str(path))
    if job.digest != run.get("job_digest"):
        raise StateError(
            f"the job file {job.path} changed since the plan in {state.root} was made; "
            "plan again (`bulkops plan`) to review the new plan before applying it."
        )
    return job


def _no_plan(state: StateDir, run: dict[str, Any]) -> str:
    kind = run.get("kind")
    if kind and not is_planned(str(kind)):
        return f"{state.root} holds a {kind} run; {kind} jobs only read, so there is no plan."
    return f"{state.root} holds no plan; run `bulkops plan JOB.toml` first."


def _check_something_to_undo(state: StateDir, run: dict[str, Any]) -> None:
    if _sent_anything(state.journal_file):
        return
    previous = state.root / "previous"
    if _sent_anything(previous / "journal.jsonl"):
        raise StateError(
            f"the last run in {state.root} wrote nothing; the run before it did: undo that one "
            f"with `bulkops undo --state {previous}`."
        )
    if run.get("status") == PLANNED:
        raise StateError(
            f"the plan in {state.root} has not been applied yet, so there is nothing to undo; "
            f"apply it with `bulkops apply --state {state.root}`."
        )
    raise StateError(f"the last run in {state.root} wrote nothing, so there is nothing to undo.")


def _sent_anything(journal: Path) -> bool:
    return any(isinstance(r, Outcome) and r.sent for r in read_journal(journal))


def _undo_plan(job: JobDefinition[JobSpec], state: StateDir, plan: Plan) -> Plan:
    kind = planned_kind(job.kind)
    records = read_journal(state.journal_file)
    # An op whose answer was lost (or whose run was killed after sending) ends "already_applied"
    # with sent=False when reconciled; its intent record shows the change was still ours.
    intended = {r.op for r in records if isinstance(r, Intent)}
    sent = {
        r.op: r.after
        for r in records
        if isinstance(r, Outcome)
        and (
            (r.sent and r.status == "applied")
            or (r.status == "already_applied" and r.op in intended)
        )
    }
    operations = []
    for op in reversed(plan.operations):
        if op.id in sent:
            reverse = kind.undo_operation(op, sent[op.id])
            if reverse is not None:
                operations.append(reverse)
    return Plan(
        job=plan.job,
        kind=plan.kind,
        job_file=plan.job_file,
        job_digest=plan.job_digest,
        projects=plan.projects,
        operations=operations,
        notes=[
            Note(
                kind="undo",
                subject=f"restores the plan made at {time.ctime(plan.created_at)}",
                subject_kind="plan",
            )
        ],
    )
