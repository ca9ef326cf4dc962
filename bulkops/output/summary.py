"""The end-of-run summary for people, rendered from the summary dict kept in ``run.json``.

The dict stays machine-shaped (``status --json`` and tests read it); this module only turns it into
sentences and aligned columns. Every exit but 0 says why: what failed, how many entities differ
after verifying and where ``verify.json`` is, what aborted the run, or how far it got when
interrupted, and what to do next.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bulkops.human import count, duration, listing, path, plural, table, tally, value

#: Failures listed one per line; the rest are counted (``bulkops status`` lists them all).
FAILURES_SHOWN = 20

_HEADLINES = {
    0: "complete",
    2: "stopped: invalid input",
    3: "finished, but some items failed",
    4: "aborted",
    130: "interrupted",
}
_NOTE_LABELS = {
    "cannot_carry": "cannot carry",
    "not_setup_in_source": "created in setup",
    "differs": "differs in target",
    "selection": "selection",
}
_TASK_STATES = ("done", "failed", "skipped", "pending", "running", "waiting for children")
#: A finished run has nothing running: what the scheduler still counts so was cut short.
_TASK_WORDS = {
    "pending": "not started",
    "running": "cut short",
    "waiting for children": "cut short",
}


def summary_lines(run: dict[str, Any], *, state: Path | None = None) -> list[str]:
    summary = run.get("summary") or {}
    exit_code = summary.get("exit_code", run.get("exit_code"))
    elapsed = duration(_elapsed(run, summary))
    lines = [
        f"bulkops: {run.get('job') or 'job'} {_headline(run, exit_code)} in {elapsed} "
        f"(exit {exit_code}, run {run.get('run_id') or 'unknown'})"
    ]
    if isinstance(summary.get("projects"), dict):
        return lines + _fleet_lines(summary, exit_code)
    return lines + _project_lines(summary, exit_code, state, elapsed=elapsed, ending=True)


def _headline(run: dict[str, Any], exit_code: Any) -> str:
    headline = _HEADLINES.get(exit_code) if isinstance(exit_code, int) else None
    return headline or str(run.get("status") or "finished")


def _project_lines(
    summary: dict[str, Any], exit_code: Any, state: Path | None, *, elapsed: str, ending: bool
) -> list[str]:
    """What one project's run did (``ending``: and why it ended so, and what to do next)."""
    lines: list[str] = []
    job = summary.get("job") or {}
    lines += _job_lines(job, elapsed)
    lines += _verify_lines(summary.get("verify"), state)
    lines += _task_lines(summary)
    lines += _request_lines(summary.get("requests") or {})
    if ending:
        lines += _ending_lines(summary, exit_code, state)
    else:
        lines += _failure_lines(summary, state)
    return lines


# -- a job over several projects ------------------------------------------------------------
def _fleet_lines(summary: dict[str, Any], exit_code: Any) -> list[str]:
    """Per project: how it ended and what it did, indented under its name; then the index
    manifest of an export, the projects that failed, and what to do next."""
    projects: dict[str, dict[str, Any]] = summary["projects"]
    states: dict[str, int] = {}
    for project in projects.values():
        word = "complete" if project.get("exit_code") == 0 else str(project.get("status"))
        states[word] = states.get(word, 0) + 1
    lines = [f"  {plural(len(projects), 'project')}: {tally(states, sep=' ')}"]
    for name, project in projects.items():
        code = project.get("exit_code")
        headline = _HEADLINES.get(code, str(project.get("status"))) if isinstance(code, int) else ""
        lines.append(f"  {name}: {headline} (exit {code})")
        if project.get("error"):
            lines.append(f"    {project['error']}")
        state = Path(project["state"]) if project.get("state") else None
        took = duration(float(project.get("elapsed_s") or 0.0))
        lines += [
            "  " + line for line in _project_lines(project, code, state, elapsed=took, ending=False)
        ]
    if summary.get("manifest"):
        lines.append(f"  index of the projects' exports: {path(summary['manifest'])}")
    failed = summary.get("failed_projects") or []
    if failed:
        lines.append(
            f"  {plural(len(failed), 'project')} did not finish: {listing(failed)}; re-run the "
            "same command to go on with them (finished projects are left alone)."
        )
    elif exit_code == 130:
        lines.append("  stopped before the end; finished work is kept: re-run the same command.")
    return lines


def _elapsed(run: dict[str, Any], summary: dict[str, Any]) -> float:
    """This attempt's wall time (planning included), else the task graph's."""
    began = run.get("resumed_at") or run.get("started_at")
    if isinstance(began, int | float) and isinstance(run.get("finished_at"), int | float):
        return max(0.0, float(run["finished_at"]) - float(began))
    return float(summary.get("elapsed_s") or 0.0)


