"""What bulkops writes, under each reading of what the spec leaves open (docs/api-assumptions.md).

Each test runs a write against the emulator under every reading the finding names, and checks
the entity as stored afterwards: what the job meant to change changed, and nothing else did.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from bulkops.commands import planned
from bulkops.commands.session import RunOptions
from bulkops.emulator import EmulatorConfig, Project, World, running_emulator
from tests.support.batch import KEY, KEY_ENV, config, in_console, job_file
from tests.support.commands import FAST_RETRY, bulkops, loaded
from tests.support.jobs import clone_job

RULE_FIELDS = ("reset", "kept")
PENDING = [{"time": 1_900_000_000_000, "passPercent": 50}]
DONE = [{"time": 1_700_000_000_000, "passPercent": 10}]
BETA = {"type": "passes_segment", "targetValue": "beta_users"}
EMAIL = {"type": "email", "operator": "str_contains_any", "targetValue": ["@example.com"]}


# -- the world: gates and dynamic configs whose rules carry every field a rule can have -------
def _rich_rule(name: str, *, config: bool) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "name": name,
        "passPercentage": 10,
        "conditions": [BETA],
        "environments": ["production"],
        "completedAutomatedRollouts": DONE,
        "pendingAutomatedRollouts": PENDING,
    }
    if config:
        rule["returnValue"] = {"size": 3}
        rule["variants"] = [{"name": "big", "passPercentage": 50, "returnValue": {"size": 9}}]
    return rule


def rich_world() -> World:
    """Two gates and two dynamic configs, each with an Internal and an Other rule."""
    from bulkops.emulator.resources.dynamic_configs import create_dynamic_config
    from bulkops.emulator.resources.gates import create_gate
    from bulkops.emulator.resources.segments import create_segment

    project = Project("target", KEY)
    create_segment(project, {"name": "beta_users", "type": "id_list"}, 0, ids=["u1"])
    for i in range(2):
        gate_rules = [_rich_rule(n, config=False) for n in ("Internal", "Other")]
        create_gate(project, {"id": f"gate_{i}", "name": f"gate {i}", "rules": gate_rules}, i)
        config_rules = [_rich_rule(n, config=True) for n in ("Internal", "Other")]
        create_dynamic_config(project, {"name": f"config {i}", "rules": config_rules}, i)
    return World([project])


def stored(world: World, kind: str) -> dict[str, dict[str, Any]]:
    return {e["id"]: copy.deepcopy(e) for e in world.project("target").collection(kind).values()}


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


SET_50 = """
[[edits]]
op = "set_pass_percentage"
value = 50
[[edits]]
op = "add_condition"
condition = { type = "email", operator = "str_contains_any", targetValue = ["@example.com"] }
"""


def _job(tmp_path: Path, entity: str, edits: str = SET_50) -> Path:
    return job_file(tmp_path, select=f'entity = "{entity}"\nrule_name = "Internal"', edits=edits)


async def _patch(url: str, path: str, body: Any) -> dict[str, Any]:
    status, data = await in_console(url, "PATCH", path, body)
    assert status == 200, data
    return dict(data)


# -- #25: what a full rules list leaves of a matched rule's fields ----------------------------
@pytest.mark.parametrize("rule_fields", RULE_FIELDS)
async def test_the_emulator_readings_of_a_rule_item_that_leaves_fields_out(rule_fields) -> None:
    """Under "reset" a rule item sent with only its id and content loses environments, return
    value, variants and rollouts; under "kept" it keeps them: the readings differ."""
    world = rich_world()
    config_id = "config_0"
    rule = stored(world, "dynamic_configs")[config_id]["rules"][0]
    thin = {k: rule[k] for k in ("id", "name", "passPercentage", "conditions")}
    async with running_emulator(world, config(rule_fields=rule_fields)) as url:
        answer = await _patch(url, f"dynamic_configs/{config_id}", {"rules": [thin]})
    [after] = answer["rules"]
    assert after["baseID"] == rule["baseID"]
    kept = {k: after.get(k) for k in ("environments", "returnValue", "variants",
                                     "pendingAutomatedRollouts")}  # fmt: skip
    if rule_fields == "kept":
        assert kept == {k: rule[k] for k in kept}
    else:
        assert kept == {"environments": None, "returnValue": {}, "variants": None,
                        "pendingAutomatedRollouts": []}  # fmt: skip


@pytest.mark.parametrize("rule_fields", RULE_FIELDS)
@pytest.mark.parametrize("entity", ["gates", "dynamic_configs"])
async def test_batch_edit_and_undo_keep_every_field_of_every_rule(
    tmp_path, key, entity, rule_fields
) -> None:
    """batch_rule_update changes only what its edits say (environments, return values, variants
    and scheduled rollouts kept, on the edited rule and the others), and undo restores the rules
    exactly, under either reading of what a rule item left out means."""
    world = rich_world()
    before = stored(world, entity)
    job = _job(tmp_path, entity)
    async with running_emulator(world, config(rule_fields=rule_fields)) as url:
        assert await bulkops("run", job, url, tmp_path / "state") == 0
        edited = stored(world, entity)
        assert await bulkops("undo", None, url, tmp_path / "state") == 0
    for entity_id, old in before.items():
        internal, other = edited[entity_id]["rules"]
        want = {**old["rules"][0], "passPercentage": 50, "conditions": [BETA, EMAIL]}
        assert _content(internal) == _content(want)
        assert internal["baseID"] == old["rules"][0]["baseID"]
        assert other == old["rules"][1]  # untouched: not even a new revision
        undone = stored(world, entity)[entity_id]["rules"]
        assert [_content(r) for r in undone] == [_content(r) for r in old["rules"]]
        assert [r["baseID"] for r in undone] == [r["baseID"] for r in old["rules"]]


def _content(rule: dict[str, Any]) -> dict[str, Any]:
    """A rule without its revision id (which an edit moves on)."""
    return {k: v for k, v in rule.items() if k != "id"}


CLEAR_ENVIRONMENTS = """
[[edits]]
op = "python"
function = "fresh:everywhere"
"""
FRESH = '''
def everywhere(entity, rule):
    """A fresh dict: the rule in every environment, without the server's own fields."""
    return {"name": rule["name"], "passPercentage": rule["passPercentage"],
            "conditions": rule["conditions"], "environments": None,
            "returnValue": rule.get("returnValue"), "variants": rule.get("variants")}
