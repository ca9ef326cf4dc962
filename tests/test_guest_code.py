"""Python edits are guests: nothing they are named, raise or return can break the engine."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from bulkops.cli import main
from bulkops.commands import planned
from bulkops.commands.session import RunOptions
from bulkops.emulator import EmulatorConfig, EmulatorThread, Project, World, running_emulator
from bulkops.engine.plan import Note, Plan
from bulkops.errors import FunctionFailed
from bulkops.jobs import load
from bulkops.jobs.batch_rule_update import load_functions
from bulkops.jobs.rule_edits import PythonEdit, checked_rule, run_edits
from tests.support.commands import FAST_RETRY, loaded

KEY_ENV = "BULKOPS_TEST_GUEST_KEY"
KEY = "console-guest-target-key"
GATES = ("g_ok", "g_raise", "g_other")
NOISE = ("Traceback", "pydantic", "type=", "Input should", "Value error")


def build_world() -> World:
    from bulkops.emulator.resources.gates import create_gate

    project = Project("target", KEY)
    for i, gate_id in enumerate(GATES):
        rules = [{"name": "Internal", "passPercentage": 40, "conditions": [{"type": "public"}]}]
        create_gate(
            project, {"id": gate_id, "name": gate_id, "rules": rules}, 1_704_067_200_000 + i
        )
    return World([project])


@pytest.fixture
def world(monkeypatch) -> World:
    monkeypatch.setenv(KEY_ENV, KEY)
    return build_world()


def job_with(folder: Path, module: str, source: str, function: str = "edit") -> Path:
    """A batch_rule_update job beside ``<module>.py``, calling ``<module>:<function>``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    path = folder / "job.toml"
    path.write_text(
        f'job = "batch_rule_update"\n[target]\napi_key_env = "{KEY_ENV}"\n'
        '[select]\nentity = "gates"\n'
        f'[[edits]]\nop = "python"\nfunction = "{module}:{function}"\n'
        '[limits]\nmutation_rate = ["2000/10s"]\n'
    )
    return path


async def plan_of(job: Path, url: str, state: Path) -> tuple[int, Plan]:
    options = RunOptions(state_dir=state, base_url=url, retry=FAST_RETRY, progress=False,
                         command="plan")  # fmt: skip
    code = await planned.plan_command(await loaded(str(job)), options)
    return code, await anyio.to_thread.run_sync(Plan.load, state / "plan.json")


def failures(plan: Plan) -> dict[str, str]:
    return {n.subject: n.message for n in plan.notes if n.fail}


def planned_ids(plan: Plan) -> set[str]:
    return {op.entity_id for op in plan.operations}


HALF = """
    def edit(entity, rule):
        return {**rule, "passPercentage": rule["passPercentage"] / 2}
"""


# -- names ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("module", ["json", "bulkops"])
async def test_a_module_named_like_a_real_one_beside_the_job_file_shadows_nothing(
    tmp_path, world, capsys, module
) -> None:
    """`json.py` or `bulkops.py` beside the job file is imported as a guest; the real ones stay."""
    job = job_with(tmp_path / "job", module, HALF)
    async with running_emulator(world, EmulatorConfig()) as url:
        code, plan = await plan_of(job, url, tmp_path / "state")
    assert code == 0
    assert planned_ids(plan) == set(GATES)
    assert not failures(plan)
    assert sys.modules["json"] is json
    assert sys.modules["bulkops"].__file__.endswith("__init__.py")
    assert not any(name.startswith(f"{module}.") and "guest" in name for name in sys.modules)
    spec = (await loaded(job)).spec
    functions = await anyio.to_thread.run_sync(load_functions, spec.edits, job.parent)
    assert functions[0].__module__.startswith("_bulkops_guest_")
    assert functions[0].__module__.endswith(f".{module}")


def test_edits_are_imported_afresh_on_every_load(tmp_path) -> None:
    """A module changed between two plans is read again, not served from a cache."""
    job = job_with(tmp_path, "fresh_edits", "def edit(entity, rule):\n    return 1\n")
    first = load_functions(load(str(job)).spec.edits, tmp_path)[0]
    (tmp_path / "fresh_edits.py").write_text("def edit(entity, rule):\n    return 2\n")
    second = load_functions(load(str(job)).spec.edits, tmp_path)[0]
    assert (first({}, {}), second({}, {})) == (1, 2)


def test_a_guest_module_imports_its_neighbours_relatively(tmp_path) -> None:
    """`from . import helpers` finds helpers.py beside the job file, inside the guest package."""
    (tmp_path / "helpers.py").write_text("PCT = 33\n")
    job = job_with(tmp_path, "uses_helpers", """
        from . import helpers
        def edit(entity, rule):
            return {**rule, "passPercentage": helpers.PCT}
    """)  # fmt: skip
    function = load_functions(load(str(job)).spec.edits, tmp_path)[0]
    assert function({}, {"passPercentage": 1}) == {"passPercentage": 33}
    assert "helpers" not in sys.modules


