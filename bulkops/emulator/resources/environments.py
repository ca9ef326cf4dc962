"""Environments: ``GET`` and ``POST /console/v1/environments``.

The project's environments are one list (``EnvironmentsContractDto {environments: [{name, id,
isProduction, requiresReview, requiredReviewGroupID?, requiresReleasePipeline}]}``), read whole
and written whole: ``POST`` sends the new list. An item with an ``id`` updates that environment
(an id the project does not have is a 400 naming it); an item without one is a new environment,
given a server id; environments the list leaves out are removed. Names are unique within the
list, compared case-insensitively as the console does (400 "Name is already in use"); an empty
list is refused, since a project always has an environment. Each item is stored as its own
entity, keyed by id, in list order.
"""

from __future__ import annotations

from typing import Any

from .._context import Call, Reply
from .._envelopes import single
from .._errors import bad_field, name_in_use
from .._ids import stable_id
from .._routing import Router
from .._store import Collection, Entity, Project
from .._validation import Bool, ListOf, Obj, Str, validate

__all__ = ["UPDATE_SCHEMA", "environments", "register", "set_environments"]

BASE = "/console/v1/environments"
_ITEM_FIELDS = {
    "name": Str(min_len=1, max_len=100),
    "id": Str(min_len=1),
    "isProduction": Bool(),
    "requiresReview": Bool(),
    "requiredReviewGroupID": Str(),
    "requiresReleasePipeline": Bool(),
}
UPDATE_SCHEMA = Obj(
    fields={
        "environments": ListOf(
            Obj(
                fields=_ITEM_FIELDS,
                required=("name", "isProduction", "requiresReview", "requiresReleasePipeline"),
            )
        )
    },
    required=("environments",),
)


def environments(project: Project) -> Collection:
    """The project's environments keyed by id, in the order last written."""
    return project.collection("environments")


def set_environments(project: Project, items: list[dict[str, Any]]) -> list[Entity]:
    """Replace the project's environments with validated ``items`` (handler and demo seeder)."""
    coll = environments(project)
    if not items:
        raise bad_field("environments", "A project needs at least one environment")
    names = [i["name"].casefold() for i in items]
    if len(set(names)) != len(names):
        raise name_in_use()
    for index, item in enumerate(items):
        if "id" in item and item["id"] not in coll:
            raise bad_field(
                f"environments.{index}.id",
                f"No environment with id {item['id']!r} in project {project.name!r}; "
                "leave id out to create a new environment",
            )
    stored: list[Entity] = []
    for item in items:
        env_id = item.get("id") or stable_id(
            "environment", project.name, item["name"], project.next_seq("environments")
        )
        stored.append({**item, "id": env_id})
    for env_id in list(coll):
        coll.remove(env_id)
    for env in stored:
        coll.add(env["id"], env)
    return stored


async def read(call: Call) -> Reply:
    data = {"environments": environments(call.project).values()}
    return single("Environments read successfully.", data)


async def update(call: Call) -> Reply:
    fields = validate(UPDATE_SCHEMA, call.json_body())
    stored = set_environments(call.project, fields["environments"])
    return single("Environments updated successfully.", {"environments": stored})


def register(router: Router) -> None:
    router.add("GET", BASE, read)
    router.add("POST", BASE, update)
