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

import sys
import time
from pathlib import Path
from typing import Any, Protocol

import structlog

from bulkops import redact
from bulkops.api.client import ConsoleClient
from bulkops.engine.apply import ApplyOptions, operation_task, read_entity
from bulkops.engine.compare import differences
from bulkops.engine.journal import read_journal
from bulkops.engine.plan import Operation, Plan
from bulkops.engine.runner import (
    EXIT_ABORTED,
    EXIT_INTERRUPTED,
    Interrupted,
    RunOptions,
    Session,
    aborted_summary,
    execute,
    finish,
    interruptible,
    open_session,
    resolve_keys,
    resolve_state_dir,
)
from bulkops.engine.state import StateDir, write_json_atomic
from bulkops.errors import ApiError, BulkopsError, StateError, UserError
from bulkops.jobs import kind_module, load
from bulkops.jobs.base import RunContext
from bulkops.jobs.spec import JobDefinition

log = structlog.get_logger("bulkops.planned")

PLANNED = "planned"
#: Statuses of an apply that was cut short and must be finished before planning anew.
CUT_SHORT = ("running", "interrupted", "aborted")


class PlannedKind(Protocol):
    async def build_plan(self, job: JobDefinition, clients: dict[str, ConsoleClient]) -> Plan: ...

    def render_plan(self, plan: Plan) -> list[str]: ...

    def undo_operation(self, op: Operation, after: dict[str, Any]) -> Operation | None: ...


def is_planned(kind: str) -> bool:
    return hasattr(kind_module(kind), "build_plan")


def _apply_options(job: JobDefinition, options: RunOptions) -> ApplyOptions:
    job_options = getattr(job.spec, "options", None)
    return ApplyOptions(
        force=options.force,
        respect_review=bool(getattr(job_options, "respect_review", False)),
    )


# -- commands -------------------------------------------------------------------------------
async def plan_command(job: JobDefinition, options: RunOptions) -> int:
    projects = resolve_keys(job, options)
    state = resolve_state_dir(job, options)
    _refuse_replanning_over_an_apply(state, options)
    run, _ = state.begin(job, fresh=options.fresh, command="plan", resume=False)
    async with open_session(job, options, state, run, projects, resumed=False) as session:
        try:
            plan = await interruptible(lambda: _make_plan(session))
        except (BulkopsError, Interrupted) as exc:
            return _stopped(session, exc)
    run.update(status=PLANNED, mutations_planned=plan.mutation_count())
    state.write_run(run)
    print(f"plan written to {state.plan_file}; apply it with: bulkops apply --state {state.root}")
    return 0


async def apply_command(options: RunOptions) -> int:
    state, run, job = _saved_run(options)
    plan = Plan.load(state.plan_file)
    projects = resolve_keys(job, options)
    run.update(status="running", command="apply")
    state.write_run(run)
    async with open_session(job, options, state, run, projects, resumed=True) as session:
        exit_code, summary = await _apply(session, plan)
    return finish(state, run, exit_code, summary)


async def run_planned(job: JobDefinition, options: RunOptions) -> int:
    projects = resolve_keys(job, options)
    state = resolve_state_dir(job, options)
    previous = state.read_run() or {}
    # An apply cut short (kill, interrupt, fatal error) is finished as planned; otherwise plan anew,
    # which is always safe: plans are idempotent, and a new plan sees edits made since.
    cut_short = previous.get("status") in CUT_SHORT
    run, resumed = state.begin(job, fresh=options.fresh, command="run", resume=cut_short)
    async with open_session(job, options, state, run, projects, resumed=resumed) as session:
        if resumed and state.plan_file.exists():
            plan = Plan.load(state.plan_file)
        else:
            try:
                plan = await interruptible(lambda: _make_plan(session))
            except (BulkopsError, Interrupted) as exc:
                return _stopped(session, exc)
        exit_code, summary = await _apply(session, plan)
    return finish(state, run, exit_code, summary)


