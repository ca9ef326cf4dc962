"""The emulator as a whole: its demo data and the ways to run it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import orjson
import pytest

from bulkops.emulator import (
    EmulatorConfig,
    EmulatorThread,
    Project,
    World,
    build_demo_world,
    populate_metrics,
)
from tests.support.http import V1
from tests.support.metrics import SOURCES
from tests.support.worlds import SOURCE_KEY, TARGET_KEY, metrics_world

# -- demo data ----------------------------------------------------------------------------------


def _dump(world: World) -> bytes:
    kinds = ("metrics", "metric_sources")
    return orjson.dumps(
        {
            name: {kind: world.project(name).collection(kind).values() for kind in kinds}
            for name in world.projects
        }
    )


def test_demo_world_is_deterministic_per_seed() -> None:
    """The same seed builds the same demo world; another seed builds another."""
    assert _dump(build_demo_world()) == _dump(build_demo_world())
    assert _dump(build_demo_world("other")) != _dump(build_demo_world())


def test_demo_world_shape() -> None:
    """The demo world has the sizes and awkward source names the tests and rehearsals rely on."""
    world = build_demo_world()
    source, target = world.project("source"), world.project("target")
    assert "demo" in source.console_key
    assert "demo" in target.console_key
    sources = source.collection("metric_sources")
    metrics = source.collection("metrics")
    counts = {n: metrics.count_where("metric_source", n) for n in sources}
    assert 20 <= len(sources) <= 30
    assert 2000 <= len(metrics) <= 3000
    assert sorted(counts.values()).count(0) == 1
    assert (counts["Page Views"], counts["Orders"], counts["Deprecated Source"]) == (100, 101, 0)
    assert {"Orders", "orders", "..", "日本 sales", "Événements / EU"} <= set(counts)
    assert len(set(counts.values())) > 15  # uneven
    assert len(target.collection("metrics")) < 50
    shared = set(target.collection("metrics")) & set(metrics)
    assert shared  # clones into target meet "Name is already in use"
    bigger = build_demo_world(scale=3).project("source").collection("metrics")
    assert len(bigger) > 2.5 * len(metrics) - 600
    assert bigger.count_where("metric_source", "Orders") == 101


def test_populate_metrics_sizes() -> None:
    """populate_metrics makes exactly the sources and metrics per source asked for."""
    project = Project("bench", "console-bench-key")
    names = populate_metrics(project, 3, 250, seed="x")
    assert len(names) == 3
    assert len(project.collection("metrics")) == 750
    assert project.collection("metrics").count_where("metric_source", names[1]) == 250


def test_config_errors_name_the_field_and_the_fix() -> None:
    """A bad EmulatorConfig names the field at fault and, for windows, an example of the right form."""
    with pytest.raises(ValueError, match=r"'100/10 sec'.*e\.g\. '100/10s'"):
        EmulatorConfig(mutation_windows=("100/10 sec",))
    with pytest.raises(ValueError, match="fail_rate"):
        EmulatorConfig(fail_rate=2)
    with pytest.raises(ValueError, match="create_status"):
        EmulatorConfig(create_status="202")


# -- ways to run --------------------------------------------------------------------------------


def test_emulator_thread_serves_blocking_callers() -> None:
    """Runs on its own loop; the main thread sees its request log."""
    world = metrics_world()
    with EmulatorThread(world, EmulatorConfig()) as emu:
        request = urllib.request.Request(
            emu.base_url + f"{V1}/metrics/list", headers={"STATSIG-API-KEY": SOURCE_KEY}
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 200
        assert world.count(project="source", status=200) == 1
    emu.stop()
    with pytest.raises(RuntimeError):
        _ = emu.base_url


@pytest.mark.slow
def test_serve_forever_prints_url_and_keys_and_stops_on_sigint() -> None:
    """serve_forever prints its URL and keys, serves them, and exits cleanly on SIGINT."""
    code = "from bulkops.emulator import serve_forever; serve_forever('127.0.0.1', 0, 'demo', 1)"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=root, env=env
    ) as proc:
        _check_serving(proc)


def _check_serving(proc: subprocess.Popen[str]) -> None:
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("Statsig Console API emulator listening on http://127.0.0.1:")
        base_url = first.rsplit(" ", 1)[1].strip()
        lines = [proc.stdout.readline().strip() for _ in range(3)]
        assert f"project source key {SOURCE_KEY}" in lines
        assert f"project target key {TARGET_KEY}" in lines
        request = urllib.request.Request(
            base_url + f"{SOURCES}/list", headers={"STATSIG-API-KEY": TARGET_KEY}
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert orjson.loads(resp.read())["pagination"]["totalItems"] == 3
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
