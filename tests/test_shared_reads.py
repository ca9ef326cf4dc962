"""GET answers shared by the clients of one project (a fleet's clone source): read once, copied."""

from __future__ import annotations

import random

import aiohttp
import anyio
import pytest

from bulkops.api.client import ConsoleClient, RetryPolicy, SharedReads
from bulkops.api.governor import RateGovernor
from bulkops.emulator import EmulatorConfig, Project, World, running_emulator
from bulkops.errors import ApiError, NotFound

KEY = "console-shared-reads-key"
TAGS = "/console/v1/tags"
QUICK = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.002, max_total=5)


async def _clients(url: str, session: aiohttp.ClientSession, count: int) -> list[ConsoleClient]:
    governor = RateGovernor("source", mutation_windows=[], rng=random.Random(0))
    reads = SharedReads()
    return [
        ConsoleClient(
            project="source",
            base_url=url,
            api_key=KEY,
            session=session,
            governor=governor,
            retry=QUICK,
            reads=reads,
        )
        for _ in range(count)
    ]


async def test_concurrent_askers_share_one_request_and_get_copies_of_their_own() -> None:
    """Twelve asks of one list from three clients send one request; changing one answer changes
    no other, and only the client that sent it counts a request."""
    world = World([Project("source", KEY)])
    async with (
        running_emulator(world, EmulatorConfig(latency_ms=20)) as url,
        aiohttp.ClientSession() as session,
    ):
        clients = await _clients(url, session, 3)
        answers: list[dict] = []

        async def ask(client: ConsoleClient) -> None:
            answers.append(await client.get(TAGS, {"page": 1, "limit": 100}))

        async with anyio.create_task_group() as group:
            for client in clients * 4:
                group.start_soon(ask, client)
    assert world.count(path_prefix=TAGS) == 1
    assert sum(c.stats.requests for c in clients) == 1
    answers[0]["data"] = "changed"
    assert all(a["data"] != "changed" for a in answers[1:])
    assert len({str(a) for a in answers[1:]}) == 1


async def test_a_failed_read_is_not_kept_the_next_asker_sends_it_again() -> None:
    """An answer that never came (the server failing) is not shared: the next ask is a request."""
    world = World([Project("source", KEY)])
    config = EmulatorConfig(fail_rate=1.0, fault_paths=(TAGS,), fault_seed=3)
    async with running_emulator(world, config) as url, aiohttp.ClientSession() as session:
        first, second = await _clients(url, session, 2)
        with pytest.raises(ApiError):
            await first.get(TAGS)
        with pytest.raises(ApiError):
            await second.get(TAGS)
    assert world.count(path_prefix=TAGS) == 2 * QUICK.max_attempts


async def test_a_failure_asking_again_cannot_mend_is_shared_like_an_answer() -> None:
    """A 404 of the source is read once for every client: each gets the same error."""
    world = World([Project("source", KEY)])
    async with running_emulator(world) as url, aiohttp.ClientSession() as session:
        clients = await _clients(url, session, 3)
        for client in clients:
            with pytest.raises(NotFound):
                await client.get("/console/v1/gates/no_such_gate")
    assert world.count(path_prefix="/console/v1/gates/no_such_gate") == 1
