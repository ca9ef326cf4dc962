"""Topline alerts: ``GET /console/v1/alerts`` (List Topline Alerts), the only operation the spec
documents for them (no item path, no write).

Items are ``AlertSchemaDto``; the list filters on ``creatorName``, ``creatorID`` and ``tags`` as
the spec's query says (exact match; ``tags``: any of them). A project holds the alerts the demo
seeder or a snapshot put there, in that order. The kind is optional (see :mod:`._optional`).
"""

from __future__ import annotations

from typing import Any

from .._context import Call, Reply
from .._envelopes import paged
from .._ids import stable_id
from .._routing import Router
from .._store import Collection, Entity, Project
from ._handlers import list_filter
from ._optional import add_optional

__all__ = ["add_alert", "alerts", "register"]

BASE = "/console/v1/alerts"
KIND = "alerts"


def alerts(project: Project) -> Collection:
    """The project's topline alerts keyed by id."""
    return project.collection(KIND)


def add_alert(project: Project, fields: dict[str, Any]) -> Entity:
    """Store an alert (the demo seeder): ``fields`` are an ``AlertSchemaDto`` without ``id``,
    ``companyID`` and ``creatorID``, which are given here."""
    alert_id = stable_id("alert", project.name, fields["name"], project.next_seq(KIND))
    alert = {
        "id": alert_id,
        "companyID": stable_id("company", project.name),
        "creatorID": project.api_user_id,
        **fields,
    }
    alerts(project).add(alert_id, alert)
    return alert


async def list_alerts(call: Call) -> Reply:
    keep = list_filter(call, ("creatorName", "creatorID"))
    found = [a for a in alerts(call.project).values() if keep(a)]
    return paged(call, "Alerts listed successfully", found)


def register(router: Router) -> None:
    add_optional(router, KIND, "GET", BASE, list_alerts)
