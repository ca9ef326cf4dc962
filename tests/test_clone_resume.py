"""A clone killed (SIGKILL) at several points, or losing answers, ends exactly like one that was not."""

from __future__ import annotations

import signal
import time

import orjson
import pytest

from bulkops.commands import planned
from bulkops.commands.session import RunOptions
from bulkops.emulator import EmulatorConfig, EmulatorThread, build_demo_world, running_emulator
from tests.support.commands import FAST_RETRY, cli, loaded
from tests.support.jobs import clone_job, dump, keys_env

pytestmark = pytest.mark.slow


def intents(state) -> int:
    path = state / "journal.jsonl"
    if not path.exists():
        return 0
    return path.read_bytes().count(b'"type":"intent"')


async def uninterrupted(tmp_path, monkeypatch) -> dict:
    world = build_demo_world()
    for name, value in keys_env(world).items():
        monkeypatch.setenv(name, value)
    job = clone_job(tmp_path / "reference")
    async with running_emulator(world, EmulatorConfig()) as url:
        options = RunOptions(
            state_dir=tmp_path / "ref-state", base_url=url, retry=FAST_RETRY, progress=False
        )
        assert await planned.run_planned(await loaded(str(job)), options) == 0
    return dump(world)


@pytest.mark.parametrize("kill_after_intents", [1, 12, 35])
async def test_sigkill_mid_apply_then_rerun_matches_an_uninterrupted_clone(
    tmp_path, monkeypatch, kill_after_intents
) -> None:
    """A clone killed mid-apply, then re-run, leaves the target as an uninterrupted clone does."""
    expected = await uninterrupted(tmp_path, monkeypatch)
    world = build_demo_world()
    job = clone_job(tmp_path / "killed", concurrency=2)
    state = tmp_path / "state"
    with EmulatorThread(world, EmulatorConfig(latency_ms=25)) as emulator:
        args = ("run", str(job), "--base-url", emulator.base_url, "--state", str(state))
        process = cli(*args, env=keys_env(world))
        deadline = time.monotonic() + 60
        while intents(state) < kill_after_intents and process.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
        assert process.returncode == -signal.SIGKILL
        time.sleep(0.1)
        rerun = cli(*args, env=keys_env(world))
        _, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err.decode()[-2000:]
    assert dump(world) == expected


async def test_lost_answers_and_server_errors_are_reconciled_not_duplicated(
    tmp_path, monkeypatch
) -> None:
    """Lost answers and 5xx on creates are reconciled on the target, so nothing is created twice."""
    expected = await uninterrupted(tmp_path, monkeypatch)
    world = build_demo_world()
    for name, value in keys_env(world).items():
        monkeypatch.setenv(name, value)
    job = clone_job(tmp_path / "faulty")
    faults = EmulatorConfig(lost_answer_rate=0.2, fail_rate=0.1, drop_rate=0.05, fault_seed=11)
    async with running_emulator(world, faults) as url:
        options = RunOptions(
            state_dir=tmp_path / "s", base_url=url, retry=FAST_RETRY, progress=False
        )
        assert await planned.run_planned(await loaded(str(job)), options) == 0
    assert dump(world) == expected
    lost = world.requests(fault="lost_answer")
    assert lost, "the seed should lose some answers"
    applied = world.requests(project="target", is_mutation=True, fault=None)
    plan = orjson.loads((tmp_path / "s" / "plan.json").read_bytes())
    # Every planned mutation was applied exactly once: by a clean answer or a lost one.
    assert len([r for r in applied if r.status and r.status < 300]) + len(lost) == len(
        plan["operations"]
    )
