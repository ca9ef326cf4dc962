"""batch_rule_update end to end on the emulator, 300 gates: plan, apply, conflict, undo, crash."""

from __future__ import annotations

import copy
import itertools
import signal
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from bulkops.cli import main
from bulkops.emulator import EmulatorThread, Project, World, running_emulator
from bulkops.engine.plan import Plan
from bulkops.jobs.semantics import normalize
from tests.support.batch import (
    BETA,
    EMAIL,
    EMPLOYEES_EDITS,
    KEY,
    KEY_ENV,
    PER_FAMILY,
    USERS,
    build_world,
    changed_checkout_ids,
    config,
    in_console,
    job_file,
    mutations,
    outcomes,
)
from tests.support.commands import bulkops, cli
from tests.support.waiting import wait_for


# -- the world ---------------------------------------------------------------------------------
def gates(world: World) -> dict[str, dict[str, Any]]:
    return {g["id"]: copy.deepcopy(g) for g in world.project("target").collection("gates").values()}


@pytest.fixture
def world(monkeypatch) -> World:
    world = build_world()
    monkeypatch.setenv(KEY_ENV, KEY)
    return world


async def human_edit(url: str, gate_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Somebody changes a gate in the console while the job is between plan and apply."""
    status, gate = await in_console(url, "PATCH", f"gates/{gate_id}", body)
    assert status == 200, gate
    return dict(gate)


def run_record(state: Path) -> dict[str, Any]:
    return orjson.loads((state / "run.json").read_bytes())


def assert_edited(gate: dict[str, Any], before: dict[str, Any]) -> None:
    """Internal is at 50% with exactly one email condition; the other rules did not move."""
    old = {r["name"]: r for r in before["rules"]}
    new = {r["name"]: r for r in gate["rules"]}
    assert list(new) == list(old)
    internal = new["Internal"]
    assert internal["passPercentage"] == 50
    assert [normalize(c) for c in internal["conditions"]] == [USERS, EMAIL]
    assert internal["baseID"] == old["Internal"]["baseID"]
    for name in ("Beta", "Everyone"):
        assert new[name] == old[name]


# -- the tests ---------------------------------------------------------------------------------
async def test_plan_sends_nothing_then_apply_changes_only_the_selected_rules(
    tmp_path, world, capsys
) -> None:
    """One PATCH per changed gate; untouched gates keep their version; a re-run sends nothing."""
    before = gates(world)
    job = job_file(tmp_path)
    async with running_emulator(world, config()) as url:
        assert await bulkops("plan", job, url, tmp_path / "state") == 0
        assert mutations(world) == 0
        out = capsys.readouterr().out
        assert await bulkops("apply", None, url, tmp_path / "state") == 0
        assert mutations(world) == len(changed_checkout_ids())
        assert await bulkops("run", job, url, tmp_path / "state") == 0  # a finished job, again
        assert mutations(world) == len(changed_checkout_ids())
    assert (
        "gate 'checkout_000' (version 1):\n  ~ rule 'Internal'\n      passPercentage: 10 -> 50\n"
        '      + condition email str_contains_any ["@example.com"]'
    ) in out
    assert "100 gates selected; 70 to update (70 rule changes), 30 unchanged" in out
    assert "[target] 70 mutations: " in out
    after = gates(world)
    changed = changed_checkout_ids()
    for gate_id, gate in after.items():
        if gate_id in changed:
            assert_edited(gate, before[gate_id])
            assert gate["version"] == before[gate_id]["version"] + 1
        else:
            assert gate == before[gate_id], gate_id
    patches = world.requests(is_mutation=True, project="target")
    assert {r.method for r in patches} == {"PATCH"}
    assert {r.path.removeprefix("/console/v1/gates/") for r in patches} == changed
    summary = run_record(tmp_path / "state")["summary"]
    assert summary["job"]["planned_mutations"] == 0
    assert summary["exit_code"] == 0


async def test_request_bodies_match_the_spec(tmp_path, world) -> None:
    """Each planned body (sent verbatim by apply) validates against GatePartialUpdateDto, with rollouts."""
    from tests.support.openapi_spec import spec_or_skip

    spec = spec_or_skip()
    edits = (
        EMPLOYEES_EDITS
        + """
    [[edits]]
    op = "add_rule"
    position = "first"
    rule = { name = "Employees", passPercentage = 100, conditions = [
        { type = "email", operator = "any", targetValue = ["a@example.com"] }] }
    """
    )
    async with running_emulator(world, config()) as url:
        assert await bulkops("plan", job_file(tmp_path, edits=edits), url, tmp_path / "s") == 0
    plan = await anyio.to_thread.run_sync(Plan.load, tmp_path / "s" / "plan.json")
    assert len(plan.operations) == PER_FAMILY
    for op in plan.operations:
        spec.validate_request_body(op.method, op.path, op.body)
        for rule in op.body["rules"]:  # sent back as read (api-assumptions #25)
            assert "baseID" not in rule or "pendingAutomatedRollouts" in rule


async def test_a_concurrent_edit_is_a_conflict_not_overwritten_unless_forced(
    tmp_path, world, capsys
) -> None:
    """A gate edited between plan and apply is a conflict (exit 3, not overwritten) until apply --force."""
    job = job_file(tmp_path)
    state = tmp_path / "state"
    async with running_emulator(world, config()) as url:
        assert await bulkops("plan", job, url, state) == 0
        human = await human_edit(url, "checkout_001", {"rules": [
            {"name": "Internal", "passPercentage": 30, "conditions": [USERS]}]})  # fmt: skip
        sent_before_apply = mutations(world)
        assert await bulkops("apply", None, url, state) == 3
        err = capsys.readouterr().err
        assert mutations(world) - sent_before_apply == len(changed_checkout_ids()) - 1
        assert gates(world)["checkout_001"] == human  # not overwritten
        assert "conflict: gate 'checkout_001'" in err
        assert "--force" in err
        assert await bulkops("apply", None, url, state, force=True) == 0
    forced = gates(world)["checkout_001"]
    assert [r["name"] for r in forced["rules"]] == ["Internal", "Beta", "Everyone"]
    assert forced["rules"][0]["passPercentage"] == 50


async def test_undo_restores_the_exact_before_state_and_is_guarded(tmp_path, world) -> None:
    """undo restores every gate's before-image, except one edited since, which it refuses unless forced."""
    before = gates(world)
    job = job_file(tmp_path)
    state = tmp_path / "state"
    async with running_emulator(world, config()) as url:
        assert await bulkops("run", job, url, state) == 0
        later = await human_edit(url, "checkout_002", {"description": "edited after the job"})
        assert await bulkops("undo", None, url, state) == 3  # one gate changed since: refused
        assert gates(world)["checkout_002"] == later
        assert await bulkops("undo", None, url, state, force=True) == 0
    after = gates(world)
    for gate_id, gate in after.items():
        old = before[gate_id]
        assert normalize(gate["rules"]) == normalize(old["rules"]), gate_id
        assert [r["baseID"] for r in gate["rules"]] == [r["baseID"] for r in old["rules"]]
        if gate_id in changed_checkout_ids() and gate_id != "checkout_002":
            assert gate["version"] == old["version"] + 2
            assert {k: v for k, v in gate.items() if k not in ("rules", "version",
                    "lastModifiedTime")} == {k: v for k, v in old.items() if k not in (
                    "rules", "version", "lastModifiedTime")}  # fmt: skip


async def test_a_python_edit_that_raises_fails_only_that_gate(tmp_path, world, capsys) -> None:
    """A python edit raising on one gate fails that gate alone; the others are edited."""
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "brt_edits.py").write_text(textwrap.dedent("""
        def employees_only(entity, rule):
            if entity["id"] == "search_007":
                raise RuntimeError("search_007 is special")
            emails = {"type": "email", "operator": "str_contains_any",
                      "targetValue": ["@example.com"]}
            if emails not in rule["conditions"]:
                rule["conditions"].append(emails)
            return rule
    """))  # fmt: skip
    select = 'entity = "gates"\nid_pattern = "search_00*"\nrule_name = "Internal"'
    edits = '[[edits]]\nop = "python"\nfunction = "brt_edits:employees_only"\n'
    job = job_file(tmp_path / "job", select=select, edits=edits)
    before = gates(world)
    async with running_emulator(world, config()) as url:
        assert await bulkops("run", job, url, tmp_path / "state") == 3
    out, err = capsys.readouterr()
    assert "FAILED gate 'search_007': edits.0 (python brt_edits:employees_only) raised " \
        "RuntimeError: search_007 is special" in out  # fmt: skip
    assert "search_007" in err
    assert "search_007 is special" in err
    after = gates(world)
    assert after["search_007"] == before["search_007"]
    edited = {i for i in range(10) if i != 7 and i % 5 != 4 and i % 10 != 3}
    for i in range(10):
        gate_id = f"search_{i:03d}"
        assert (after[gate_id]["version"] > before[gate_id]["version"]) == (i in edited), gate_id
    logged = (tmp_path / "state" / "log.jsonl").read_text()
    assert "bulkops.plan.edit_failed" in logged
    assert "Traceback" in logged
    summary = run_record(tmp_path / "state")["summary"]
    assert any("search_007" in failure["error"] or failure["what"] == "search_007"
               for failure in summary["failures"])  # fmt: skip


