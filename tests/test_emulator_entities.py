"""The emulator's config entities: tags, target apps, teams, id types, segments, gates, dynamic
configs, layers, experiments, holdouts; versions, reviews, references, faults and the demo world.

Helpers here (``Api``, ``serve``, ``small_world``) are also used by the rules and conformance
test modules.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest
from yarl import URL

from bulkops.emulator import (
    EmulatorConfig,
    Project,
    World,
    build_demo_world,
    populate_experiments,
    populate_metrics,
    running_emulator,
    seed_directory,
    set_review_required,
)

SOURCE_KEY = "console-entities-source-key"
SOURCE_RO_KEY = "console-entities-source-ro-key"
TARGET_KEY = "console-entities-target-key"
V1 = "/console/v1"
REVIEW = {"x-respect-review-settings": "true"}
BASE62_22 = re.compile(r"^[0-9A-Za-z]{22}$")
FROZEN_WALL = 1_800_000_000.0  # every change in the same millisecond: stamps must still grow


@dataclass
class Answer:
    status: int
    body: Any

    @property
    def data(self) -> Any:
        return self.body["data"]

    def error_props(self) -> list[str]:
        return [e["property"] for e in self.body.get("errors", [])]


class Api:
    """A tiny JSON client over one emulator; paths are sent exactly as written."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, key: str | None) -> None:
        self.session, self.base_url, self.key = session, base_url, key

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | bool | None = True,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        use_key = self.key if key is True else key
        sent = {
            **({"STATSIG-API-KEY": use_key} if isinstance(use_key, str) else {}),
            **(headers or {}),
        }
        data = None if body is None else orjson.dumps(body)
        if data is not None:
            sent["Content-Type"] = "application/json"
        url = URL(self.base_url + path, encoded=True)
        async with self.session.request(method, url, data=data, headers=sent) as resp:
            raw = await resp.read()
            return Answer(resp.status, orjson.loads(raw) if raw else None)

    async def get(self, path: str, **kw: Any) -> Answer:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Answer:
        return await self.call("POST", path, {} if body is None else body, **kw)

    async def patch(self, path: str, body: Any = None, **kw: Any) -> Answer:
        return await self.call("PATCH", path, {} if body is None else body, **kw)

    async def put(self, path: str, body: Any = None, **kw: Any) -> Answer:
        return await self.call("PUT", path, body, **kw)

    async def delete(self, path: str, body: Any = None, **kw: Any) -> Answer:
        return await self.call("DELETE", path, body, **kw)


@asynccontextmanager
async def serve(
    world: World, config: EmulatorConfig | None = None, key: str | None = SOURCE_KEY
) -> AsyncIterator[Api]:
    async with (
        running_emulator(world, config or EmulatorConfig()) as base_url,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
    ):
        yield Api(session, base_url, key)


def small_world(*, frozen: bool = True) -> World:
    """Two small projects with tags, a team, id types, an app, metrics and 2 bench experiments."""
    source = Project("source", SOURCE_KEY, read_only_keys=[SOURCE_RO_KEY])
    target = Project("target", TARGET_KEY)
    for project in (source, target):
        seed_directory(
            project,
            units=("userID", "stableID"),
            tags=("★ Core", "growth"),
            teams=("Growth",),
            apps=("iOS App",),
        )
    populate_metrics(source, 1, 2, prefix="s")  # s_s1_m1::user_warehouse, s_s1_m2::...
    populate_experiments(source, 2)  # bench_0001_exp..., gates, segments, metrics
    kwargs = {"wall_clock": lambda: FROZEN_WALL} if frozen else {}
    return World([source, target], **kwargs)


def seg(name: str) -> str:
    return quote(name, safe="")


GATE = {
    "name": "New Checkout",
    "description": "a gate",
    "idType": "userID",
    "rules": [
        {
            "name": "Internal",
            "passPercentage": 100,
            "conditions": [
                {"type": "email", "operator": "str_contains_any", "targetValue": ["@example.com"]}
            ],
        }
    ],
}


# -- tags, target apps, teams, unit id types ----------------------------------------------------


async def test_tag_ids_are_server_assigned_per_project_and_get_accepts_the_name() -> None:
    """Same tag name, two projects, two 22-char ids; GET by id or name; PATCH/DELETE by id only."""
    world = small_world()
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


