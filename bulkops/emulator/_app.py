"""The aiohttp application: one catch-all route and the request pipeline around handlers.

Order of checks for each request (each step may end it):

1. route on the raw path (:mod:`._routing`); no route → 404, no auth needed (as NestJS does);
2. ``STATSIG-API-KEY`` → project; missing/unknown → 401 (never delayed or faulted); then a
   ``STATSIG-API-VERSION`` other than ``20240601`` → 400 (a missing one too, under
   ``EmulatorConfig.api_version="required"``);
3. fault decision, counted per exact request (:mod:`._faults`), then half the injected latency
   (the answer leaves once the whole latency has passed since the request came in: latency is
   the round trip, the emulator's own work inside it);
4. mutations: the project's quota bucket records the attempt → 429 when over; a read-only key
   → 403 (both after the attempt is counted: rejected attempts use up quota); the one limited
   read, ``GET /segments/{id}/id_list``, draws from its own bucket the same way, and the id-list
   writes (``PATCH``/``DELETE /segments/{id}/id_list``) from theirs as well as the segments one;
5. faults ``drop`` / ``server_error`` / ``truncate`` for mutations end here, unapplied;
6. the resource handler; ``ApiError`` becomes the documented error body;
7. ``truncate`` (reads) cuts the body short; ``lost_answer`` drops the connection after the
   mutation was applied; ``list_change`` changes the list a page came from, once the page is
   answered (:mod:`._list_changes`).

Every request ends in exactly one :class:`RequestRecord` in the world's log.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import orjson
from aiohttp import web

from ._config import EmulatorConfig, QuotaWindow
from ._context import Call, Reply
from ._errors import (
    FORBIDDEN,
    INVALID_REQUEST,
    TOO_MANY_REQUESTS,
    ApiError,
    invalid_request,
    not_found,
    unauthorized,
)
from ._faults import FaultDecision, FaultPlanner
from ._list_changes import change_list
from ._quota import retry_after_header
from ._requestlog import FaultKind, RequestRecord
from ._routing import Match, Router, split_raw_path
from ._store import Project
from ._world import KeyScope, World
from .resources import register_all

__all__ = ["create_app"]

MUTATING_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
API_KEY_HEADER = "STATSIG-API-KEY"
API_VERSION_HEADER = "STATSIG-API-VERSION"
#: "There is currently only one version: 20240601" (reference §1).
API_VERSION = "20240601"
_JSON = "application/json"
_MAX_BODY_BYTES = 64 * 1024 * 1024
_ID_LIST_READ = ("GET", "/console/v1/segments/{id}/id_list")
#: The two id-list writes the spec limits on their own ("900 requests /15m or 12 requests /10s").
_ID_LIST_WRITES = frozenset(
    {
        ("PATCH", "/console/v1/segments/{id}/id_list"),
        ("DELETE", "/console/v1/segments/{id}/id_list"),
    }
)
_BAD_GATEWAY_HTML = (
    "<html><head><title>502 Bad Gateway</title></head>"
    "<body><center><h1>502 Bad Gateway</h1></center></body></html>"
)


@dataclass
class _State:
    world: World
    config: EmulatorConfig
    router: Router
    faults: FaultPlanner


_STATE = web.AppKey("bulkops_emulator_state", _State)


@dataclass(frozen=True)
class _Request:
    """The parts of an incoming request the pipeline needs, parsed once."""

    method: str
    raw_path: str
    raw_query: str
    decoded_path: str
    decoded: list[str]

    @property
    def is_mutation(self) -> bool:
        return self.method in MUTATING_METHODS


def create_app(world: World, config: EmulatorConfig | None = None) -> web.Application:
    """An aiohttp app serving ``world`` as the Console API under ``/console/v1``."""
    config = config or EmulatorConfig()
    router = Router()
    register_all(router)
    app = web.Application(client_max_size=_MAX_BODY_BYTES)
    app[_STATE] = _State(world, config, router, FaultPlanner(config))
    app.router.add_route("*", "/{tail:.*}", _dispatch)
    return app


def _encode(reply: Reply) -> tuple[bytes, str]:
    if isinstance(reply.body, str):
        return reply.body.encode(), "text/html"
    return orjson.dumps(reply.body), _JSON


def _respond(reply: Reply) -> web.Response:
    payload, content_type = _encode(reply)
    return web.Response(
        status=reply.status,
        body=payload,
        content_type=content_type,
        charset="utf-8",
        headers=reply.headers,
    )


def _error(err: ApiError) -> Reply:
    return Reply(err.status, err.body(), dict(err.headers))


def _server_error(status: int) -> Reply:
    if status == 502:
        return Reply(502, _BAD_GATEWAY_HTML)
    message = "Service Unavailable" if status == 503 else "Internal Server Error"
    return Reply(status, {"status": status, "message": message})


def _drop(request: web.Request) -> web.Response:
    """Close the connection with nothing sent; aiohttp's write then fails quietly."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=500)


