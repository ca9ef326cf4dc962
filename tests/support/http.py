"""One raw HTTP client for the emulator tests: paths go out exactly as written, answers come back
as status, decoded body and headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from bulkops.emulator import EmulatorConfig, World, running_emulator
from tests.support.worlds import SOURCE_KEY

V1 = "/console/v1"
#: The header that makes a mutation respect the entity's review settings.
REVIEW = {"x-respect-review-settings": "true"}


@dataclass
class Answer:
    status: int
    #: The decoded JSON body; the raw bytes when the answer is not JSON; None when empty.
    body: Any
    headers: Any = None

    @property
    def data(self) -> Any:
        return self.body["data"]

    def error_props(self) -> list[str]:
        return [e["property"] for e in self.body.get("errors", [])]


class Api:
    """A tiny JSON client over one emulator; paths are sent exactly as written (already encoded)."""

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
            if not raw:
                return Answer(resp.status, None, resp.headers)
            is_json = resp.content_type == "application/json"
            return Answer(resp.status, orjson.loads(raw) if is_json else raw, resp.headers)

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
    """Serve ``world`` and yield a client holding ``key``.

    No pooled connections (``force_close``): aiohttp would silently resend a request that met a
    dropped connection on a reused one, hiding the emulator's faults.
    """
    async with (
        running_emulator(world, config or EmulatorConfig()) as base_url,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
    ):
        yield Api(session, base_url, key)


def seg(name: str) -> str:
    """Percent-encode one path segment the way clients must (``/`` and ``.`` included)."""
    encoded = quote(name, safe="")
    return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded
