"""Several real ``bulkops run`` processes on one project share its quota through the ledger.

One emulator (a thread of the test process, serving every subprocess) enforces the server's
window; every job is configured with that same window. Without a shared ledger each process would
believe it owns the whole budget and the server would answer 429. The window is 20/4s: short
enough for tests of seconds, long enough that the governor's 0.25 s jitter margin per window stays
inside the 1.1x makespan target.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from bulkops.api.governor import least_seconds
from bulkops.emulator import EmulatorConfig, EmulatorThread, World
from tests.support.batch import KEY, KEY_ENV, build_world, outcomes
from tests.support.commands import cli
from tests.support.waiting import wait_for

LIMIT, SECONDS = 20, 4.0
WINDOW = f"{LIMIT}/{SECONDS:g}s"
FAMILIES = ("checkout", "search", "growth")


def job_file(folder: Path, family: str, gates: int) -> Path:
    """A job that sets the Beta rule of ``gates`` gates of one family to 33% (each one changes)."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = ", ".join(f'"{family}_{i:03d}"' for i in range(gates))
    path = folder / f"{family}.toml"
    path.write_text(
        f'job = "batch_rule_update"\nname = "{family}"\n[target]\napi_key_env = "{KEY_ENV}"\n'
        f'[select]\nentity = "gates"\nids = [{ids}]\nrule_name = "Beta"\n'
        '[[edits]]\nop = "set_pass_percentage"\nvalue = 33\n'
        f'[limits]\nconcurrency = 4\nmutation_rate = ["{WINDOW}"]\n'
    )
    return path


def start(tmp_path: Path, url: str, family: str, gates: int, env: dict[str, str]):
    job = job_file(tmp_path / family, family, gates)
    state = tmp_path / family / "state"
    process = cli(
        "run", str(job), "--base-url", url, "--state", str(state), env={KEY_ENV: KEY, **env}
    )
    return process, state


def finish(process: subprocess.Popen[bytes]) -> None:
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err.decode()


def mutation_log(world: World) -> list[tuple[float, int | None]]:
    return [(r.time, r.status) for r in world.requests(is_mutation=True, project="target")]


def assert_windows_honoured(log: list[tuple[float, int | None]]) -> None:
    """No 429, and no span of the server's window ever held more than its limit."""
    assert [status for _, status in log if status != 200] == []
    times = sorted(t for t, _ in log)
    for i in range(LIMIT, len(times)):
        assert times[i] - times[i - LIMIT] >= SECONDS, (i, times[i - LIMIT], times[i])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("ledger", "processes", "gates"),
    [("sqlite", 2, 21), ("redis", 2, 21), ("sqlite", 3, 14)],
    ids=["sqlite-2", "redis-2", "sqlite-3"],
)
def test_concurrent_applies_share_the_window_without_a_429(
    tmp_path, request, ledger: str, processes: int, gates: int
) -> None:
    """Jobs on one project at once: 0 x 429, and together within 1.1x the windows' minimum."""
    env = (
        {} if ledger == "sqlite" else {"BULKOPS_QUOTA_URL": request.getfixturevalue("redis_server")}
    )
    world = build_world()
    with EmulatorThread(world, EmulatorConfig(mutation_windows=(WINDOW,))) as emulator:
        running = [
            start(tmp_path, emulator.base_url, family, gates, env)[0]
            for family in FAMILIES[:processes]
        ]
        for process in running:
            finish(process)
    log = mutation_log(world)
    total = processes * gates
    assert len(log) == total
    assert_windows_honoured(log)
    times = [t for t, _ in log]
    makespan = max(times) - min(times)
    minimum = least_seconds(total, [(LIMIT, SECONDS)])
    assert minimum <= makespan <= 1.1 * minimum, f"{makespan:.2f}s for a {minimum:g}s minimum"


@pytest.mark.slow
def test_a_killed_process_s_reservations_age_out_and_the_others_finish(tmp_path) -> None:
    """SIGKILL one of three jobs mid-apply: the other two finish, 0 x 429, windows honoured."""
    world = build_world()
    with EmulatorThread(world, EmulatorConfig(mutation_windows=(WINDOW,))) as emulator:
        victim, victim_state = start(tmp_path, emulator.base_url, "growth", 30, {})
        wait_for(lambda: outcomes(victim_state) >= 3 or victim.poll() is not None)
        others = [start(tmp_path, emulator.base_url, f, 10, {})[0] for f in FAMILIES[:2]]
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=10)
        assert victim.returncode == -signal.SIGKILL
        for process in others:
            finish(process)
    log = mutation_log(world)
    assert_windows_honoured(log)
    finished = [r for r in world.requests(is_mutation=True, project="target", status=200)
                if not r.path.startswith("/console/v1/gates/growth")]  # fmt: skip
    assert len(finished) == 20
