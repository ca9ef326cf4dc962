"""`bulkops run` / `status` from the command line, as a user runs them."""

from __future__ import annotations

import orjson

from bulkops.emulator import EmulatorConfig, EmulatorThread, build_demo_world
from tests.helpers import KEY_ENV, cli, export_job


def test_json_logs_carry_job_run_task_and_project_and_status_reports(tmp_path) -> None:
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
    stderr_events = [orjson.loads(line) for line in err.splitlines() if line.startswith(b"{")]
    assert any(e["event"] == "bulkops.run.finished" for e in stderr_events)
    file_events = [orjson.loads(line) for line in (state / "log.jsonl").read_bytes().splitlines()]
    assert file_events
    for event in file_events:
        assert {"job", "run_id", "task_id", "project", "timestamp", "level"} <= event.keys()
        assert event["job"] == "exp" and event["run_id"]
    assert any(e["task_id"] for e in file_events)
    assert world.project("source").console_key not in (state / "log.jsonl").read_text()

    status = cli("status", "--state", str(state), "--json")
    out, _ = status.communicate(timeout=30)
    report = orjson.loads(out)
    assert status.returncode == 0
    assert report["run"]["status"] == "complete" and report["tasks_failed"] == []

    human = cli("status", "--state", str(state))
    out, _ = human.communicate(timeout=30)
    assert b"complete (exit 0)" in out


def test_status_without_a_run_explains_what_to_pass(tmp_path) -> None:
    process = cli("status", cwd=tmp_path)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert b"--state" in err and b"Traceback" not in err
