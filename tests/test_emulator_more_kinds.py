"""The emulator's newer kinds take the harsher reading where the spec is open: roles keyed by
their exact name and answered without an id, full updates that replace, settings checked against
roles; and the optional kinds stop being served on request, after the key is checked."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from yarl import URL

from bulkops.emulator import EmulatorConfig, Project, World, build_demo_world, running_emulator
from bulkops.emulator._config import OPTIONAL_KINDS
from bulkops.emulator.resources import release_pipelines

V1 = "/console/v1"


async def call(
    base: str, key: str | None, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    headers = {"STATSIG-API-KEY": key} if key else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, URL(base + V1 + path, encoded=True), json=body, headers=headers
        ) as resp,
    ):
        return resp.status, orjson.loads(await resp.read())


@pytest.fixture
def demo() -> tuple[World, str]:
    world = build_demo_world()
    return world, world.project("source").console_key


async def test_a_role_is_read_by_its_exact_name_and_carries_no_id(demo) -> None:
    """``/roles/Release%20Manager`` answers the role (name and permissions only); another case
    of the name is a 404."""
    world, key = demo
    async with running_emulator(world) as base:
        status, body = await call(base, key, "GET", "/roles/Release%20Manager")
        assert status == 200
        assert set(body["data"]) == {"name", "permissions"}
        assert body["data"]["permissions"]["launch_to_production"] is True
        assert (await call(base, key, "GET", "/roles/release%20manager"))[0] == 404


async def test_a_role_patch_replaces_its_permissions_whole(demo) -> None:
    """Permissions a PATCH leaves out become false; the name stays."""
    world, key = demo
    async with running_emulator(world) as base:
        body = {"permissions": {"create_configs": True}}
        status, answer = await call(base, key, "PATCH", "/roles/Release%20Manager", body)
    assert status == 200
    granted = {p for p, on in answer["data"]["permissions"].items() if on}
    assert granted == {"create_configs"}
    assert answer["data"]["name"] == "Release Manager"


async def test_the_default_role_cannot_be_deleted_nor_a_missing_one_made_default(demo) -> None:
    """Deleting the role settings/roles names is a 400, and so is naming a role that does not
    exist as the default; a built-in one is accepted."""
    world, key = demo
    async with running_emulator(world) as base:
        assert (await call(base, key, "DELETE", "/roles/Analyst"))[0] == 400
        bad = {"default_project_role": "Nobody"}
        status, body = await call(base, key, "POST", "/settings/roles", bad)
        assert status == 400
        assert body["errors"][0]["property"] == "default_project_role"
        ok = {"default_project_role": "Read Only"}
        assert (await call(base, key, "POST", "/settings/roles", ok))[0] == 200
        assert (await call(base, key, "DELETE", "/roles/Analyst"))[0] == 200


async def test_a_pipeline_full_update_resets_the_phases_it_leaves_out(demo) -> None:
    """With the default ``full_update = "replace"`` phases left out become []; with "merge"
    they are kept."""
    world, key = demo
    pipeline = release_pipelines.pipelines(world.project("source")).values()[0]
    assert pipeline["phases"]
    path = f"/release_pipelines/{pipeline['id']}"
    for mode, expected in (("merge", pipeline["phases"]), ("replace", [])):
        async with running_emulator(world, EmulatorConfig(full_update=mode)) as base:
            status, body = await call(base, key, "POST", path, {"name": "Renamed"})
        assert status == 200
        assert body["data"]["phases"] == expected, mode
        assert body["data"]["name"] == "Renamed"


async def test_settings_of_a_project_that_never_wrote_them_are_its_defaults() -> None:
    """A new project answers default settings (its own name, closed, Member) without storing
    them; a POST then replaces the document with the body."""
    project = Project("fresh", "console-fresh-key")
    async with running_emulator(World([project])) as base:
        status, body = await call(base, "console-fresh-key", "GET", "/settings/project")
        assert (status, body["data"]) == (200, {"name": "fresh", "visibility": "CLOSED"})
        assert len(project.collection("settings")) == 0
        new = {"name": "Fresh", "visibility": "OPEN", "default_unit_type": "stableID"}
        assert (await call(base, "console-fresh-key", "POST", "/settings/project", new))[0] == 200
        assert (await call(base, "console-fresh-key", "GET", "/settings/project"))[1]["data"] == new


@pytest.mark.parametrize("status", [404, 403])
async def test_unserved_kinds_answer_their_status_on_every_route_after_the_key(
    demo, status
) -> None:
    """Each optional kind's list (and a write) answers the configured 404 or 403, a missing key
    still 401, and the other kinds are served as usual."""
    world, key = demo
    config = EmulatorConfig(unserved_kinds=OPTIONAL_KINDS, unserved_status=status)
    lists = ("/alerts", "/release_pipelines", "/roles", "/prompts", "/settings/teams")
    async with running_emulator(world, config) as base:
        for path in lists:
            assert (await call(base, key, "GET", path))[0] == status, path
        assert (await call(base, None, "GET", "/roles"))[0] == 401
        body = {"name": "Auditor", "permissions": {}}
        assert (await call(base, key, "POST", "/roles", body))[0] == status
        assert (await call(base, key, "GET", "/tags"))[0] == 200


def test_the_unserved_switch_refuses_what_it_cannot_serve() -> None:
    """An unknown kind, a bare string, or another status is refused when the config is made."""
    for bad in ({"unserved_kinds": ("gates",)}, {"unserved_kinds": "roles"}):
        with pytest.raises(ValueError, match="unserved_kinds"):
            EmulatorConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unserved_status"):
        EmulatorConfig(unserved_status=500)
