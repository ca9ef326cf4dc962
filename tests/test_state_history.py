"""A state directory keeps what undo needs, belongs to one job, and lives beside its job file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bulkops.emulator import running_emulator
from bulkops.errors import StateError
from bulkops.jobs.semantics import normalize
from tests.support.batch import KEY, KEY_ENV, build_world, changed_checkout_ids, config, job_file
from tests.support.commands import bulkops, cli, run_export


@pytest.fixture
def batch_world(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    return build_world()


def rules(world) -> dict[str, object]:
    """Every gate's rules by id, without what the server assigns (rule ids carry a revision)."""
    gates = world.project("target").collection("gates").values()
    return {g["id"]: normalize(g["rules"]) for g in gates}


async def test_undo_works_after_the_job_file_is_edited_or_deleted(tmp_path, batch_world) -> None:
    """Undo restores from the plan and the job file kept beside it, whatever became of the file."""
    before = rules(batch_world)
    job = job_file(tmp_path / "job")
    state = tmp_path / "state"
    async with running_emulator(batch_world, config()) as url:
        assert await bulkops("run", job, url, state) == 0
        job.write_text(job.read_text() + "# a comment added after the run\n")
        with pytest.raises(StateError, match="changed since the plan"):
            await bulkops("apply", None, url, state)  # apply still asks for a new plan
        job.unlink()
        assert await bulkops("undo", None, url, state) == 0
    assert rules(batch_world) == before


async def test_runs_that_change_nothing_never_push_out_the_run_undo_needs(
    tmp_path, batch_world
) -> None:
    """After an apply, two re-runs that send nothing still leave its undo data in previous/."""
    before = rules(batch_world)
    job = job_file(tmp_path / "job")
    state = tmp_path / "state"
    async with running_emulator(batch_world, config()) as url:
        assert await bulkops("run", job, url, state) == 0
        assert await bulkops("run", job, url, state) == 0
        assert await bulkops("run", job, url, state) == 0
        with pytest.raises(StateError, match="the run before it did"):
            await bulkops("undo", None, url, state)
        assert await bulkops("undo", None, url, state / "previous") == 0
    assert rules(batch_world) == before


async def test_a_finished_apply_is_not_applied_again(tmp_path, batch_world) -> None:
    """apply on a plan applied to the end is refused (exit 2), also after its undo."""
    job = job_file(tmp_path / "job")
    state = tmp_path / "state"
    async with running_emulator(batch_world, config()) as url:
        assert await bulkops("run", job, url, state) == 0
        with pytest.raises(StateError, match="was applied already") as twice:
            await bulkops("apply", None, url, state)
        assert twice.value.exit_code == 2
        assert await bulkops("undo", None, url, state) == 0
        with pytest.raises(StateError, match=r"applied already .* and undone since"):
            await bulkops("apply", None, url, state)
    assert batch_world.count(is_mutation=True) == 2 * len(changed_checkout_ids())


async def test_another_jobs_state_directory_is_not_taken_over(tmp_path, batch_world) -> None:
    """A finished batch edit's state refuses an export (its undo data stays) unless --fresh."""
    state = tmp_path / "state"
    export = tmp_path / "export.toml"
    export.write_text(
        f'job = "export_metrics"\n[source]\napi_key_env = "{KEY_ENV}"\n[output]\ndir = "out"\n'
    )
    async with running_emulator(batch_world, config()) as url:
        assert await bulkops("run", job_file(tmp_path / "job"), url, state) == 0
        with pytest.raises(StateError, match="holds a finished run of job 'brt'"):
            await run_export(export, url, state)
    assert (state / "plan.json").exists()


def test_the_default_state_lives_beside_the_job_file_wherever_bulkops_runs(
    tmp_path, batch_world
) -> None:
    """Run from two working directories, one job has one state: a non-idempotent guard or a
    resume sees the same run."""
    from bulkops.emulator import EmulatorThread

    job = job_file(tmp_path / "jobs")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with EmulatorThread(batch_world, config()) as emulator:
        for cwd in (tmp_path, elsewhere):
            process = cli("run", str(job), "--base-url", emulator.base_url, cwd=cwd)
            _, err = process.communicate(timeout=60)
            assert process.returncode == 0, err.decode()
    assert (job.parent / ".bulkops" / "brt" / "run.json").exists()
    assert not (elsewhere / ".bulkops").exists()
    assert not (tmp_path / ".bulkops").exists()
    assert batch_world.count(is_mutation=True) == len(changed_checkout_ids())  # once, not twice


def test_apply_and_status_find_the_state_from_the_job_file(tmp_path, batch_world) -> None:
    """`bulkops apply JOB.toml` and `bulkops status JOB.toml` use the job's default state."""
    from bulkops.emulator import EmulatorThread

    job = job_file(tmp_path / "jobs")
    env = {**os.environ, KEY_ENV: KEY}
    with EmulatorThread(batch_world, config()) as emulator:
        url = ("--base-url", emulator.base_url)
        for args in (("plan", str(job), *url), ("apply", str(job), *url), ("status", str(job))):
            process = cli(*args, env=env, cwd=Path("/"))
            _, err = process.communicate(timeout=60)
            assert process.returncode == 0, (args, err.decode())
        both = cli("apply", str(job), "--state", str(tmp_path), env=env)
        _, err = both.communicate(timeout=60)
    assert both.returncode == 2
    assert "not both" in err.decode()
    assert batch_world.count(is_mutation=True) == len(changed_checkout_ids())


def test_status_tells_a_run_in_progress_from_one_that_died(tmp_path, capsys) -> None:
    """status names the process holding the state, and calls a dead 'running' run stopped."""
    from bulkops.cli import main
    from bulkops.engine.state import StateDir
    from bulkops.output.files import write_json_atomic

    state = StateDir(tmp_path / "state")
    state.root.mkdir()
    write_json_atomic(state.run_file, {"run_id": "r1", "job": "brt", "status": "running"})
    with state.exclusive("apply"):
        assert main(["status", "--state", str(state.root)]) == 0
        live = capsys.readouterr().out
    assert f"in progress now: bulkops (pid {os.getpid()}, command apply)" in live
    assert "resume" not in live
    assert main(["status", "--state", str(state.root)]) == 0
    dead = capsys.readouterr().out
    assert "stopped without finishing" in dead
    assert "in progress" not in dead