async def undo_command(options: RunOptions) -> int:
    state, run, job = _saved_run(options, for_undo=True)
    if not getattr(kind_module(job.kind), "SUPPORTS_UNDO", True):
        raise UserError(
            f"{job.kind} jobs have no undo: what a clone created stays in the target. Delete the "
            "copies there if you must (the plan in the state directory lists them)."
        )
    plan = Plan.load(state.plan_file)
    undo_state = StateDir(state.root / "undo", governor_root=state.root)
    projects = resolve_keys(job, options)
    parent = (undo_state.read_run() or {}).get("parent_run_id")
    # An unfinished undo of an earlier apply must not be resumed over a newer one's results.
    undo_run, resumed = undo_state.begin(
        job, fresh=parent not in (None, run["run_id"]), command="undo"
    )
    undo_run["parent_run_id"] = run["run_id"]
    undo_state.write_run(undo_run)
    if not resumed or not undo_state.plan_file.exists():
        _undo_plan(job, state, plan).save(undo_state.plan_file)
    undo_plan = Plan.load(undo_state.plan_file)
    print(f"undo: {undo_plan.mutation_count()} entities to restore", file=sys.stderr)
    async with open_session(
        job, options, undo_state, undo_run, projects, resumed=resumed
    ) as session:
        exit_code, summary = await _apply(session, undo_plan)
    return finish(undo_state, undo_run, exit_code, summary)


def _stopped(session: Session, exc: BaseException) -> int:
    """A phase outside the task graph stopped: record why in the run, say it, exit."""
    if isinstance(exc, Interrupted):
        code, message = EXIT_INTERRUPTED, "interrupted while planning; nothing was sent"
    else:
        code, message = getattr(exc, "exit_code", EXIT_ABORTED), str(exc)
    return finish(session.state, session.run, code, aborted_summary(code, message, session.clients))


# -- phases ---------------------------------------------------------------------------------
async def _make_plan(session: Session) -> Plan:
    kind: PlannedKind = kind_module(session.job.kind)
    plan = await kind.build_plan(session.job, session.clients)
    plan.estimate = _estimate(plan, session.clients)
    plan.save(session.state.plan_file)
    for line in kind.render_plan(plan):
        print(line)
    log.info("bulkops.plan.written", mutations=plan.mutation_count(), estimate=plan.estimate)
    return plan


def _estimate(plan: Plan, clients: dict[str, ConsoleClient]) -> dict[str, Any]:
    estimate = {}
    for role, client in clients.items():
        count = sum(1 for op in plan.operations if op.role == role)
        if count:
            estimate[role] = {
                "mutations": count,
                "minimum_seconds": client.governor.minimum_seconds(count),
                "windows": [str(w.configured) for w in client.governor.windows],
            }
    return estimate


async def _apply(session: Session, plan: Plan) -> tuple[int, dict[str, Any]]:
    session.run["status"] = "running"
    session.state.write_run(session.run)
    apply_options = _apply_options(session.job, session.options)
    results: dict[str, dict[str, Any]] = {}

    def tasks(ctx: RunContext) -> list:
        return [
            operation_task(
                op,
                session.clients,
                ctx.journal,
                apply_options,
                on_done=lambda op, result: results.__setitem__(op.id, result),
            )
            for op in plan.operations
        ]

    def summary(ctx: RunContext) -> dict[str, Any]:
        return _apply_summary(ctx, plan)

    exit_code, summary_data = await execute(session, tasks, summary)
    if exit_code == EXIT_INTERRUPTED:
        return exit_code, summary_data
    planned_failures = [note for note in plan.notes if note.get("fail")]
    if planned_failures:
        summary_data["failures"] += [
            {
                "task": "plan",
                "what": note.get("experiment") or note.get("entity") or "plan",
                "error": note["message"],
            }
            for note in planned_failures
        ]
        if exit_code == 0:
            exit_code = summary_data["exit_code"] = 3
    if exit_code in (0, 3):
        try:
            verification = await interruptible(lambda: _verify(session, plan))
        except Interrupted:
            summary_data["exit_code"] = EXIT_INTERRUPTED
            return EXIT_INTERRUPTED, summary_data
        summary_data["verify"] = {k: v for k, v in verification.items() if k != "entities"}
        if verification["differences"] and exit_code == 0:
            exit_code = summary_data["exit_code"] = 3
    return exit_code, summary_data


def _apply_summary(ctx: RunContext, plan: Plan) -> dict[str, Any]:
    outcomes: dict[str, dict[str, Any]] = {}
    for record in ctx.journal.records:
        if record.get("type") == "outcome":
            outcomes[record["op"]] = record
    counts: dict[str, int] = {}
    for outcome in outcomes.values():
        counts[outcome["status"]] = counts.get(outcome["status"], 0) + 1
    pending = [
        op.entity_id
        for op in plan.operations
        if outcomes.get(op.id, {}).get("status") == "pending_review"
    ]
    return {
        "planned_mutations": plan.mutation_count(),
        "mutations_sent": sum(1 for o in outcomes.values() if o.get("sent")),
        "outcomes": counts,
        "pending_review": pending,
        "notes": _notes_by_kind(plan),
    }