# -- what the job did -----------------------------------------------------------------------
def _job_lines(job: dict[str, Any], elapsed: str) -> list[str]:
    lines: list[str] = []
    rest = dict(job)
    if "published" in rest:
        published = rest.pop("published")
        pages = rest.pop("source_pages_read", None)
        if published:
            lines.append(
                f"  exported {plural(published.get('metrics', 0), 'metric')} from "
                f"{plural(published.get('metric_sources', 0), 'metric source')} to "
                f"{path(published.get('dir', '?'))} (manifest.json) in {elapsed}"
            )
        else:
            read = f" ({plural(pages, 'page')} of the source list read)" if pages else ""
            lines.append(f"  nothing published: the export is not complete yet{read}")
    if "planned_mutations" in rest:
        planned = rest.pop("planned_mutations")
        sent = rest.pop("mutations_sent", 0)
        outcomes = rest.pop("outcomes", {}) or {}
        if planned or sent or outcomes:
            lines.append(
                f"  mutations: {count(planned)} planned, {count(sent)} written; "
                f"outcomes: {tally(outcomes, sep=' ').replace('_', ' ')}"
            )
        else:
            lines.append("  mutations: none planned")
    pending = rest.pop("pending_review", None)
    if pending:
        lines.append(f"  pending review ({count(len(pending))}): {listing(pending)}")
    notes = rest.pop("notes", None)
    if notes:
        lines.append("  notes:")
        rows = [
            [_NOTE_LABELS.get(kind, kind.replace("_", " ")), _note_items(items)]
            for kind, items in notes.items()
        ]
        lines += table(rows, indent="    ")
    manifest = rest.pop("snapshot_manifest", None)
    if manifest:
        rest = {"snapshot": path(manifest), **rest}
    for key, item in rest.items():  # keys a job kind adds later still read as text
        lines.append(f"  {key.replace('_', ' ')}: {value(item)}")
    return lines


def _note_items(items: list[Any]) -> str:
    if len(items) == 1:
        return value(items[0])
    return f"{count(len(items))}: {listing(items, limit=6)}"


def _verify_lines(verify: dict[str, Any] | None, state: Path | None) -> list[str]:
    if not verify or not verify.get("checked"):
        return []
    checked, differ = verify.get("checked", 0), verify.get("differences", 0)
    line = f"  verify: {plural(checked, 'entity', 'entities')} read back"
    if not differ:
        return [line + ", all as planned"]
    where = path(state / "verify.json") if state is not None else "verify.json"
    return [line + f"; {count(differ)} differ from the plan (details in {where})"]


# -- how it ran -----------------------------------------------------------------------------
def _task_lines(summary: dict[str, Any]) -> list[str]:
    tasks: dict[str, int] = summary.get("tasks") or {}
    if not tasks:
        return []
    known = [s for s in _TASK_STATES if tasks.get(s)]
    others = [s for s in tasks if s not in _TASK_STATES and tasks[s]]
    by_word: dict[str, int] = {}  # two states may read alike ("cut short"): one count each
    for state in known + others:
        word = _TASK_WORDS.get(state, state)
        by_word[word] = by_word.get(word, 0) + tasks[state]
    text = ", ".join(f"{count(number)} {word}" for word, number in by_word.items())
    replayed = summary.get("tasks_replayed_from_checkpoint") or 0
    if replayed:
        text += f" ({count(replayed)} replayed from checkpoint)"
    return [f"  tasks: {text}"]


def _request_lines(requests: dict[str, dict[str, Any]]) -> list[str]:
    """``requests: 39 (39 × 200), 0 retries, 0 rate-limited``; one aligned row per project."""

    def columns(stats: dict[str, Any]) -> list[str]:
        rest = (
            f"{plural(stats.get('retries', 0), 'retry', 'retries')}, "
            f"{count(stats.get('rate_limited', 0))} rate-limited"
        )
        if stats.get("mutations"):
            rest += f", {plural(stats['mutations'], 'mutation attempt')}"
        by_status = f"({tally(stats.get('by_status') or {})}),"
        return [count(stats.get("requests", 0)), by_status, rest]

    if not requests:
        return []
    if len(requests) == 1:
        (stats,) = requests.values()
        return [f"  requests: {' '.join(columns(stats))}"]
    rows = [[f"{role}:", *columns(stats)] for role, stats in requests.items()]
    return ["  requests:", *table(rows, indent="    ", numeric=(1,))]


# -- why it ended so, and what next ---------------------------------------------------------
def _ending_lines(summary: dict[str, Any], exit_code: int | None, state: Path | None) -> list[str]:
    lines: list[str] = []
    resume = "re-run the same command to resume"
    if summary.get("fatal") and exit_code == 130:  # why it stopped, not a fault to fix
        lines.append(f"  {summary['fatal']}")
    elif summary.get("fatal"):
        lines.append(f"  aborted: {summary['fatal']}")
        lines.append(f"  fix the cause, then {resume}.")
    failures = summary.get("failures") or []
    if failures:
        lines += _failure_lines(summary, state)
        lines.append(
            "  fix what a failure above asks for, if any, then re-run the same command to retry"
            " only what failed."
        )
    elif exit_code == 3 and not (summary.get("verify") or {}).get("differences"):
        lines.append("  some items did not complete; `bulkops status` shows what is left.")
    if exit_code == 130:
        lines.append(f"  stopped before the end; finished work is kept: {resume}.")
    return lines


def _failure_lines(summary: dict[str, Any], state: Path | None) -> list[str]:
    failures = summary.get("failures") or []
    if not failures:
        return []
    lines = [f"  {plural(len(failures), 'item')} failed:"]
    lines += [
        f"    {failure.get('what') or failure.get('task')}: {failure.get('error') or 'failed'}"
        for failure in failures[:FAILURES_SHOWN]
    ]
    if len(failures) > FAILURES_SHOWN:
        where = f" --state {path(state)}" if state is not None else ""
        lines.append(
            f"    ... and {count(len(failures) - FAILURES_SHOWN)} more "
            f"(`bulkops status{where}` lists them)"
        )
    return lines
