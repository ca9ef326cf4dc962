"""Exactly once when people are careless: one process per state, plans bound to their project."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import anyio
import orjson
import pytest

from bulkops.emulator import EmulatorThread, Project, World
from tests.support.batch import (
    KEY,
    KEY_ENV,
    build_world,
    changed_checkout_ids,
    config,
    job_file,
    mutations,
    outcomes,
)
from tests.support.commands import bulkops, cli
from tests.support.waiting import wait_for

OTHER_ENV = "BULKOPS_TEST_OTHER_KEY"
OTHER_KEY = "console-another-project-key"


def world_with_a_second_project() -> World:
    world = build_world()
    world.add_project(Project("other", OTHER_KEY))
    return world


def plan_in_process(tmp_path: Path, world: World, url: str) -> Path:
    state = tmp_path / "state"
    assert anyio.run(bulkops, "plan", job_file(tmp_path / "job"), url, state) == 0
    return state


def finish(process, timeout: float = 60) -> tuple[int, str]:
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err.decode()


@pytest.mark.slow
def test_two_concurrent_applies_of_one_plan_send_each_mutation_once(tmp_path, monkeypatch) -> None:
    """The second apply on a state directory in use exits 2 at once; nothing is sent twice."""
    monkeypatch.setenv(KEY_ENV, KEY)
    world = build_world()
    with EmulatorThread(world, config(latency_ms=20)) as emulator:
        state = plan_in_process(tmp_path, world, emulator.base_url)
        args = ("apply", "--state", str(state), "--base-url", emulator.base_url)
        first = cli(*args, "--concurrency", "2")
        wait_for(lambda: (state / "lock").exists() and outcomes(state) >= 1)
        started = time.monotonic()
        code, err = finish(cli(*args))
        assert code == 2, err
        assert time.monotonic() - started < 10
        assert (
            f"state directory {state} is in use by bulkops (pid {first.pid}, command apply)" in err
        )
        assert "wait for it or use another --state" in err
        assert "Traceback" not in err
        assert finish(first)[0] == 0
    assert mutations(world) == len(changed_checkout_ids())


@pytest.mark.slow
def test_a_sigkilled_apply_leaves_no_stale_lock(tmp_path, monkeypatch) -> None:
    """The kernel drops the lock of a killed process: the next apply runs and finishes the plan."""
    monkeypatch.setenv(KEY_ENV, KEY)
    world = build_world()
    with EmulatorThread(world, config(latency_ms=20)) as emulator:
        state = plan_in_process(tmp_path, world, emulator.base_url)
        args = ("apply", "--state", str(state), "--base-url", emulator.base_url)
        victim = cli(*args, "--concurrency", "2")
        wait_for(lambda: outcomes(state) >= 5 or victim.poll() is not None)
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=10)
        time.sleep(0.2)  # what the dead process left in flight lands in the emulator
        code, err = finish(cli(*args))
        assert code == 0, err
    assert mutations(world) == len(changed_checkout_ids())


def test_a_sandbox_plan_is_never_applied_to_a_real_looking_url(tmp_path, monkeypatch) -> None:
    """A rehearsal's plan is refused (exit 2, before any request) unless applied to the sandbox."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STATSIG_CONSOLE_API_KEY", "console-a-real-looking-key")
    job = Path(__file__).parents[1] / "jobs" / "batch_rule_update.toml"
    state = tmp_path / "state"
    assert finish(cli("plan", str(job), "--sandbox", "--state", str(state)))[0] == 0
    for extra in ((), ("--base-url", "https://statsigapi.invalid")):
        code, err = finish(cli("apply", "--state", str(state), *extra))
        assert code == 2, err
        assert (
            "this plan is a rehearsal on the emulator; plan again without --sandbox to change a "
            "real project" in err
        )
        assert "Traceback" not in err
    code, err = finish(cli("apply", "--state", str(state), "--sandbox"))
    assert code == 0, err


async def test_a_real_plan_is_not_applied_to_the_sandbox(tmp_path, world_url) -> None:
    """A plan made against a project is refused by ``apply --sandbox`` (exit 2, nothing sent)."""
    world, url = world_url
    state = tmp_path / "state"
    assert await bulkops("plan", job_file(tmp_path / "job"), url, state) == 0
    with pytest.raises(Exception, match="apply it without --sandbox") as refused:
        await bulkops("apply", None, url, state, sandbox=True)
    assert getattr(refused.value, "exit_code", None) == 2
    assert mutations(world) == 0


