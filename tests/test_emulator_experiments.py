"""The emulator's layers, experiments and holdouts."""

from __future__ import annotations

import re

from bulkops.emulator import (
    EmulatorConfig,
)
from tests.support.http import V1, seg, serve
from tests.support.worlds import TARGET_KEY, entities_world

BASE62_22 = re.compile(r"^[0-9A-Za-z]{22}$")


# -- layers and experiments ---------------------------------------------------------------------


async def test_layers_explicit_and_implicit() -> None:
    """Explicit layers derive ids; experiments get implicit layers; parameters are enforced."""
    async with serve(entities_world()) as api:
        made = await api.post(f"{V1}/layers", {"name": "Home Page", "idType": "userID"})
        assert made.status == 201
        assert made.data["id"] == "home_page"
        assert made.data["isImplicitLayer"] is False
        assert made.data["parameters"] == []
        params = [{"name": "color", "type": "string", "defaultValue": "blue"}]
        bad = await api.post(
            f"{V1}/layers/home_page",
            {
                "description": "d",
                "parameters": [{"name": "color", "type": "number", "defaultValue": "blue"}],
            },
        )
        assert bad.status == 400
        assert bad.error_props() == ["parameters.0.defaultValue"]
        updated = await api.post(
            f"{V1}/layers/home_page", {"description": "d", "parameters": params}
        )
        assert updated.data["parameters"] == params
        assert updated.data["version"] == 2
        groups = [
            {"name": "Control", "size": 50, "parameterValues": {"color": "blue"}},
            {"name": "Test", "size": 50, "parameterValues": {"colour": "red"}},
        ]
        wrong = await api.post(
            f"{V1}/experiments", {"name": "in layer", "layerID": "home_page", "groups": groups}
        )
        assert wrong.status == 400
        assert wrong.error_props() == ["groups.1.parameterValues.colour"]
        groups[1]["parameterValues"] = {"color": "red"}
        exp = await api.post(
            f"{V1}/experiments", {"name": "in layer", "layerID": "home_page", "groups": groups}
        )
        assert exp.status == 201
        assert exp.data["layerID"] == "home_page"
        members = await api.get(f"{V1}/layers/home_page/experiments")
        assert [e["id"] for e in members.data] == ["in_layer"]
        drop = await api.patch(f"{V1}/layers/home_page", {"parameters": []})
        assert drop.status == 400
        busy = await api.delete(f"{V1}/layers/home_page")
        assert busy.status == 400
        assert "in_layer" in busy.body["message"]
        listed = await api.get(f"{V1}/layers")
        implicit = [layer for layer in listed.data if layer["isImplicitLayer"]]
        assert [layer["id"] for layer in implicit] == [
            "statsig::bench_0001_exp_layer",
            "statsig::bench_0002_exp_layer",
        ]
        missing = await api.get(f"{V1}/layers/nope")
        assert missing.status == 404
        # The spec's 404 on GET /layers/{id} is the generic text ("Layer not found." is for the
        # overrides routes); tests/test_emulator_reference.py pins each operation's text.
        assert missing.body["message"] == "Not Found. The requested resource could not be found."


async def test_experiment_create_defaults_and_implicit_layer() -> None:
    """Status setup, Control/Test 50/50 with server group ids, implicit layer created."""
    world = entities_world()
    async with serve(world) as api:
        made = await api.post(f"{V1}/experiments", {"name": "Big Test"})
        assert made.status == 201
        assert made.body["message"] == "Experiment created successfully."
        exp = made.data
        assert exp["id"] == "big_test"
        assert exp["status"] == "setup"
        assert [(g["name"], g["size"]) for g in exp["groups"]] == [("Control", 50), ("Test", 50)]
        assert all(BASE62_22.match(g["id"]) for g in exp["groups"])
        assert exp["controlGroupID"] == exp["groups"][0]["id"]
        assert exp["layerID"] == "statsig::big_test_layer"
        assert exp["allocation"] == 100
        assert exp["duration"] == 14
        assert exp["defaultConfidenceInterval"] == "95"
        assert exp["startTime"] is None
        assert exp["launchedGroupID"] is None
        layer = await api.get(f"{V1}/layers/{seg('statsig::big_test_layer')}")
        assert layer.data["isImplicitLayer"] is True
        other = await api.post(f"{V1}/experiments", {"name": "Big Test"}, key=TARGET_KEY)
        assert {g["id"] for g in other.data["groups"]}.isdisjoint(g["id"] for g in exp["groups"])
        dup = await api.post(f"{V1}/experiments", {"name": "big_test"})
        assert dup.status == 400
        assert dup.body["message"] == "Name is already in use"


