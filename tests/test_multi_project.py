"""Jobs over several projects: each project runs as a job of its own, all at once, each in its
own governor lane; one failing project does not stop the others; re-runs resume per project."""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from bulkops.commands import fleet
from bulkops.commands.session import RunOptions
from bulkops.emulator import (
    EmulatorConfig,
    EmulatorThread,
    Project,
    World,
    populate_experiments,
    populate_metrics,
    running_emulator,
    seed_directory,
)
from bulkops.engine.state import StateDir
from bulkops.errors import UserError
from tests.support.batch import EMPLOYEES_EDITS, gate_rules
from tests.support.commands import FAST_RETRY, cli, loaded
from tests.support.waiting import wait_for

NAMES = ("eu", "us", "apac")
METRICS_PATH = "/console/v1/metrics"


def env_of(name: str) -> str:
    return f"BULKOPS_TEST_{name.upper()}_KEY"


def metrics_project(name: str, sources: int = 2, per_source: int = 3) -> Project:
    project = Project(name, f"console-{name}-key")
    populate_metrics(project, sources, per_source, prefix=name)
    return project


def gates_project(name: str, gates: int = 10) -> Project:
    from bulkops.emulator.resources.gates import create_gate
    from bulkops.emulator.resources.segments import create_segment

    project = Project(name, f"console-{name}-key")
    create_segment(
        project, {"name": "beta_users", "type": "id_list"}, 1_704_067_200_000, ids=["u1"]
    )
    for i in range(gates):
        fields = {"id": f"checkout_{i:03d}", "name": f"checkout {i:03d}", "rules": gate_rules(i)}
        create_gate(project, fields, 1_704_067_200_000 + i)
    return project