def test_a_system_exit_at_import_is_a_job_file_error(tmp_path, capsys) -> None:
    """A module that calls sys.exit() while being imported makes `validate` exit 2, plainly."""
    job = job_with(
        tmp_path, "exits", "import sys\nsys.exit(5)\ndef edit(entity, rule):\n    pass\n"
    )
    assert main(["validate", str(job)]) == 2
    err = capsys.readouterr().err
    assert "edits.0.function: importing 'exits' failed: it called sys.exit(5) at import" in err
    assert "Traceback" not in err


# -- raising ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("statement", "said"),
    [
        ("raise SystemExit(3)", "raised SystemExit (sys.exit(3)); a python edit must return"),
        ("raise KeyboardInterrupt", "raised KeyboardInterrupt"),
        ("raise ValueError('no good')", "raised ValueError: no good"),
    ],
)
async def test_whatever_a_function_raises_fails_only_that_entity(
    tmp_path, world, statement, said
) -> None:
    """SystemExit, KeyboardInterrupt or ValueError for one gate fail it; the others are planned."""
    job = job_with(tmp_path / "job", "raising_edits", f"""
        def edit(entity, rule):
            if entity["id"] == "g_raise":
                {statement}
            return {{**rule, "passPercentage": 10}}
    """)  # fmt: skip
    async with running_emulator(world, EmulatorConfig()) as url:
        code, plan = await plan_of(job, url, tmp_path / "state")
    assert code == 3  # the plan is written; the failed entity makes it exit 3
    assert planned_ids(plan) == {"g_ok", "g_other"}
    message = failures(plan)["g_raise"]
    assert f"edits.0 (python raising_edits:edit) {said}" in message
    assert "the traceback is in the log" in message
    logged = (tmp_path / "state" / "log.jsonl").read_text()
    assert "Traceback" in logged
    assert "raising_edits.py" in logged


def test_a_run_with_a_raising_function_ends_with_exit_3(tmp_path, world, capsys) -> None:
    """Through the CLI, a function calling sys.exit for one gate is a failed item, not an exit."""
    job = job_with(tmp_path / "job", "exiting_edits", """
        import sys
        def edit(entity, rule):
            if entity["id"] == "g_raise":
                sys.exit(0)
            return {**rule, "passPercentage": 10}
    """)  # fmt: skip
    with EmulatorThread(world) as emulator:
        code = main(["run", str(job), "--base-url", emulator.base_url, "--state",
                     str(tmp_path / "state")])  # fmt: skip
    assert code == 3
    out, err = capsys.readouterr()
    assert "FAILED gate 'g_raise'" in out
    assert "raised SystemExit (sys.exit(0))" in out
    assert "Traceback" not in out + err
    rules = {g["id"]: g["rules"][0]["passPercentage"]
             for g in world.project("target").collection("gates").values()}  # fmt: skip
    assert rules == {"g_ok": 10, "g_raise": 40, "g_other": 10}


# -- returning --------------------------------------------------------------------------------------
BAD_RETURNS = """
    def edit(entity, rule):
        bad = {
            "g_ok": None,
            "g_raise": {**rule, "conditions": [1, "public"]},
            "g_other": {**rule, "colour": "blue"},
        }
        return bad[entity["id"]] if entity["id"] in bad else rule
"""


async def test_bad_returns_fail_that_entity_naming_the_field(tmp_path, world) -> None:
    """Non-object conditions and an unknown rule key fail their gate; the plan does not crash."""
    job = job_with(tmp_path / "job", "returning_edits", BAD_RETURNS)
    async with running_emulator(world, EmulatorConfig()) as url:
        code, plan = await plan_of(job, url, tmp_path / "state")
    assert code == 3  # the plan is written; the failed entities make it exit 3
    assert planned_ids(plan) == {"g_ok"}  # None: the rule is deleted
    failed = failures(plan)
    assert "conditions.0: expected an object, got 1 (an integer)" in failed["g_raise"]
    assert 'conditions.1: expected an object, got "public" (a string)' in failed["g_raise"]
    assert "colour: not a field of a rule; a rule has id, baseID, name" in failed["g_other"]
    assert all("the traceback" not in message for message in failed.values())


RULE = {"id": "b:40.00:1", "baseID": "b", "name": "Internal", "passPercentage": 40,
        "conditions": [{"type": "public"}], "environments": None,
        "completedAutomatedRollouts": [{"time": 1, "passPercent": 40}]}  # fmt: skip


