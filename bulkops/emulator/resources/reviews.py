"""Committing a pending review: ``PUT /console/v1/{gates|dynamic_configs|experiments}/{id}/reviews/
{reviewID}/commit`` (in the 2026 API only; reference §1).

A change sent with ``x-respect-review-settings`` to an entity that requires review is held (see
:mod:`._entities`). Committing applies the held after-image as one change (version + 1) and clears
``activeReview``. If the entity changed in between (its version moved) or a newer review replaced
this one, the commit is a 400: applying a stale after-image would silently undo that change.
"""

from __future__ import annotations

from typing import Any

from .._context import Call, Reply
from .._envelopes import message_only
from .._errors import ApiError, not_found
from .._routing import Router
from ._entities import (
    DYNAMIC_CONFIGS,
    EXPERIMENTS,
    GATES,
    REVIEWS,
    Kind,
    get_entity,
    latest_review,
    touch,
)
from .layers import sync_implicit_layer

__all__ = ["register"]


def _commit(kind: Kind) -> Any:
    async def handler(call: Call) -> Reply:
        project = call.project
        entity = get_entity(project, kind, call.params["id"])
        reviews = project.collection(REVIEWS)
        review = reviews.get(call.params["reviewID"])
        if (
            review is None
            or review["kind"] != kind.collection
            or review["entityID"] != entity["id"]
        ):
            raise not_found()
        active = (
            (entity.get("activeReview") or {}).get("reviewID")
            if "activeReview" in entity
            else latest_review(project, kind, entity["id"])
        )
        if active != review["reviewID"] or entity.get("version") != review["baseVersion"]:
            raise ApiError(
                400,
                f"Invalid request. {kind.label} {entity['id']!r} changed after "
                "this review was opened; open a new review",
            )
        stored = touch(project, dict(review["after"]), call.now_ms)
        stored.pop("activeReview", None)
        kind.coll(project).replace(entity["id"], stored)
        reviews.remove(review["reviewID"])
        if kind is EXPERIMENTS:
            sync_implicit_layer(project, stored, call.now_ms)
        return message_only(f"{kind.label} review committed successfully")

    return handler


def register(router: Router) -> None:
    for kind in (GATES, DYNAMIC_CONFIGS, EXPERIMENTS):
        path = f"/console/v1/{kind.collection}/{{id}}/reviews/{{reviewID}}/commit"
        router.add("PUT", path, _commit(kind))