async def test_a_plan_is_refused_for_a_key_that_opens_another_project(
    tmp_path, monkeypatch
) -> None:
    """apply and undo read who the key opens first and refuse another project, naming both."""
    from bulkops.emulator import running_emulator
    from bulkops.errors import WrongProject

    world = world_with_a_second_project()
    monkeypatch.setenv(KEY_ENV, KEY)
    async with running_emulator(world, config()) as url:
        state = tmp_path / "state"
        assert await bulkops("plan", job_file(tmp_path / "job"), url, state) == 0
        monkeypatch.setenv(KEY_ENV, OTHER_KEY)
        for command in ("apply", "run"):
            job = None
            if command == "run":  # a resumed run applies the saved plan: the same guard
                run = orjson.loads((state / "run.json").read_bytes())
                (state / "run.json").write_bytes(orjson.dumps({**run, "status": "running"}))
                job = job_file(tmp_path / "job")
            with pytest.raises(WrongProject) as refused:
                await bulkops(command, job, url, state)
            message = str(refused.value)
            assert world.project("target").id in message
            assert world.project("other").id in message
            assert f"${KEY_ENV}" in message
    assert world.count(is_mutation=True) == 0


@pytest.fixture
async def world_url(monkeypatch):
    from bulkops.emulator import running_emulator

    world = build_world()
    monkeypatch.setenv(KEY_ENV, KEY)
    async with running_emulator(world, config()) as url:
        yield world, url


