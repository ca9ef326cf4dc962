"""The edits of batch_rule_update as pure functions, and how a job file's edits are validated."""

from __future__ import annotations

import copy
import textwrap

import pytest

from bulkops.engine.plan import Note, Operation, Plan, Selection
from bulkops.errors import FunctionFailed, JobFileError
from bulkops.jobs import batch_rule_update as job_kind
from bulkops.jobs import load
from bulkops.jobs.batch_rule_update import load_functions
from bulkops.jobs.rule_edits import (
    Slot,
    add_condition,
    edit_entity,
    remove_condition,
    replace_target_value,
    run_edits,
    set_pass_percentage,
)

EMAIL = {"type": "email", "operator": "str_contains_any", "targetValue": ["@example.com"]}
SEGMENT = {"type": "passes_segment", "targetValue": "beta_users"}


def rule(name: str = "Internal", pct: float = 10, conditions=None, **extra) -> dict:
    return {"id": f"base{name}:{pct:.2f}:1", "baseID": f"base{name}", "name": name,
            "passPercentage": pct, "conditions": conditions or [], "environments": None,
            "completedAutomatedRollouts": [], **extra}  # fmt: skip


def write_job(tmp_path, edits: str, select: str = 'entity = "gates"\nrule_name = "Internal"',
              options: str = "") -> str:  # fmt: skip
    path = tmp_path / "job.toml"
    path.write_text(
        'job = "batch_rule_update"\n[target]\napi_key_env = "KEY"\n'
        f"[select]\n{select}\n{textwrap.dedent(edits)}\n{options}"
    )
    return str(path)


def edits_of(tmp_path, edits: str, **kwargs):
    return load(write_job(tmp_path, edits, **kwargs)).spec


# -- the pure functions ------------------------------------------------------------------------
def test_add_condition_adds_once_and_leaves_its_input_alone() -> None:
    """A second add_condition with an equal condition (any key order, any list order) is a no-op."""
    original = rule(conditions=[SEGMENT])
    kept = copy.deepcopy(original)
    once = add_condition(original, EMAIL)
    assert once["conditions"] == [SEGMENT, EMAIL]
    assert original == kept
    assert add_condition(once, dict(reversed(list(EMAIL.items())))) == once
    two = {**EMAIL, "targetValue": ["@a.com", "@b.com"]}
    assert add_condition(add_condition(rule(), two), {**two, "targetValue": ["@b.com", "@a.com"]}) \
        == add_condition(rule(), two)  # fmt: skip


def test_set_pass_percentage_is_idempotent() -> None:
    """set_pass_percentage sets the percentage, and setting it again changes nothing."""
    once = set_pass_percentage(rule(), 50)
    assert once["passPercentage"] == 50
    assert set_pass_percentage(once, 50) == once


def test_remove_condition_removes_every_match_and_nothing_else() -> None:
    """remove_condition removes every condition matching the pattern, keeps the others, and is idempotent."""
    other_email = {"type": "email", "operator": "any", "targetValue": ["a@b.c"]}
    edited = remove_condition(rule(conditions=[EMAIL, SEGMENT, other_email]),
                              {"type": "email", "operator": "str_contains_any"})  # fmt: skip
    assert edited["conditions"] == [SEGMENT, other_email]
    assert remove_condition(edited, {"type": "email", "operator": "str_contains_any"}) == edited


def test_replace_target_value_in_strings_and_lists() -> None:
    """Scalars are swapped; in lists the swap keeps one copy when `to` is there already."""
    listed = {"type": "user_id", "operator": "any", "targetValue": ["1", "old", "new"]}
    edited = replace_target_value(rule(conditions=[SEGMENT, listed]), {"type": "passes_segment"},
                                  "beta_users", "gamma_users")  # fmt: skip
    assert edited["conditions"][0]["targetValue"] == "gamma_users"
    assert edited["conditions"][1] == listed  # not matched
    swapped = replace_target_value(edited, {"type": "user_id"}, "old", "new")
    assert swapped["conditions"][1]["targetValue"] == ["1", "new"]
    assert replace_target_value(swapped, {"type": "user_id"}, "old", "new") == swapped
    numbers = rule(conditions=[{"type": "custom_field", "field": "age", "operator": "gt",
                                "targetValue": 31}])  # fmt: skip
    assert replace_target_value(numbers, {"field": "age"}, 31.0, 40)["conditions"][0][
        "targetValue"] == 40  # fmt: skip