async def test_experiment_references_are_all_reported_at_once() -> None:
    """Unknown metrics, tags, metric tags, team, id type, targeting gate and layer: one 400."""
    async with serve(entities_world()) as api:
        bad = await api.post(
            f"{V1}/experiments",
            {
                "name": "dangling",
                "primaryMetrics": [{"name": "nope", "type": "sum"}],
                "secondaryMetrics": [{"name": "s_s1_m1", "type": "user_warehouse"}],
                "tags": ["★ Core", "missing tag"],
                "primaryMetricTags": ["gone"],
                "team": "Ghosts",
                "idType": "deviceID",
                "targetingGateID": "no_gate",
                "layerID": "no_layer",
            },
        )
        assert bad.status == 400
        assert bad.body["message"] == "Bad Request Exception"
        assert sorted(bad.error_props()) == sorted(
            [
                "primaryMetrics.0",
                "tags.1",
                "primaryMetricTags.0",
                "team",
                "idType",
                "targetingGateID",
                "layerID",
            ]
        )
        hint = next(e for e in bad.body["errors"] if e["property"] == "tags.1")["errorMessage"]
        assert "POST /console/v1/tags" in hint
        assert "'source'" in hint
        good = await api.post(
            f"{V1}/experiments",
            {
                "name": "resolved",
                "primaryMetrics": [{"name": "s_s1_m1", "type": "user_warehouse"}],
                "tags": ["★ Core"],
                "targetingGateID": "bench_0001_gate",
                "team": "Growth",
            },
        )
        assert good.status == 201


async def test_experiment_full_update_keeps_group_ids_and_guards_names_and_status() -> None:
    """Group ids survive by name; rename collisions and direct status changes are 400s."""
    async with serve(entities_world()) as api:
        exp = (await api.post(f"{V1}/experiments", {"name": "full one", "tags": ["growth"]})).data
        body = {
            "idType": "userID",
            "description": "d",
            "hypothesis": "h",
            "allocation": 50,
            "targetingGateID": "",
            "bonferroniCorrection": True,
            "defaultConfidenceInterval": "90",
            "status": "setup",
            "groups": [
                {"name": "Test", "size": 30, "parameterValues": {"p": 1}},
                {"name": "Control", "size": 40, "parameterValues": {"p": 0}},
                {"name": "Extra", "size": 30, "parameterValues": {"p": 2}},
            ],
        }
        full = await api.post(f"{V1}/experiments/full_one", body)
        assert full.status == 200
        assert full.data["tags"] == []
        ids = {g["name"]: g["id"] for g in full.data["groups"]}
        old = {g["name"]: g["id"] for g in exp["groups"]}
        assert ids["Test"] == old["Test"]
        assert ids["Control"] == old["Control"]
        assert ids["Extra"] not in old.values()
        assert full.data["controlGroupID"] == old["Control"]
        layer = await api.get(f"{V1}/layers/{seg('statsig::full_one_layer')}")
        assert [p["name"] for p in layer.data["parameters"]] == ["p"]
        renamed = await api.post(f"{V1}/experiments/full_one", {**body, "name": "bench_0001_exp"})
        assert renamed.status == 400
        assert renamed.body["message"] == "Name is already in use"
        status = await api.post(f"{V1}/experiments/full_one", {**body, "status": "active"})
        assert status.status == 400
        assert "start" in status.body["errors"][0]["errorMessage"]
        sizes = await api.patch(f"{V1}/experiments/full_one", {"groups": body["groups"][:2]})
        assert sizes.status == 400
        assert "100" in sizes.body["errors"][0]["errorMessage"]
        patched = await api.patch(f"{V1}/experiments/full_one", {"hypothesis": "new"})
        assert patched.data["allocation"] == 50
        assert patched.data["hypothesis"] == "new"
        missing = await api.patch(f"{V1}/experiments/nope", {"hypothesis": "x"})
        assert missing.status == 404
        assert missing.body["message"] == "Experiment not found."