@pytest.mark.parametrize(
    ("returned", "said"),
    [
        (
            {**RULE, "passPercentage": True},
            "passPercentage: expected a number from 0 to 100, got true (a boolean)",
        ),
        (
            {**RULE, "passPercentage": "50"},
            'passPercentage: expected a number from 0 to 100, got "50" (a string)',
        ),
        (
            {**RULE, "passPercentage": 150},
            "passPercentage: expected a number from 0 to 100, got 150",
        ),
        ({**RULE, "passPercentage": 12.345}, "with at most two decimals, got 12.345"),
        ({**RULE, "passPercentage": float("nan")}, "passPercentage: expected a number"),
        ({k: v for k, v in RULE.items() if k != "name"}, "name: required key is missing"),
        ({**RULE, "conditions": {"type": "public"}}, "conditions: expected a list, got"),
        (
            {**RULE, "conditions": [{"type": "emial"}]},
            'conditions.0.type: expected one of "app_version"',
        ),
        (
            {**RULE, "conditions": [{"type": "email", "operator": "any", "targetValue": True}]},
            "conditions.0.targetValue: expected a string, a number, or a list",
        ),
        (
            {
                **RULE,
                "conditions": [
                    {"type": "user_id", "operator": "any", "targetValue": ["a"], "colour": 1}
                ],
            },
            "conditions.0.colour: unknown key",
        ),
        ({**RULE, "environments": "prod"}, 'environments: expected a list, got "prod"'),
        (
            {**RULE, "returnValue": {"a": {1, 2}}},
            "returnValue: expected JSON data, found a Python set",
        ),
        ({**RULE, "variants": []}, "variants: not a field of a rule"),  # gates have no variants
        ([RULE], "returned [{"),
        ("Internal", 'returned "Internal" (a string), not a rule (an object) or None'),
    ],
)
def test_a_returned_rule_is_checked_like_a_job_files(returned: Any, said: str) -> None:
    """Booleans, strings and out-of-range numbers, unknown or missing fields are named, per field."""
    edit = PythonEdit(op="python", function="m:f")
    with pytest.raises(FunctionFailed) as failure:
        run_edits({"id": "g", "rules": [RULE]}, [edit], functions={0: lambda e, r: returned})
    message = str(failure.value)
    assert message.startswith("edits.0 (python m:f) returned ")
    assert said in message
    assert not any(noise in message for noise in NOISE)


def test_what_the_function_passes_through_is_not_second_guessed() -> None:
    """Conditions and fields the server gave back unchanged pass, even if the job-file check would
    refuse them; a dynamic config's rule may carry variants; integral numbers stay integers."""
    odd = {"type": "user_id", "operator": "regex", "targetValue": "^a"}  # third-party operator
    given = {**RULE, "conditions": [odd], "isServerThing": True}
    assert checked_rule({**given, "passPercentage": 50.0}, given)["passPercentage"] == 50
    config_rule = {**RULE, "variants": [{"name": "v", "passPercentage": 50}],
                   "returnValueJson5": "{}"}  # fmt: skip
    assert checked_rule(config_rule, RULE, config=True) == config_rule
    with pytest.raises(FunctionFailed):
        # ...but a server field the function changes is not one a rule accepts
        run_edits({"id": "g", "rules": [given]}, [PythonEdit(op="python", function="m:f")],
                  functions={0: lambda e, r: {**r, "isServerThing": False}})  # fmt: skip


# -- not idempotent -------------------------------------------------------------------------------------
async def test_a_halving_edit_is_planned_once_with_a_warning(tmp_path, world, capsys) -> None:
    """Halving every rollout is an ordinary mass edit: planned with one application, and flagged."""
    job = job_with(tmp_path / "job", "halving", HALF)
    async with running_emulator(world, EmulatorConfig()) as url:
        code, plan = await plan_of(job, url, tmp_path / "state")
    assert code == 0
    assert planned_ids(plan) == set(GATES)
    assert not failures(plan)
    for op in plan.operations:
        assert [rule["passPercentage"] for rule in op.body["rules"]] == [20]
    notes = [n for n in plan.notes if n.kind == "not_idempotent"]
    assert sorted(notes, key=lambda n: n.subject) == [
        Note(kind="not_idempotent", subject=gate_id, subject_kind="gate",
             message="not idempotent: running this job again after it finishes applies it again")
        for gate_id in sorted(GATES)
    ]  # fmt: skip
    out = capsys.readouterr().out
    assert out.count("  warning: not idempotent: running this job again") == len(GATES)
    assert "warning: the edits of 3 gates are not idempotent" in out
    assert "0 failed" in out
    saved = orjson.loads((tmp_path / "state" / "plan.json").read_bytes())
    assert any(n["kind"] == "not_idempotent" for n in saved["notes"])


def test_an_edit_that_fails_only_when_applied_again_is_planned_and_flagged() -> None:
    """Halving 0.5 gives 0.25 (fine), then 0.125 (three decimals): the first result is planned."""
    from bulkops.jobs.rule_edits import edit_entity

    edit = PythonEdit(op="python", function="m:f")
    entity = {"id": "g", "rules": [{**RULE, "passPercentage": 0.5}]}
    halve = {0: lambda e, r: {**r, "passPercentage": r["passPercentage"] / 2}}
    edited = edit_entity(entity, [edit], functions=halve)
    assert [slot.rule["passPercentage"] for slot in edited.slots] == [0.25]
    assert not edited.idempotent
    assert "at most two decimals" in edited.again