@pytest.mark.parametrize(("position", "names"), [
    ("first", ["Employees", "A", "B"]),
    ("last", ["A", "B", "Employees"]),
])  # fmt: skip
def test_add_rule_adds_by_name_once(tmp_path, position: str, names: list[str]) -> None:
    """add_rule puts its rule first or last, and not again when a rule of that name exists."""
    spec = edits_of(tmp_path, f"""
        [[edits]]
        op = "add_rule"
        rule = {{ name = "Employees", passPercentage = 100, conditions = [] }}
        position = "{position}"
    """)  # fmt: skip
    entity = {"id": "g", "rules": [rule("A"), rule("B")]}
    once = [s.rule for s in run_edits(entity, spec.edits, rule_name=spec.select.rule_name)]
    assert [r["name"] for r in once] == names
    again = run_edits({"id": "g", "rules": once}, spec.edits, rule_name=spec.select.rule_name)
    assert [s.rule for s in again] == once


# -- a job's edits in order over one entity -----------------------------------------------------
def test_run_edits_acts_on_selected_rules_only_and_twice_changes_nothing(tmp_path) -> None:
    """Rule edits skip unselected rules and the rules the job's add_rule defines, in any order."""
    spec = edits_of(tmp_path, """
        [[edits]]
        op = "add_rule"
        rule = { name = "Internal beta", passPercentage = 5, conditions = [{ type = "public" }] }
        position = "first"
        [[edits]]
        op = "add_condition"
        condition = { type = "email", operator = "str_contains_any", targetValue = ["@example.com"] }
        [[edits]]
        op = "set_pass_percentage"
        value = 50
    """, select='entity = "gates"\nrule_name = "Internal*"')  # fmt: skip
    entity = {"id": "g", "rules": [rule("Internal"), rule("Everyone", 100)]}
    slots = run_edits(entity, spec.edits, rule_name=spec.select.rule_name)
    assert [(s.origin, s.rule["name"]) for s in slots] == [
        (None, "Internal beta"),
        (0, "Internal"),
        (1, "Everyone"),
    ]
    added, internal, everyone = (s.rule for s in slots)
    assert added == {"name": "Internal beta", "passPercentage": 5,
                     "conditions": [{"type": "public"}]}  # fmt: skip
    assert internal["conditions"] == [EMAIL]
    assert internal["passPercentage"] == 50
    assert internal["baseID"] == "baseInternal"
    assert everyone == entity["rules"][1]
    again = run_edits({"id": "g", "rules": [s.rule for s in slots]}, spec.edits,
                      rule_name=spec.select.rule_name)  # fmt: skip
    assert [s.rule for s in again] == [s.rule for s in slots]
    edited = edit_entity(entity, spec.edits, rule_name=spec.select.rule_name)
    assert edited.slots == slots
    assert edited.idempotent


def test_delete_rule_and_python_edits(tmp_path) -> None:
    """A python edit gets copies and may delete a rule; delete_rule drops the selected rules."""
    (tmp_path / "my_edits.py").write_text(textwrap.dedent("""
        def bump(entity, rule):
            rule["passPercentage"] = min(100, rule["passPercentage"] * 2)
            rule["conditions"].append({"type": "environment_tier", "operator": "any",
                                       "targetValue": [entity["id"]]})
            return rule

        def drop_everyone(entity, rule):
            return None if rule["name"] == "Everyone" else rule
    """))  # fmt: skip
    spec = edits_of(tmp_path, """
        [[edits]]
        op = "python"
        function = "my_edits:bump"
        [[edits]]
        op = "python"
        function = "my_edits:drop_everyone"
        [[edits]]
        op = "delete_rule"
    """, select='entity = "gates"\nrule_name = "[IE]*"')  # fmt: skip
    functions = load_functions(spec.edits, tmp_path)
    entity = {"id": "g", "rules": [rule("Internal"), rule("Everyone", 100), rule("Other")]}
    slots = run_edits(entity, spec.edits[:2], rule_name="*", functions=functions)
    assert [(s.origin, s.rule["name"], s.rule["passPercentage"]) for s in slots] == [
        (0, "Internal", 20),
        (2, "Other", 20),
    ]
    assert entity["rules"][0]["passPercentage"] == 10  # the function got a copy
    assert [s.rule["name"] for s in run_edits(entity, spec.edits[2:], rule_name="[IE]*")] == [
        "Other"
    ]