async def test_a_bad_edit_in_the_job_file_exits_2_naming_its_index(tmp_path, world, capsys) -> None:
    """An unknown op or bad condition type exits 2 naming edits.N and the expected values."""
    bad_op = job_file(tmp_path / "a", edits='[[edits]]\nop = "add_conditions"\n')
    bad_condition = job_file(tmp_path / "b", edits=EMPLOYEES_EDITS.replace('"email"', '"e-mail"'))
    async with running_emulator(world, config()) as url:
        plan = ["plan", str(bad_op), "--base-url", url, "--state", str(tmp_path / "s")]
        assert await anyio.to_thread.run_sync(main, plan) == 2  # the CLI parses before its loop
        err = capsys.readouterr().err
        assert 'edits.0.op: expected one of "add_condition",' in err
        assert 'got "add_conditions"' in err
        run = ["run", str(bad_condition), "--base-url", url]
        assert await anyio.to_thread.run_sync(main, run) == 2
        err = capsys.readouterr().err
        assert 'edits.0.condition.type: expected one of "app_version",' in err
        assert 'got "e-mail"' in err
    assert world.count() == 0


async def test_review_settings_turn_edits_into_pending_reviews(tmp_path, world) -> None:
    """With respect_review, a gate that requires review gets a pending review instead of the edit."""
    from bulkops.emulator.resources._entities import set_review_required

    set_review_required(world.project("target"), "gates", "checkout_000")
    before = gates(world)["checkout_000"]
    job = job_file(tmp_path, extra="[options]\nrespect_review = true\n")
    async with running_emulator(world, config()) as url:
        assert await bulkops("run", job, url, tmp_path / "state") == 0
        summary = run_record(tmp_path / "state")["summary"]
        assert summary["job"]["pending_review"] == ["checkout_000"]
        assert summary["job"]["outcomes"] == {"applied": 69, "pending_review": 1}
        gate = gates(world)["checkout_000"]
        assert gate["rules"] == before["rules"]
        assert gate["activeReview"]["reviewStatus"] == "pending"
        sent = mutations(world)
        # a re-run leaves the gate with its pending review alone instead of opening another
        assert await bulkops("run", job, url, tmp_path / "state") == 0
        assert mutations(world) == sent


