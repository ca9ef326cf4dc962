"""Release pipelines: ``/console/v1/release_pipelines`` (list, create) and
``/release_pipelines/{id}`` (read, full update ``POST``, delete).

``ReleasePipelineDto {id, name, creatorID, createdTime, lastModifierID, phases}``: a pipeline's
id is server-assigned (22 base62 characters), its phases run in order, each with rules of
conditions as gates have. Create (``ReleasePipelineCreateDto``: ``name`` required) answers
**200**, the spec's code; a phase or rule sent without an ``id`` is given one. The update is the
full update (``ReleasePipelineUpdateDto``, every field optional): with
``EmulatorConfig.full_update = "replace"`` (the harsher reading) ``phases`` left out become
``[]``; the name is kept when left out (a pipeline always has one). Names are unique per
project (400 "Name is already in use": an emulator decision, the spec is silent). The kind is
optional (see :mod:`._optional`).
"""

from __future__ import annotations

from typing import Any

from .._context import Call, Reply
from .._envelopes import message_only, paged, single
from .._errors import name_in_use
from .._ids import stable_id
from .._routing import Router
from .._store import Collection, Entity, Project
from .._validation import Bool, Enum, ListOf, Num, Obj, OneOf, Str, validate
from ._common import get_or_404
from ._optional import add_optional

__all__ = ["CREATE_SCHEMA", "UPDATE_SCHEMA", "create_pipeline", "pipelines", "register"]

BASE = "/console/v1/release_pipelines"
KIND = "release_pipelines"
_CONDITION_TYPES = (
    "app_version", "browser_name", "browser_version", "country", "custom_field", "email",
    "environment_tier", "fails_gate", "fails_segment", "ip_address", "locale", "os_name",
    "os_version", "passes_gate", "passes_segment", "public", "time", "unit_id", "user_id", "url",
    "javascript", "device_model", "target_app",
)  # fmt: skip
_CONDITION = Obj(
    fields={
        "targetValue": OneOf(options=(ListOf(Str()), ListOf(Num()), Str(), Num()), nullable=True),
        "operator": Str(),
        "field": Str(nullable=True),
        "customID": Str(nullable=True),
        "type": Enum(values=_CONDITION_TYPES),
    },
    required=("type",),
)
_RULE = Obj(
    fields={
        "id": Str(),
        "name": Str(),
        "conditions": ListOf(_CONDITION),
        "environments": ListOf(Str(), nullable=True),
    },
    required=("name", "conditions"),
)
_PHASE = Obj(
    fields={
        "id": Str(),
        "name": Str(),
        "timeIntervalMs": Num(),
        "requiredReview": Bool(),
        "rules": ListOf(_RULE),
    },
    required=("name", "timeIntervalMs", "requiredReview", "rules"),
)
UPDATE_SCHEMA = Obj(fields={"name": Str(min_len=1), "phases": ListOf(_PHASE)})
CREATE_SCHEMA = Obj(fields=UPDATE_SCHEMA.fields, required=("name",))


def pipelines(project: Project) -> Collection:
    """The project's release pipelines keyed by id."""
    return project.collection(KIND)


def _named(project: Project, name: str, but: str | None = None) -> bool:
    return any(p["name"] == name and p["id"] != but for p in pipelines(project).values())


def _phases(project: Project, phases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``phases`` with server ids given to the phases and rules sent without one."""

    def ided(item: dict[str, Any], what: str) -> dict[str, Any]:
        if item.get("id"):
            return item
        return {"id": stable_id(what, project.name, project.next_seq(what)), **item}

    return [
        {
            **ided(phase, "pipeline-phase"),
            "rules": [ided(r, "pipeline-rule") for r in phase["rules"]],
        }
        for phase in phases
    ]


def create_pipeline(project: Project, fields: dict[str, Any], now_ms: int) -> Entity:
    """Create a pipeline from validated ``ReleasePipelineCreateDto`` fields (handler, demo)."""
    if _named(project, fields["name"]):
        raise name_in_use()
    pipeline_id = stable_id(
        "release-pipeline", project.name, fields["name"], project.next_seq(KIND)
    )
    pipeline = {
        "id": pipeline_id,
        "name": fields["name"],
        "creatorID": project.api_user_id,
        "createdTime": project.stamp(now_ms),
        "lastModifierID": project.api_user_id,
        "phases": _phases(project, fields.get("phases", [])),
    }
    pipelines(project).add(pipeline_id, pipeline)
    return pipeline


async def list_pipelines(call: Call) -> Reply:
    return paged(call, "List pipelines success", pipelines(call.project).values())


async def create(call: Call) -> Reply:
    fields = validate(CREATE_SCHEMA, call.json_body())
    pipeline = create_pipeline(call.project, fields, call.now_ms)
    return single("Create pipeline success", pipeline, call.config.create_code(200))


async def read(call: Call) -> Reply:
    return single("Get pipeline success", get_or_404(pipelines(call.project), call.params["id"]))


async def update(call: Call) -> Reply:
    old = get_or_404(pipelines(call.project), call.params["id"])
    fields = validate(UPDATE_SCHEMA, call.json_body())
    name = str(fields.get("name", old["name"]))
    if _named(call.project, name, but=old["id"]):
        raise name_in_use()
    kept: list[dict[str, Any]] = [] if call.config.replaces_on_full_update else old["phases"]
    phases: list[dict[str, Any]] = fields.get("phases", kept)
    new = {
        **old,
        "name": name,
        "phases": _phases(call.project, phases),
        "lastModifierID": call.project.api_user_id,
    }
    pipelines(call.project).replace(old["id"], new)
    return single("Update pipeline success", new)


async def delete(call: Call) -> Reply:
    old = get_or_404(pipelines(call.project), call.params["id"])
    pipelines(call.project).remove(old["id"])
    return message_only("Pipeline deleted successfully.")


def register(router: Router) -> None:
    one = f"{BASE}/{{id}}"
    for method, template, handler in (
        ("GET", BASE, list_pipelines),
        ("POST", BASE, create),
        ("GET", one, read),
        ("POST", one, update),
        ("DELETE", one, delete),
    ):
        add_optional(router, KIND, method, template, handler)
