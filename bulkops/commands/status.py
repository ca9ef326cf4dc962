"""``bulkops status``: what a run did and what is left, read from its state directory."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from bulkops.commands.run import print_summary, rehearsal_flag
from bulkops.engine.journal import (
    Intent,
    Outcome,
    TaskDone,
    TaskFailed,
    TaskInvalidated,
    read_journal,
)
from bulkops.engine.state import StateDir
from bulkops.errors import StateError
from bulkops.human import count, plural


def find_state_dir(explicit: Path | None) -> StateDir:
    if explicit is not None:
        state = StateDir(explicit.resolve())
        if not state.run_file.exists():
            raise StateError(f"{explicit} holds no bulkops run (no run.json); check --state.")
        return state
    candidates = sorted(p.parent for p in (Path.cwd() / ".bulkops").glob("*/run.json"))
    if not candidates:
        raise StateError(
            "no run found under ./.bulkops; give the job file (e.g. `bulkops apply JOB.toml`) "
            "or --state DIR with the state directory of the run."
        )
    if len(candidates) > 1:
        names = ", ".join(str(c) for c in candidates)
        raise StateError(f"several runs found ({names}); pick one with --state DIR.")
    return StateDir(candidates[0])


def journal_overview(state: StateDir) -> dict[str, Any]:
    done: set[str] = set()
    failed: dict[str, str] = {}
    intents: set[str] = set()
    for record in read_journal(state.journal_file):
        match record:
            case TaskDone(task=task):
                done.add(task)
                failed.pop(task, None)
            case TaskFailed(task=task, error=error):
                failed[task] = error
            case TaskInvalidated(tasks=tasks):
                done.difference_update(tasks)
            case Intent(op=op):
                intents.add(op)
            case Outcome(op=op):
                intents.discard(op)
    return {
        "tasks_done": len(done),
        "tasks_failed": [{"task": t, "error": e} for t, e in sorted(failed.items())],
        "mutations_unreconciled": sorted(intents),
    }


def show_status(explicit: Path | None, *, as_json: bool) -> int:
    state = find_state_dir(explicit)
    run = state.read_run() or {}
    overview = journal_overview(state)
    if as_json:
        found: dict[str, Any] = {"state": str(state.root), "run": run, **overview}
        if isinstance(run.get("projects"), dict):  # a job over several projects: each one's
            found["projects"] = {
                name: {
                    "state": str(member.root),
                    "run": member.read_run(),
                    **journal_overview(member),
                }
                for name, member in _members(state, run).items()
            }
        sys.stdout.write(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    out = sys.stdout
    print(f"state: {state.root}", file=out)
    holder = state.holder()
    stopped = run.get("status") == "running" and holder is None
    if holder is not None:
        print(f"in progress now: bulkops ({holder}) is using this state directory", file=out)
    elif stopped:
        print(
            f"run {run.get('run_id')} stopped without finishing (killed, or the machine went "
            "down); re-run the same command to resume.",
            file=out,
        )
    if run.get("summary"):
        if holder is not None or stopped:
            print("the summary of its last finished attempt:", file=out)
        print_summary(run, file=out, state=state.root)
    else:
        print(
            f"run {run.get('run_id') or '(no id)'} of job {run.get('job') or '(unnamed)'}: "
            f"{run.get('status') or 'not started'}",
            file=out,
        )
    if isinstance(run.get("projects"), dict):
        return _fleet_status(state, run, holder, out)
    print(f"journal: {plural(overview['tasks_done'], 'task')} done", file=out)
    if overview["tasks_failed"]:
        print(f"left to retry: {plural(len(overview['tasks_failed']), 'failed task')}:", file=out)
        for item in overview["tasks_failed"][:50]:
            print(f"  {item['task']}: {item['error'] or 'failed'}", file=out)
        if len(overview["tasks_failed"]) > 50:
            more = len(overview["tasks_failed"]) - 50
            print(f"  ... and {more:,} more (`bulkops status --json` lists them all)", file=out)
    if overview["mutations_unreconciled"]:
        print(
            f"mutations sent without a recorded answer (reconciled on resume): "
            f"{len(overview['mutations_unreconciled']):,}",
            file=out,
        )
    if holder is not None:
        return 0
    if run.get("status") == "planned":
        print(
            f"apply the plan with: bulkops apply --state {state.root}{rehearsal_flag(state)}",
            file=out,
        )
    elif run.get("status") not in (None, "complete") and not stopped:
        print("re-run the same command to resume.", file=out)
    return 0


def _members(state: StateDir, run: dict[str, Any]) -> dict[str, StateDir]:
    return {name: StateDir(state.root / "projects" / name) for name in sorted(run["projects"])}


def _fleet_status(state: StateDir, run: dict[str, Any], holder: str | None, out: Any) -> int:
    """Each project of a job over several: its run's status, and what its journal holds."""
    for name, member in _members(state, run).items():
        mine = member.read_run() or {}
        overview = journal_overview(member)
        line = (
            f"{name}: run {mine.get('run_id') or '(none yet)'} {mine.get('status') or 'not started'}"
            f", {plural(overview['tasks_done'], 'task')} done"
        )
        if overview["tasks_failed"]:
            line += f", {plural(len(overview['tasks_failed']), 'failed task')} left to retry"
        if overview["mutations_unreconciled"]:
            line += (
                f", {count(len(overview['mutations_unreconciled']))} mutations sent without "
                "a recorded answer (reconciled on resume)"
            )
        print(line, file=out)
        for item in overview["tasks_failed"][:5]:
            print(f"  {item['task']}: {item['error'] or 'failed'}", file=out)
    if holder is None and run.get("status") == "planned":
        print(f"apply the plans with: bulkops apply --state {state.root}", file=out)
    elif holder is None and run.get("status") not in (None, "complete"):
        print("re-run the same command to resume.", file=out)
    return 0