def test_a_raising_python_edit_fails_with_its_index_and_traceback(tmp_path) -> None:
    """A python edit that raises, or returns a non-rule, fails the entity naming the edit's index."""
    (tmp_path / "broken_edits.py").write_text(
        "def boom(entity, rule):\n    raise ValueError(f'cannot edit {entity[\"id\"]}')\n"
        "def not_a_rule(entity, rule):\n    return 42\n"
    )
    spec = edits_of(
        tmp_path,
        """
        [[edits]]
        op = "set_pass_percentage"
        value = 1
        [[edits]]
        op = "python"
        function = "broken_edits:boom"
        [[edits]]
        op = "python"
        function = "broken_edits:not_a_rule"
    """,
    )
    functions = load_functions(spec.edits, tmp_path)
    entity = {"id": "gate_7", "rules": [rule()]}
    with pytest.raises(FunctionFailed) as failure:
        run_edits(entity, spec.edits, rule_name="Internal", functions=functions)
    assert failure.value.index == 1
    assert "edits.1 (python broken_edits:boom) raised ValueError: cannot edit gate_7" in str(
        failure.value
    )
    assert "Traceback" in failure.value.traceback
    assert "broken_edits.py" in failure.value.traceback
    with pytest.raises(FunctionFailed, match=r"edits.2 \(python broken_edits:not_a_rule\) "
                       r"returned 42 \(an integer\), not a rule"):  # fmt: skip
        run_edits(entity, spec.edits, functions={1: lambda e, r: r, 2: functions[2]})


def test_edits_that_would_change_their_own_result_again_are_applied_once_and_flagged(
    tmp_path,
) -> None:
    """A doubling python edit, or an add then a replace that makes duplicates, are planned once."""
    (tmp_path / "doubling.py").write_text(
        "def double(entity, rule):\n"
        "    return {**rule, 'passPercentage': min(100, rule['passPercentage'] * 2)}\n"
    )
    spec = edits_of(tmp_path, '[[edits]]\nop = "python"\nfunction = "doubling:double"\n')
    entity = {"id": "gate_1", "rules": [rule()]}
    edited = edit_entity(entity, spec.edits, functions=load_functions(spec.edits, tmp_path))
    assert not edited.idempotent
    assert 'rule "Internal"' in edited.again
    assert [slot.rule["passPercentage"] for slot in edited.slots] == [20]  # applied once
    spec = edits_of(
        tmp_path,
        """
        [[edits]]
        op = "add_condition"
        condition = { type = "passes_segment", targetValue = "a" }
        [[edits]]
        op = "replace_target_value"
        match = { type = "passes_segment" }
        from = "a"
        to = "b"
    """,
    )
    edited = edit_entity(entity, spec.edits, rule_name="Internal")
    assert not edited.idempotent
    assert edited.slots[0].rule["conditions"] == [{"type": "passes_segment", "targetValue": "b"}]
    assert edit_entity(entity, spec.edits[:1], rule_name="Internal").idempotent


def test_python_functions_that_cannot_be_loaded_are_job_file_errors(tmp_path) -> None:
    """A python edit whose module or function cannot be loaded is a job-file error with the cause."""
    (tmp_path / "has_no_fn.py").write_text("x = 1\n")
    (tmp_path / "syntax_error.py").write_text("def f(:\n")
    for reference, hint in [("has_no_fn:fix", "has no function 'fix'"),
                            ("nowhere_to_be_found:fix", "cannot import module"),
                            ("syntax_error:f", "SyntaxError")]:  # fmt: skip
        with pytest.raises(JobFileError, match=r"job\.toml: edits\.0\.function") as error:
            # Reading the job file imports its functions, so validate catches this too.
            edits_of(tmp_path, f'[[edits]]\nop = "python"\nfunction = "{reference}"\n')
        assert hint in str(error.value)
    spec = edits_of(tmp_path, '[[edits]]\nop = "python"\nfunction = "json:dumps"\n')
    assert load_functions(spec.edits, tmp_path)[0].__module__ == "json"  # from the Python path


