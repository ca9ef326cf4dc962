"""The Console API client of one project: headers, URL encoding, retries, error mapping, paging.

This module is the one place where aiohttp exceptions and HTTP statuses become ``bulkops.errors``.
Reads are retried on every transient failure. Mutations are retried only when the server cannot have
applied them (429, or the connection never opened); otherwise the caller gets an error whose
``outcome_unknown`` is True and reconciles by reading the target.
"""

from __future__ import annotations

import math
import os
import random
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import aiohttp
import anyio
import orjson
import structlog
from yarl import URL

from bulkops import redact, stopping
from bulkops.api.governor import RateGovernor
from bulkops.api.urls import api_path as api_path  # re-exported: its home is urls (no aiohttp)
from bulkops.api.urls import split_group_names_path, split_listed_item_path
from bulkops.errors import (
    ApiError,
    AuthError,
    InconsistentListing,
    MalformedResponse,
    NameInUse,
    NotFound,
    RateLimited,
    ServerError,
    StatusError,
    TransportError,
    Unreachable,
    ValidationFailed,
)

log = structlog.get_logger("bulkops.http")

API_VERSION = "20240601"
PAGE_LIMIT = 100
MUTATING = frozenset({"POST", "PATCH", "PUT", "DELETE"})
PROJECT_PATH = "/console/v1/project"
#: A run's first request (the project's identity) gives up on a server that never answers after
#: this long, so a wrong base URL fails in seconds, not after the full retry budget.
IDENTIFY_SECONDS = 10.0


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_total: float = 300.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with full jitter."""
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


@dataclass
class RequestStats:
    """What a project's client did, for progress and the summary."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    mutations: int = 0
    by_status: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "mutations": self.mutations,
            "by_status": dict(sorted(self.by_status.items())),
        }


@dataclass(frozen=True)
class ProjectIdentity:
    """Who a key opens: ``GET /console/v1/project``'s ``id`` (and ``name``, where the API has one)."""

    id: str
    name: str | None = None

    def describe(self) -> str:
        return f"{self.name} (id {self.id})" if self.name else f"id {self.id}"


@dataclass(frozen=True)
class Page:
    data: list[Any]
    page: int
    items_per_page: int
    total: int | None
    has_next: bool