async def test_dynamic_configs_with_add_rule_and_a_segment_swap(tmp_path, monkeypatch) -> None:
    """On dynamic configs, add_rule and a segment swap apply with return values kept."""
    from bulkops.emulator.resources.dynamic_configs import create_dynamic_config
    from bulkops.emulator.resources.segments import create_segment

    world = World([Project("target", KEY)])
    project = world.project("target")
    monkeypatch.setenv(KEY_ENV, KEY)
    for segment in ("beta_users", "beta_users_v2"):
        create_segment(project, {"name": segment, "type": "id_list"}, 0, ids=["u1"])
    for i in range(20):
        rules = [{"name": "Beta", "passPercentage": 100, "conditions": [BETA],
                  "returnValue": {"size": i}}] if i % 2 else []  # fmt: skip
        create_dynamic_config(project, {"name": f"config {i}", "rules": rules}, i)
    edits = """
    [[edits]]
    op = "replace_target_value"
    match = { type = "passes_segment" }
    from = "beta_users"
    to = "beta_users_v2"
    [[edits]]
    op = "add_rule"
    [edits.rule]
    name = "Kill switch"
    passPercentage = 0
    conditions = [{ type = "public" }]
    returnValue = { enabled = false }
    """
    job = job_file(tmp_path, select='entity = "dynamic_configs"', edits=edits)
    async with running_emulator(world, config()) as url:
        assert await bulkops("run", job, url, tmp_path / "state") == 0
        assert mutations(world) == 20
        assert await bulkops("run", job, url, tmp_path / "state") == 0
        assert mutations(world) == 20
    for i, stored in enumerate(project.collection("dynamic_configs").values()):
        names = [r["name"] for r in stored["rules"]]
        assert names == (["Beta", "Kill switch"] if i % 2 else ["Kill switch"])
        if i % 2:
            assert stored["rules"][0]["conditions"][0]["targetValue"] == "beta_users_v2"
            assert stored["rules"][0]["returnValue"] == {"size": i}
        assert stored["rules"][-1]["returnValue"] == {"enabled": False}


