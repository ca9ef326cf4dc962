"""Handlers that config entity kinds share, built from each kind's own schema, builder and messages.

Gates, dynamic configs, experiments, holdouts, layers and segments read, create, list and update
alike: fetch or 404, validate, build, answer in the single envelope. Each such handler is written
once here so status codes, envelopes and review handling cannot drift apart between kinds; the
resource modules keep only what differs (messages, schemas, builders, update rules).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from .._context import Call, Reply
from .._envelopes import single
from .._routing import Handler, Router
from .._store import Entity, Project
from .._validation import Obj, validate
from ._entities import Kind, change_reply, get_entity, save_change
from .tags import tag_filter

__all__ = [
    "Change",
    "Update",
    "action_handler",
    "create_handler",
    "list_filter",
    "read_handler",
    "register_entity_routes",
]

Creator = Callable[[Project, dict[str, Any], int], Entity]
Change = Callable[[Entity], Entity]


class Update(Protocol):
    """A kind's update handler; ``full`` is ``POST /{id}`` (omitted fields reset), else PATCH."""

    def __call__(self, call: Call, *, full: bool) -> Awaitable[Reply]: ...


def create_handler(schema: Obj, create: Creator, message: str, status: int) -> Handler:
    """``POST /{kind}``: validate, create, answer ``status`` (or the configured create code)."""

    async def handler(call: Call) -> Reply:
        fields = validate(schema, call.json_body())
        entity = create(call.project, fields, call.now_ms)
        return single(message, entity, call.config.create_code(status))

    return handler


def read_handler(kind: Kind, message: str, *, not_found: str | None = None) -> Handler:
    """``GET /{kind}/{id}``: the entity, or the kind's documented 404 (``not_found`` where the
    spec gives this read another text)."""

    async def handler(call: Call) -> Reply:
        entity = get_entity(call.project, kind, call.params["id"], not_found=not_found)
        return single(message, entity)

    return handler


def action_handler(kind: Kind, change: Change, message: str) -> Handler:
    """``PUT /{kind}/{id}/enable`` and the like: a fixed change, applied or held for review.

    These bodies carry only reasons, which are not stored; a body that is sent must still be a
    JSON object, as on the real API.
    """

    async def handler(call: Call) -> Reply:
        old = get_entity(call.project, kind, call.params["id"])
        if call.body_bytes.strip():
            call.json_body()
        stored, applied = save_change(call, kind, old, change(old))
        return change_reply(kind, stored, applied, message)

    return handler


def list_filter(call: Call, keys: tuple[str, ...]) -> Callable[[Entity], bool]:
    """The list filters every kind has: exact-match query parameters and ``tags``.

    An entity is kept when it equals each parameter in ``keys`` that was sent and, given a
    ``tags`` query, carries at least one of those tags.
    """
    wanted = {k: v for k in keys if (v := call.query.get(k)) is not None}
    tags = tag_filter(call)

    def keep(entity: Entity) -> bool:
        if any(entity.get(k) != v for k, v in wanted.items()):
            return False
        return tags is None or bool(tags & set(entity.get("tags", [])))

    return keep


def register_entity_routes(
    router: Router,
    base: str,
    *,
    list_all: Handler,
    create: Handler,
    read: Handler,
    update: Update,
    delete: Handler,
) -> None:
    """The six routes every config entity has, in one order for every kind.

    List and create on ``base``; read, full update (``POST``), partial update (``PATCH``) and
    delete on ``base/{id}``.
    """

    async def full_update(call: Call) -> Reply:
        return await update(call, full=True)

    async def partial_update(call: Call) -> Reply:
        return await update(call, full=False)

    one = f"{base}/{{id}}"
    router.add("GET", base, list_all)
    router.add("POST", base, create)
    router.add("GET", one, read)
    router.add("POST", one, full_update)
    router.add("PATCH", one, partial_update)
    router.add("DELETE", one, delete)
