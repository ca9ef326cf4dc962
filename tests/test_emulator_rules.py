"""Rules of gates, dynamic configs and segments: the id form ``<baseID>:<pct 2 decimals>:<n>``,
``baseID`` stability, every rule endpoint, reference checks and version bumps."""

from __future__ import annotations

import re
from typing import Any

from bulkops.emulator import build_demo_world
from tests.support.http import REVIEW, V1, Api, seg, serve
from tests.support.worlds import entities_world

RULE_ID = re.compile(r"^(?P<base>[0-9A-Za-z]{22}):(?P<pct>\d{1,3}\.\d{2}):(?P<n>[1-9]\d*)$")
GATES = f"{V1}/gates"
CONFIGS = f"{V1}/dynamic_configs"


def rule(name: str, pct: float, **extra: Any) -> dict[str, Any]:
    return {"name": name, "passPercentage": pct, "conditions": [{"type": "public"}], **extra}


def parts(rule_id: str) -> tuple[str, str, int]:
    match = RULE_ID.match(rule_id)
    assert match, rule_id
    return match["base"], match["pct"], int(match["n"])


async def make_gate(api: Api, *rules: dict[str, Any]) -> dict[str, Any]:
    made = await api.post(GATES, {"name": "rule gate", "description": "d", "rules": list(rules)})
    assert made.status == 201, made.body
    return made.data  # type: ignore[no-any-return]


async def make_config(api: Api, *rules: dict[str, Any]) -> dict[str, Any]:
    made = await api.post(CONFIGS, {"name": "rule config", "rules": list(rules)})
    assert made.status == 201, made.body
    return made.data  # type: ignore[no-any-return]


def test_every_demo_rule_has_the_documented_id_form() -> None:
    """All demo rules: id = baseID:pct(2 decimals):n with a 22-char baseID, ids unique."""
    world = build_demo_world()
    seen: set[str] = set()
    for kind in ("gates", "dynamic_configs", "segments"):
        for entity in world.project("source").collection(kind).values():
            for r in entity.get("rules", []):
                base, pct, n = parts(r["id"])
                assert base == r["baseID"]
                assert pct == f"{r['passPercentage']:.2f}"
                assert n == 1
                assert base not in seen
                seen.add(base)
    assert len(seen) > 500


async def test_new_rules_get_fresh_ids_and_ignore_client_ids() -> None:
    """Create assigns ids; POST /rule and /rules append rules with new ids whatever was sent."""
    async with serve(entities_world()) as api:
        gate = await make_gate(api, rule("a", 12.5), rule("b", 100))
        (base_a, pct_a, n_a), (base_b, _, _) = (parts(r["id"]) for r in gate["rules"])
        assert (pct_a, n_a) == ("12.50", 1)
        assert base_a != base_b
        forged = rule("c", 5, id=gate["rules"][0]["id"], baseID=base_a)
        added = await api.post(f"{GATES}/rule_gate/rule", forged)
        assert added.body["message"] == "Gate rules added successfully."
        new = added.data["rules"][-1]
        assert new["baseID"] not in (base_a, base_b)
        assert parts(new["id"])[1:] == ("5.00", 1)
        many = await api.post(f"{GATES}/rule_gate/rules", {"rules": [rule("d", 1), rule("e", 2)]})
        assert [r["name"] for r in many.data["rules"]] == ["a", "b", "c", "d", "e"]
        assert many.data["version"] == 3


async def test_pass_percentage_change_keeps_base_id_and_bumps_revision() -> None:
    """PATCH /rules/{ruleID}: new pct → new id, same baseID, n+1; matching by baseID works."""
    async with serve(entities_world()) as api:
        gate = await make_gate(api, rule("a", 10))
        first = gate["rules"][0]
        base = first["baseID"]
        changed = await api.patch(
            f"{GATES}/rule_gate/rules/{seg(first['id'])}", {"passPercentage": 20}
        )
        r = changed.data["rules"][0]
        assert changed.status == 200
        assert parts(r["id"]) == (base, "20.00", 2)
        renamed = await api.patch(f"{GATES}/rule_gate/rules/{base}", {"name": "renamed"})
        assert parts(renamed.data["rules"][0]["id"]) == (base, "20.00", 3)
        same = await api.patch(f"{GATES}/rule_gate/rules/{base}", {"passPercentage": 20})
        assert same.data["rules"][0]["id"] == renamed.data["rules"][0]["id"]
        assert same.data["version"] == 4  # a call that changes nothing is still a write
        stale = await api.patch(f"{GATES}/rule_gate/rules/{seg(first['id'])}", {"name": "x"})
        assert stale.status == 404  # the old id no longer names the rule


