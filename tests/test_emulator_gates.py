"""The emulator's gates and dynamic configs (their rules: test_emulator_rules.py)."""

from __future__ import annotations

from bulkops.emulator import (
    EmulatorConfig,
)
from bulkops.emulator.resources.target_apps import app_ids
from tests.support.http import V1, serve
from tests.support.worlds import NEW_GATE, entities_world

GATE = NEW_GATE


# -- gates --------------------------------------------------------------------------------------


async def test_gate_create_defaults_id_from_name_and_duplicates() -> None:
    """Defaults of reference §7, id derived from name, 201 (or forced 200), duplicate 400."""
    async with serve(entities_world()) as api:
        made = await api.post(f"{V1}/gates", GATE)
        assert made.status == 201
        assert made.body["message"] == "Gate created successfully."
        gate = made.data
        assert gate["id"] == "new_checkout"
        assert gate["name"] == "New Checkout"
        expected = {
            "isEnabled": True,
            "status": "In Progress",
            "type": "PERMANENT",
            "typeReason": "NONE",
            "checksPerHour": 0,
            "tags": [],
            "targetApps": [],
            "holdoutIDs": [],
            "team": None,
            "measureMetricLifts": True,
            "monitoringMetrics": [],
            "version": 1,
            "creatorName": "CONSOLE API",
            "lastModifierName": "CONSOLE API",
            "reviewSettings": {"requiredReview": False, "allowedReviewers": []},
        }
        assert {k: gate[k] for k in expected} == expected
        assert gate["owner"]["ownerName"] == "CONSOLE API"
        assert gate["creatorID"]
        dup = await api.post(f"{V1}/gates", {**GATE, "name": "new checkout"})
        assert dup.status == 400
        assert dup.body == {
            "status": 400,
            "message": "Name is already in use",
        }
        no_name = await api.post(f"{V1}/gates", {"description": "x"})
        assert no_name.status == 400
        assert no_name.error_props() == ["name"]
    async with serve(entities_world(), EmulatorConfig(create_status="200")) as api:
        assert (await api.post(f"{V1}/gates", GATE)).status == 200


async def test_gate_full_update_resets_omitted_fields_and_partial_merges() -> None:
    """POST is a full update (required fields, omitted settings reset); PATCH merges."""
    world = entities_world()
    ios = app_ids(world.project("source"), ["iOS App"])[0]
    async with serve(world) as api:
        await api.post(
            f"{V1}/gates", {**GATE, "tags": ["growth"], "team": "Growth", "targetApps": ios}
        )
        patched = await api.patch(f"{V1}/gates/new_checkout", {"description": "patched"})
        assert patched.data["tags"] == ["growth"]
        assert patched.data["team"] == "Growth"
        assert patched.data["targetApps"] == [ios]
        missing = await api.post(f"{V1}/gates/new_checkout", {"tags": []})
        assert missing.status == 400
        assert sorted(missing.error_props()) == ["description", "isEnabled", "rules"]
        full = await api.post(
            f"{V1}/gates/new_checkout",
            {"isEnabled": False, "description": "full", "rules": patched.data["rules"]},
        )
        assert full.data["tags"] == []
        assert full.data["team"] is None
        assert full.data["targetApps"] == []
        assert full.data["name"] == "New Checkout"
        assert full.data["status"] == "Disabled"
        assert full.data["version"] == 3
        assert full.data["rules"] == patched.data["rules"]  # same rules, same ids
        missing_gate = await api.patch(f"{V1}/gates/nope", {"description": "x"})
        assert missing_gate.status == 404


async def test_gate_status_actions_each_bump_the_version() -> None:
    """enable/disable/launch/archive/unarchive move status and version."""
    async with serve(entities_world()) as api:
        await api.post(f"{V1}/gates", GATE)
        seen = []
        for action, status in [
            ("disable", "Disabled"),
            ("enable", "In Progress"),
            ("launch", "Launched"),
            ("archive", "Archived"),
            ("unarchive", "In Progress"),
        ]:
            answer = await api.put(f"{V1}/gates/new_checkout/{action}")
            assert answer.status == 200, action
            assert answer.data["status"] == status, action
            seen.append(answer.data["version"])
        assert seen == [2, 3, 4, 5, 6]
        assert (await api.delete(f"{V1}/gates/new_checkout")).body == {
            "message": "Gate deleted successfully."
        }
        assert (await api.get(f"{V1}/gates/new_checkout")).status == 404


async def test_gate_list_filters() -> None:
    """idType, type (one or many) and tags (by name or by tag id) filter the gate list."""
    world = entities_world()
    async with serve(world) as api:
        await api.post(
            f"{V1}/gates", {**GATE, "name": "g one", "tags": ["growth"], "type": "TEMPORARY"}
        )
        await api.post(f"{V1}/gates", {**GATE, "name": "g two", "idType": "stableID"})
        ids = lambda a: [g["id"] for g in a.data]  # noqa: E731
        assert ids(await api.get(f"{V1}/gates?idType=stableID")) == ["g_two"]
        assert ids(await api.get(f"{V1}/gates?type=TEMPORARY")) == ["g_one"]
        both = await api.get(f"{V1}/gates?type=TEMPORARY&type=PERMANENT")
        assert len(both.data) == 4
        tag_id = (await api.get(f"{V1}/tags/growth")).data["id"]
        assert ids(await api.get(f"{V1}/gates?tags=growth")) == ["g_one"]
        assert ids(await api.get(f"{V1}/gates?tags={tag_id}")) == ["g_one"]