'''


@pytest.mark.parametrize("rule_fields", RULE_FIELDS)
async def test_a_python_edit_may_clear_environments_and_leave_out_server_fields(
    tmp_path, key, rule_fields
) -> None:
    """A python edit that returns a fresh rule with ``environments`` None clears them (the null
    is sent), and the rule keeps its baseID and scheduled rollouts (carried from the rule read)."""
    world = rich_world()
    before = stored(world, "dynamic_configs")
    job = _job(tmp_path, "dynamic_configs", CLEAR_ENVIRONMENTS)
    (tmp_path / "fresh.py").write_text(FRESH)
    async with running_emulator(world, config(rule_fields=rule_fields)) as url:
        assert await bulkops("run", job, url, tmp_path / "state") == 0
    for entity_id, old in before.items():
        internal = stored(world, "dynamic_configs")[entity_id]["rules"][0]
        assert internal["environments"] is None
        assert internal["baseID"] == old["rules"][0]["baseID"]
        assert internal["pendingAutomatedRollouts"] == PENDING
        assert internal["returnValue"] == {"size": 3}
        assert internal["variants"] == old["rules"][0]["variants"]


# -- targetValue types after an edit --------------------------------------------------------
def _swap_world() -> World:
    """gate_mixed: an email list of two; gate_single: of one; gate_beta: a segment condition."""
    from bulkops.emulator.resources.gates import create_gate
    from bulkops.emulator.resources.segments import create_segment

    project = Project("target", KEY)
    create_segment(project, {"name": "beta_users", "type": "id_list"}, 0, ids=["u1"])
    emails = {"gate_mixed": ["@example.com", "@test.com"], "gate_single": ["@example.com"]}
    for gate_id, values in emails.items():
        condition = {**EMAIL, "targetValue": values}
        rules = [{"name": "Internal", "passPercentage": 10, "conditions": [condition, BETA]}]
        create_gate(project, {"id": gate_id, "rules": rules}, 0)
    return World([project])


@pytest.mark.parametrize(
    ("match", "old", "new", "failing", "reason"),
    [
        ('{ type = "email" }', '"@example.com"', "5", ["gate_mixed"], "mixing strings and numbers"),
        ('{ type = "passes_segment" }', '"beta_users"', "7", ["gate_mixed", "gate_single"],
         "passes_segment conditions take a gate or segment id (a string)"),
    ],
)  # fmt: skip
async def test_a_swap_that_would_give_a_target_value_of_the_wrong_type_fails_that_entity(
    tmp_path, key, capsys, match, old, new, failing, reason
) -> None:
    """replace_target_value that would mix strings and numbers in a list, or put a number where
    a gate or segment id goes, fails that entity at plan time (exit 3, nothing sent for it)
    instead of sending a body the API rejects; a swap that stays well typed is applied."""
    world = _swap_world()
    edits = f'[[edits]]\nop = "replace_target_value"\nmatch = {match}\nfrom = {old}\nto = {new}\n'
    job = job_file(tmp_path, select='entity = "gates"', edits=edits)
    async with running_emulator(world, config()) as url:
        assert await bulkops("run", job, url, tmp_path / "state") == 3
    err = capsys.readouterr().err
    for gate_id in failing:
        assert f'{gate_id}: edits.0 (replace_target_value): in rule "Internal"' in err
    assert reason in err
    sent = [r.path.rsplit("/", 1)[-1] for r in world.requests(is_mutation=True)]
    assert sent == [g for g in ("gate_single",) if g not in failing]
    assert all(r.status == 200 for r in world.requests(is_mutation=True))
    if sent:
        stored_gate = stored(world, "gates")["gate_single"]
        assert stored_gate["rules"][0]["conditions"][0]["targetValue"] == [5]


@pytest.mark.parametrize("dto", ["GatePartialUpdateDto", "DynamicConfigPartialUpdateDto"])
def test_the_condition_types_an_edit_accepts_are_the_specs_enum(dto) -> None:
    """add_condition, add_rule and python edits accept exactly the condition types of the rule
    in the PATCH bodies batch_rule_update sends, no more and no fewer."""
    from typing import get_args

    from bulkops.jobs.rule_edits import ConditionType
    from tests.support.openapi_spec import spec_or_skip

    rule = spec_or_skip().document["components"]["schemas"][dto]["properties"]["rules"]["items"]
    enum = rule["properties"]["conditions"]["items"]["properties"]["type"]["enum"]
    assert sorted(get_args(ConditionType)) == sorted(enum)


# -- #27: the answer of a segment's rules update -----------------------------------------------
async def _clone(tmp_path: Path, world: World, emulator: EmulatorConfig) -> dict[str, Any]:
    """A clone with on_conflict = "update", run to its end: exit code, plan, verify report."""
    state = tmp_path / "s"
    async with running_emulator(world, emulator) as url:
        job = await loaded(str(clone_job(tmp_path, on_conflict="update")))
        code = await planned.run_planned(
            job, RunOptions(state_dir=state, base_url=url, retry=FAST_RETRY, progress=False)
        )
    read = lambda name: orjson.loads((state / name).read_bytes())  # noqa: E731
    return {"code": code, "plan": read("plan.json"), "verify": read("verify.json")}


@pytest.mark.parametrize("answer", ["message", "segment"])
async def test_a_clone_that_replaces_segment_rules_verifies_under_either_answer(
    tmp_path, world, answer
) -> None:
    """A clone (on_conflict = "update") whose plan replaces a segment's rules through
    POST /segments/{id}/conditional finishes clean whether the answer holds the segment in
    ``data`` or is the message alone, and a second run plans nothing."""
    from bulkops.emulator.resources.segments import create_segment

    emulator = EmulatorConfig(segment_rules_answer=answer)
    public = [{"name": "Old", "passPercentage": 5, "conditions": [{"type": "public"}]}]
    for segment in world.project("source").collection("segments").values():
        if segment["type"] == "rule_based":  # in the target too, with other rules
            create_segment(world.project("target"), {**segment, "rules": public}, 0)
    first = await _clone(tmp_path, world, emulator)
    conditional = [op for op in first["plan"]["operations"] if op["path"].endswith("/conditional")]
    assert conditional, "the demo target has a rule_based segment that differs"
    assert first["code"] == 0
    assert first["verify"]["differences"] == 0
    again = await _clone(tmp_path, world, emulator)
    assert again["plan"]["operations"] == []


def test_a_return_value_an_edit_changed_is_sent_with_matching_json5_even_over_comments() -> None:
    """JSON5 text with comments is kept while its rule's value is unchanged, and replaced by the
    new value's JSON when an edit changed the value, so a server taking the text keeps the edit."""
    from bulkops.jobs.batch_rule_update import _operation
    from bulkops.jobs.rule_edits import Slot

    commented = "{ size: 1, // small\n }"
    rule = {"id": "r1", "baseID": "r1", "name": "Internal", "passPercentage": 10,
            "conditions": [{"type": "public"}], "returnValue": {"size": 1},
            "returnValueJson5": commented}  # fmt: skip
    other = {**rule, "id": "r2", "baseID": "r2", "name": "Other"}
    config_ = {"id": "cfg", "version": 3, "lastModifiedTime": 5, "rules": [rule, other]}
    edited = {**rule, "returnValue": {"size": 2}}
    moved = {**other, "passPercentage": 20}
    op = _operation("dynamic_configs", config_, [Slot(0, edited), Slot(1, moved)])
    assert op is not None
    first, second = op.body["rules"]
    assert orjson.loads(first["returnValueJson5"]) == {"size": 2} == first["returnValue"]
    assert second["returnValueJson5"] == commented  # its value did not change: text kept