def _notes_by_kind(plan: Plan) -> dict[str, list[str]]:
    """What the plan noted, by kind, naming the items (e.g. experiments active in the source)."""
    grouped: dict[str, list[str]] = {}
    for note in plan.notes:
        item = note.get("experiment") or note.get("entity") or note.get("id") or "?"
        names = grouped.setdefault(note.get("kind", "note"), [])
        if item not in names:
            names.append(item)
    return grouped


async def _verify(session: Session, plan: Plan) -> dict[str, Any]:
    """Read every entity the plan wrote back and compare it with the after-images."""
    expected: dict[tuple[str, str], dict[str, Any]] = {}
    ops_by_path: dict[tuple[str, str], Operation] = {}
    for op in plan.operations:
        key = (op.role, op.read_path)
        expected.setdefault(key, {}).update(op.expected)
        ops_by_path[key] = op
    entities = []
    for (role, path), want in expected.items():
        op = ops_by_path[(role, path)]
        try:
            current = await read_entity(session.clients[role], path)
        except ApiError as exc:  # one unreadable entity is reported, not fatal to the rest
            entities.append(
                {
                    "role": role,
                    "kind": op.kind,
                    "id": op.entity_id,
                    "differences": {"(unverified)": redact.text(str(exc))},
                }
            )
            continue
        diff = differences(current, want)
        if current and current.get("activeReview"):
            diff = {}  # a pending review shows the old state on purpose
        entities.append({"role": role, "kind": op.kind, "id": op.entity_id, "differences": diff})
    report = {
        "checked": len(entities),
        "differences": sum(1 for e in entities if e["differences"]),
        "entities": entities,
    }
    write_json_atomic(session.state.root / "verify.json", report)
    return report


# -- state ----------------------------------------------------------------------------------
def _refuse_replanning_over_an_apply(state: StateDir, options: RunOptions) -> None:
    run = state.read_run()
    if run is None or run.get("status") not in CUT_SHORT or options.fresh:
        return
    if any(r.get("type") == "intent" for r in read_journal(state.journal_file)):
        raise StateError(
            f"{state.root} holds a plan whose apply began but did not finish. Finish it with "
            f"`bulkops apply --state {state.root}`, or pass --fresh to discard it and plan anew."
        )


def _saved_run(
    options: RunOptions, *, for_undo: bool = False
) -> tuple[StateDir, dict, JobDefinition]:
    from bulkops.status import find_state_dir

    state = find_state_dir(options.state_dir)
    run = state.read_run() or {}
    if not state.plan_file.exists():
        raise StateError(f"{state.root} holds no plan; run `bulkops plan JOB.toml` first.")
    job = load(run["job_file"])
    if job.digest != run.get("job_digest"):
        raise StateError(
            f"the job file {job.path} changed since the plan in {state.root} was made; "
            "plan again (`bulkops plan`) to review the new plan before applying it."
        )
    if for_undo and not _sent_anything(state.journal_file):
        previous = state.root / "previous"
        hint = (
            f" The run before it did write: undo that one with `bulkops undo --state {previous}`."
            if _sent_anything(previous / "journal.jsonl")
            else ""
        )
        raise StateError(
            f"the last run in {state.root} wrote nothing, so there is nothing to undo.{hint}"
        )
    return state, run, job


def _sent_anything(journal: Path) -> bool:
    return any(r.get("type") == "outcome" and r.get("sent") for r in read_journal(journal))


def _undo_plan(job: JobDefinition, state: StateDir, plan: Plan) -> Plan:
    kind: PlannedKind = kind_module(job.kind)
    records = read_journal(state.journal_file)
    # An op whose answer was lost (or whose run was killed after sending) ends "already_applied"
    # with sent=False when reconciled; its intent record shows the change was still ours.
    intended = {r["op"] for r in records if r.get("type") == "intent"}
    sent = {
        r["op"]: r.get("after") or {}
        for r in records
        if r.get("type") == "outcome"
        and (
            (r.get("sent") and r.get("status") == "applied")
            or (r.get("status") == "already_applied" and r["op"] in intended)
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
        operations=operations,
        notes=[{"kind": "undo", "id": f"restores the plan made at {time.ctime(plan.created_at)}"}],
    )
