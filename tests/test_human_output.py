"""What a person reads: the three jobs' output through the real CLI, and the text helpers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import structlog

from bulkops import redact
from bulkops.emulator import EmulatorConfig, build_demo_world
from bulkops.human import count, duration, table, tally
from tests.support.commands import cli
from tests.support.jobs import KEY_ENV

REPO_JOBS = Path(__file__).resolve().parents[1] / "jobs"
#: Python reprs that must never reach a person.
REPRS = ("{'", "['", "=None", "=[]", "={}", " None")
DEMO_KEYS = tuple(p.console_key for p in build_demo_world().projects.values())


def _job(folder: Path, name: str, replace: tuple[str, str] | None = None) -> Path:
    """A copy of ``jobs/<name>.toml`` in ``folder`` (outputs stay there), optionally edited."""
    text = (REPO_JOBS / f"{name}.toml").read_text()
    text = text.replace('dir = "../exports/nightly"', 'dir = "out"')
    if replace is not None:
        assert replace[0] in text
        text = text.replace(*replace)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def _assert_readable(out: bytes, err: bytes, what: str) -> None:
    text = out.decode() + err.decode()
    found = [r for r in REPRS if r in text]
    assert not found, f"{what}: Python repr {found} in output:\n{text}"
    assert "Traceback" not in text, text
    assert not re.search(r"(?<![0-9a-f])1e\+?9(?![0-9a-f])", text), text  # not inside a run id
    assert not any(key in text for key in DEMO_KEYS), f"{what}: a key was shown"


def test_no_python_repr_in_any_human_output_of_the_three_jobs(tmp_path) -> None:
    """Plan and run of each job in jobs/, succeeding and exiting 3, print no Python repr."""
    looking_ids = ('id_pattern = "checkout_*"', 'ids = ["console-looking-id", "checkout_promo_5"]')
    runs = {  # what: (expected exit code, command, job file, edit of the job file)
        "export run": (0, "run", "export_metrics", None),
        "clone plan": (0, "plan", "clone_experiments", None),
        "clone run": (0, "run", "clone_experiments", None),
        "rules plan": (0, "plan", "batch_rule_update", None),
        "rules run": (0, "run", "batch_rule_update", None),
        "clone exit 3": (3, "run", "clone_experiments", ('"skip"', '"fail"')),
        "rules exit 3": (3, "run", "batch_rule_update", looking_ids),
    }
    started = {}
    for what, (code, command, name, edit) in runs.items():  # all at once: each has its sandbox
        folder = tmp_path / what.replace(" ", "_")
        job = _job(folder, name, edit)
        started[what] = (code, cli(command, str(job), "--sandbox", "--state", str(folder / "s")))
    errs = {}
    for what, (code, process) in started.items():
        out, err = process.communicate(timeout=120)
        assert process.returncode == code, f"{what}: {err.decode()}"
        _assert_readable(out, err, what)
        errs[what] = err.decode()
    exported = r"exported 2,553 metrics from 24 metric sources to \S+ \(manifest.json\)"
    assert re.search(exported, errs["export run"])
    assert "requests: 40 (40 × 200), 0 retries, 0 rate-limited" in errs["export run"]
    # exit 3 always says why: the failed items, by name
    assert re.search(r"\d+ items? failed:\n    \w+", errs["clone exit 3"])
    assert "console-looking-id" in errs["rules exit 3"]  # an id that looks like a key, shown
    assert "retry only what failed" in errs["rules exit 3"]


async def test_a_failed_export_says_which_sources_failed_without_reprs(
    tmp_path, capsys, monkeypatch
) -> None:
    """The export's exit 3 (every read fails) names the failures and prints no repr."""
    from bulkops.emulator import running_emulator
    from tests.support.commands import run_export
    from tests.support.jobs import export_job

    world = build_demo_world()
    monkeypatch.setenv(KEY_ENV, world.project("source").console_key)
    async with running_emulator(
        world, EmulatorConfig(fail_rate=1.0, fault_paths=("/console/v1/metrics",))
    ) as url:
        assert await run_export(export_job(tmp_path), url, tmp_path / "state") == 3
    out, err = capsys.readouterr()
    _assert_readable(out.encode(), err.encode(), "export exit 3")
    assert "1 item failed:\n    metric sources page 1: GET" in err
    assert "503" in err
    assert "nothing published" in err


