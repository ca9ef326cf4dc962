"""What every config entity (gate, dynamic config, segment, layer, experiment, holdout) shares.

* **Identity**: ``id`` comes from the body or is derived from ``name`` (reference §6: lower-case,
  whitespace to ``_``; ``"A Gate"`` → ``"a_gate"``). Ids never change; a rename changes ``name``.
* **Audit block** (reference §7): ``createdTime``, ``creatorID/Name/Email``, ``lastModified*``,
  ``owner`` and ``version``. ``version`` starts at 1 and grows by one on *every* applied change;
  times come from :meth:`Project.stamp`, so ``lastModifiedTime`` strictly increases even within one
  millisecond. Creating an entity is not a change to any other entity.
* **Reviews** (``x-respect-review-settings``, reference §1): when a request carries the header
  with a non-empty value and the entity has ``reviewSettings.requiredReview: true``, the change
  is *not* applied. The entity gets ``activeReview {reviewID, reviewStatus: "pending",
  description}`` (its ``version`` and ``lastModifiedTime`` do not move: its configuration did not
  change) and the proposed after-image is kept until ``PUT /{kind}/{id}/reviews/{reviewID}/commit``
  (see :mod:`.reviews`). Without the header, changes apply directly, as console keys bypass
  review. Deletes and override edits are never held for review (their documented success bodies
  could not carry the entity).

Handlers compute a complete after-image and hand it to :func:`save_change`; nothing else writes
an existing entity, so the version and review rules cannot be forgotten by one endpoint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .._context import Call, Reply
from .._envelopes import single
from .._errors import NOT_FOUND
from .._ids import stable_id
from .._store import Collection, Entity, Project
from .._validation import ListOf, OneOf, Str
from ._common import CONSOLE_API, console_owner, get_or_404, modified_fields

__all__ = [
    "DYNAMIC_CONFIGS",
    "EXPERIMENTS",
    "GATES",
    "HOLDOUTS",
    "KINDS",
    "LAYERS",
    "REVIEWS",
    "SEGMENTS",
    "TARGET_APPS_INPUT",
    "TEAM_INPUT",
    "Kind",
    "audit_fields",
    "change_reply",
    "clears_all",
    "derive_id",
    "detach_from_holdouts",
    "get_entity",
    "latest_review",
    "name_taken",
    "query_values",
    "save_change",
    "save_overrides",
    "set_review_required",
    "target_app_ids",
    "touch",
]


@dataclass(frozen=True)
class Kind:
    """One entity kind: its collection, label for messages, 404 text and review behaviour."""

    collection: str
    label: str
    not_found: str = NOT_FOUND
    reviewable: bool = False
    #: Whether its DTO has ``activeReview`` (a held change shows on the entity).
    shows_review: bool = True

    def coll(self, project: Project) -> Collection:
        return project.collection(self.collection)

    def overrides(self, project: Project) -> Collection:
        """The kind's overrides, kept beside the entities under the same id."""
        return project.collection(f"{self.collection}_overrides")


GATES = Kind("gates", "Gate", reviewable=True)
#: ``DynamicConfigDto`` has no ``activeReview``: under ``review_shown="dto"`` a held change
#: leaves the config as it was, its review known only to the reviews collection.
DYNAMIC_CONFIGS = Kind("dynamic_configs", "Dynamic Config", reviewable=True, shows_review=False)
EXPERIMENTS = Kind("experiments", "Experiment", "Experiment not found.", reviewable=True)
SEGMENTS = Kind("segments", "Segment", "Segment not found.")
LAYERS = Kind("layers", "Layer", "Layer not found.")
HOLDOUTS = Kind("holdouts", "Holdout", "Holdout not found.")
KINDS = {k.collection: k for k in (GATES, DYNAMIC_CONFIGS, EXPERIMENTS, SEGMENTS, LAYERS, HOLDOUTS)}

REVIEWS = "reviews"

TARGET_APPS_INPUT = OneOf(options=(ListOf(Str()), Str()))
TEAM_INPUT = {"team": Str(nullable=True), "teamID": Str(nullable=True)}

_SPACES = re.compile(r"\s+")
_NOT_ID_CHAR = re.compile(r"[^a-z0-9_.\-]")


def target_app_ids(value: Any) -> list[str]:
    """``targetApps`` as stored: always a list, though a body may send one id as a string."""
    return [value] if isinstance(value, str) else list(value or [])


def derive_id(name: str, *, strict: bool = False) -> str:
    """The id Statsig derives from a display name: lower-case, whitespace runs to ``_``.

    ``strict`` also turns every character outside ``[a-z0-9_.-]`` into ``_`` (target apps,
    whose names have no pattern).
    """
    out = _SPACES.sub("_", name.strip().lower())
    return _NOT_ID_CHAR.sub("_", out) if strict else out


def name_taken(kind: Kind, project: Project, name: str | None, own_id: str | None) -> bool:
    """Whether a create or rename to ``name`` meets 400 "Name is already in use" (§3.2, §11).

    Taken: another entity of ``kind`` has this exact name, or has the id the name derives to.
    The reference says a create "with an existing name or id" is refused, and lists the error on
    full updates (renames) of experiments, holdouts, gates and dynamic configs; the emulator
    applies it to partial updates too, the harsher reading (docs/api-assumptions.md #29).
    ``own_id`` is the entity's own id (a create's chosen id): its own name never collides.
    No ``name`` (a create by id, an update that does not rename) never collides.
    """
    if name is None:
        return False
    coll = kind.coll(project)
    coll.ensure_index("name", lambda e: e.get("name"))
    if any(e["id"] != own_id for e in coll.where("name", name)):
        return True
    derived = derive_id(name)
    return derived != own_id and derived in coll