async def test_experiment_lifecycle() -> None:
    """setup → start → make_decision; abandon/reset rules; archive returns to prior status."""
    async with serve(entities_world()) as api:
        await api.post(f"{V1}/experiments", {"name": "life"})
        path = f"{V1}/experiments/life"
        early = await api.put(f"{path}/abandon", {"decisionReason": "x"})
        assert early.status == 400
        assert early.body["message"] == "Experiment has not yet started"
        assert (await api.put(f"{path}/reset")).body["message"] == "Experiment has not yet started"
        started = await api.put(f"{path}/start", {})
        assert started.body == {"message": "Experiment successfully started."}
        assert (await api.put(f"{path}/start", {})).status == 400
        exp = (await api.get(path)).data
        assert exp["status"] == "active"
        assert exp["startTime"] is not None
        decided = await api.put(f"{path}/make_decision", {"id": "Test", "decisionReason": "won"})
        assert decided.body == {"message": "Decision made for Experiment."}
        exp = (await api.get(path)).data
        test_id = next(g["id"] for g in exp["groups"] if g["name"] == "Test")
        assert exp["status"] == "decision_made"
        assert exp["launchedGroupID"] == test_id
        assert exp["decisionReason"] == "won"
        assert exp["decisionTime"] is not None
        assert (await api.put(f"{path}/archive", {"archiveReason": "old"})).status == 200
        assert (await api.get(path)).data["status"] == "archived"
        assert (await api.put(f"{path}/unarchive")).status == 200
        assert (await api.get(path)).data["status"] == "decision_made"
        restarted = await api.put(f"{path}/reset")
        assert restarted.body == {"message": "Experiment successfully restarted."}
        exp = (await api.get(path)).data
        assert exp["status"] == "active"
        assert exp["launchedGroupID"] is None
        abandoned = await api.put(f"{path}/abandon", {"decisionReason": "meh"})
        assert abandoned.status == 200
        assert (await api.get(path)).data["status"] == "abandoned"
        assert exp["version"] == 6
        assert (await api.get(path)).data["version"] == 7
        off = await api.post(f"{path}/disable_groups", {"group_names": ["Test"]})
        assert off.status == 201
        assert off.data["groups"][1]["disabled"] is True


async def test_experiment_list_filters() -> None:
    """status (one or many, repeated or comma separated), tags, layerID, idType."""
    async with serve(entities_world()) as api:
        await api.post(
            f"{V1}/experiments", {"name": "running", "tags": ["growth"], "idType": "stableID"}
        )
        await api.put(f"{V1}/experiments/running/start", {})
        ids = lambda a: [e["id"] for e in a.data]  # noqa: E731
        assert ids(await api.get(f"{V1}/experiments?status=active")) == ["running"]
        every = ["bench_0001_exp", "bench_0002_exp", "running"]
        assert ids(await api.get(f"{V1}/experiments?status=active&status=setup")) == every
        assert ids(await api.get(f"{V1}/experiments?status=active,setup")) == every
        assert ids(await api.get(f"{V1}/experiments?tags=growth")) == ["running"]
        assert ids(await api.get(f"{V1}/experiments?idType=stableID")) == ["running"]
        layer = seg("statsig::running_layer")
        assert ids(await api.get(f"{V1}/experiments?layerID={layer}")) == ["running"]
        bad = await api.get(f"{V1}/experiments?status=finished")
        assert bad.status == 400
        assert bad.error_props() == ["status"]


async def test_experiment_overrides_replace_add_remove() -> None:
    """POST replaces, PATCH adds, DELETE removes; groupID by name or id; answers name only,
    groups by name here (by default by id), in stored order (by default reversed)."""
    config = EmulatorConfig(list_order="kept", override_group_key="name")
    async with serve(entities_world(), config) as api:
        exp = (await api.get(f"{V1}/experiments/bench_0001_exp")).data
        test_id = next(g["id"] for g in exp["groups"] if g["name"] == "Test")
        path = f"{V1}/experiments/bench_0001_exp/overrides"
        replaced = await api.post(
            path,
            {
                "overrides": [{"type": "gate", "id": "bench_0002_gate", "groupID": "Control"}],
                "userIDOverrides": [{"groupID": "Test", "ids": ["u1", "u2"]}],
            },
        )
        assert replaced.status == 200
        assert replaced.data["overrides"] == [
            {"type": "gate", "name": "bench_0002_gate", "groupID": "Control", "environment": None}
        ]
        added = await api.patch(
            path,
            {
                "overrides": [
                    {"type": "segment", "name": "bench_0001_segment", "groupID": test_id}
                ],
                "userIDOverrides": [
                    {"groupID": test_id, "ids": ["u3"]},
                    {"groupID": "Control", "ids": ["u1"]},
                ],
            },
        )
        assert [o["type"] for o in added.data["overrides"]] == ["gate", "segment"]
        users = {u["groupID"]: u["ids"] for u in added.data["userIDOverrides"]}
        assert users == {"Test": ["u2", "u3"], "Control": ["u1"]}  # u1 moved to Control
        removed = await api.delete(
            path,
            {
                "overrides": [{"type": "gate", "id": "bench_0002_gate", "groupID": "Control"}],
                "userIDOverrides": [{"groupID": "Test", "ids": ["u2"]}],
            },
        )
        assert [o["type"] for o in removed.data["overrides"]] == ["segment"]
        assert (await api.get(path)).data == removed.data
        bad = await api.patch(
            path,
            {
                "overrides": [{"type": "gate", "id": "ghost", "groupID": "Nope"}],
                "userIDOverrides": [],
            },
        )
        assert bad.status == 400
        assert sorted(bad.error_props()) == ["overrides.0.groupID", "overrides.0.id"]
        after = (await api.get(f"{V1}/experiments/bench_0001_exp")).data
        assert after["version"] == exp["version"] + 3
        cleared = await api.delete(path)  # no body, as the current spec draws it
        assert cleared.data == {"overrides": [], "userIDOverrides": []}