async def test_gate_overrides_replace_add_remove_with_201() -> None:
    """Gate overrides answer 201 even on GET; POST replaces, PATCH adds, DELETE removes."""
    async with serve(entities_world()) as api:
        await api.post(f"{V1}/gates", GATE)
        path = f"{V1}/gates/new_checkout/overrides"
        empty = await api.get(path)
        assert empty.status == 201
        assert empty.data["environmentOverrides"] == []
        await api.post(path, {"passingUserIDs": ["a"], "failingUserIDs": ["b"]})
        added = await api.patch(path, {"passingUserIDs": ["c"], "failingUserIDs": []})
        assert added.status == 201
        assert added.data["passingUserIDs"] == ["a", "c"]
        env = await api.patch(
            path,
            {
                "environmentOverrides": [
                    {
                        "environment": "staging",
                        "unitID": "stableID",
                        "passingIDs": ["d1"],
                        "failingIDs": [],
                    }
                ]
            },
        )
        assert env.data["environmentOverrides"][0]["passingIDs"] == ["d1"]
        removed = await api.delete(path, {"passingUserIDs": ["a"], "failingUserIDs": ["b"]})
        assert removed.data["passingUserIDs"] == ["c"]
        assert removed.data["failingUserIDs"] == []
        replaced = await api.post(path, {"passingUserIDs": ["z"], "failingUserIDs": []})
        assert replaced.data["environmentOverrides"] == []
        assert replaced.data["passingUserIDs"] == ["z"]
        assert (await api.get(f"{V1}/gates/new_checkout")).data["version"] == 6
        cleared = await api.delete(path)  # no body, as the current spec draws it
        assert cleared.status == 201
        assert cleared.data["passingUserIDs"] == []


async def test_a_gate_overrides_body_of_both_forms_is_refused() -> None:
    """``UpdateOverridesContractDto`` is a ``oneOf``: a body with the id lists and
    ``environmentOverrides`` matches both branches, so it is a 400, and nothing changes."""
    async with serve(entities_world()) as api:
        await api.post(f"{V1}/gates", GATE)
        path = f"{V1}/gates/new_checkout/overrides"
        env = {"environment": None, "unitID": "userID", "passingIDs": ["a"], "failingIDs": []}
        both = {"passingUserIDs": ["a"], "failingUserIDs": [], "environmentOverrides": [env]}
        for send in (api.post, api.patch):
            refused = await send(path, both)
            assert refused.status == 400
            assert {e["property"] for e in refused.body["errors"]} == {
                "environmentOverrides",
                "passingUserIDs",
                "failingUserIDs",
            }
        assert (await api.get(path)).data["passingUserIDs"] == []


# -- dynamic configs ----------------------------------------------------------------------------


async def test_dynamic_config_create_update_and_shared_id_space() -> None:
    """Defaults, JSON5 kept in step with defaultValue, full vs partial, enable/disable, ids shared
    with experiments."""
    async with serve(entities_world()) as api:
        made = await api.post(
            f"{V1}/dynamic_configs", {"name": "Pricing Config", "defaultValue": {"a": 1}}
        )
        assert made.status == 201
        assert made.data["id"] == "pricing_config"
        assert made.data["defaultValueJson5"] == '{"a":1}'
        assert made.data["status"] == "Enabled"
        clash = await api.post(f"{V1}/dynamic_configs", {"name": "bench_0001_exp"})
        assert clash.status == 400
        assert clash.body["message"] == "Name is already in use"
        mismatch = await api.patch(
            f"{V1}/dynamic_configs/pricing_config",
            {"defaultValue": {"a": 2}, "defaultValueJson5": '{"a": 3}'},
        )
        assert mismatch.status == 400
        assert mismatch.error_props() == ["defaultValueJson5"]
        patched = await api.patch(
            f"{V1}/dynamic_configs/pricing_config",
            {"defaultValueJson5": '{"b": true}', "tags": ["growth"]},
        )
        assert patched.data["defaultValue"] == {"b": True}
        assert patched.data["tags"] == ["growth"]
        full = await api.post(
            f"{V1}/dynamic_configs/pricing_config",
            {"description": "d", "isEnabled": True, "rules": []},
        )
        assert full.data["tags"] == []
        assert full.data["defaultValue"] == {}
        disabled = await api.put(f"{V1}/dynamic_configs/pricing_config/disable")
        assert disabled.data["status"] == "Disabled"
        assert disabled.data["version"] == 4
        deleted = await api.delete(f"{V1}/dynamic_configs/pricing_config")
        assert deleted.body == {"message": "Dynamic Config deleted successfully."}
