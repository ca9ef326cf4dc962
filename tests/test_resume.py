"""Kill a real `bulkops run` subprocess (SIGKILL, SIGINT), run it again: same export, no page twice."""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

import orjson
import pytest

from bulkops.emulator import EmulatorConfig, EmulatorThread, build_demo_world, running_emulator
from tests.support.commands import cli, run_export
from tests.support.jobs import KEY_ENV, export_job, snapshot
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

SOURCES_PATH = "/console/v1/metrics/metric_source/list"


def done_tasks(state: Path) -> list[str]:
    journal = state / "journal.jsonl"
    if not journal.exists():
        return []
    records = []
    for line in journal.read_bytes().splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):  # a killed writer's torn last line
            records.append(orjson.loads(line))
    return [r["task"] for r in records if r.get("type") == "task_done"]


def page_request(task_id: str) -> tuple[str, str] | None:
    """The (decoded path, page) a page task fetches, from its deterministic id."""
    prefix, _, page = task_id.rpartition(":p")
    if not page.isdigit():
        return None
    if prefix == "sources":
        return SOURCES_PATH, page
    if prefix.startswith("metrics:"):
        name = prefix.removeprefix("metrics:")
        return f"/console/v1/metrics/metric_source/{name}/metrics", page
    return None


async def baseline(tmp_path: Path, monkeypatch) -> dict:
    world = build_demo_world()
    monkeypatch.setenv(KEY_ENV, world.project("source").console_key)
    job = export_job(tmp_path / "baseline")
    async with running_emulator(world, EmulatorConfig()) as url:
        assert await run_export(job, url, tmp_path / "baseline-state") == 0
    return snapshot(tmp_path / "baseline" / "out")


def run_cli_to_end(job: Path, url: str, state: Path, env: dict) -> tuple[int, str]:
    process = cli("run", str(job), "--base-url", url, "--state", str(state), env=env)
    _, err = process.communicate(timeout=120)
    return process.returncode, err.decode()


@pytest.mark.parametrize("kill_after", [3, 15])
async def test_sigkill_then_rerun_gives_the_same_export_without_refetching(
    tmp_path, monkeypatch, kill_after
) -> None:
    """After SIGKILL, a re-run produces the uninterrupted export and refetches no finished page."""
    expected = await baseline(tmp_path, monkeypatch)
    world = build_demo_world()
    env = {KEY_ENV: world.project("source").console_key}
    job = export_job(tmp_path / "killed", concurrency=2)
    state = tmp_path / "state"
    with EmulatorThread(world, EmulatorConfig(latency_ms=60)) as emulator:
        process = cli(
            "run", str(job), "--base-url", emulator.base_url, "--state", str(state), env=env
        )
        wait_for(lambda: len(done_tasks(state)) >= kill_after or process.poll() is not None)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
        assert process.returncode == -signal.SIGKILL
        finished = done_tasks(state)
        assert finished
        assert not (tmp_path / "killed" / "out" / "manifest.json").exists()
        time.sleep(0.2)  # requests the dead process left in flight finish in the emulator
        before_rerun = len(world.requests())

        code, err = run_cli_to_end(job, emulator.base_url, state, env)
        assert code == 0, err
        rerun = world.requests()[before_rerun:]
    fetched_again = {(r.path, r.query.get("page", "1")) for r in rerun if r.method == "GET"}
    for task_id in finished:
        page = page_request(task_id)
        assert page is None or page not in fetched_again, f"{task_id} was fetched again"
    assert "replayed from checkpoint" in err
    assert snapshot(tmp_path / "killed" / "out") == expected


async def test_sigint_exits_130_and_the_rerun_resumes(tmp_path, monkeypatch) -> None:
    """SIGINT exits 130 without a traceback, and the re-run resumes to the same export."""
    expected = await baseline(tmp_path, monkeypatch)
    world = build_demo_world()
    env = {KEY_ENV: world.project("source").console_key}
    job = export_job(tmp_path / "interrupted", concurrency=2)
    state = tmp_path / "state"
    with EmulatorThread(world, EmulatorConfig(latency_ms=60)) as emulator:
        process = cli(
            "run", str(job), "--base-url", emulator.base_url, "--state", str(state), env=env
        )
        wait_for(lambda: len(done_tasks(state)) >= 5)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 130, err.decode()
        assert b"Traceback" not in err
        status = orjson.loads((state / "run.json").read_bytes())
        assert status["status"] == "interrupted"
        code, err2 = run_cli_to_end(job, emulator.base_url, state, env)
        assert code == 0, err2
    assert snapshot(tmp_path / "interrupted" / "out") == expected
