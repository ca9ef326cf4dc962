"""`bulkops run` / `status` from the command line, as a user runs them."""

from __future__ import annotations

import orjson

from bulkops.emulator import EmulatorConfig, EmulatorThread, build_demo_world
from tests.support.commands import cli
from tests.support.jobs import KEY_ENV, export_job


def test_json_logs_carry_job_run_task_and_project_and_status_reports(tmp_path) -> None:
    """--log-format json writes events with job, run, task and project ids, and status reports the run."""
    world = build_demo_world()
    env = {KEY_ENV: world.project("source").console_key}
    job = export_job(tmp_path)
    state = tmp_path / "state"
    with EmulatorThread(world, EmulatorConfig()) as emulator:
        process = cli(
            "run",
            str(job),
            "--base-url",
            emulator.base_url,
            "--state",
            str(state),
            "--log-format",
            "json",
            env=env,
        )
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err.decode()
    stderr_events = [orjson.loads(line) for line in err.splitlines() if line.strip()]
    assert any(e["event"] == "bulkops.run.finished" for e in stderr_events)
    summary = next(e for e in stderr_events if e["event"] == "bulkops.run.summary")
    assert summary["summary"]["exit_code"] == 0  # every stderr line is JSON, the summary too
    file_events = [orjson.loads(line) for line in (state / "log.jsonl").read_bytes().splitlines()]
    assert file_events
    for event in file_events:
        assert {"job", "run_id", "task_id", "project", "timestamp", "level"} <= event.keys()
        assert event["job"] == "exp"
        assert event["run_id"]
    assert any(e["task_id"] for e in file_events)
    assert world.project("source").console_key not in (state / "log.jsonl").read_text()

    status = cli("status", "--state", str(state), "--json")
    out, _ = status.communicate(timeout=30)
    report = orjson.loads(out)
    assert status.returncode == 0
    assert report["run"]["status"] == "complete"
    assert report["tasks_failed"] == []

    human = cli("status", "--state", str(state))
    out, _ = human.communicate(timeout=30)
    assert b"exp complete in" in out
    assert b"(exit 0, run " in out


def test_status_without_a_run_explains_what_to_pass(tmp_path) -> None:
    """status with no run in the directory exits 2 and says to pass --state, without a traceback."""
    process = cli("status", cwd=tmp_path)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert b"--state" in err
    assert b"Traceback" not in err


def _clone_env(world, **overrides):
    from tests.support.jobs import keys_env

    return {**keys_env(world), **overrides}


def test_a_rejected_key_while_planning_aborts_with_exit_4_and_no_traceback(tmp_path) -> None:
    """A target key rejected while planning exits 4 with a message and no traceback."""
    from tests.support.jobs import TARGET_ENV, clone_job

    world = build_demo_world()
    job = clone_job(tmp_path)
    with EmulatorThread(world, EmulatorConfig()) as emulator:
        process = cli(
            "run",
            str(job),
            "--base-url",
            emulator.base_url,
            "--state",
            str(tmp_path / "s"),
            env=_clone_env(world, **{TARGET_ENV: "console-nope"}),
        )
        _, err = process.communicate(timeout=60)
    assert process.returncode == 4, err.decode()
    assert b"Traceback" not in err
    assert b"'target'" in err
    # The key is rejected by the run's first request, before any run begins: nothing recorded.
    assert not (tmp_path / "s" / "run.json").exists()


def test_sigterm_while_planning_exits_130(tmp_path) -> None:
    """SIGTERM while a clone is planning exits 130."""
    import signal
    import time

    from tests.support.jobs import clone_job

    world = build_demo_world()
    job = clone_job(tmp_path)
    with EmulatorThread(world, EmulatorConfig(latency_ms=400)) as emulator:
        process = cli(
            "plan",
            str(job),
            "--base-url",
            emulator.base_url,
            "--state",
            str(tmp_path / "s"),
            env=_clone_env(world),
        )
        deadline = time.monotonic() + 30
        # The first request reads who the keys open; planning's reads come after it.
        while len(world.requests()) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err.decode()
    assert orjson.loads((tmp_path / "s" / "run.json").read_bytes())["status"] == "interrupted"
    assert not world.requests(is_mutation=True)


def test_undo_of_a_clone_is_refused_with_a_reason(tmp_path) -> None:
    """undo after a clone exits 2 and says a clone has no undo."""
    from tests.support.jobs import clone_job

    world = build_demo_world()
    job = clone_job(tmp_path)
    with EmulatorThread(world, EmulatorConfig()) as emulator:
        args = ("--base-url", emulator.base_url, "--state", str(tmp_path / "s"))
        run = cli("run", str(job), *args, env=_clone_env(world))
        run.communicate(timeout=60)
        assert run.returncode == 0
        undo = cli("undo", *args, env=_clone_env(world))
        _, err = undo.communicate(timeout=60)
    assert undo.returncode == 2
    assert b"no undo" in err
