"""Ctrl-C on a real ``bulkops`` process against an emulator with network latency."""

from __future__ import annotations

import fnmatch
import signal
import time
from pathlib import Path

import orjson

from bulkops.emulator import EmulatorConfig, EmulatorThread, World, build_demo_world
from tests.support.commands import cli
from tests.support.jobs import KEY_ENV, export_job
from tests.support.waiting import wait_for

LATENCY = 0.3
#: How late after the signal a request may still reach the emulator: the child sees the signal
#: a few milliseconds after it is sent, and the log's times include the handler's own work.
SIGNAL_SLACK = 0.1


def _rules_job(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "rules.toml"
    path.write_text(
        f'job = "batch_rule_update"\n[target]\napi_key_env = "{KEY_ENV}"\n'
        '[select]\nentity = "gates"\nid_pattern = "checkout_*1*"\nrule_name = "Internal"\n'
        '[[edits]]\nop = "set_pass_percentage"\nvalue = 50\n[limits]\nconcurrency = 4\n'
    )
    return path


def _requested(world: World, deadline_s: float, **filters: object) -> None:
    """Wait until ``world`` has seen a request matching ``filters``."""
    wait_for(lambda: world.requests(**filters), deadline_s, "the job to get that far")  # type: ignore[arg-type]


def test_first_sigint_stops_promptly_sends_nothing_new_and_the_rerun_completes(tmp_path) -> None:
    """SIGINT mid-apply: exit 130 within latency + 1 s, no request started after it, resumable."""
    world = build_demo_world()
    job = _rules_job(tmp_path)
    env = {KEY_ENV: world.project("source").console_key}
    with EmulatorThread(world, EmulatorConfig(latency_ms=LATENCY * 1000)) as emulator:
        args = ("run", str(job), "--base-url", emulator.base_url, "--state", str(tmp_path / "s"))
        process = cli(*args, env=env)
        _requested(world, 60, is_mutation=True)
        signalled = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        stopped_after = time.monotonic() - signalled
        late = [r for r in world.request_log if r.time - LATENCY > signalled + SIGNAL_SLACK]
        first_run_patches = len(world.requests(method="PATCH"))

        assert process.returncode == 130, err.decode()
        assert stopped_after < LATENCY + 1.0, f"took {stopped_after:.2f} s to stop"
        assert not late, f"{len(late)} requests started after the signal: {late[:3]}"
        assert b"interrupted" in err
        assert b"re-run the same command to resume" in err
        assert b"Traceback" not in err
        run = orjson.loads((tmp_path / "s" / "run.json").read_bytes())
        assert run["status"] == "interrupted"
        planned = run["summary"]["job"]["planned_mutations"]
        assert 0 < first_run_patches < planned  # it really stopped mid-apply

        again = cli(*args, env=env)
        _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err.decode()
    assert len(world.requests(method="PATCH")) == planned  # none sent twice, none left out
    gates = world.project("source").collection("gates")
    internal = [
        rule["passPercentage"]
        for key in gates
        if fnmatch.fnmatchcase(key, "checkout_*1*")
        for rule in gates.get(key)["rules"]
        if rule["name"] == "Internal"
    ]
    assert internal
    assert set(internal) == {50}


def test_a_second_sigint_exits_at_once_without_waiting_for_requests_on_the_wire(tmp_path) -> None:
    """With requests taking 2 s on the wire, a second SIGINT ends the process well before."""
    world = build_demo_world()
    env = {KEY_ENV: world.project("source").console_key}
    with EmulatorThread(world, EmulatorConfig(latency_ms=2000)) as emulator:
        process = cli(
            "run",
            str(export_job(tmp_path)),
            "--base-url",
            emulator.base_url,
            "--state",
            str(tmp_path / "s"),
            env=env,
        )
        # The source list is in: the sources' first pages are on the wire.
        _requested(world, 60, path_prefix="/console/v1/metrics/metric_source/list")
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        time.sleep(0.1)
        second = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        stopped_after = time.monotonic() - second
    assert process.returncode == 130, err.decode()
    assert stopped_after < 1.0, f"took {stopped_after:.2f} s after the second signal"
    assert b"Traceback" not in err
