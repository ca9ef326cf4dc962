"""The client's one error boundary: every answer and every failure to get one becomes its class."""

from __future__ import annotations

import random
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest

from bulkops import redact
from bulkops.api.client import ConsoleClient, RetryPolicy
from bulkops.api.governor import RateGovernor
from bulkops.emulator import EmulatorConfig, Project, World, running_emulator
from bulkops.errors import (
    AuthError,
    NameInUse,
    NotFound,
    RateLimited,
    ServerError,
    TransportError,
    ValidationFailed,
)
from bulkops.jobs.spec import RateWindow

KEY = "console-client-errors-key"
RO_KEY = "console-client-errors-readonly-key"
GATES = "/console/v1/gates"
TAGS = "/console/v1/tags"
TAG = {"name": "errors tag", "description": "a tag"}
#: No backoff to speak of, so retried reads take milliseconds.
QUICK = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002, max_total=5)


def small_world() -> World:
    return World([Project("target", KEY, read_only_keys=[RO_KEY])])


@asynccontextmanager
async def client_for(
    base_url: str, key: str = KEY, *, windows: tuple[str, ...] = ()
) -> AsyncIterator[ConsoleClient]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        governor = RateGovernor(
            "target",
            mutation_windows=[RateWindow.parse(w) for w in windows],
            rng=random.Random(0),
        )
        yield ConsoleClient(
            project="target",
            base_url=base_url,
            api_key=key,
            session=session,
            governor=governor,
            retry=QUICK,
            rng=random.Random(0),
        )


def closed_port() -> int:
    """A local port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_unknown_key_is_an_auth_error_naming_the_project_and_never_retried() -> None:
    """A 401 becomes AuthError (fatal) after one request: retrying a rejected key cannot help."""
    world = small_world()
    async with running_emulator(world) as url, client_for(url, "console-not-a-key") as client:
        with pytest.raises(AuthError) as failure:
            await client.get(GATES)
    assert failure.value.status == 401
    assert failure.value.fatal
    assert "target" in str(failure.value)
    assert "console-not-a-key" not in str(failure.value)  # the server echoes it; we redact it
    assert client.stats.requests == 1


async def test_read_only_key_on_a_mutation_is_an_auth_error() -> None:
    """A 403 (a read-only key sent a mutation) becomes AuthError with status 403."""
    world = small_world()
    async with running_emulator(world) as url, client_for(url, RO_KEY) as client:
        with pytest.raises(AuthError) as failure:
            await client.request("POST", TAGS, json=TAG)
    assert failure.value.status == 403
    assert world.count(method="POST") == 1


async def test_missing_entity_is_not_found_naming_the_path_to_check() -> None:
    """A 404 becomes NotFound whose message names the id and path to check and the project."""
    world = small_world()
    async with running_emulator(world) as url, client_for(url) as client:
        with pytest.raises(NotFound) as failure:
            await client.get(f"{GATES}/no%20such%20gate")
    message = str(failure.value)
    assert failure.value.status == 404
    assert "Check the id or name in /console/v1/gates/no such gate" in message
    assert "'target'" in message
    assert client.stats.requests == 1  # a 404 is an answer, not a reason to ask again


async def test_invalid_body_is_validation_failed_with_the_server_errors() -> None:
    """A 400 becomes ValidationFailed carrying the server's ``errors`` list."""
    world = small_world()
    async with running_emulator(world) as url, client_for(url) as client:
        with pytest.raises(ValidationFailed) as failure:
            await client.request("POST", TAGS, json={"description": "no name"})
    assert failure.value.status == 400
    assert not isinstance(failure.value, NameInUse)
    assert failure.value.errors, "the 400's errors list is kept for the report"


async def test_duplicate_name_is_name_in_use() -> None:
    """A 400 "Name is already in use" becomes NameInUse, a ValidationFailed."""
    world = small_world()
    async with running_emulator(world) as url, client_for(url) as client:
        await client.request("POST", TAGS, json=TAG)
        with pytest.raises(NameInUse) as failure:
            await client.request("POST", TAGS, json=TAG)
    assert isinstance(failure.value, ValidationFailed)
    assert failure.value.status == 400


async def test_spent_quota_is_rate_limited_and_retryable() -> None:
    """A 429 becomes RateLimited, retryable, and counted in the client's stats."""
    world = small_world()
    config = EmulatorConfig(mutation_windows=("1/60s",))
    async with running_emulator(world, config) as url, client_for(url) as client:
        client.retry = RetryPolicy(max_attempts=1)
        await client.request("POST", TAGS, json=TAG)
        with pytest.raises(RateLimited) as failure:
            await client.request("POST", TAGS, json={**TAG, "name": "second tag"})
    assert failure.value.status == 429
    assert failure.value.retryable
    assert client.stats.rate_limited == 1


async def test_server_error_on_a_read_is_retried_until_attempts_run_out() -> None:
    """A 5xx on a read is sent again (it changes nothing), up to the policy's max_attempts."""
    world = small_world()
    config = EmulatorConfig(fail_rate=1.0, fault_seed=7)
    async with running_emulator(world, config) as url, client_for(url) as client:
        with pytest.raises(ServerError) as failure:
            await client.get(GATES)
    assert failure.value.status in (500, 502, 503)
    assert world.count(method="GET", path_prefix=GATES) == QUICK.max_attempts
    assert client.stats.retries == QUICK.max_attempts - 1


