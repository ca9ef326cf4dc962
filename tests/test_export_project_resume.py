"""export_project killed (SIGKILL) mid-run as a real subprocess: the re-run resumes to the same snapshot."""

from __future__ import annotations

import signal
import time

import pytest

from bulkops.emulator import EmulatorConfig, EmulatorThread, build_demo_world, running_emulator
from bulkops.jobs.export_project import EXPORTED
from tests.support.commands import cli, run_export
from tests.support.jobs import KEY_ENV, snapshot
from tests.support.waiting import wait_for
from tests.test_export_project import project_job
from tests.test_resume import done_tasks, run_cli_to_end

pytestmark = pytest.mark.slow

#: Every kind but the 2,560 metrics (the slowest list, and nothing a kill treats differently).
KINDS = [kind for kind in EXPORTED if kind != "metrics"]
SELECT = "[select]\nkinds = [" + ", ".join(f'"{k}"' for k in KINDS) + "]\n"


async def test_sigkill_then_rerun_gives_the_uninterrupted_snapshot(tmp_path, monkeypatch) -> None:
    """After SIGKILL mid-run, a re-run publishes the uninterrupted snapshot, rereading no finished kind."""
    clean_world = build_demo_world()
    monkeypatch.setenv(KEY_ENV, clean_world.project("source").console_key)
    clean = project_job(tmp_path / "clean", extra=SELECT)
    async with running_emulator(clean_world, EmulatorConfig()) as url:
        assert await run_export(clean, url, tmp_path / "clean-state") == 0
    expected = snapshot(tmp_path / "clean" / "out")

    world = build_demo_world()
    env = {KEY_ENV: world.project("source").console_key}
    job = project_job(tmp_path / "killed", extra=SELECT + "[limits]\nconcurrency = 4\n")
    kill_after = 4  # of 17 kinds: some read, the gates' 301 overrides likely in flight
    state = tmp_path / "state"
    with EmulatorThread(world, EmulatorConfig(latency_ms=10)) as emulator:
        process = cli(
            "run", str(job), "--base-url", emulator.base_url, "--state", str(state), env=env
        )
        kinds_done = lambda: [t for t in done_tasks(state) if t.startswith("kind:")]  # noqa: E731
        wait_for(lambda: len(kinds_done()) >= kill_after or process.poll() is not None)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
        assert process.returncode == -signal.SIGKILL
        finished = kinds_done()
        assert len(finished) >= kill_after
        assert "publish" not in done_tasks(state)
        assert not (tmp_path / "killed" / "out" / "manifest.json").exists()
        time.sleep(0.2)  # requests the dead process left in flight finish in the emulator
        before_rerun = len(world.requests())

        code, err = run_cli_to_end(job, emulator.base_url, state, env)
        assert code == 0, err
        rerun = world.requests()[before_rerun:]
    read_again = {r.path for r in rerun if r.method == "GET"}
    for task in finished:
        list_path = EXPORTED[task.removeprefix("kind:")].list_path
        assert list_path not in read_again, f"{task} was read again"
    assert "replayed from checkpoint" in err
    assert snapshot(tmp_path / "killed" / "out") == expected