# -- job-file validation ------------------------------------------------------------------------
BAD_EDITS = """
[[edits]]
op = "add_condition"
condition = { type = "emale", operator = "any", targetValue = ["x"] }
[[edits]]
op = "set_pass_percantage"
value = 50
[[edits]]
op = "add_condition"
condition = { type = "email", operator = "contains", targetValue = ["@x.com"] }
[[edits]]
value = 3
[[edits]]
op = "set_pass_percentage"
value = 150
[[edits]]
op = "add_rule"
rule = { name = "x", passPercentage = 10, conditions = [{ type = "public", operator = "any" }] }
[[edits]]
op = "python"
function = "no colon"
[[edits]]
op = "add_condition"
condition = { type = "custom_field", operator = "gt", targetValue = 3 }
[[edits]]
op = "replace_target_value"
match = { type = "passes_segment" }
from = "a"
to = "a"
"""


def test_bad_edits_are_reported_by_index_all_at_once(tmp_path) -> None:
    """Every bad edit is reported at once, each by its index and field path."""
    with pytest.raises(JobFileError) as error:
        load(write_job(tmp_path, BAD_EDITS))
    text = str(error.value)
    expected = [
        'edits.0.condition.type: expected one of "app_version", "browser_name"',
        'edits.1.op: expected one of "add_condition", "set_pass_percentage"',
        'got "set_pass_percantage"',
        'edits.2.condition.operator: "contains" is not an operator of email conditions; expected '
        'one of "any", "none", "str_contains_any", "str_contains_none"',
        "edits.3.op: required key is missing",
        "edits.4.value: expected a number from 0 to 100, got 150 (a number)",
        "edits.5.rule.conditions.0.operator: public conditions take no operator",
        'edits.6.function: expected a function reference written as "module:function"',
        "edits.7.condition: custom_field conditions need `field`",
        "edits.8: `from` and `to` are equal",
    ]
    for line in expected:
        assert line in text
    assert "add_condition.condition" not in text  # the union's tag is not in the paths


def test_delete_rule_needs_a_rule_name_and_unknown_keys_are_named(tmp_path) -> None:
    """delete_rule without select.rule_name, unknown keys and a bad entity are errors naming the field."""
    with pytest.raises(JobFileError, match=r"edits.0: delete_rule without select.rule_name"):
        load(write_job(tmp_path, '[[edits]]\nop = "delete_rule"\n', select='entity = "gates"'))
    with pytest.raises(JobFileError, match=r"edits.0.conditon: unknown key"):
        load(write_job(tmp_path, '[[edits]]\nop = "add_condition"\nconditon = {}\n'))
    with pytest.raises(JobFileError, match=r"select.entity"):
        load(write_job(tmp_path, '[[edits]]\nop = "delete_rule"\n', select='entity = "segments"'))


def test_an_unbounded_delete_is_reported_beside_the_other_errors(tmp_path) -> None:
    """The delete_rule check across fields is listed with the field errors, not only once they are fixed."""
    job = '[[edits]]\nop = "delete_rule"\n[[edits]]\nop = "set_pass_percentage"\nvalue = 150\n'
    with pytest.raises(JobFileError) as raised:
        load(write_job(tmp_path, job, select='entity = "gates"'))
    text = str(raised.value)
    assert "2 invalid field(s)" in text
    assert "edits.0: delete_rule without select.rule_name" in text
    assert "edits.1.value" in text


def test_the_example_job_file_is_valid() -> None:
    """jobs/batch_rule_update.toml, the example shipped, loads as a batch_rule_update job."""
    from pathlib import Path

    job = load(str(Path(__file__).resolve().parents[1] / "jobs" / "batch_rule_update.toml"))
    assert job.kind == "batch_rule_update"
    assert job.spec.edits