async def test_target_app_id_derives_from_name_and_bulk_assign_bumps_entities() -> None:
    """Target-app ids come from names; renames keep ids; bulk assign adds apps, 404s on unknowns."""
    world = small_world()
    async with serve(world) as api:
        made = await api.post(f"{V1}/target_app", {"name": "Android TV", "description": "tv"})
        assert made.status == 200
        assert made.data["id"] == "android_tv"
        assert (await api.get(f"{V1}/target_app/{seg('Android TV')}")).data["id"] == "android_tv"
        renamed = await api.patch(f"{V1}/target_app/android_tv", {"name": "Big Screen"})
        assert renamed.body == {"message": "Target apps updated successfully."}
        assert (await api.get(f"{V1}/target_app/android_tv")).data["name"] == "Big Screen"
        gate = (await api.get(f"{V1}/gates/bench_0001_gate")).data
        done = await api.patch(
            f"{V1}/target_app",
            {"targetApps": ["android_tv", "ios_app"], "gates": ["bench_0001_gate"]},
        )
        assert done.status == 200
        after = (await api.get(f"{V1}/gates/bench_0001_gate")).data
        assert after["targetApps"] == ["android_tv", "ios_app"]
        assert after["version"] == gate["version"] + 1
        missing = await api.patch(
            f"{V1}/target_app", {"targetApps": ["ios_app"], "gates": ["not a gate"]}
        )
        assert missing.status == 404
        assert missing.body["message"] == "Gates with IDs [not a gate] do not exist"
        no_app = await api.patch(f"{V1}/target_app", {"targetApps": ["nope"]})
        assert no_app.status == 404
        assert "nope" in no_app.body["message"]


async def test_teams_and_unit_id_types_are_listed_and_referenced_by_entities() -> None:
    """Unknown team, team id and idType on an entity are 400s naming each field."""
    world = small_world()
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
    world = small_world()
    async with serve(world) as api:
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
    async with serve(small_world(), config) as api:
        body = {"name": "first seg", "type": "id_list"}
        assert (await api.post(f"{V1}/segments", body)).status == 201
        assert (await api.post(f"{V1}/segments", {**body, "name": "second seg"})).status == 429
        assert (await api.post(f"{V1}/gates", GATE)).status == 201


# -- gates --------------------------------------------------------------------------------------


async def test_gate_create_defaults_id_from_name_and_duplicates() -> None:
    """Defaults of reference §7, id derived from name, 201 (or forced 200), duplicate 400."""
    async with serve(small_world()) as api:
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
    async with serve(small_world(), EmulatorConfig(create_status="200")) as api:
        assert (await api.post(f"{V1}/gates", GATE)).status == 200


async def test_gate_full_update_resets_omitted_fields_and_partial_merges() -> None:
    """POST is a full update (required fields, omitted settings reset); PATCH merges."""
    async with serve(small_world()) as api:
        await api.post(
            f"{V1}/gates", {**GATE, "tags": ["growth"], "team": "Growth", "targetApps": "ios_app"}
        )
        patched = await api.patch(f"{V1}/gates/new_checkout", {"description": "patched"})
        assert patched.data["tags"] == ["growth"]
        assert patched.data["team"] == "Growth"
        assert patched.data["targetApps"] == ["ios_app"]
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
    async with serve(small_world()) as api:
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
    world = small_world()
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
    async with serve(small_world()) as api:
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


# -- dynamic configs ----------------------------------------------------------------------------


async def test_dynamic_config_create_update_and_shared_id_space() -> None:
    """Defaults, JSON5 kept in step with defaultValue, full vs partial, enable/disable, ids shared
    with experiments."""
    async with serve(small_world()) as api:
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


# -- layers and experiments ---------------------------------------------------------------------


async def test_layers_explicit_and_implicit() -> None:
    """Explicit layers derive ids; experiments get implicit layers; parameters are enforced."""
    async with serve(small_world()) as api:
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
        assert missing.body["message"] == "Layer not found."


async def test_experiment_create_defaults_and_implicit_layer() -> None:
    """Status setup, Control/Test 50/50 with server group ids, implicit layer created."""
    world = small_world()
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
    async with serve(small_world()) as api:
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
    async with serve(small_world()) as api:
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
    async with serve(small_world()) as api:
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
    async with serve(small_world()) as api:
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
    """POST replaces, PATCH adds, DELETE removes; groupID by name or id; answers name only
    (in stored order here: by default they come back reversed)."""
    async with serve(small_world(), EmulatorConfig(list_order="kept")) as api:
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
    async with serve(small_world()) as api:
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
    async with serve(small_world()) as api:
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


# -- versions, times, reviews, pipeline -----------------------------------------------------------