# -- crash safety ------------------------------------------------------------------------------
async def uninterrupted_end_state(tmp_path: Path) -> dict[str, Any]:
    reference = build_world()
    async with running_emulator(reference, config()) as url:
        assert await bulkops("run", job_file(tmp_path / "ref"), url, tmp_path / "ref-state") == 0
    return {gate_id: normalize(g["rules"]) for gate_id, g in gates(reference).items()}


@pytest.mark.slow
def test_sigkill_mid_apply_then_rerun_gives_the_uninterrupted_end_state(
    tmp_path, monkeypatch
) -> None:
    """A batch edit killed mid-apply, then re-run, ends as an uninterrupted one, each gate written once."""
    monkeypatch.setenv(KEY_ENV, KEY)
    expected = anyio.run(uninterrupted_end_state, tmp_path)

    world = build_world()
    job = job_file(tmp_path / "killed", concurrency=2)
    state = tmp_path / "state"
    env = {KEY_ENV: KEY}
    with EmulatorThread(world, config(latency_ms=25)) as emulator:
        process = cli("run", str(job), "--base-url", emulator.base_url, "--state", str(state),
                      env=env)  # fmt: skip
        wait_for(lambda: outcomes(state) >= 10 or process.poll() is not None)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
        assert process.returncode == -signal.SIGKILL
        assert 10 <= outcomes(state) < len(changed_checkout_ids())
        time.sleep(0.2)  # requests the dead process left in flight finish in the emulator
        rerun = cli("run", str(job), "--base-url", emulator.base_url, "--state", str(state),
                    env=env)  # fmt: skip
        _, err = rerun.communicate(timeout=60)
        assert rerun.returncode == 0, err.decode()
    after = gates(world)
    assert {gate_id: normalize(g["rules"]) for gate_id, g in after.items()} == expected
    for gate_id in changed_checkout_ids():
        emails = [c for c in after[gate_id]["rules"][0]["conditions"] if c["type"] == "email"]
        assert len(emails) == 1, gate_id
    assert mutations(world) == len(changed_checkout_ids())  # each gate written exactly once


async def test_lost_answers_are_applied_once_and_still_undone(tmp_path, world) -> None:
    """A PATCH applied but unanswered is reconciled by reading (not re-sent), and undo covers it."""
    before = gates(world)
    job = job_file(tmp_path)
    state = tmp_path / "state"
    async with running_emulator(world, config(lost_answer_rate=0.3, fault_seed=3)) as url:
        assert await bulkops("run", job, url, state) == 0
        lost = world.count(is_mutation=True, project="target", fault="lost_answer")
        assert lost > 0
        assert mutations(world) == len(changed_checkout_ids())  # none sent twice
    async with running_emulator(world, config()) as url:
        assert await bulkops("undo", None, url, state) == 0
    for gate_id, gate in gates(world).items():
        assert normalize(gate["rules"]) == normalize(before[gate_id]["rules"]), gate_id


# -- the shipped examples ----------------------------------------------------------------------
REPO_JOBS = Path(__file__).resolve().parents[1] / "jobs"


def test_the_example_job_runs_in_the_sandbox(tmp_path, capsys) -> None:
    """The shipped example job runs in the sandbox, showing its diff and the applied count."""
    state = str(tmp_path / "state")
    assert main(["run", str(REPO_JOBS / "batch_rule_update.toml"), "--sandbox", "--state",
                 state]) == 0  # fmt: skip
    out, err = capsys.readouterr()
    assert "~ rule 'Internal'" in out
    assert "passPercentage: 100 -> 50" in out
    assert "outcomes: 47 applied" in err


