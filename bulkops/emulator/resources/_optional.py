"""The newer, optional configuration kinds (alerts, release pipelines, roles, prompts, settings):
routes that a project, or an API version, may not serve.

Every route of such a kind is registered through :func:`add_optional`, which answers as a server
without the kind would when ``EmulatorConfig.unserved_kinds`` names it (``unserved_status``: 404
"Not Found. ..." or 403 "Forbidden resource") or the project does not serve it (a project seeded
from a snapshot that lists the kind as ``unavailable``: 404). The key is checked first, as for
every route.
"""

from __future__ import annotations

from .._context import Call, Reply
from .._errors import FORBIDDEN, ApiError, not_found
from .._routing import Handler, Router

__all__ = ["add_optional", "check_served"]


def check_served(call: Call, kind: str) -> None:
    """Raise the 404 (or configured 403) of a server that does not serve ``kind``."""
    if kind in call.project.unserved:
        raise not_found()
    if kind in call.config.unserved_kinds:
        if call.config.unserved_status == 403:
            raise ApiError(403, FORBIDDEN)
        raise not_found()


def add_optional(router: Router, kind: str, method: str, template: str, handler: Handler) -> None:
    """Register ``handler`` for a route of the optional ``kind``."""

    async def guarded(call: Call) -> Reply:
        check_served(call, kind)
        return await handler(call)

    router.add(method, template, guarded)