async def test_version_and_last_modified_time_move_on_every_change() -> None:
    """With a frozen wall clock every change still gets a strictly later lastModifiedTime."""
    async with serve(small_world(frozen=True)) as api:
        gate = (await api.post(f"{V1}/gates", GATE)).data
        rule_id = gate["rules"][0]["id"]
        steps = [
            ("PATCH", "", {"description": "a"}),
            ("PUT", "/disable", None),
            ("POST", "/rule", {"name": "r2", "passPercentage": 5, "conditions": []}),
            ("PATCH", f"/rules/{seg(rule_id)}", {"passPercentage": 50}),
            ("POST", "/overrides", {"passingUserIDs": ["x"], "failingUserIDs": []}),
        ]
        last = (gate["version"], gate["lastModifiedTime"])
        for method, suffix, body in steps:
            answer = await api.call(method, f"{V1}/gates/new_checkout{suffix}", body)
            assert answer.status in (200, 201), (method, suffix, answer.body)
            now = (await api.get(f"{V1}/gates/new_checkout")).data
            assert now["version"] == last[0] + 1, suffix
            assert now["lastModifiedTime"] > last[1], suffix
            last = (now["version"], now["lastModifiedTime"])


async def test_review_header_holds_changes_on_entities_that_require_review() -> None:
    """With the header, a change to a review-required entity is not applied but pending;
    without it, it applies; committing the review applies the held change."""
    world = small_world()
    async with serve(world) as api:
        await api.post(f"{V1}/gates", {**GATE, "reviewSettings": {"requiredReview": True}})
        held = await api.patch(
            f"{V1}/gates/new_checkout", {"description": "reviewed"}, headers=REVIEW
        )
        assert held.status == 200
        assert held.data["description"] == "a gate"
        review = held.data["activeReview"]
        assert review["reviewStatus"] == "pending"
        assert review["description"]
        assert held.data["version"] == 1
        stored = (await api.get(f"{V1}/gates/new_checkout")).data
        assert stored["description"] == "a gate"
        assert stored["activeReview"] == review
        commit = f"{V1}/gates/new_checkout/reviews/{review['reviewID']}/commit"
        assert (await api.put(commit)).body == {"message": "Gate review committed successfully"}
        stored = (await api.get(f"{V1}/gates/new_checkout")).data
        assert stored["description"] == "reviewed"
        assert "activeReview" not in stored
        assert stored["version"] == 2
        direct = await api.patch(f"{V1}/gates/new_checkout", {"description": "direct"})
        assert direct.data["description"] == "direct"
        assert direct.data["version"] == 3
        empty = await api.patch(
            f"{V1}/gates/new_checkout",
            {"description": "e"},
            headers={"x-respect-review-settings": ""},
        )
        assert empty.data["description"] == "e"  # an empty header value does not count
        set_review_required(world.project("source"), "experiments", "bench_0001_exp")
        start = await api.put(f"{V1}/experiments/bench_0001_exp/start", {}, headers=REVIEW)
        assert start.status == 200
        assert start.data["status"] == "setup"
        assert start.data["activeReview"]["reviewStatus"] == "pending"
        config = await api.post(f"{V1}/dynamic_configs", {"name": "guarded config"})
        set_review_required(world.project("source"), "dynamic_configs", config.data["id"])
        first = await api.put(f"{V1}/dynamic_configs/guarded_config/disable", headers=REVIEW)
        second = await api.patch(
            f"{V1}/dynamic_configs/guarded_config", {"description": "x"}, headers=REVIEW
        )
        assert first.data["isEnabled"] is True
        assert second.data["description"] == ""
        stale = first.data["activeReview"]["reviewID"]
        replaced = await api.put(f"{V1}/dynamic_configs/guarded_config/reviews/{stale}/commit")
        assert replaced.status == 400  # a newer review replaced it
        latest = second.data["activeReview"]["reviewID"]
        await api.patch(f"{V1}/dynamic_configs/guarded_config", {"tags": ["growth"]})
        moved = await api.put(f"{V1}/dynamic_configs/guarded_config/reviews/{latest}/commit")
        assert moved.status == 400
        assert "changed after" in moved.body["message"]
        plain = await api.patch(
            f"{V1}/experiments/bench_0002_exp", {"hypothesis": "h"}, headers=REVIEW
        )
        assert plain.data["hypothesis"] == "h"  # no review required on this one