async def test_experiment_delete_cleans_up_layer_and_holdouts() -> None:
    """Deleting an experiment answers it, drops its implicit layer and holdout membership."""
    async with serve(entities_world()) as api:
        await api.post(f"{V1}/holdouts", {"name": "hold all"})
        await api.patch(f"{V1}/holdouts/hold_all", {"experimentIDs": ["bench_0001_exp"]})
        deleted = await api.delete(f"{V1}/experiments/bench_0001_exp")
        assert deleted.status == 200
        assert deleted.data["id"] == "bench_0001_exp"
        assert deleted.body["message"] == "Experiment deleted successfully."
        layer = await api.get(f"{V1}/layers/{seg('statsig::bench_0001_exp_layer')}")
        assert layer.status == 404
        holdout = (await api.get(f"{V1}/holdouts/hold_all")).data
        assert holdout["experimentIDs"] == []
        assert holdout["version"] == 3


# -- holdouts -----------------------------------------------------------------------------------


async def test_holdout_membership_drives_holdout_ids() -> None:
    """Setting experimentIDs/gateIDs/layerIDs updates the members' holdoutIDs and versions."""
    async with serve(entities_world()) as api:
        made = await api.post(f"{V1}/holdouts", {"name": "Q3 Holdout"})
        assert made.status == 200
        assert made.data["id"] == "q3_holdout"
        assert made.data["passPercentage"] == 0
        assert made.data["isGlobal"] is False
        too_big = await api.patch(f"{V1}/holdouts/q3_holdout", {"passPercentage": 11})
        assert too_big.status == 400
        assert too_big.error_props() == ["passPercentage"]
        gate_v = (await api.get(f"{V1}/gates/bench_0001_gate")).data["version"]
        joined = await api.patch(
            f"{V1}/holdouts/q3_holdout",
            {"experimentIDs": ["bench_0001_exp"], "gateIDs": ["bench_0001_gate"]},
        )
        assert joined.data["experimentIDs"] == ["bench_0001_exp"]
        gate = (await api.get(f"{V1}/gates/bench_0001_gate")).data
        assert gate["holdoutIDs"] == ["q3_holdout"]
        assert gate["version"] == gate_v + 1
        exp = (await api.get(f"{V1}/experiments/bench_0001_exp")).data
        assert exp["holdoutIDs"] == ["q3_holdout"]
        unknown = await api.patch(f"{V1}/holdouts/q3_holdout", {"layerIDs": ["nope"]})
        assert unknown.status == 400
        assert unknown.error_props() == ["layerIDs.0"]
        left = await api.patch(f"{V1}/holdouts/q3_holdout", {"gateIDs": []})
        assert left.status == 200
        gate = (await api.get(f"{V1}/gates/bench_0001_gate")).data
        assert gate["holdoutIDs"] == []
        assert gate["version"] == gate_v + 2
        full_missing = await api.post(f"{V1}/holdouts/q3_holdout", {"isEnabled": True})
        assert full_missing.status == 400
        assert len(full_missing.error_props()) == 7
        deleted = await api.delete(f"{V1}/holdouts/q3_holdout")
        assert deleted.data["id"] == "q3_holdout"
        exp = (await api.get(f"{V1}/experiments/bench_0001_exp")).data
        assert exp["holdoutIDs"] == []
        gone = await api.patch(f"{V1}/holdouts/q3_holdout", {"isEnabled": False})
        assert gone.status == 404
        assert gone.body["message"] == "Holdout not found."
