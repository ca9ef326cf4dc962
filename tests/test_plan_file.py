"""plan.json: what a plan writes, and that it reads back as the same plan."""

from __future__ import annotations

from dataclasses import asdict

import orjson

from bulkops.engine.plan import Note, Operation, Plan, Selection


def _plan() -> Plan:
    rules = [{"id": "r1", "name": "Internal", "passPercentage": 50.5,
              "conditions": [{"type": "email", "operator": "any", "targetValue": ["@x.com"]}]}]  # fmt: skip
    ops = [
        Operation(
            id=f"op{i}",
            role="target",
            kind="gate",
            entity_id=f"g{i}",
            action="update",
            method="PATCH",
            path=f"/console/v1/gates/g{i}",
            body={"rules": rules},
            read_path=f"/console/v1/gates/g{i}",
            precondition={"fields": {"rules": rules}},
            expected={"rules": rules},
            deps=[f"op{i - 1}"] if i else [],
            before={"id": f"g{i}", "rules": rules},
            describe=["~ rule 'Internal'"],
            group="checkout",
        )
        for i in range(3)
    ]
    notes = [
        Selection(
            entities="gates", selected=4, to_update=3, rules_changed=3, unchanged=1, left_out=0
        ),
        Note(kind="failed", subject="g9", subject_kind="gate", message="no such rule", fail=True),
    ]
    return Plan(job="brt", kind="batch_rule_update", job_file="brt.toml", job_digest="d",
                operations=ops, notes=notes, estimate={"target": {"mutations": 3}},
                projects={"target": {"id": "p1", "name": None}}, created_at=1.5)  # fmt: skip


def test_the_plan_file_holds_every_field_of_every_operation_and_note() -> None:
    """``to_json`` writes exactly the document a deep ``asdict`` copy gives, notes' fixed fields
    (a selection's ``kind``) included, only without copying every body first."""
    plan = _plan()
    options = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
    assert orjson.dumps(plan.to_json(), option=options) == orjson.dumps(
        asdict(plan), option=options
    )
    assert plan.to_json()["notes"][0]["kind"] == "selection"


def test_a_saved_plan_loads_as_the_same_plan(tmp_path) -> None:
    """Saved and loaded, a plan is equal to the one written (operations, notes, projects)."""
    plan = _plan()
    plan.save(tmp_path / "plan.json")
    assert Plan.load(tmp_path / "plan.json") == plan