def audit_fields(
    project: Project,
    now_ms: int,
    *,
    creator_id: str | None = None,
    creator_email: str | None = None,
) -> dict[str, Any]:
    """The server-assigned block of a new entity (version 1, created and modified now)."""
    stamp = project.stamp(now_ms)
    return {
        "createdTime": stamp,
        "creatorID": creator_id or project.api_user_id,
        "creatorName": CONSOLE_API,
        "creatorEmail": creator_email,
        **modified_fields(project, stamp),
        "owner": console_owner(project),
        "version": 1,
    }


def touch(project: Project, entity: Entity, now_ms: int) -> Entity:
    """``entity`` as changed now: ``version`` + 1 and fresh ``lastModified*``."""
    return {
        **entity,
        **modified_fields(project, project.stamp(now_ms)),
        "version": int(entity.get("version", 0)) + 1,
    }


def get_entity(
    project: Project, kind: Kind, entity_id: str, *, not_found: str | None = None
) -> Entity:
    """The entity or a 404 with the kind's documented message.

    ``not_found`` is for the operations whose spec text is not the kind's (reference §3.2: the
    generic text on ``GET``/``DELETE /layers/{id}``, on a holdout's full update and override
    delete, and on an experiment's ``enable_groups``/``disable_groups``).
    """
    return get_or_404(kind.coll(project), entity_id, not_found or kind.not_found)


def _requires_review(entity: Entity) -> bool:
    settings = entity.get("reviewSettings")
    return isinstance(settings, dict) and settings.get("requiredReview") is True


def latest_review(project: Project, kind: Kind, entity_id: str) -> str | None:
    """The id of the newest review opened on an entity (reviews are kept in opening order)."""
    found = None
    for review in project.collection(REVIEWS).values():
        if review["kind"] == kind.collection and review["entityID"] == entity_id:
            found = review["reviewID"]
    return found


def save_change(call: Call, kind: Kind, old: Entity, new: Entity) -> tuple[Entity, bool]:
    """Apply ``new`` over ``old`` (bumping version and times), or hold it for review.

    Returns the entity as now stored and whether the change was applied.
    """
    project, entity_id = call.project, old["id"]
    if kind.reviewable and call.respects_review and _requires_review(old):
        return _open_review(call, kind, old, new), False
    stored = touch(project, new, call.now_ms)
    kind.coll(project).replace(entity_id, stored)
    return stored, True


def _open_review(call: Call, kind: Kind, old: Entity, new: Entity) -> Entity:
    project = call.project
    seq = project.next_seq(REVIEWS)
    review_id = stable_id("review", project.name, kind.collection, old["id"], seq)
    description = f"{call.method} {call.raw_path} awaiting review"
    project.collection(REVIEWS).add(
        review_id,
        {
            "reviewID": review_id,
            "kind": kind.collection,
            "entityID": old["id"],
            "baseVersion": old.get("version"),
            "after": {k: v for k, v in new.items() if k != "activeReview"},
        },
    )
    if not kind.shows_review and call.config.review_shown == "dto":
        return old  # held: the entity answers as it was, its version unmoved
    pending = {
        **old,
        "activeReview": {
            "reviewID": review_id,
            "reviewStatus": "pending",
            "description": description,
        },
    }
    kind.coll(project).replace(old["id"], pending)
    return pending


def set_review_required(
    project: Project, kind: str, entity_id: str, required: bool = True
) -> Entity:
    """Set ``reviewSettings.requiredReview`` on a gate, dynamic config or experiment.

    A test and demo hook: only gates accept ``reviewSettings`` through the API (on create and
    update). Not a change (no version bump): review settings are project policy.
    """
    found = KINDS[kind].coll(project).get(entity_id)
    if found is None:
        raise KeyError(f"No {kind} {entity_id!r} in project {project.name!r}")
    settings = dict(found.get("reviewSettings") or {"allowedReviewers": []})
    settings["requiredReview"] = required
    updated = {**found, "reviewSettings": settings}
    KINDS[kind].coll(project).replace(entity_id, updated)
    return updated


def query_values(call: Call, name: str, *, split: bool = True) -> list[str]:
    """Every value of a repeatable query parameter, also split on commas when ``split``."""
    out: list[str] = []
    for raw in call.query.getall(name, []):
        parts = raw.split(",") if split else [raw]
        out.extend(p.strip() for p in parts if p.strip())
    return out


def change_reply(kind: Kind, stored: Entity, applied: bool, message: str) -> Reply:
    """200 with the entity; the message says when the change waits for review instead."""
    if not applied:
        message = f"{kind.label} change is pending review; it was not applied."
    return single(message, stored)


def detach_from_holdouts(project: Project, key: str, entity_id: str, now_ms: int) -> None:
    """Drop a deleted entity from every holdout's ``key`` list (``gateIDs``...), bumping those."""
    coll = HOLDOUTS.coll(project)
    for holdout in coll.values():
        if entity_id in holdout.get(key, []):
            kept = [i for i in holdout[key] if i != entity_id]
            coll.replace(holdout["id"], touch(project, {**holdout, key: kept}, now_ms))


def clears_all(call: Call, op: str) -> bool:
    """Whether an overrides write is the bodiless DELETE, which removes every override.

    The current spec draws DELETE without a body; the 2024 docs send the items to remove.
    """
    return op == "remove" and not call.body_bytes.strip()


def save_overrides(call: Call, kind: Kind, entity: Entity, overrides: dict[str, Any]) -> None:
    """Store ``entity``'s overrides and bump its version.

    Overrides are never held for review: their documented answer is the overrides, which could
    not show a pending change.
    """
    project = call.project
    kind.overrides(project).put(entity["id"], overrides)
    kind.coll(project).replace(entity["id"], touch(project, entity, call.now_ms))
