"""export_metrics end to end against the in-process emulator."""

from __future__ import annotations

import orjson
import pytest

from bulkops import redact
from bulkops.emulator import EmulatorConfig, running_emulator
from bulkops.errors import AuthError
from tests.support.commands import run_export
from tests.support.jobs import KEY_ENV, export_job, snapshot


async def test_export_holds_every_metric_of_every_source(tmp_path, world) -> None:
    """An export writes every source and every metric of each, and a complete manifest."""
    job = export_job(tmp_path)
    async with running_emulator(world, EmulatorConfig()) as url:
        assert await run_export(job, url, tmp_path / "state") == 0
    out = tmp_path / "out"
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    assert manifest["complete"] is True
    project = world.project("source")
    expected = {}
    for metric in project.collection("metrics").values():
        source = metric.get("warehouseNative", {}).get("metricSourceName")
        expected.setdefault(source, set()).add(metric["id"])
    names = [
        orjson.loads(line)["name"]
        for line in (out / "metric_sources.jsonl").read_bytes().splitlines()
    ]
    assert sorted(names) == sorted(s["name"] for s in project.collection("metric_sources").values())
    assert [entry["name"] for entry in manifest["metric_sources"]] == names
    files = set()
    for entry in manifest["metric_sources"]:
        path = out / entry["file"]
        rows = [orjson.loads(line) for line in path.read_bytes().splitlines()]
        assert {row["id"] for row in rows} == expected.get(entry["name"], set()), entry["name"]
        assert entry["count"] == len(rows)
        assert "/" not in entry["file"].removeprefix("metric_sources/")
        files.add(entry["file"].lower())
    assert len(files) == len(names)  # distinct even ignoring case ("Orders" vs "orders")
    assert any(entry["count"] == 0 for entry in manifest["metric_sources"])
    assert not list(out.rglob(".*tmp*"))  # nothing staged is left behind


async def test_injected_faults_do_not_change_the_export(tmp_path, world) -> None:
    """5xx, dropped and truncated answers (seeded) leave the export byte-identical to a clean one."""
    job = export_job(tmp_path / "clean", concurrency=8)
    async with running_emulator(world, EmulatorConfig()) as url:
        assert await run_export(job, url, tmp_path / "clean-state") == 0
    faults = EmulatorConfig(
        fail_rate=0.15, drop_rate=0.05, truncate_rate=0.05, latency_ms=2, fault_seed=7
    )
    faulty_job = export_job(tmp_path / "faulty", concurrency=8)
    async with running_emulator(world, faults) as url:
        assert await run_export(faulty_job, url, tmp_path / "faulty-state") == 0
    assert {r.fault for r in world.requests() if r.fault} == {"server_error", "drop", "truncate"}
    assert snapshot(tmp_path / "clean" / "out") == snapshot(tmp_path / "faulty" / "out")


async def test_a_finished_run_is_not_resumed_but_replaced(tmp_path, world) -> None:
    """Running a finished export again reads everything anew and keeps the old journal under previous/."""
    job = export_job(tmp_path)
    async with running_emulator(world, EmulatorConfig()) as url:
        assert await run_export(job, url, tmp_path / "state") == 0
        first = len(world.requests())
        assert await run_export(job, url, tmp_path / "state") == 0
        assert len(world.requests()) == 2 * first  # a nightly re-run reads everything again
    assert (tmp_path / "state" / "previous" / "journal.jsonl").exists()


async def test_failed_items_exit_3_then_a_rerun_retries_only_those(tmp_path, world, capsys) -> None:
    """Failed items give exit 3 and no manifest; the re-run completes them and publishes."""
    job = export_job(tmp_path)
    broken = EmulatorConfig(fail_rate=1.0, fault_paths=("/console/v1/metrics",))
    async with running_emulator(world, broken) as url:
        assert await run_export(job, url, tmp_path / "state") == 3
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert "failed:" in capsys.readouterr().err
    async with running_emulator(world, EmulatorConfig()) as url:
        assert await run_export(job, url, tmp_path / "state") == 0
    assert (tmp_path / "out" / "manifest.json").exists()


async def test_a_bad_key_aborts_with_exit_4_and_never_shows_the_key(
    tmp_path, world, monkeypatch, capsys
) -> None:
    """A rejected key aborts with exit 4, names the project and api_key_env, and the key appears nowhere."""
    secret = "console-NotARealKeyButSecret0123456789"
    monkeypatch.setenv(KEY_ENV, secret)
    job = export_job(tmp_path)
    async with running_emulator(world, EmulatorConfig()) as url:
        with pytest.raises(AuthError) as rejected:  # the run's first request: nothing begins
            await run_export(job, url, tmp_path / "state")
    assert rejected.value.exit_code == 4
    err = capsys.readouterr().err + redact.text(str(rejected.value))
    assert "'source'" in err
    assert "api_key_env" in err
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path
    assert secret not in err


async def test_a_changed_job_file_refuses_to_resume_unless_fresh(tmp_path, world) -> None:
    """An unfinished run whose job file changed is not resumed, unless --fresh discards it."""
    from bulkops.errors import StateError

    job = export_job(tmp_path)
    broken = EmulatorConfig(fail_rate=1.0, fault_paths=("/console/v1/metrics",))
    async with running_emulator(world, broken) as url:
        assert await run_export(job, url, tmp_path / "state") == 3
    job.write_text(job.read_text().replace("concurrency = 4", "concurrency = 5"))
    async with running_emulator(world, EmulatorConfig()) as url:
        with pytest.raises(StateError, match="changed since the unfinished run"):
            await run_export(job, url, tmp_path / "state")
        assert await run_export(job, url, tmp_path / "state", fresh=True) == 0