def test_the_example_python_edits_converge_on_every_demo_gate() -> None:
    """The shipped example python edits change over 100 demo gates and are idempotent on every one."""
    from bulkops.emulator import build_demo_world
    from bulkops.jobs.batch_rule_update import load_functions
    from bulkops.jobs.rule_edits import PythonEdit, edit_entity

    names = ("cap_temporary_rollouts", "production_only", "drop_zero_percent_rules")
    edits = [PythonEdit(op="python", function=f"edits_example:{name}") for name in names]
    functions = load_functions(edits, REPO_JOBS)
    changed = 0
    for gate in build_demo_world().project("source").collection("gates").values():
        edited = edit_entity(gate, edits, functions=functions)
        assert edited.idempotent, (gate["id"], edited.again)
        changed += normalize([s.rule for s in edited.slots]) != normalize(gate["rules"])
    assert changed > 100


async def test_verify_reads_the_written_entities_back_concurrently(tmp_path, world) -> None:
    """Verify's read-backs overlap at the job's concurrency instead of one round trip each."""
    latency_s = 0.03
    async with running_emulator(world, config(latency_ms=latency_s * 1000)) as url:
        assert await bulkops("run", job_file(tmp_path), url, tmp_path / "state") == 0
    last_write = max(r.time for r in world.requests(is_mutation=True, project="target"))
    read_backs = [r.time for r in world.requests(method="GET", project="target")
                  if r.time > last_write and r.path.startswith("/console/v1/gates/")]  # fmt: skip
    assert len(read_backs) == len(changed_checkout_ids())
    # One at a time, each read-back ends at least a round trip after the one before; a load on
    # the machine only widens that. Together, most end within a few ms of another.
    gaps = [b - a for a, b in itertools.pairwise(sorted(read_backs))]
    assert sum(gap < latency_s / 2 for gap in gaps) >= len(gaps) / 2


@pytest.mark.parametrize("shown", ["dto", "all"])
async def test_a_dynamic_config_held_for_review_is_reported_pending_under_either_answer(
    tmp_path, monkeypatch, shown
) -> None:
    """With respect_review, a config whose change is held is reported as a pending review and
    not as a verify difference, whether or not its answer shows ``activeReview``; a re-run
    leaves it alone instead of opening another review, until the review is decided."""
    from bulkops.emulator.resources._entities import (
        DYNAMIC_CONFIGS,
        latest_review,
        set_review_required,
    )
    from bulkops.emulator.resources.dynamic_configs import create_dynamic_config

    world = World([Project("target", KEY)])
    project = world.project("target")
    monkeypatch.setenv(KEY_ENV, KEY)
    for i in range(4):
        rules = [{"name": "Internal", "passPercentage": 10, "conditions": [USERS],
                  "returnValue": {"size": i}}]  # fmt: skip
        create_dynamic_config(project, {"name": f"config {i}", "rules": rules}, i)
    set_review_required(project, "dynamic_configs", "config_2")
    job = job_file(tmp_path, select='entity = "dynamic_configs"\nrule_name = "Internal"',
                   extra="[options]\nrespect_review = true\n")  # fmt: skip
    async with running_emulator(world, config(review_shown=shown)) as url:
        assert await bulkops("run", job, url, tmp_path / "state") == 0
        summary = run_record(tmp_path / "state")["summary"]
        assert summary["job"]["pending_review"] == ["config_2"]
        assert summary["job"]["outcomes"] == {"applied": 3, "pending_review": 1}
        assert summary["verify"]["differences"] == 0
        held = project.collection("dynamic_configs").get("config_2")
        assert held["rules"][0]["passPercentage"] == 10
        assert mutations(world) == 4
        assert await bulkops("run", job, url, tmp_path / "state", fresh=True) == 0
        assert mutations(world) == 4  # planned anew, still held: not sent again
        review = latest_review(project, DYNAMIC_CONFIGS, "config_2")
        commit = f"dynamic_configs/config_2/reviews/{review}/commit"
        committed, _ = await in_console(url, "PUT", commit)  # a reviewer approves it
        assert committed == 200
        assert mutations(world) == 5  # the reviewer's commit
        assert await bulkops("run", job, url, tmp_path / "state", fresh=True) == 0
        assert mutations(world) == 5  # decided: its rules are as the edit wants them
    assert project.collection("dynamic_configs").get("config_2")["rules"][0]["passPercentage"] == 50
