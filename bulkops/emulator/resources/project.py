"""``GET /console/v1/project``: the identity of the project behind the key.

The spec's ``ExternalProjectDto`` has only ``id`` (its example: ``{"id": "company_id"}``), so that
is all the emulator answers: a client that wants a name must cope without one.
"""

from __future__ import annotations

from .._context import Call, Reply
from .._envelopes import single
from .._routing import Router

__all__ = ["register"]

PROJECT = "/console/v1/project"


async def read_project(call: Call) -> Reply:
    return single("Project Info Retrieved Successfully", {"id": call.project.id})


def register(router: Router) -> None:
    router.add("GET", PROJECT, read_project)