async def _truncated(request: web.Request, reply: Reply, fraction: float) -> web.StreamResponse:
    """Announce the full Content-Length, write only part of the body, then close."""
    payload, content_type = _encode(reply)
    response = web.StreamResponse(status=reply.status, headers=reply.headers)
    response.content_type = content_type
    response.charset = "utf-8"
    response.content_length = len(payload)
    await response.prepare(request)
    cut = min(len(payload) - 1, int(len(payload) * fraction))
    if cut > 0:
        await response.write(payload[:cut])
    if request.transport is not None:
        request.transport.close()
    return response


class _Pipeline:
    """Runs one request through the steps in the module docstring and logs it."""

    def __init__(self, state: _State, request: web.Request, parsed: _Request) -> None:
        self.state = state
        self.request = request
        self.parsed = parsed

    def log(self, project: str | None, status: int | None, fault: FaultKind | None) -> None:
        world = self.state.world
        world.record(
            RequestRecord(
                project=project,
                method=self.parsed.method,
                path=self.parsed.decoded_path,
                query=dict(self.request.query),
                status=status,
                is_mutation=self.parsed.is_mutation,
                fault=fault,
                time=world.clock(),
                raw_path=self.parsed.raw_path,
            )
        )

    def finish(self, project: str | None, reply: Reply) -> web.Response:
        self.log(project, reply.status, None)
        return _respond(reply)

    async def run(self, match: Match, project: Project, scope: KeyScope) -> web.StreamResponse:
        state, parsed = self.state, self.parsed
        decision = state.faults.decide(
            project.name,
            parsed.method,
            parsed.decoded_path,
            self.request.query.items(),
            is_mutation=parsed.is_mutation,
        )
        # Latency is the round trip: the request is handled half-way through it (so a burst is
        # handled as it arrives, as a server with many workers would, not queued at the end of its
        # sleep), and the answer leaves one latency after the request came in. The emulator's own
        # work and timer slop fall inside that latency, not on top of it: it shares the client's
        # CPU, which a real server does not, and a configured 50 ms must mean 50 ms on the wire.
        loop = asyncio.get_running_loop()
        answer_at = loop.time() + decision.latency_s
        half = decision.latency_s / 2
        if half > 0:
            await asyncio.sleep(half)
        route = (match.route.method, match.route.template)
        if parsed.is_mutation:
            refused = self._admit_mutation(project, scope, id_list=route in _ID_LIST_WRITES)
        elif route == _ID_LIST_READ:
            refused = self._admit(project, "id_list_reads", state.config.id_list_windows)
        else:
            refused = None
        if refused is not None:
            response: web.StreamResponse = self.finish(project.name, refused)
        else:
            response = await self._serve(match, project, decision)
        if (rest := answer_at - loop.time()) > 0:
            await asyncio.sleep(rest)
        return response

    def _admit(
        self, project: Project, bucket: str, windows: tuple[QuotaWindow, ...]
    ) -> Reply | None:
        """Record an attempt in ``bucket``; the 429 when it is over its windows."""
        state, config = self.state, self.state.config
        wait = state.world.quota(project.name, bucket, windows).attempt(state.world.clock())
        if wait is not None:
            headers = {"Retry-After": retry_after_header(wait)} if config.retry_after else {}
            return Reply(429, {"status": 429, "message": TOO_MANY_REQUESTS}, headers)
        return None

    def _admit_mutation(self, project: Project, scope: KeyScope, *, id_list: bool) -> Reply | None:
        config = self.state.config
        if self.parsed.decoded[2:3] == ["segments"]:  # /console/v1/segments/...
            bucket, windows = "segments", config.segment_windows
        else:
            bucket, windows = "default", config.windows
        refused = self._admit(project, bucket, windows)
        if id_list:  # counted in both buckets, whichever refuses it
            refused = self._admit(project, "id_list_writes", config.id_list_write_limits) or refused
        if refused is not None:
            return refused
        if scope == "read_only":
            return Reply(403, {"status": 403, "message": FORBIDDEN})
        return None

    async def _serve(
        self, match: Match, project: Project, decision: FaultDecision
    ) -> web.StreamResponse:
        fault, mutation = decision.fault, self.parsed.is_mutation
        if fault == "drop":
            self.log(project.name, None, fault)
            return _drop(self.request)
        if fault == "server_error" or (fault == "truncate" and mutation):
            status = decision.error_status if fault == "server_error" else 500
            reply = _server_error(status)
        else:
            reply = await self._handle(match, project)
            if decision.list_change and self._change_list(project, reply, decision):
                fault = "list_change"
        self.log(project.name, reply.status, fault)
        if fault == "truncate":
            return await _truncated(self.request, reply, decision.truncate_fraction)
        if fault == "lost_answer":
            return _drop(self.request)
        return _respond(reply)

    def _change_list(self, project: Project, reply: Reply, decision: FaultDecision) -> bool:
        """The ``list_change`` fault: after a page that is not the last, change its list."""
        body = reply.body
        if reply.status != 200 or not isinstance(body, dict):
            return False
        pagination = body.get("pagination")
        if not isinstance(pagination, dict) or not pagination.get("nextPage"):
            return False
        rows = body.get("data")
        faults = self.state.faults
        if not isinstance(rows, list) or not rows or not faults.take_list_change():
            return False
        changed = change_list(
            project, rows, decision.list_change_kind, decision.list_change_pick,
            faults.list_changes,
        )  # fmt: skip
        if not changed:
            faults.list_changes -= 1  # nothing to change: the limit is not used up
        return changed

    async def _handle(self, match: Match, project: Project) -> Reply:
        state, parsed = self.state, self.parsed
        call = Call(
            project=project,
            method=parsed.method,
            raw_path=parsed.raw_path,
            raw_query=parsed.raw_query,
            query=self.request.query,
            params=match.params,
            body_bytes=await self.request.read(),
            config=state.config,
            now_ms=int(state.world.wall_clock() * 1000),
            headers=self.request.headers,
        )
        try:
            return await match.route.handler(call)
        except ApiError as err:
            return _error(err)