async def test_mutations_go_through_quota_faults_and_read_only_keys() -> None:
    """429 past the quota, 403 for read-only keys, lost_answer applies then drops."""
    config = EmulatorConfig(mutation_windows=("2/10s",))
    async with serve(small_world(), config) as api:
        assert (await api.patch(f"{V1}/gates/bench_0001_gate", {"description": "1"})).status == 200
        assert (await api.put(f"{V1}/experiments/bench_0001_exp/start", {})).status == 200
        assert (await api.post(f"{V1}/tags", {"name": "t", "description": ""})).status == 429
    async with serve(small_world()) as api:
        denied = await api.post(f"{V1}/gates", GATE, key=SOURCE_RO_KEY)
        assert denied.status == 403
        assert (await api.get(f"{V1}/gates", key=None)).status == 401
    world = small_world()
    async with serve(world, EmulatorConfig(lost_answer_rate=1.0)) as api:
        with pytest.raises(aiohttp.ClientError):
            await api.post(f"{V1}/gates", GATE)
    assert "new_checkout" in world.project("source").collection("gates")
    assert world.count(fault="lost_answer") == 1


# -- demo world ---------------------------------------------------------------------------------


def _snapshot(world: World) -> dict[str, Any]:
    return {
        name: {
            kind: project.collection(kind).values()
            for kind in (
                "tags",
                "teams",
                "target_apps",
                "unit_id_types",
                "segments",
                "gates",
                "dynamic_configs",
                "layers",
                "experiments",
                "holdouts",
                "experiments_overrides",
                "gates_overrides",
            )
        }
        for name, project in world.projects.items()
    }


def test_demo_world_is_deterministic_and_rich() -> None:
    """Two builds are identical; source has everything a clone and a batch edit need."""
    first, second = build_demo_world(), build_demo_world()
    assert _snapshot(first) == _snapshot(second)
    assert _snapshot(build_demo_world(seed="other")) != _snapshot(first)
    src, tgt = first.project("source"), first.project("target")
    gates = src.collection("gates").values()
    assert len(gates) >= 300
    assert {g["id"].split("_")[0] for g in gates} == {"checkout", "search", "growth"}
    rules = [r for g in gates for r in g["rules"]]
    kinds = {c["type"] for r in rules for c in r["conditions"]}
    assert {"email", "user_id", "passes_segment", "passes_gate"} <= kinds
    assert any(r["name"] == "Internal" for r in rules)
    assert len({r["passPercentage"] for r in rules}) >= 5
    exps = src.collection("experiments").values()
    assert {e["status"] for e in exps} == {"setup", "active", "decision_made"}
    assert any(e["layerID"] == "checkout_layer" for e in exps)
    assert any(e["layerID"].startswith("statsig::") for e in exps)
    assert all(e["targetingGateID"] and e["primaryMetrics"] for e in exps)
    assert any(e["holdoutIDs"] for e in exps)
    assert {s["type"] for s in src.collection("segments").values()} == {"rule_based", "id_list"}
    assert "★ Core" in [t["name"] for t in src.collection("tags").values()]
    assert [u["name"] for u in src.collection("unit_id_types").values()] == [
        "userID",
        "stableID",
        "companyID",
    ]
    assert len(src.collection("teams")) == 2
    assert len(tgt.collection("teams")) == 1
    src_tags = {t["name"]: t["id"] for t in src.collection("tags").values()}
    tgt_tags = {t["name"]: t["id"] for t in tgt.collection("tags").values()}
    assert set(tgt_tags) < set(src_tags)
    assert all(tgt_tags[n] != src_tags[n] for n in tgt_tags)
    shared = tgt.collection("gates").values()
    assert len(shared) == 1
    assert shared[0]["rules"] != src.collection("gates").get(shared[0]["id"])["rules"]
    assert "companyID" not in tgt.collection("unit_id_types")
    assert len(src.collection("experiments_overrides")) > 0


def test_populate_experiments_builds_n_complete_experiments() -> None:
    """Each bench experiment has a targeting gate, a segment, 2 metrics and overrides."""
    project = Project("bench", "console-bench-key")
    made = populate_experiments(project, 25, seed="s")
    assert len(made) == 25
    assert made[0] == "bench_0001_exp"
    exp = project.collection("experiments").get(made[-1])
    assert exp is not None
    assert exp["targetingGateID"] in project.collection("gates")
    assert len(exp["primaryMetrics"]) + len(exp["secondaryMetrics"]) == 2
    assert len(project.collection("segments")) == 25
    assert made[-1] in project.collection("experiments_overrides")