async def test_update_rules_list_only_updates_existing_rules() -> None:
    """PATCH /rules matches on id or baseID and never adds; unknown or missing ids are 400."""
    async with serve(entities_world()) as api:
        gate = await make_gate(api, rule("a", 10), rule("b", 20), rule("c", 30))
        a, b, c = gate["rules"]
        updated = await api.patch(
            f"{GATES}/rule_gate/rules",
            {
                "rules": [
                    {"id": a["id"], "passPercentage": 15},
                    {"baseID": c["baseID"], "name": "C"},
                ]
            },
        )
        assert updated.body["message"] == "Gate updated successfully."
        ra, rb, rc = updated.data["rules"]
        assert parts(ra["id"]) == (a["baseID"], "15.00", 2)
        assert rb == b
        assert rc["name"] == "C"
        assert rc["baseID"] == c["baseID"]
        bad = await api.patch(
            f"{GATES}/rule_gate/rules",
            {"rules": [{"id": "nope", "passPercentage": 1}, {"name": "no id"}]},
        )
        assert bad.status == 400
        assert bad.error_props() == ["rules.0.id", "rules.1.id"]
        assert (await api.get(f"{GATES}/rule_gate")).data["version"] == 2


async def test_full_rule_lists_match_client_ids_and_never_trust_foreign_ones() -> None:
    """A full rules list keeps baseIDs of matched rules, makes new ones for the rest."""
    async with serve(entities_world()) as api:
        gate = await make_gate(api, rule("a", 10), rule("b", 20))
        a, b = gate["rules"]
        other = await api.post(GATES, {"name": "other gate", "rules": [rule("x", 1)]})
        foreign = other.data["rules"][0]
        body = {
            "isEnabled": True,
            "description": "d",
            "rules": [
                {**b, "passPercentage": 25},
                {**rule("a2", 10), "baseID": a["baseID"]},
                {**rule("f", 1), "id": foreign["id"], "baseID": foreign["baseID"]},
                rule("new", 50),
            ],
        }
        full = await api.post(f"{GATES}/rule_gate", body)
        rules = full.data["rules"]
        assert [r["baseID"] for r in rules[:2]] == [b["baseID"], a["baseID"]]
        assert parts(rules[0]["id"]) == (b["baseID"], "25.00", 2)
        assert rules[2]["baseID"] != foreign["baseID"]
        assert parts(rules[2]["id"])[2] == 1
        assert len({r["baseID"] for r in rules}) == 4
        twice = await api.post(
            f"{GATES}/rule_gate",
            {
                **body,
                "rules": [
                    {**rule("p", 1), "baseID": a["baseID"]},
                    {**rule("q", 1), "id": rules[1]["id"]},
                ],
            },
        )
        assert twice.status == 400
        assert twice.error_props() == ["rules.1.id"]
        partial = await api.patch(f"{GATES}/rule_gate", {"rules": rules[:1]})
        assert partial.data["rules"] == rules[:1]


async def test_delete_rule_and_read_rules() -> None:
    """DELETE /rules/{ruleID} by id or baseID; GET /rules answers [{rules}]."""
    async with serve(entities_world()) as api:
        gate = await make_gate(api, rule("a", 10), rule("b", 20))
        read = await api.get(f"{GATES}/rule_gate/rules")
        assert read.body["message"] == "Gate rules read successfully."
        assert read.data == [{"rules": gate["rules"]}]
        assert read.body["pagination"]["itemsPerPage"] == 20000
        gone = await api.delete(f"{GATES}/rule_gate/rules/{gate['rules'][0]['baseID']}")
        assert [r["name"] for r in gone.data["rules"]] == ["b"]
        assert gone.data["version"] == 2
        missing = await api.delete(f"{GATES}/rule_gate/rules/nothing")
        assert missing.status == 404
        assert "nothing" in missing.body["message"]
        assert (await api.get(f"{GATES}/nope/rules")).status == 404