def clone_file(folder: Path, source_env: str, target_env: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "clone.toml"
    path.write_text(
        f'job = "clone_experiments"\n[source]\napi_key_env = "{source_env}"\n'
        f'[target]\napi_key_env = "{target_env}"\n'
    )
    return path


def test_a_clone_from_a_project_into_itself_is_refused_before_planning(
    tmp_path, monkeypatch
) -> None:
    """Same variable, same key, or two keys of one project: exit 2, nothing planned or sent."""
    project = Project("solo", "console-solo-key", read_only_keys=["console-solo-read-key"])
    world = World([project])
    with EmulatorThread(world, config()) as emulator:
        cases = {
            "same variable": (("A_KEY", "A_KEY"), {"A_KEY": project.console_key}),
            "same key": (
                ("A_KEY", "B_KEY"),
                {"A_KEY": "console-solo-key", "B_KEY": "console-solo-key"},
            ),
            "same project": (
                ("A_KEY", "B_KEY"),
                {"A_KEY": "console-solo-read-key", "B_KEY": "console-solo-key"},
            ),
        }
        for what, ((source, target), env) in cases.items():
            job = clone_file(tmp_path / what.replace(" ", "_"), source, target)
            for command in ("plan", "run"):
                code, err = finish(
                    cli(
                        command,
                        str(job),
                        "--base-url",
                        emulator.base_url,
                        "--state",
                        str(tmp_path / "s" / what),
                        env=env,
                    )
                )
                assert code == 2, (what, err)
                assert "same project" in err, (what, err)
                assert "Traceback" not in err, (what, err)
            assert not (tmp_path / "s" / what / "plan.json").exists()
    assert world.count(is_mutation=True) == 0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# An unknown host is reached over https: plain http:// to a public name is refused before any
# connection (it would send the key unencrypted).
@pytest.mark.parametrize("where", ["http://127.0.0.1:{port}", "https://no-such-host.invalid"])
def test_a_server_that_cannot_be_reached_ends_the_run_within_seconds(
    tmp_path, monkeypatch, where
) -> None:
    """Connection refused or an unknown host: exit 4 in about 10 s, naming the URL, no traceback."""
    monkeypatch.setenv(KEY_ENV, KEY)
    url = where.format(port=closed_port())
    started = time.monotonic()
    code, err = finish(cli("run", str(job_file(tmp_path)), "--base-url", url, "--state",
                           str(tmp_path / "s")))  # fmt: skip
    assert code == 4, err
    assert time.monotonic() - started < 15
    assert f"cannot reach {url}: " in err
    assert "Traceback" not in err
    assert "('" not in err


def test_the_demo_world_is_the_same_in_every_process() -> None:
    """A sandbox plan applied by another process meets the same data, whatever the hash seed."""
    import subprocess
    import sys

    script = (
        "import hashlib, orjson\n"
        "from bulkops.emulator import build_demo_world\n"
        "w = build_demo_world()\n"
        "kinds = ('gates', 'segments', 'experiments', 'dynamic_configs', 'holdouts', 'layers')\n"
        "data = [p.collection(k).values() for p in w.projects.values() for k in kinds]\n"
        "print(hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest())\n"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**__import__("os").environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(digests) == 1


HALVING = """
[[edits]]
op = "python"
function = "halving:halve"
"""
HALVE_PY = (
    "def halve(entity, rule):\n"
    "    pct = rule['passPercentage']\n"
    "    return {**rule, 'passPercentage': round(pct / 2, 2)} if 0 < pct < 100 else rule\n"
)


def internal_percentages(world: World) -> dict[str, float]:
    gates = world.project("target").collection("gates").values()
    return {
        g["id"]: next(r["passPercentage"] for r in g["rules"] if r["name"] == "Internal")
        for g in gates
        if g["id"].startswith("checkout_") and any(r["name"] == "Internal" for r in g["rules"])
    }


@pytest.mark.slow
def test_a_non_idempotent_edit_is_applied_exactly_once_through_a_sigkill(
    tmp_path, monkeypatch
) -> None:
    """Halve every rollout, SIGKILL mid-apply, run again: each gate halved once; a further run
    is refused unless --again, which halves once more."""
    monkeypatch.setenv(KEY_ENV, KEY)
    world = build_world()
    before = internal_percentages(world)
    job = job_file(tmp_path / "job", edits=HALVING, concurrency=2)
    (job.parent / "halving.py").write_text(HALVE_PY)
    state = tmp_path / "state"
    with EmulatorThread(world, config(latency_ms=25)) as emulator:
        args = ("run", str(job), "--base-url", emulator.base_url, "--state", str(state))
        victim = cli(*args)
        wait_for(lambda: outcomes(state) >= 10 or victim.poll() is not None)
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=10)
        time.sleep(0.2)  # what the dead process left in flight lands in the emulator
        code, err = finish(cli(*args))
        assert code == 0, err
        halved = internal_percentages(world)
        assert halved == {g: round(p / 2, 2) for g, p in before.items()}
        assert mutations(world) == len(before)  # each gate written exactly once
        code, err = finish(cli(*args))
        assert code == 2, err
        assert "not idempotent" in err
        assert "--again" in err
        assert "Traceback" not in err
        assert mutations(world) == len(before)
        code, err = finish(cli(*args, "--again"))
        assert code == 0, err
    assert internal_percentages(world) == {g: round(p / 2, 2) for g, p in halved.items()}


def test_a_signal_between_phases_ends_the_command_as_interrupted() -> None:
    """Under the command's signal guard, a SIGTERM while no phase handles signals is exit 130,
    and one while a phase handles them goes to that phase."""
    import os

    from bulkops.commands.signals import _watch_signals, guarded
    from bulkops.errors import Interrupted

    async def between_phases() -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        await anyio.sleep(5)
        return 0

    started = time.monotonic()
    with pytest.raises(Interrupted) as stopped:
        anyio.run(guarded, between_phases)
    assert stopped.value.exit_code == 130
    assert time.monotonic() - started < 2

    seen: list[int] = []

    async def in_a_phase() -> int:
        arrived = anyio.Event()

        def handler(signum: int) -> None:
            seen.append(signum)
            arrived.set()

        async with anyio.create_task_group() as group:
            group.start_soon(_watch_signals, handler)
            await anyio.sleep(0.05)
            os.kill(os.getpid(), signal.SIGTERM)
            with anyio.fail_after(2):
                await arrived.wait()
            group.cancel_scope.cancel()
        return 7

    assert anyio.run(guarded, in_a_phase) == 7
    assert seen == [signal.SIGTERM]


SLOW_PY = "import time\n\ndef slow(entity, rule):\n    time.sleep(0.5)\n    return rule\n"
SLOW = '\n[[edits]]\nop = "python"\nfunction = "slow_edits:slow"\n'


@pytest.mark.slow
def test_ctrl_c_stops_a_plan_whose_python_edit_takes_its_time(tmp_path, monkeypatch) -> None:
    """User code runs off the event loop: SIGINT during a slow python edit exits 130 promptly."""
    monkeypatch.setenv(KEY_ENV, KEY)
    world = build_world()
    job = job_file(tmp_path / "job", edits=SLOW)
    (job.parent / "slow_edits.py").write_text(SLOW_PY)
    with EmulatorThread(world, config()) as emulator:
        process = cli("plan", str(job), "--base-url", emulator.base_url, "--state",
                      str(tmp_path / "state"))  # fmt: skip
        wait_for(lambda: len(world.requests()) >= 2 or process.poll() is not None)
        time.sleep(1.0)  # the edits are running: 100 gates x 0.5 s
        process.send_signal(signal.SIGINT)
        sent = time.monotonic()
        code, err = finish(process, timeout=30)
    assert code == 130, err
    assert time.monotonic() - sent < 3
    assert "Traceback" not in err
    assert world.count(is_mutation=True) == 0