async def test_server_error_on_a_read_that_then_answers_returns_the_answer() -> None:
    """A read whose first attempts meet 5xx returns the answer of the attempt that succeeds."""
    world = small_world()
    config = EmulatorConfig(fail_rate=0.5, fault_seed=3)
    async with running_emulator(world, config) as url, client_for(url) as client:
        client.retry = RetryPolicy(max_attempts=30, base_delay=0.001, max_delay=0.002)
        body = await client.get(GATES)
    assert body["data"] == []
    failed = world.count(method="GET", fault="server_error")
    assert failed >= 1, "the seed must make at least one attempt fail"
    assert client.stats.retries == failed
    assert world.count(method="GET") == failed + 1


async def test_server_error_on_a_mutation_is_not_sent_again() -> None:
    """A 5xx on a mutation is raised after one request, outcome unknown: the caller reconciles."""
    world = small_world()
    config = EmulatorConfig(fail_rate=1.0, fault_seed=7)
    async with running_emulator(world, config) as url, client_for(url) as client:
        with pytest.raises(ServerError) as failure:
            await client.request("POST", TAGS, json=TAG)
    assert failure.value.outcome_unknown
    assert world.count(method="POST") == 1
    assert client.stats.retries == 0


async def test_dropped_connection_on_a_mutation_is_a_transport_error_of_unknown_outcome() -> None:
    """A mutation whose connection drops unanswered: TransportError, outcome unknown, not resent."""
    world = small_world()
    config = EmulatorConfig(drop_rate=1.0, fault_seed=7)
    async with running_emulator(world, config) as url, client_for(url) as client:
        with pytest.raises(TransportError) as failure:
            await client.request("POST", TAGS, json=TAG)
    error = failure.value
    assert error.outcome_unknown
    assert isinstance(error.__cause__, aiohttp.ClientError), "the aiohttp cause is kept"
    assert "got no complete answer" in str(error)
    assert "--base-url" in str(error)
    assert world.count(method="POST") == 1


async def test_connection_refused_is_a_transport_error_never_sent() -> None:
    """No server on the port: TransportError with sent=False, the cause kept, the fix named."""
    url = f"http://127.0.0.1:{closed_port()}"
    async with client_for(url) as client:
        client.retry = RetryPolicy(max_attempts=1)
        with pytest.raises(TransportError) as failure:
            await client.request("POST", TAGS, json=TAG)
    error = failure.value
    assert not error.outcome_unknown, "a request that never left cannot have been applied"
    assert isinstance(error.__cause__, aiohttp.ClientConnectorError)
    assert error.reason == "Connection refused"
    assert f"cannot connect to {url}" in str(error)
    assert "base_url of [target] in the job file (or --base-url" in str(error)


async def test_connection_refused_on_a_mutation_is_retried_since_nothing_was_sent() -> None:
    """A refused mutation may be sent again (it never left), so it is retried like a read."""
    url = f"http://127.0.0.1:{closed_port()}"
    async with client_for(url) as client:
        with pytest.raises(TransportError):
            await client.request("POST", TAGS, json=TAG)
    assert client.stats.requests == QUICK.max_attempts


async def test_transport_error_messages_redact_registered_secrets() -> None:
    """A secret that appears in a base URL never reaches a TransportError's message."""
    redact.register("console-secret-in-url")
    url = f"http://127.0.0.1:{closed_port()}/console-secret-in-url"
    async with client_for(url) as client:
        client.retry = RetryPolicy(max_attempts=1)
        with pytest.raises(TransportError) as failure:
            await client.get(GATES)
    assert "console-secret-in-url" not in str(failure.value)


async def test_a_server_that_is_not_the_console_api_is_named_not_dumped() -> None:
    """An HTML 404 (another web server at base_url) ends the identity read with one line."""
    from aiohttp import web

    from bulkops.errors import Unreachable

    async def html(_request: web.Request) -> web.Response:
        return web.Response(status=404, text="<!DOCTYPE html>\n<html><body>nope</body></html>")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", html)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with client_for(f"http://127.0.0.1:{port}") as client:
            with pytest.raises(Unreachable) as stopped:
                await client.identify()
    finally:
        await runner.cleanup()
    message = str(stopped.value)
    assert "does not look like the Statsig Console API" in message
    assert "<" not in message
    assert "\n" not in message


async def test_https_to_a_plain_http_server_says_tls_at_once() -> None:
    """A TLS mismatch is named (try http://) and not retried for the whole identify budget."""
    import time

    from bulkops.errors import Unreachable

    async with running_emulator(small_world(), EmulatorConfig()) as url:
        started = time.monotonic()
        async with client_for(url.replace("http://", "https://")) as client:
            with pytest.raises(Unreachable, match="TLS handshake failed"):
                await client.identify()
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("pagination", ["sent", "omitted", "unpaged"])
async def test_list_all_reads_every_row_once_however_the_server_pages(pagination) -> None:
    """``list_all`` returns each of 301 gates once whether the server sends a pagination block,
    omits it (pages sliced by limit), or does not page at all (every row on every page: the
    repeated page ends the list instead of looping for ever)."""
    from bulkops.emulator import build_demo_world

    world = build_demo_world()
    project = world.project("source")
    want = [gate["id"] for gate in project.collection("gates").values()]
    assert len(want) > 100
    config = EmulatorConfig(pagination=pagination)
    async with running_emulator(world, config) as url, client_for(url, project.console_key) as c:
        rows = await c.list_all(GATES)
    assert sorted(row["id"] for row in rows) == sorted(want)
    pages = [r for r in world.requests(method="GET") if r.path == GATES]
    assert len(pages) == (2 if pagination == "unpaged" else -(-len(want) // 100))
