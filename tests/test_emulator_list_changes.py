"""The emulator's list_change fault: a list gains or loses an entity between two of its pages."""

from __future__ import annotations

import aiohttp
import pytest

from bulkops.emulator import EmulatorConfig, World, build_demo_world, running_emulator
from tests.support.worlds import SOURCE_KEY


async def read_tag_pages(world: World, config: EmulatorConfig, times: int = 1) -> list[list[str]]:
    """Every page of the tag list, ``times`` over, as tag names."""
    pages: list[list[str]] = []
    async with running_emulator(world, config) as url, aiohttp.ClientSession() as session:
        for _ in range(times):
            path: str | None = "/console/v1/tags?limit=3"
            while path:
                async with session.get(url + path, headers={"STATSIG-API-KEY": SOURCE_KEY}) as r:
                    body = await r.json()
                pages.append([t["name"] for t in body["data"]])
                path = body["pagination"]["nextPage"]
    return pages


def tags(world: World) -> list[str]:
    return [t["name"] for t in world.project("source").collection("tags").values()]


@pytest.mark.parametrize("change", ["add", "delete"])
async def test_a_list_change_happens_in_the_store_and_is_logged(change) -> None:
    """An add copies the page's first row under a new key, a delete removes one; later pages see it."""
    world = build_demo_world()
    before = tags(world)
    config = EmulatorConfig(list_change_rate=1.0, list_change_limit=1, list_change_kinds=(change,))
    pages = await read_tag_pages(world, config)
    after = tags(world)
    assert len(world.requests(fault="list_change")) == 1
    if change == "add":
        assert after == [*before, f"{pages[0][0]}~changed-1"]
        assert pages[-1][-1] == after[-1]  # the last page shows the new tag
    else:
        assert len(after) == len(before) - 1
        assert set(after) < set(before)


async def test_list_changes_are_seeded_and_capped_and_spare_single_pages() -> None:
    """The same seed changes the same lists the same way; the limit caps the changes; a list of
    one page (no next page) never changes."""
    config = EmulatorConfig(list_change_rate=0.5, list_change_limit=2, fault_seed=3)
    first, second = build_demo_world(), build_demo_world()
    await read_tag_pages(first, config, times=6)
    await read_tag_pages(second, config, times=6)
    assert tags(first) == tags(second)
    assert len(first.requests(fault="list_change")) == 2  # of a dozen chances or more
    steady = build_demo_world()
    config = EmulatorConfig(list_change_rate=1.0)
    async with running_emulator(steady, config) as url, aiohttp.ClientSession() as session:
        headers = {"STATSIG-API-KEY": SOURCE_KEY}
        async with session.get(f"{url}/console/v1/tags", headers=headers) as r:
            assert r.status == 200
    assert not steady.requests(fault="list_change")


def test_bad_list_change_settings_are_refused() -> None:
    """A list_change_kinds other than add/delete, or a negative limit, is a ValueError."""
    with pytest.raises(ValueError, match="list_change_kinds"):
        EmulatorConfig(list_change_kinds=("rename",))
    with pytest.raises(ValueError, match="list_change_limit"):
        EmulatorConfig(list_change_limit=-1)
