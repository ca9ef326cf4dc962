"""The emulator's directory entities: tags, target apps, teams, unit id types and segments."""

from __future__ import annotations

import re

import pytest

from bulkops.emulator import (
    EmulatorConfig,
    Project,
)
from bulkops.emulator.resources.target_apps import app_ids, create_target_app
from tests.support.http import V1, seg, serve
from tests.support.worlds import NEW_GATE, TARGET_KEY, entities_world

BASE62_22 = re.compile(r"^[0-9A-Za-z]{22}$")


GATE = NEW_GATE


# -- tags, target apps, teams, unit id types ----------------------------------------------------


async def test_tag_ids_are_server_assigned_per_project_and_get_accepts_the_name() -> None:
    """Same tag name, two projects, two 22-char ids; GET by id or name; PATCH/DELETE by id only."""
    world = entities_world()
    async with serve(world) as api:
        made = await api.post(f"{V1}/tags", {"name": "release", "description": "r"})
        other = await api.post(
            f"{V1}/tags", {"name": "release", "description": "r"}, key=TARGET_KEY
        )
        assert made.status == other.status == 200
        assert BASE62_22.match(made.data["id"])
        assert made.data["id"] != other.data["id"]
        assert made.data == {
            "id": made.data["id"],
            "name": "release",
            "description": "r",
            "isCore": False,
        }
        assert (await api.get(f"{V1}/tags/{made.data['id']}")).data["name"] == "release"
        assert (await api.get(f"{V1}/tags/{seg('★ Core')}")).data["isCore"] is True
        dup = await api.post(f"{V1}/tags", {"name": "release", "description": "again"})
        assert dup.status == 400
        assert dup.body["message"] == "Name is already in use"
        assert (await api.patch(f"{V1}/tags/release", {"name": "x"})).status == 404
        renamed = await api.patch(f"{V1}/tags/{made.data['id']}", {"name": "shipped"})
        assert renamed.data["id"] == made.data["id"]
        assert renamed.data["name"] == "shipped"
        assert (await api.delete(f"{V1}/tags/{made.data['id']}")).status == 200
        missing = await api.get(f"{V1}/tags/{made.data['id']}")
        assert missing.status == 404
        assert missing.body["message"].startswith("Tag not found")


async def test_target_app_ids_are_the_projects_own_and_bulk_assign_bumps_entities() -> None:
    """A target app's id is assigned per project (one name, another id in each project, #7);
    reads take the name too; renames keep ids; bulk assign adds apps, 404s on unknowns."""
    world = entities_world()
    ios = app_ids(world.project("source"), ["iOS App"])[0]
    assert ios != app_ids(world.project("target"), ["iOS App"])[0]
    async with serve(world) as api:
        made = await api.post(f"{V1}/target_app", {"name": "Android TV", "description": "tv"})
        assert made.status == 200
        tv = made.data["id"]
        assert BASE62_22.match(tv)
        assert (await api.get(f"{V1}/target_app/{seg('Android TV')}")).data["id"] == tv
        renamed = await api.patch(f"{V1}/target_app/{tv}", {"name": "Big Screen"})
        assert renamed.body == {"message": "Target apps updated successfully."}
        assert (await api.get(f"{V1}/target_app/{tv}")).data["name"] == "Big Screen"
        gate = (await api.get(f"{V1}/gates/bench_0001_gate")).data
        done = await api.patch(
            f"{V1}/target_app", {"targetApps": [tv, ios], "gates": ["bench_0001_gate"]}
        )
        assert done.status == 200
        after = (await api.get(f"{V1}/gates/bench_0001_gate")).data
        assert after["targetApps"] == [tv, ios]
        assert after["version"] == gate["version"] + 1
        missing = await api.patch(
            f"{V1}/target_app", {"targetApps": [ios], "gates": ["not a gate"]}
        )
        assert missing.status == 404
        assert missing.body["message"] == "Gates with IDs [not a gate] do not exist"
        no_app = await api.patch(f"{V1}/target_app", {"targetApps": ["ios_app"]})
        assert no_app.status == 404  # the name-derived id is not this project's id


def test_target_app_ids_derive_from_names_under_the_derived_reading() -> None:
    """With Project.target_app_ids="derived" an app's id is its name made an id, in every
    project alike; any other reading is refused when the project is made."""
    for name in ("a", "b"):
        project = Project(name, f"key-{name}", target_app_ids="derived")
        made = create_target_app(project, {"name": "iOS App", "description": ""})
        assert made["id"] == "ios_app"
    with pytest.raises(ValueError, match="target_app_ids"):
        Project("c", "key-c", target_app_ids="names")