class ConsoleClient:
    def __init__(
        self,
        *,
        project: str,
        base_url: str,
        api_key: str,
        session: aiohttp.ClientSession,
        governor: RateGovernor,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rng: random.Random | None = None,
        timeout: float = 60.0,
        reads: SharedReads | None = None,
    ) -> None:
        self.project = project
        #: GET answers shared with other clients of the same project (a fleet's shared source).
        self._reads = reads
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        redact.register(api_key)
        self._session = session
        self.governor = governor
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(10.0, timeout))
        self.stats = RequestStats()

    def __repr__(self) -> str:
        return f"<ConsoleClient {self.project} {self.base_url} requests={self.stats.requests}>"

    # -- requests ---------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        json: Any = None,
        extra_headers: Mapping[str, str] | None = None,
        read_at: float | None = None,
    ) -> dict[str, Any]:
        """Send with retries; return the decoded JSON body of a 2xx answer.

        ``read_at`` (a mutation's): when the read it was checked against began, on the
        governor's clock; a read too old by the time it may go raises ``StaleRead`` instead.
        """
        if self._reads is not None and method == "GET" and not extra_headers:
            return await self._reads.get(self, path, query)
        return await self._request(method, path, query, json, extra_headers, read_at)

    async def _request(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None,
        json: Any,
        extra_headers: Mapping[str, str] | None,
        read_at: float | None = None,
    ) -> dict[str, Any]:
        mutation = method in MUTATING
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(
                    method, path, query, json, extra_headers, mutation, read_at
                )
            except ApiError as exc:
                delay = self._retry_delay(exc, attempt, started, mutation)
                if delay is None:
                    raise
                self.stats.retries += 1
                log.info(
                    "bulkops.http.retry_scheduled",
                    project=self.project,
                    method=method,
                    path=path,
                    attempt=attempt,
                    delay_s=round(delay, 3),
                    error=str(exc),
                )
                await self._sleep(delay)

    def _retry_delay(
        self, exc: ApiError, attempt: int, started: float, mutation: bool
    ) -> float | None:
        if not exc.retryable or attempt >= self.retry.max_attempts:
            return None
        if mutation and exc.outcome_unknown:
            return None  # the caller must reconcile; sending again could apply it twice
        if isinstance(exc, RateLimited):
            delay = max(self.governor.paused_until - time.time(), 0.0)
        else:
            delay = self.retry.delay(attempt, self._rng)
        if time.monotonic() - started + delay > self.retry.max_total:
            return None
        return delay

    async def _attempt(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None,
        body: Any,
        extra_headers: Mapping[str, str] | None,
        mutation: bool,
        read_at: float | None,
    ) -> dict[str, Any]:
        slot = self.governor.mutation_slot(read_at) if mutation else self.governor.read_slot()
        async with slot:
            with stopping.sending():  # after a Ctrl-C, nothing new goes on the wire
                self.stats.requests += 1
                if mutation:
                    self.stats.mutations += 1
                status, raw, retry_after = await self._send(
                    method, path, query, body, extra_headers
                )
        self.stats.by_status[str(status)] += 1
        if 200 <= status < 300:
            self.governor.on_success()
            return self._decode(raw, method, path)
        error = self._status_error(status, raw, retry_after, method, path)
        if isinstance(error, RateLimited):
            self.stats.rate_limited += 1
            self.governor.on_rate_limited(retry_after=retry_after, mutation=mutation)
        raise error

    async def _send(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None,
        body: Any,
        extra_headers: Mapping[str, str] | None,
    ) -> tuple[int, bytes, float | None]:
        url = URL(self.base_url + path, encoded=True)
        if query:
            url = url.update_query({k: str(v) for k, v in query.items()})
        headers = {
            "STATSIG-API-KEY": self._key,
            "STATSIG-API-VERSION": API_VERSION,
            "Accept": "application/json",
        }
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = orjson.dumps(body)
        if extra_headers:
            headers.update(extra_headers)
        try:
            async with self._session.request(
                method,
                url,
                data=data,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,  # a redirect must never carry the key to another host
            ) as response:
                raw = await response.read()
                return response.status, raw, _retry_after(response.headers.get("Retry-After"))
        except aiohttp.ClientConnectorError as exc:
            reason = _connect_reason(exc)
            error = TransportError(
                redact.text(
                    f"cannot connect to {self.base_url} for project {self.project!r}: {reason}. "
                    f"{self._check_base_url()}"
                ),
                project=self.project,
                sent=False,
            )
            error.reason = reason
            raise error from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransportError(
                redact.text(
                    f"{method} {path} on project {self.project!r} got no complete answer: "
                    f"{(type(exc).__name__ + ' ' + str(exc)).strip()}. {self._check_base_url()}"
                ),
                project=self.project,
            ) from exc

    def _check_base_url(self) -> str:
        return (
            f"Check the base_url of [{self.project}] in the job file (or --base-url; now "
            f"{self.base_url}) and the network."
        )

    def _decode(self, raw: bytes, method: str, path: str) -> dict[str, Any]:
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            raise MalformedResponse(
                f"{method} {path} on project {self.project!r} answered with a body that is not a "
                f"JSON object ({len(raw)} bytes)",
                project=self.project,
            )
        return body

    def _status_error(
        self, status: int, raw: bytes, retry_after: float | None, method: str, path: str
    ) -> StatusError:
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        server_says = _server_says(body, raw, self.base_url)
        where = f"{method} {path} on project {self.project!r}"
        kwargs: dict[str, Any] = {"status": status, "project": self.project, "body": body}
        if status in (401, 403):
            return AuthError(_auth_message(self.project, status, server_says), **kwargs)
        if status == 404:
            return NotFound(
                f"{where}: 404 not found ({server_says}). Check the id or name in "
                f"{unquote(path)}: project {self.project!r} has no such entity (it was deleted, "
                "or it belongs to another project)",
                **kwargs,
            )
        if status == 429:
            return RateLimited(f"{where}: 429 rate limited", retry_after=retry_after, **kwargs)
        if status >= 500:
            return ServerError(f"{where}: server error {status} ({server_says})", **kwargs)
        if status == 400 and server_says and "already in use" in server_says.lower():
            return NameInUse(f"{where}: 400 {server_says}", **kwargs)
        if 400 <= status < 500:
            details = _validation_details(body)
            return ValidationFailed(f"{where}: {status} {server_says}{details}", **kwargs)
        return StatusError(f"{where}: unexpected status {status} ({server_says})", **kwargs)

    async def identify(self) -> ProjectIdentity:
        """The project behind the key: the first request of every run.

        Connection failures are retried until ``IDENTIFY_SECONDS`` have passed, then raise
        ``Unreachable`` (fatal, exit 4) naming the base URL; a 401/403 raises at once.
        """
        deadline = time.monotonic() + IDENTIFY_SECONDS
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            try:
                with anyio.fail_after(max(0.1, remaining)):
                    body = await self._attempt("GET", PROJECT_PATH, None, None, None, False, None)
                return _identity(body, f"GET {PROJECT_PATH} on project {self.project!r}")
            except NotFound as exc:
                raise Unreachable(
                    f"{self.base_url} does not look like the Statsig Console API: "
                    f"GET {PROJECT_PATH} answered 404. {self._check_base_url()}",
                    project=self.project,
                    sent=False,
                ) from exc
            except (TransportError, ServerError, TimeoutError) as exc:
                last = exc
            if time.monotonic() + 0.5 >= deadline or _will_not_heal(last):
                break
            await self._sleep(min(2.0, 0.25 * 2**attempt, max(0.0, deadline - time.monotonic())))
        if isinstance(last, ServerError):
            raise last  # it answered: not unreachable, just failing
        cause = "no answer in time" if isinstance(last, TimeoutError) else last.reason or str(last)
        raise Unreachable(
            f"cannot reach {self.base_url}: {cause}. Check the base_url of [{self.project}] in "
            "the job file (or --base-url) and the network, then run the same command again.",
            project=self.project,
            sent=False,
        ) from last

    # -- convenience ------------------------------------------------------------------------
    async def get(self, path: str, query: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return await self.request("GET", path, query=query)

    async def get_page(
        self,
        path: str,
        page: int,
        *,
        limit: int = PAGE_LIMIT,
        query: Mapping[str, Any] | None = None,
    ) -> Page:
        body = await self.get(path, {**(query or {}), "page": page, "limit": limit})
        return parse_page(
            body, page, limit, f"GET {path} on project {self.project!r}", self.project
        )

    async def list_all(self, path: str, query: Mapping[str, Any] | None = None) -> list[Any]:
        """Every row of a paginated list, following pages until the server says there are no more
        (or, without a ``pagination`` block, until a page is short, empty, or the one before)."""
        rows: list[Any] = []
        page_number = 1
        total: int | None = None
        before: list[Any] | None = None
        while True:
            page = await self.get_page(path, page_number, query=query)
            if page.data and page.data == before:
                break  # a server that does not page answers every row on every page
            rows.extend(page.data)
            total = page.total if page_number == 1 else total
            if not page.has_next or not page.data:
                break
            page_number, before = page_number + 1, page.data
        check_total(rows_read=len(rows), total=total, what=f"{path} on project {self.project!r}")
        return rows


class SharedReads:
    """The GET answers of one project, shared by the clients of several jobs in one process
    (a clone's source, read by every target's job of a fleet).

    The first client to ask for a path (and query) sends the request; the others wait for its
    answer instead of sending their own, and each gets a copy of its own to change as it likes.
    A failed read is not kept: the next asker sends it again. Only requests actually sent are
    counted in a client's ``stats``. The source is read once however many targets clone it,
    so all of them plan from the same answers. A failure that asking again cannot mend (a 404, a
    refused key) is shared like an answer; one that can (the server down) is not.
    """

    def __init__(self) -> None:
        self._answers: dict[tuple[str, tuple[tuple[str, str], ...]], bytes] = {}
        self._failures: dict[tuple[str, tuple[tuple[str, str], ...]], ApiError] = {}
        self._pending: dict[tuple[str, tuple[tuple[str, str], ...]], anyio.Event] = {}

    async def get(
        self, client: ConsoleClient, path: str, query: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        key = (path, tuple(sorted((k, str(v)) for k, v in (query or {}).items())))
        while key not in self._answers:
            if key in self._failures:
                raise self._failures[key]
            pending = self._pending.get(key)
            if pending is None:
                self._pending[key] = done = anyio.Event()
                try:
                    body = await client._request("GET", path, query, None, None)
                    self._answers[key] = orjson.dumps(body)
                    return body
                except ApiError as exc:
                    if not exc.retryable:
                        self._failures[key] = exc
                    raise
                finally:
                    del self._pending[key]
                    done.set()
            await pending.wait()  # answered, or failed: then this asker sends it itself
        decoded: dict[str, Any] = orjson.loads(self._answers[key])
        return decoded


async def read_entity(client: ConsoleClient, path: str) -> dict[str, Any] | None:
    """The entity at ``path`` (its ``data``), or None when it does not exist.

    A ``listed_item_path`` (``LIST#FIELD=VALUE``) reads LIST and returns its row whose FIELD
    equals VALUE: for kinds the API lists but has no GET of one item for (assignment sources).
    """
    grouped = split_group_names_path(path)
    if grouped is not None:
        overrides_path, experiment_path = grouped
        overrides = await read_entity(client, overrides_path)
        if overrides is None:
            return None
        return with_group_names(overrides, await read_entity(client, experiment_path))
    listed = split_listed_item_path(path)
    if listed is not None:
        list_path, field, value = listed
        rows = await client.list_all(list_path)
        return next((r for r in rows if isinstance(r, dict) and r.get(field) == value), None)
    try:
        body = await client.get(path)
    except NotFound:
        return None
    data = body.get("data")
    if isinstance(data, list):  # a few endpoints wrap one object in a list
        data = data[0] if data else None
    return data if isinstance(data, dict) else None


def with_group_names(
    overrides: dict[str, Any], experiment: dict[str, Any] | None
) -> dict[str, Any]:
    """Experiment overrides whose ``groupID`` values name groups: each that is the id of one of
    the experiment's ``groups`` becomes that group's name (others are kept as they are)."""
    names = {
        g.get("id"): g.get("name")
        for g in (experiment or {}).get("groups") or []
        if isinstance(g, dict) and g.get("id") and g.get("name")
    }
    if not names:
        return overrides

    def named(items: Any) -> Any:
        if not isinstance(items, list):
            return items
        return [
            {**item, "groupID": names.get(item.get("groupID"), item.get("groupID"))}
            if isinstance(item, dict) and "groupID" in item
            else item
            for item in items
        ]

    return {
        **overrides,
        **{k: named(overrides[k]) for k in ("overrides", "userIDOverrides") if k in overrides},
    }


def parse_page(body: dict[str, Any], page: int, limit: int, where: str, project: str) -> Page:
    data = body.get("data")
    if not isinstance(data, list):
        raise MalformedResponse(f"{where}: expected a list in `data`", project=project)
    pagination = body.get("pagination") or {}
    if not isinstance(pagination, dict):
        raise MalformedResponse(f"{where}: `pagination` is not an object", project=project)
    per_page = pagination.get("itemsPerPage")
    total = pagination.get("totalItems")
    return Page(
        data=data,
        page=page,
        # The server may cap `limit` below what we asked: trust what it says it used.
        items_per_page=int(per_page)
        if isinstance(per_page, int | float) and per_page > 0
        else limit,
        total=int(total) if isinstance(total, int | float) else None,
        # Without a `pagination` block (several spec examples omit it), a full page may not be
        # the last: ask for the next one until a page comes back short or empty.
        has_next=bool(pagination.get("nextPage"))
        if "pagination" in body
        else len(data) >= limit > 0,
    )


def _identity(body: dict[str, Any], where: str) -> ProjectIdentity:
    data = body.get("data")
    if isinstance(data, list) and data:  # a few endpoints wrap one object in a list
        data = data[0]
    project_id = data.get("id") if isinstance(data, dict) else None
    if not isinstance(project_id, str | int) or project_id == "":
        raise MalformedResponse(f"{where}: the answer carries no project id")
    name = data.get("name") if isinstance(data, dict) else None
    return ProjectIdentity(str(project_id), name if isinstance(name, str) and name else None)


def pages_for(total: int, items_per_page: int) -> int:
    return max(1, math.ceil(total / max(1, items_per_page)))


def check_total(*, rows_read: int, total: int | None, what: str) -> None:
    if total is not None and rows_read != total:
        raise InconsistentListing(
            f"{what}: read {rows_read} rows but the server announced totalItems={total}; "
            "the list changed while it was being read. Re-run to read it again."
        )


def _server_says(body: Any, raw: bytes, base_url: str) -> str:
    """The server's own message, on one line; a body that is not the API's JSON (an HTML error
    page of a proxy or another server) is named, not dumped."""
    message = body.get("message") if isinstance(body, dict) else None
    if message is None:
        return (
            f"the answer is not the Console API's JSON; check that {base_url} is the Statsig "
            "Console API"
            if raw.strip()
            else "an empty answer"
        )
    text = " ".join(redact.text(str(message)).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _connect_reason(exc: aiohttp.ClientConnectorError) -> str:
    """Why a connection could not be opened, in words (a TLS failure says what to try)."""
    if isinstance(exc, aiohttp.ClientSSLError):
        detail = getattr(exc.os_error, "reason", None) or _os_reason(exc.os_error)
        return (
            f"TLS handshake failed ({detail}); if the server speaks plain HTTP, use http://, or "
            "check its certificate"
        )
    return _os_reason(exc.os_error)


#: What the resolver says of a host that does not exist (glibc's words, and musl's).
_UNKNOWN_HOST = frozenset({"Name or service not known", "Name does not resolve"})


def _will_not_heal(error: BaseException) -> bool:
    """A failure that retrying within seconds cannot fix (a TLS mismatch, an unknown host)."""
    reason = getattr(error, "reason", "") or ""
    return reason.startswith("TLS handshake failed") or reason in _UNKNOWN_HOST


def _os_reason(error: OSError) -> str:
    """``Connection refused``, ``Name or service not known``: the OS's words, without a repr."""
    if isinstance(error.errno, int) and error.errno > 0 and not isinstance(error, socket.gaierror):
        return os.strerror(error.errno)  # asyncio's strerror holds the address tuple's repr
    return error.strerror or str(error) or type(error).__name__


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare enough to fall back to our own backoff


def _validation_details(body: Any) -> str:
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list) or not errors:
        return ""
    parts = [
        f"{e.get('property', '?')}: {e.get('errorMessage') or e.get('error') or '?'}"
        for e in errors
        if isinstance(e, dict)
    ]
    return " (" + "; ".join(parts) + ")"


def _auth_message(project: str, status: int, server_says: str) -> str:
    if status == 401:
        return (
            f"the Console API rejected the key of project {project!r} (401: {server_says}). "
            "Check that the environment variable named by its api_key_env holds an active "
            "Console API key (Project Settings > Keys & Environments > Console API Keys)."
        )
    return (
        f"the key of project {project!r} lacks a permission this job needs (403: {server_says}). "
        "Use a Console API key with read-write scope for projects this job writes to."
    )