async def test_rule_conditions_must_reference_existing_entities() -> None:
    """passes_gate / passes_segment / unit_id customID / target_app must exist; paths say where."""
    async with serve(entities_world()) as api:
        await make_gate(api, rule("a", 10))
        bad = await api.post(
            f"{GATES}/rule_gate/rules",
            {
                "rules": [
                    rule("ok", 1),
                    {
                        "name": "refs",
                        "passPercentage": 1,
                        "conditions": [
                            {"type": "passes_gate", "targetValue": "ghost_gate"},
                            {
                                "type": "fails_segment",
                                "targetValue": ["bench_0001_segment", "ghost_seg"],
                            },
                            {
                                "type": "unit_id",
                                "operator": "any",
                                "targetValue": ["1"],
                                "customID": "orgID",
                            },
                            {"type": "target_app", "operator": "any", "targetValue": ["ghost_app"]},
                            {"type": "passes_gate"},
                        ],
                    },
                ]
            },
        )
        assert bad.status == 400
        assert bad.body["message"] == "Bad Request Exception"
        assert bad.error_props() == [
            "rules.1.conditions.0.targetValue",
            "rules.1.conditions.1.targetValue",
            "rules.1.conditions.2.customID",
            "rules.1.conditions.3.targetValue",
            "rules.1.conditions.4.targetValue",
        ]
        one = await api.post(
            f"{GATES}/rule_gate/rule",
            {
                "name": "x",
                "passPercentage": 1,
                "conditions": [{"type": "passes_gate", "targetValue": "ghost"}],
            },
        )
        assert one.error_props() == ["conditions.0.targetValue"]
        ok = await api.post(
            f"{GATES}/rule_gate/rule",
            {
                "name": "chain",
                "passPercentage": 33.5,
                "conditions": [{"type": "passes_gate", "targetValue": "bench_0001_gate"}],
            },
        )
        assert ok.status == 200
        assert parts(ok.data["rules"][-1]["id"])[1] == "33.50"
        pct = await api.post(f"{GATES}/rule_gate/rule", rule("bad pct", 10.001))
        assert pct.status == 400
        assert pct.error_props() == ["passPercentage"]


async def test_rule_changes_are_held_for_review_with_the_header() -> None:
    """Rule endpoints respect the review header like every other gate change."""
    async with serve(entities_world()) as api:
        await api.post(
            GATES,
            {
                "name": "guarded",
                "reviewSettings": {"requiredReview": True},
                "rules": [rule("a", 10)],
            },
        )
        held = await api.post(f"{GATES}/guarded/rule", rule("b", 5), headers=REVIEW)
        assert held.status == 200
        assert len(held.data["rules"]) == 1
        assert held.data["activeReview"]["reviewStatus"] == "pending"
        applied = await api.post(f"{GATES}/guarded/rule", rule("b", 5))
        assert len(applied.data["rules"]) == 2


# -- dynamic configs ----------------------------------------------------------------------------