async def test_teams_and_unit_id_types_are_listed_and_referenced_by_entities() -> None:
    """Unknown team, team id and idType on an entity are 400s naming each field."""
    world = entities_world()
    async with serve(world) as api:
        teams = await api.get(f"{V1}/users/teams")
        assert [t["name"] for t in teams.data] == ["Growth"]
        units = await api.get(f"{V1}/unit_id_types")
        assert [u["name"] for u in units.data] == ["userID", "stableID"]
        made = await api.post(f"{V1}/unit_id_types", {"name": "orgID", "description": "orgs"})
        assert made.status == 201
        bad = await api.post(
            f"{V1}/gates", {**GATE, "team": "Nobody", "teamID": "t0", "idType": "deviceID"}
        )
        assert bad.status == 400
        assert bad.body["message"] == "Bad Request Exception"
        assert sorted(bad.error_props()) == ["idType", "team", "teamID"]
        good = await api.post(f"{V1}/gates", {**GATE, "team": "Growth", "idType": "orgID"})
        assert good.data["teamID"] == teams.data[0]["id"]
        assert good.data["idType"] == "orgID"


# -- segments -----------------------------------------------------------------------------------


async def test_segment_types_and_their_endpoints() -> None:
    """rule_based: conditional replaces rules; id_list: add/remove/reset ids; wrong type: 400."""
    world = entities_world()
    async with serve(world, EmulatorConfig(segment_rules_answer="segment")) as api:
        rb = await api.post(
            f"{V1}/segments",
            {
                "name": "Power Users",
                "type": "rule_based",
                "rules": [
                    {
                        "name": "r",
                        "passPercentage": 100,
                        "conditions": [
                            {"type": "country", "operator": "any", "targetValue": ["US"]}
                        ],
                    }
                ],
            },
        )
        assert rb.status == 201
        assert rb.data["id"] == "power_users"
        assert rb.data["version"] == 1
        base_id = rb.data["rules"][0]["baseID"]
        rules = [
            {**rb.data["rules"][0], "passPercentage": 50},
            {"name": "new", "passPercentage": 10, "conditions": []},
        ]
        replaced = await api.post(f"{V1}/segments/power_users/conditional", rules)
        assert replaced.body["message"] == "Rules successfully updated"
        assert [r["baseID"] == base_id for r in replaced.data["rules"]] == [True, False]
        assert replaced.data["version"] == 2
        il = await api.post(f"{V1}/segments", {"name": "vips", "type": "id_list"})
        assert il.data["count"] == 0
        path = f"{V1}/segments/vips/id_list"
        assert (await api.patch(path, {"ids": ["a", "b", "c"]})).status == 200
        assert (await api.delete(path, {"ids": ["b"]})).status == 200
        listed = await api.get(path)
        assert listed.data == {"name": "vips", "count": 2, "ids": ["a", "c"]}
        assert (await api.post(f"{path}/reset", {"ids": ["z"]})).status == 200
        after = (await api.get(f"{V1}/segments/vips")).data
        assert after["count"] == 1
        assert after["version"] == 4
        wrong = await api.post(f"{V1}/segments/vips/conditional", [])
        assert wrong.status == 400
        assert wrong.body["message"] == (
            "Segment must be of type 'rule_based' to be modified on this endpoint"
        )
        bad_cond = await api.post(
            f"{V1}/segments/power_users/conditional",
            [{"name": "x", "passPercentage": 1, "conditions": [{"type": "passes_gate"}]}],
        )
        assert bad_cond.status == 400  # passes_gate is not a segment condition type
        archived = await api.put(f"{V1}/segments/vips/archive")
        assert archived.data["isEnabled"] is False
        assert (await api.delete(f"{V1}/segments/vips")).status == 200
        gone = await api.get(f"{V1}/segments/vips")
        assert gone.status == 404
        assert gone.body["message"] == "Segment not found."


async def test_segment_mutations_draw_from_the_segment_quota() -> None:
    """With one segment mutation per window, the second is 429 while gates still pass."""
    config = EmulatorConfig(segment_mutation_windows=("1/10s",))
    async with serve(entities_world(), config) as api:
        body = {"name": "first seg", "type": "id_list"}
        assert (await api.post(f"{V1}/segments", body)).status == 201
        assert (await api.post(f"{V1}/segments", {**body, "name": "second seg"})).status == 429
        assert (await api.post(f"{V1}/gates", GATE)).status == 201