# -- the request body, the diff, undo -----------------------------------------------------------
def test_request_rules_keep_ids_and_rollouts_and_send_null_environments() -> None:
    """A rule sent back keeps its ids and rollout histories, drops other server fields and null
    condition fields, and sends ``environments`` null rather than leaving it out (#25)."""
    stored = rule(conditions=[{**EMAIL, "field": None, "customID": None}],
                  pendingAutomatedRollouts=[], returnValueJson5="{}", checksPerHour=3)  # fmt: skip
    body = job_kind.request_rule(stored, config=False)
    assert body == {"id": stored["id"], "baseID": "baseInternal", "name": "Internal",
                    "passPercentage": 10, "conditions": [EMAIL], "environments": None,
                    "completedAutomatedRollouts": [], "pendingAutomatedRollouts": []}  # fmt: skip
    config_body = job_kind.request_rule(stored, config=True)
    assert config_body["returnValueJson5"] == "{}"
    assert config_body["variants"] == []


def test_the_diff_names_each_changed_rule_and_field() -> None:
    """The plan's diff names each added, changed and removed rule and each changed field."""
    before = [rule("Internal", conditions=[SEGMENT]), rule("Gone"), rule("Same")]
    edited = {**before[0], "passPercentage": 50, "conditions": [SEGMENT, EMAIL]}
    slots = [Slot(None, {"name": "New", "passPercentage": 5, "conditions": [{"type": "public"}]}),
             Slot(0, edited), Slot(2, before[2])]  # fmt: skip
    assert job_kind.describe_changes(before, slots) == [
        "~ rule 'Internal'",
        "    passPercentage: 10 -> 50",
        '    + condition email str_contains_any ["@example.com"]',
        "- rule 'Gone' deleted",
        "+ rule 'New' added at position 1",
        "    passPercentage: 5",
        "    + condition public",
    ]


def test_render_and_undo_of_a_planned_operation() -> None:
    """A planned operation renders readably; its undo restores the before-image over the current version."""
    op = Operation(
        id="gate:g1", role="target", kind="gate", entity_id="g1", action="update rules",
        method="PATCH", path="/console/v1/gates/g1", body={"rules": []},
        read_path="/console/v1/gates/g1", precondition={"version": 3, "lastModifiedTime": 9},
        expected={"rules": [rule(pct=50)]}, before={"rules": [rule()]},
        describe=["~ rule 'Internal'", "    passPercentage: 10 -> 50"],
    )  # fmt: skip
    plan = Plan(job="j", kind="batch_rule_update", job_file="j.toml", job_digest="d",
                operations=[op], notes=[
                    Selection(entities="gates", selected=3, to_update=1, rules_changed=1,
                              unchanged=1, left_out=1),
                    Note(kind="failed", subject="g9", subject_kind="gate", fail=True,
                         message="edits.0 (python m:f) raised KeyError: 'x'")],
                estimate={"target": {"mutations": 1, "minimum_seconds": 0.0,
                                     "windows": ["100/10s", "900/900s"]}})  # fmt: skip
    text = "\n".join(job_kind.render_plan(plan))
    assert "gate 'g1' (version 3):\n  ~ rule 'Internal'\n      passPercentage: 10 -> 50" in text
    assert "FAILED gate 'g9': edits.0 (python m:f) raised KeyError" in text
    assert "3 gates selected; 1 to update (1 rule changes), 1 unchanged" in text
    assert "[target] 1 mutation: no waiting (fits the first window) under 100/10s" in text
    for stated, said in ((True, "stated in the job file"), (False, "the documented defaults")):
        plan.estimate["target"]["windows_stated"] = stated
        assert f"under 100/10s, 900/900s ({said}" in "\n".join(job_kind.render_plan(plan))
    undo = job_kind.undo_operation(op, {"version": 4, "lastModifiedTime": 10})
    assert undo is not None
    assert undo.precondition == {"version": 4, "lastModifiedTime": 10}
    assert undo.expected == {"rules": [rule()]}
    assert undo.body["rules"][0]["passPercentage"] == 10
    assert undo.body["rules"][0]["baseID"]
    assert (undo.method, undo.path) == ("PATCH", "/console/v1/gates/g1")