def _check_version(config: EmulatorConfig, sent: str | None) -> Reply | None:
    """The 400 for a ``STATSIG-API-VERSION`` the API does not have (or, when the config
    requires it, a missing one); None when the request may go on (reference §1)."""
    if sent is None and config.api_version != "required":
        return None
    if sent is not None and sent.strip() == API_VERSION:
        return None
    shown = "no STATSIG-API-VERSION header" if sent is None else f"STATSIG-API-VERSION {sent!r}"
    message = f"{INVALID_REQUEST} Sent {shown}; the only API version is {API_VERSION}."
    return _error(invalid_request(message))


async def _dispatch(request: web.Request) -> web.StreamResponse:
    state = request.app[_STATE]
    raw_path, _, raw_query = request.raw_path.partition("?")
    key = request.headers.get(API_KEY_HEADER)
    auth = state.world.authenticate(key)
    try:
        _, decoded = split_raw_path(raw_path)
    except UnicodeDecodeError:
        parsed = _Request(request.method, raw_path, raw_query, raw_path, [])
        return _Pipeline(state, request, parsed).finish(
            auth[0].name if auth else None, _error(invalid_request())
        )
    parsed = _Request(request.method, raw_path, raw_query, "/" + "/".join(decoded), decoded)
    pipeline = _Pipeline(state, request, parsed)
    match = state.router.resolve(parsed.method, decoded)
    if match is None:
        return pipeline.finish(auth[0].name if auth else None, _error(not_found()))
    if auth is None:
        return pipeline.finish(None, _error(unauthorized(key)))
    project, scope = auth
    if (
        refused := _check_version(state.config, request.headers.get(API_VERSION_HEADER))
    ) is not None:
        return pipeline.finish(project.name, refused)
    state.world.enter_request(project.name)
    try:
        return await pipeline.run(match, project, scope)
    finally:
        state.world.leave_request(project.name)