def job_file(folder: Path, head: str, table: str, urls: dict[str, str], tail: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    projects = "".join(
        f'[[{table}]]\nname = "{name}"\napi_key_env = "{env_of(name)}"\nbase_url = "{url}"\n'
        for name, url in urls.items()
    )
    path = folder / "org.toml"
    path.write_text(f"{head}\n{projects}{tail}")
    return path


def export_job(folder: Path, urls: dict[str, str], concurrency: int = 4) -> Path:
    return job_file(
        folder, 'job = "export_metrics"\nname = "org"', "sources", urls,
        f'[output]\ndir = "out"\n[limits]\nconcurrency = {concurrency}\n',
    )  # fmt: skip


def batch_job(folder: Path, urls: dict[str, str], rate: str = "2000/10s") -> Path:
    select = '[select]\nentity = "gates"\nid_pattern = "checkout_*"\nrule_name = "Internal"\n'
    limits = f'[limits]\nconcurrency = 4\nmutation_rate = ["{rate}"]\n'
    return job_file(
        folder, 'job = "batch_rule_update"\nname = "org-edit"', "targets", urls,
        select + EMPLOYEES_EDITS + limits,
    )  # fmt: skip


def set_keys(monkeypatch: pytest.MonkeyPatch, *worlds: World) -> None:
    for world in worlds:
        for name, project in world.projects.items():
            monkeypatch.setenv(env_of(name), project.console_key)


def options(state: Path, command: str = "run", **more: Any) -> RunOptions:
    return RunOptions(state_dir=state, retry=FAST_RETRY, progress=False, command=command, **more)


async def run(job: Path, state: Path, command: str = "run", **more: Any) -> int:
    if command in ("apply", "undo"):
        return await fleet.saved_fleet(StateDir(state), options(state, command, **more))
    go = fleet.plan_fleet if command == "plan" else fleet.run_fleet
    return await go(await loaded(str(job)), options(state, command, **more))


def manifest(path: Path) -> dict[str, Any]:
    return orjson.loads(path.read_bytes())  # type: ignore[no-any-return]


# -- exports --------------------------------------------------------------------------------
async def test_one_failing_project_does_not_stop_the_others(tmp_path, monkeypatch, capsys) -> None:
    """With one project's server failing every metrics read, the two others publish complete
    exports, the index manifest marks only it incomplete, the run exits 3 naming it; once its
    server is healthy, the re-run fetches it alone and completes the index."""
    healthy = World([metrics_project("eu"), metrics_project("apac")])
    broken = World([metrics_project("us")])
    set_keys(monkeypatch, healthy, broken)
    faults = EmulatorConfig(fail_rate=1.0, fault_paths=(METRICS_PATH,), fault_seed=7)
    async with running_emulator(healthy) as good, running_emulator(broken, faults) as bad:
        job = export_job(tmp_path, {"eu": good, "us": bad, "apac": good})
        assert await run(job, tmp_path / "state") == 3
        port = int(bad.rsplit(":", 1)[1])
    err = capsys.readouterr().err
    assert "1 project did not finish: us" in err
    out = tmp_path / "out"
    index = manifest(out / "manifest.json")
    assert index["complete"] is False
    assert index["failed"] == ["us"]
    assert [(p["name"], p["dir"], p["complete"]) for p in index["projects"]] == [
        ("eu", "eu", True), ("us", "us", False), ("apac", "apac", True),
    ]  # fmt: skip
    for name in ("eu", "apac"):
        assert manifest(out / name / "manifest.json")["totals"] == {
            "metric_sources": 2,
            "metrics": 6,
        }
    assert not (out / "us" / "manifest.json").exists()

    healthy.clear_log()
    async with running_emulator(healthy) as good2, running_emulator(broken, port=port):
        assert good2 != good  # the healthy ones moved: their finished exports are not re-read
        assert await run(job, tmp_path / "state") == 0
    assert healthy.count() == 0
    index = manifest(out / "manifest.json")
    assert index["complete"] is True
    assert manifest(out / "us" / "manifest.json")["totals"]["metrics"] == 6


async def test_the_summary_has_a_section_per_project(tmp_path, monkeypatch) -> None:
    """The fleet's summary in run.json has a section per project with its own summary."""
    world = World([metrics_project(name) for name in NAMES])
    set_keys(monkeypatch, world)
    async with running_emulator(world) as url:
        job = export_job(tmp_path, dict.fromkeys(NAMES, url))
        assert await run(job, tmp_path / "state") == 0
    run_record = await StateDir(tmp_path / "state").read_run_async() or {}
    projects = run_record["summary"]["projects"]
    assert sorted(projects) == sorted(NAMES)
    for name in NAMES:
        assert projects[name]["exit_code"] == 0
        assert projects[name]["job"]["published"]["metrics"] == 6
        assert (tmp_path / "state" / "projects" / name / "journal.jsonl").exists()


# -- governor lanes -------------------------------------------------------------------------
async def test_a_project_paused_on_429_does_not_slow_another(tmp_path, monkeypatch) -> None:
    """One target's server allows 3 mutations a second and answers 429 beyond; the job's
    windows are far higher, so that project pauses and learns; the other project, on a server
    without a tight quota, finishes its mutations as if alone, and meets no 429."""
    slow = World([gates_project("slow")])
    fast = World([gates_project("fast")])
    set_keys(monkeypatch, slow, fast)
    tight = EmulatorConfig(mutation_windows=("3/1s",))
    loose = EmulatorConfig(mutation_windows=("2000/10s",))
    async with running_emulator(slow, tight) as slow_url, running_emulator(fast, loose) as fast_url:
        job = batch_job(tmp_path, {"slow": slow_url, "fast": fast_url})
        assert await run(job, tmp_path / "state") == 0
    summary = (await StateDir(tmp_path / "state").read_run_async() or {})["summary"]["projects"]
    assert slow.count(status=429) >= 1
    assert fast.count(status=429) == 0
    assert slow.count(is_mutation=True, status=200) == fast.count(is_mutation=True, status=200) == 7
    assert summary["slow"]["elapsed_s"] >= 1.5  # 7 mutations at 3 a second
    assert summary["fast"]["elapsed_s"] < summary["slow"]["elapsed_s"] / 2


# -- batch_rule_update across targets ---------------------------------------------------------
def internal_rule(world: World, name: str, gate: str) -> dict[str, Any]:
    entity = world.project(name).collection("gates").get(gate)
    return next(rule for rule in entity["rules"] if rule["name"] == "Internal")


async def test_batch_update_plans_applies_and_undoes_per_project(
    tmp_path, monkeypatch, capsys
) -> None:
    """`plan` shows each project's plan under its name and sends nothing; `apply` edits every
    project; `undo` restores every project's rules."""
    world = World([gates_project(name) for name in NAMES])
    set_keys(monkeypatch, world)
    before = {name: internal_rule(world, name, "checkout_000") for name in NAMES}
    state = tmp_path / "state"
    async with running_emulator(world, EmulatorConfig(mutation_windows=("2000/10s",))) as url:
        job = batch_job(tmp_path, dict.fromkeys(NAMES, url))
        assert await run(job, state, "plan") == 0
        out = capsys.readouterr().out
        for name in NAMES:
            assert f"== {name} ==" in out
        assert world.count(is_mutation=True) == 0
        assert await run(job, state, "apply") == 0
        for name in NAMES:
            assert internal_rule(world, name, "checkout_000")["passPercentage"] == 50
            assert world.count(is_mutation=True, project=name) == 7
        assert await run(job, state, "undo") == 0
    for name in NAMES:
        restored = internal_rule(world, name, "checkout_000")
        assert restored["passPercentage"] == before[name]["passPercentage"]
        assert restored["conditions"] == before[name]["conditions"]
    undo = orjson.loads((state / "undo" / "run.json").read_bytes())
    assert undo["exit_code"] == 0
    assert sorted(undo["summary"]["projects"]) == sorted(NAMES)
    for name in NAMES:  # each undo journals in its own folder, beside the apply it restores
        summary = undo["projects"][name]["summary"]["job"]
        assert summary["mutations_sent"] == 7
        assert summary["outcomes"] == {"applied": 7}
        assert (state / "projects" / name / "undo" / "journal.jsonl").is_file()


def first_mutation(world: World, name: str) -> float:
    return min(r.time for r in world.requests(project=name, is_mutation=True))


async def test_every_project_starts_applying_once_all_have_planned(tmp_path, monkeypatch) -> None:
    """A target whose plan reads one gate per page (so plans far slower) does not let the
    other start applying first: the projects' first mutations leave together."""
    slow = World([gates_project("slow", gates=20)])
    fast = World([gates_project("fast")])  # both worlds log on time.monotonic
    set_keys(monkeypatch, slow, fast)
    paged = EmulatorConfig(latency_ms=20, max_page_limit=1, mutation_windows=("2000/10s",))
    quick = EmulatorConfig(latency_ms=20, mutation_windows=("2000/10s",))
    async with running_emulator(slow, paged) as slow_url, running_emulator(fast, quick) as fast_url:
        job = batch_job(tmp_path, {"slow": slow_url, "fast": fast_url})
        assert await run(job, tmp_path / "state") == 0
    slow_plan = slow.requests(project="slow", is_mutation=False)
    assert len(slow_plan) >= 20  # a page per gate: its plan took 20 round trips and more
    assert abs(first_mutation(slow, "slow") - first_mutation(fast, "fast")) < 0.15


async def test_a_failed_plan_does_not_hold_the_others_at_the_start(tmp_path, monkeypatch) -> None:
    """A target whose gate listing always fails ends its plan with an error; the others do not
    wait for it, and apply in full; the run exits 3 naming it."""
    healthy = World([gates_project("eu"), gates_project("apac")])
    broken = World([gates_project("us")])
    set_keys(monkeypatch, healthy, broken)
    faults = EmulatorConfig(fail_rate=1.0, fault_paths=("/console/v1/gates",), fault_seed=3)
    async with running_emulator(healthy) as good, running_emulator(broken, faults) as bad:
        job = batch_job(tmp_path, {"eu": good, "us": bad, "apac": good})
        with anyio.fail_after(30):  # a start line waiting for "us" forever fails here
            assert await run(job, tmp_path / "state") == 3
    assert broken.count(is_mutation=True) == 0
    for name in ("eu", "apac"):
        assert healthy.count(is_mutation=True, project=name, status=200) == 7
    outcomes = (await StateDir(tmp_path / "state").read_run_async() or {})["projects"]
    assert [name for name, o in outcomes.items() if o["exit_code"] != 0] == ["us"]


async def test_two_targets_that_are_one_project_are_refused(tmp_path, monkeypatch) -> None:
    """Two targets whose keys open one project are refused before anything is sent."""
    project = gates_project("eu")
    project.read_only_keys = frozenset({"console-eu-second-key"})
    world = World([project])
    monkeypatch.setenv(env_of("eu"), "console-eu-key")
    monkeypatch.setenv(env_of("eu2"), "console-eu-second-key")
    async with running_emulator(world) as url:
        job = batch_job(tmp_path, {"eu": url, "eu2": url})
        with pytest.raises(UserError, match="'eu' and 'eu2' are the same project"):
            await run(job, tmp_path / "state", "plan")
    assert world.count(is_mutation=True) == 0


# -- clone into several targets ---------------------------------------------------------------
def clone_world(
    monkeypatch: pytest.MonkeyPatch, names: tuple[str, ...], *, experiments: int
) -> tuple[World, Project, list[Project]]:
    """A source with ``experiments`` experiments and an empty target per name, keys set."""
    source = Project("source", "console-src-key")
    targets = [Project(name, f"console-{name}-key") for name in names]
    for one in (source, *targets):
        seed_directory(one, units=("userID", "stableID"), tags=("growth",), teams=(), apps=())
    populate_experiments(source, experiments)
    world = World([source, *targets])
    set_keys(monkeypatch, world)
    monkeypatch.setenv("BULKOPS_TEST_SOURCE_KEY", "console-src-key")
    return world, source, targets


async def test_clone_into_two_targets(tmp_path, monkeypatch) -> None:
    """One source's experiments are cloned into two projects, each with its own plan and verify."""
    world, source, targets = clone_world(monkeypatch, ("eu", "us"), experiments=2)
    async with running_emulator(world) as url:
        job = job_file(
            tmp_path, 'job = "clone_experiments"\nname = "org-clone"\n[source]\n'
            f'api_key_env = "BULKOPS_TEST_SOURCE_KEY"\nbase_url = "{url}"', "targets",
            {"eu": url, "us": url}, "[limits]\nconcurrency = 4\n",
        )  # fmt: skip
        assert await run(job, tmp_path / "state") == 0
    experiments = set(source.collection("experiments"))
    for target in targets:
        assert set(target.collection("experiments")) == experiments
    summary = (await StateDir(tmp_path / "state").read_run_async() or {})["summary"]["projects"]
    for name in ("eu", "us"):
        assert summary[name]["verify"]["differences"] == 0
        assert summary[name]["verify"]["checked"] > 0


async def test_a_source_cloned_into_many_targets_has_one_lane_and_is_read_once(
    tmp_path, monkeypatch
) -> None:
    """Four targets' clones share the source's lane: its concurrency holds for all of them
    together, and each of its entities is read once, not once per target."""
    names = ("eu", "us", "ap", "sa")
    world, source, targets = clone_world(monkeypatch, names, experiments=6)
    async with running_emulator(world, EmulatorConfig(latency_ms=20)) as url:
        job = job_file(
            tmp_path, 'job = "clone_experiments"\nname = "org-clone"\n[source]\n'
            f'api_key_env = "BULKOPS_TEST_SOURCE_KEY"\nbase_url = "{url}"', "targets",
            dict.fromkeys(names, url), "[limits]\nconcurrency = 3\n",
        )  # fmt: skip
        assert await run(job, tmp_path / "state") == 0
    for target in targets:
        assert set(target.collection("experiments")) == set(source.collection("experiments"))
    reads = [
        (r.path, tuple(sorted(r.query.items())))
        for r in world.requests(project="source")
        if r.path != "/console/v1/project"
    ]  # fmt: skip  (each job checks its own key)
    assert world.max_in_flight("source") <= 3
    assert reads
    assert len(reads) == len(set(reads)), "a source read was sent more than once"
    assert all(world.max_in_flight(name) <= 3 for name in names)


# -- crash and resume ------------------------------------------------------------------------
def done_tasks(state: Path) -> int:
    count = 0
    for journal in state.glob("projects/*/journal.jsonl"):
        for line in journal.read_bytes().splitlines():
            with contextlib.suppress(orjson.JSONDecodeError):
                count += orjson.loads(line).get("type") == "task_done"
    return count


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_completes_every_project(tmp_path) -> None:
    """A multi-project export killed mid-run resumes each project and publishes the index."""
    world = World([metrics_project(name, sources=3, per_source=250) for name in NAMES])
    env = {env_of(name): p.console_key for name, p in world.projects.items()}
    state = tmp_path / "state"
    with EmulatorThread(world, EmulatorConfig(latency_ms=60)) as emulator:
        job = export_job(tmp_path, dict.fromkeys(NAMES, emulator.base_url), concurrency=1)
        process = cli("run", str(job), "--state", str(state), env=env)
        wait_for(lambda: done_tasks(state) >= 4 or process.poll() is not None)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
        assert process.returncode == -signal.SIGKILL
        assert not (tmp_path / "out" / "manifest.json").exists()
        time.sleep(0.2)
        again = cli("run", str(job), "--state", str(state), env=env)
        _, err = again.communicate(timeout=60)
        assert again.returncode == 0, err.decode()
    assert b"replayed from checkpoint" in err
    index = manifest(tmp_path / "out" / "manifest.json")
    assert index["complete"] is True
    for name in NAMES:
        assert manifest(tmp_path / "out" / name / "manifest.json")["totals"]["metrics"] == 750


# -- sandbox --------------------------------------------------------------------------------
async def test_the_example_org_export_runs_in_the_sandbox(tmp_path) -> None:
    """`bulkops run jobs/export_org.toml --sandbox` exports one demo project per name."""
    example = Path(__file__).parent.parent / "jobs" / "export_org.toml"
    (tmp_path / "jobs").mkdir()
    job = tmp_path / "jobs" / "export_org.toml"  # its output dir is relative to its folder
    job.write_text(example.read_text())
    assert await run(job, tmp_path / "state", sandbox=True) == 0
    index = manifest(tmp_path / "exports" / "org" / "manifest.json")
    assert [(p["name"], p["complete"]) for p in index["projects"]] == [
        ("eu", True), ("us", True), ("apac", True),
    ]  # fmt: skip
    totals = {
        name: manifest(tmp_path / "exports" / "org" / name / "manifest.json")["totals"]["metrics"]
        for name in NAMES
    }
    assert len(set(totals.values())) > 1  # each demo project has data of its own


def test_the_board_shows_each_project() -> None:
    """The progress board has an entry per project: its phase, or how it finished."""
    from bulkops.commands.member import Member
    from bulkops.commands.progress import Board

    planning = Member("eu", connection=None)  # type: ignore[arg-type]
    done = Member("us", connection=None, exit_code=3)  # type: ignore[arg-type]
    line = Board({"eu": planning, "us": done}, live=False).line()
    assert line == "1 of 2 projects finished | eu: reading and planning | us: finished (exit 3)"
