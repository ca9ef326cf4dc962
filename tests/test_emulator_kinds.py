"""What the smaller configuration kinds do on the emulator: lists page, reads find, writes change
what the next read answers, and the id-list read has its own quota."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from bulkops.emulator import EmulatorConfig, World, build_demo_world, running_emulator
from tests.support.worlds import SOURCE_KEY
from tests.test_emulator_conformance_kinds import (
    ASSIGNMENT,
    AUTOTUNE,
    PROPERTY,
    TEAM,
    conformance_world,
)

V1 = "/console/v1"


class Api:
    """A tiny client for one project of a running emulator."""

    def __init__(self, session: aiohttp.ClientSession, base: str, key: str) -> None:
        self.session, self.base, self.key = session, base, key

    async def __call__(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"STATSIG-API-KEY": self.key}
        async with self.session.request(
            method, f"{self.base}{V1}/{path}", json=body, headers=headers
        ) as resp:
            return resp.status, orjson.loads(await resp.read())


@pytest.fixture
def world() -> World:
    return conformance_world()


@pytest.fixture
async def api(world: World) -> AsyncIterator[Api]:
    async with running_emulator(world) as base, aiohttp.ClientSession() as session:
        yield Api(session, base, SOURCE_KEY)


async def test_a_team_is_created_read_renamed_and_deleted(api: Api) -> None:
    """Team create answers members as users; PATCH replaces fields; DELETE makes it a 404."""
    status, body = await api("POST", "users/teams", TEAM)
    assert status == 200
    team = body["data"]
    assert team["members"] == [
        {"email": "a@example.com", "firstName": "", "lastName": "", "role": "Member"}
    ]
    assert (await api("POST", "users/teams", TEAM))[0] == 400  # name in use
    status, body = await api("PATCH", f"users/teams/{team['id']}", {"name": "Data Eng"})
    assert status == 200
    assert body["data"]["id"] == team["id"]
    assert (await api("GET", f"users/teams/{team['id']}"))[1]["data"]["name"] == "Data Eng"
    assert (await api("DELETE", f"users/teams/{team['id']}"))[0] == 200
    assert (await api("GET", f"users/teams/{team['id']}"))[0] == 404


async def test_a_unit_id_type_in_use_cannot_be_deleted(api: Api) -> None:
    """PATCH sets the description; DELETE refuses a type entities use and removes an unused one."""
    status, body = await api("PATCH", "unit_id_types/stableID", {"description": "devices"})
    assert status == 200
    assert body["data"] == {"name": "stableID", "description": "devices"}
    status, body = await api("DELETE", "unit_id_types/userID")
    assert status == 400
    assert "userID" in body["message"]
    assert (await api("DELETE", "unit_id_types/stableID"))[0] == 200
    names = [u["name"] for u in (await api("GET", "unit_id_types"))[1]["data"]]
    assert names == ["userID"]


async def test_environments_are_written_as_one_list(api: Api) -> None:
    """POST keeps the ids of items sent with one, gives new ones an id, drops the rest, and
    refuses unknown ids and duplicate names."""
    _, body = await api("GET", "environments")
    before = {e["name"]: e for e in body["data"]["environments"]}
    assert sorted(before) == ["development", "production", "staging"]
    prod = {**before["production"], "requiresReview": False}
    new = {"name": "qa", "isProduction": False, "requiresReview": False,
           "requiresReleasePipeline": False}  # fmt: skip
    status, body = await api("POST", "environments", {"environments": [prod, new]})
    assert status == 200
    after = body["data"]["environments"]
    assert [e["name"] for e in after] == ["production", "qa"]
    assert after[0] == prod
    assert after[1]["id"] not in {e["id"] for e in before.values()}
    assert (await api("GET", "environments"))[1]["data"]["environments"] == after
    bad_id = {**new, "id": "nope"}
    assert (await api("POST", "environments", {"environments": [bad_id]}))[0] == 400
    twice = {"environments": [new, {**new, "name": "QA"}]}
    assert (await api("POST", "environments", twice))[0] == 400


async def test_assignment_sources_create_dry_run_update_and_delete(api: Api) -> None:
    """A dry run stores nothing; the full update resets omitted fields; PATCH cannot change sql;
    the spec has no read of one source, so the list is where it shows."""
    dry = {**ASSIGNMENT, "dryRun": True}
    assert (await api("POST", "experiments/assignment_sources", dry))[0] == 201
    names = [s["name"] for s in (await api("GET", "experiments/assignment_sources"))[1]["data"]]
    assert "new assignments" not in names
    body = {**ASSIGNMENT, "description": "kept?"}
    assert (await api("POST", "experiments/assignment_sources", body))[0] == 201
    one = "experiments/assignment_source/new%20assignments"
    full = {k: v for k, v in ASSIGNMENT.items() if k != "name"}
    status, answer = await api("POST", one, {**full, "sql": "SELECT 2"})
    assert status == 200
    assert answer["data"]["description"] == ""
    status, answer = await api("PATCH", one, {"sql": "DROP TABLE x", "isVerified": True})
    assert answer["data"]["sql"] == "SELECT 2"
    assert answer["data"]["isVerified"] is True
    assert (await api("GET", one))[0] == 404  # no such route
    assert (await api("DELETE", one))[0] == 200
    assert (await api("DELETE", one))[0] == 404


async def test_entity_properties_and_qualifying_events_are_keyed_by_exact_name(api: Api) -> None:
    """Names with spaces, slashes and percent signs address one source each, case-sensitively."""
    for name in ("a/b c", "A/b c", "100% x"):
        status, _ = await api("POST", "experiments/entity_properties", {**PROPERTY, "name": name})
        assert status == 201
    status, body = await api("GET", "experiments/entity_property/A%2Fb%20c")
    assert status == 200
    assert body["data"]["name"] == "A/b c"
    _, body = await api("GET", "experiments/qualifying_events/Search%20%25%20sessions")
    assert body["data"]["name"] == "Search % sessions"
    assert (await api("GET", "experiments/qualifying_events/search%20%25%20sessions"))[0] == 404


async def test_param_store_parameters_must_reference_existing_entities(api: Api) -> None:
    """An update naming a missing gate is a 400 naming the field; a valid one replaces the list."""
    bad = {"parameters": [{"ref_type": "gate", "name": "g", "gate_name": "no_gate",
                           "param_type": "boolean", "pass_value": True, "fail_value": False}]}  # fmt: skip
    status, body = await api("POST", "param_stores/empty_store", bad)
    assert status == 400
    assert body["errors"][0]["property"] == "parameters.0.gate_name"
    good = {"parameters": [{**bad["parameters"][0], "gate_name": "bench_0001_gate"}]}
    status, body = await api("POST", "param_stores/empty_store", good)
    assert status == 200
    assert body["data"]["parameters"] == good["parameters"]
    assert (await api("GET", "param_stores/empty_store"))[1]["data"] == body["data"]


async def test_an_autotune_runs_decides_and_resets(api: Api) -> None:
    """Create gives variant ids; start, decide and reset each bump the version; deciding needs
    a running autotune; a full update resets optional fields."""
    status, body = await api("POST", "autotunes", {**AUTOTUNE, "goalRichText": "more clicks"})
    assert status == 201
    tune = body["data"]
    assert [v["id"] for v in tune["variants"]] == ["a", "b"]
    assert tune["version"] == 1
    decide = {"id": "b", "decisionReason": "best"}
    assert (await api("PUT", "autotunes/new_tune/make_decision", decide))[0] == 400
    assert (await api("PUT", "autotunes/new_tune/start", None))[0] == 200
    assert (await api("PUT", "autotunes/new_tune/make_decision", decide))[0] == 200
    _, body = await api("GET", "autotunes/new_tune")
    assert body["data"]["winner"] == {"id": "b", "name": "b"}
    assert body["data"]["version"] == 3
    assert body["data"]["isStarted"] is False
    assert (await api("PUT", "autotunes/new_tune/reset", None))[0] == 200
    full = {k: v for k, v in AUTOTUNE.items() if k != "name"}
    _, body = await api("POST", "autotunes/new_tune", full)
    assert "goalRichText" not in body["data"]
    assert body["data"]["version"] == 5
    assert (await api("DELETE", "autotunes/new_tune"))[0] == 200
    assert (await api("GET", "autotunes/new_tune"))[0] == 404


async def test_new_kind_lists_page_like_the_others(api: Api) -> None:
    """``limit`` pages the new lists, with totals and a next link."""
    for path in ("autotunes", "param_stores", "experiments/assignment_sources"):
        _, body = await api("GET", f"{path}?limit=1")
        assert len(body["data"]) == 1
        assert body["pagination"]["totalItems"] == 2
        assert body["pagination"]["nextPage"] == f"{V1}/{path}?limit=1&page=2"


async def test_the_id_list_read_has_its_own_quota() -> None:
    """``GET /segments/{id}/id_list`` is refused past its window (other reads and mutations are
    not), and is allowed again once the window has passed (injected clock)."""
    now = [1000.0]
    world = conformance_world()
    seeded = World(list(world.projects.values()), clock=lambda: now[0])
    config = EmulatorConfig(id_list_read_windows=("2/10s",))
    async with running_emulator(seeded, config) as base, aiohttp.ClientSession() as session:
        api = Api(session, base, SOURCE_KEY)
        path = "segments/conf_ids/id_list"
        assert [(await api("GET", path))[0] for _ in range(3)] == [200, 200, 429]
        assert (await api("GET", "segments/conf_ids"))[0] == 200
        assert (await api("PATCH", path, {"ids": ["q"]}))[0] == 200
        now[0] += 10.5
        assert (await api("GET", path))[0] == 200


def test_the_demo_world_has_every_new_kind() -> None:
    """Both demo projects have environments; the source has a few of every other new kind."""
    world = build_demo_world()
    source, target = world.project("source"), world.project("target")
    for kind in ("assignment_sources", "entity_properties", "qualifying_events", "param_stores",
                 "autotunes", "environments"):  # fmt: skip
        assert len(source.collection(kind)) >= 2, kind
    assert len(target.collection("environments")) == 3
    assert build_demo_world().project("source").collection("autotunes").values() == (
        source.collection("autotunes").values()
    )