async def test_dynamic_config_rule_endpoints_of_the_current_spec() -> None:
    """GET rules (data [{rules}], 20000 per page), GET/PATCH/DELETE /rule/{ruleId}."""
    async with serve(entities_world()) as api:
        config = await make_config(api, rule("a", 10, returnValue={"x": 1}), rule("b", 20))
        a, b = config["rules"]
        assert a["returnValue"] == {"x": 1}
        assert a["returnValueJson5"] == '{"x":1}'
        assert b["returnValue"] == {}
        assert b["returnValueJson5"] == "{}"
        read = await api.get(f"{CONFIGS}/rule_config/rules")
        assert read.data == [{"rules": config["rules"]}]
        assert read.body["pagination"]["itemsPerPage"] == 20000
        one = await api.get(f"{CONFIGS}/rule_config/rule/{a['baseID']}")
        assert one.data == a
        assert one.body["message"] == "Dynamic Config rules read successfully."
        patched = await api.patch(
            f"{CONFIGS}/rule_config/rule/{seg(a['id'])}",
            {"passPercentage": 40, "returnValue": {"x": 2}},
        )
        new_a = patched.data["rules"][0]
        assert parts(new_a["id"]) == (a["baseID"], "40.00", 2)
        assert new_a["returnValueJson5"] == '{"x":2}'
        assert patched.data["version"] == 2
        deleted = await api.delete(f"{CONFIGS}/rule_config/rule/{seg(b['id'])}")
        assert deleted.body["message"] == "Dynamic Config rule deleted successfully."
        assert [r["name"] for r in deleted.data["rules"]] == ["a"]
        assert (await api.get(f"{CONFIGS}/rule_config/rule/{b['baseID']}")).status == 404


async def test_dynamic_config_rule_endpoints_only_in_the_2025_03_spec() -> None:
    """POST /rule, POST and PATCH /rules, PATCH and DELETE /rule/name/{ruleName}."""
    async with serve(entities_world()) as api:
        config = await make_config(api, rule("Internal", 100))
        added = await api.post(
            f"{CONFIGS}/rule_config/rule", rule("EU", 50, returnValueJson5='{"eu": true}')
        )
        assert added.data["rules"][-1]["returnValue"] == {"eu": True}
        many = await api.post(
            f"{CONFIGS}/rule_config/rules", {"rules": [rule("x", 1), rule("y", 2)]}
        )
        assert [r["name"] for r in many.data["rules"]] == ["Internal", "EU", "x", "y"]
        base = config["rules"][0]["baseID"]
        listed = await api.patch(
            f"{CONFIGS}/rule_config/rules", {"rules": [{"baseID": base, "passPercentage": 75}]}
        )
        assert parts(listed.data["rules"][0]["id"]) == (base, "75.00", 2)
        by_name = await api.patch(f"{CONFIGS}/rule_config/rule/name/EU", {"passPercentage": 60})
        assert by_name.data["rules"][1]["passPercentage"] == 60
        gone = await api.delete(f"{CONFIGS}/rule_config/rule/name/x")
        assert [r["name"] for r in gone.data["rules"]] == ["Internal", "EU", "y"]
        assert gone.data["version"] == 6
        missing = await api.patch(f"{CONFIGS}/rule_config/rule/name/nope", {"name": "z"})
        assert missing.status == 404


async def test_full_update_of_a_config_keeps_matched_rules() -> None:
    """POST /dynamic_configs/{id} with the rules read back keeps ids exactly."""
    async with serve(entities_world()) as api:
        config = await make_config(api, rule("a", 10, returnValue={"v": 1}))
        again = await api.post(
            f"{CONFIGS}/rule_config",
            {"description": "d", "isEnabled": True, "rules": config["rules"]},
        )
        assert again.data["rules"] == config["rules"]
        assert again.data["version"] == 2


async def test_a_rule_sent_back_with_empty_lists_for_absent_fields_keeps_its_id() -> None:
    """A dynamic-config rule sent back as read, but with ``variants: []`` and
    ``environments: null`` where the stored rule has none, is no content change: same id."""
    async with serve(entities_world()) as api:
        made = await api.post(f"{V1}/dynamic_configs", {"name": "rule config"})
        stored = (await api.patch(f"{V1}/dynamic_configs/rule_config",
                                  {"rules": [rule("a", 10)]})).data["rules"][0]  # fmt: skip
        assert made.status in (200, 201)
        assert "variants" not in stored or not stored["variants"]
        again = {**stored, "variants": [], "environments": None}
        answered = await api.patch(f"{V1}/dynamic_configs/rule_config", {"rules": [again]})
        assert answered.data["rules"][0]["id"] == stored["id"]