def test_an_id_that_looks_like_a_key_is_shown_while_the_registered_key_is_masked(capsys) -> None:
    """Only registered secrets are masked, in messages and in log events alike."""
    key = "console-RealRegisteredKey0123456789"
    redact.register(key)
    message = f"gate 'console-looking-id' was refused for {key}"
    assert redact.text(message) == f"gate 'console-looking-id' was refused for {redact.MASK}"
    structlog.get_logger("test").warning("bulkops.task.failed", error=message)
    err = capsys.readouterr().err
    assert "console-looking-id" in err
    assert key not in err
    assert redact.MASK in err


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.25, "0.2 s"), (45, "45 s"), (125, "2 min 5 s"), (9960, "2 h 46 min"), (90000, "1 d 1 h")],
)
def test_durations_read_as_hours_and_minutes_not_raw_seconds(seconds, text) -> None:
    """Estimates and elapsed times print as durations with units."""
    assert duration(seconds) == text


def test_counts_tallies_and_tables_have_no_reprs() -> None:
    """Thousands separators, ``n × status`` tallies and right-aligned numeric columns."""
    assert count(2553) == "2,553"
    assert tally({"200": 36, "404": 2}) == "36 × 200, 2 × 404"
    assert tally({}) == "none"
    assert table([["a", 5], ["bbb", 1234]], indent="", numeric=(1,)) == ["a        5", "bbb  1,234"]


def test_console_log_lines_flatten_fields_and_drop_empty_ones(capsys) -> None:
    """A log event with a dict, an empty list and None reads as key=value, durations included."""
    log = structlog.get_logger("test")
    log.info("bulkops.plan.written", estimate={"target": {"minimum_seconds": 9960.0}},
             pending=[], fatal=None, tasks={"done": 65})  # fmt: skip
    err = capsys.readouterr().err
    assert 'estimate.target.minimum_seconds="2 h 46 min"' in err
    assert "tasks.done=65" in err
    assert "pending" not in err
    assert "fatal" not in err


def test_progress_speaks_the_jobs_units_and_estimates_only_when_it_means_something() -> None:
    """No ETA without a total or history; rate-based after a few seconds; quota time as a floor."""
    import time

    from bulkops.commands.progress import Progress
    from bulkops.jobs.base import Count

    now = {"units": Count(0, None, "metrics", note="3 of 24 sources announced")}
    progress = Progress(None, [], units=lambda: now["units"], live=False)  # type: ignore[arg-type]
    assert progress.line().startswith("metrics 0 (3 of 24 sources announced), 0 requests")
    assert progress.snapshot()["eta_s"] is None
    assert "more" not in progress.line()
    now["units"] = Count(1000, 2553, "metrics")
    assert "more" not in progress.line()  # a fraction of a second in: too early to extrapolate
    progress.started = time.monotonic() - 10
    assert "metrics 1,000 of 2,553" in progress.line()
    assert "about 16 s more" in progress.line()
    now["units"] = Count(10, 1000, "mutations", at_least_seconds=9960.0, note="10 sent")
    line = progress.line()
    assert "mutations 10 of 1,000 (10 sent)" in line
    assert "quota needs at least 2 h 46 min more" in line
    assert "1e9" not in line


def test_an_aborted_apply_tells_written_mutations_from_attempts() -> None:
    """After a 403 abort, the summary says how many mutations took effect and how many were attempted."""
    from bulkops.output.summary import summary_lines

    run = {
        "job": "edit",
        "status": "aborted",
        "exit_code": 4,
        "summary": {
            "exit_code": 4,
            "fatal": "403 forbidden: the key is read-only",
            "requests": {
                "target": {"requests": 70, "by_status": {"200": 65, "403": 5}, "mutations": 5}
            },
            "job": {"planned_mutations": 63, "mutations_sent": 0, "outcomes": {"failed": 5}},
        },
    }
    text = "\n".join(summary_lines(run))
    assert "63 planned, 0 written" in text
    assert "5 mutation attempts" in text


def test_a_snapshot_s_manifest_is_shown_from_where_the_command_runs(tmp_path, monkeypatch) -> None:
    """The export's manifest path reads from the current directory (the job file's output dir is
    relative to the job file's folder, so the configured text would mislead), else absolute."""
    from bulkops.output.summary import summary_lines

    manifest = tmp_path / "snapshots" / "prod" / "manifest.json"
    run = {"job": "snap", "status": "complete", "exit_code": 0, "summary": {"exit_code": 0}}
    run["summary"]["job"] = {"snapshot_manifest": str(manifest), "exported": "3 entities"}
    monkeypatch.chdir(tmp_path)
    assert "  snapshot: snapshots/prod/manifest.json" in summary_lines(run)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert f"  snapshot: {manifest}" in summary_lines(run)
