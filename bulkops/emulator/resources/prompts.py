"""Prompts (AI configs): ``/console/v1/prompts`` (list, create) and ``/prompts/{id}`` (read,
``PATCH``).

``ExternalPromptDto``: the config entity block (id, name, description, audit fields, tags,
targetApps, holdoutIDs, team, teamID, version). Create (``AIConfigCreateDto``: ``name`` required,
3–100 characters of ``[a-zA-Z0-9_\\-. ]``) answers **200**, the spec's code; the id is derived
from the name as for gates (lower-case, spaces to ``_``), a taken one is 400 "Name is already in
use". ``targetApps`` may be sent as one string or a list (the DTOs' ``oneOf``) and is stored as a
list; references (tags, team, target apps) must exist, as everywhere. ``PATCH``
(``AIConfigPartialUpdateDto``: description, targetApps, team, teamID) bumps ``version``.
The spec has no read of a prompt's versions (only their create, whose DTO may carry
``auth_workflow_headers``, credentials) and no delete: the emulator serves neither. The kind is
optional (see :mod:`._optional`).
"""

from __future__ import annotations

from typing import Any

from .._context import Call, Reply
from .._envelopes import paged, single
from .._errors import name_in_use
from .._routing import Router
from .._store import Collection, Entity, Project
from .._validation import ListOf, Obj, OneOf, Str, validate
from ._common import OWNER_INPUT, created_fields, get_or_404
from ._entities import derive_id, touch
from ._optional import add_optional
from ._refs import check_references, resolve_team

__all__ = ["CREATE_SCHEMA", "UPDATE_SCHEMA", "create_prompt", "prompts", "register"]

BASE = "/console/v1/prompts"
KIND = "prompts"
_NAME = Str(min_len=3, max_len=100, pattern=r"^[a-zA-Z0-9_\-. ]*$")
_TARGET_APPS = OneOf(options=(Str(), ListOf(Str())))
UPDATE_SCHEMA = Obj(
    fields={
        "description": Str(max_len=1000),
        "targetApps": _TARGET_APPS,
        "team": Str(),
        "teamID": Str(),
    }
)
CREATE_SCHEMA = Obj(
    fields={
        "name": _NAME,
        "displayName": _NAME,
        "tags": ListOf(Str()),
        "creatorID": Str(nullable=True),
        "creatorEmail": Str(nullable=True),
        "owner": OWNER_INPUT,
        **UPDATE_SCHEMA.fields,
    },
    required=("name",),
)


def prompts(project: Project) -> Collection:
    """The project's prompts keyed by id."""
    return project.collection(KIND)


def _apps(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` with ``targetApps`` as a list (it may be sent as one string)."""
    apps = fields.get("targetApps")
    return {**fields, "targetApps": [apps]} if isinstance(apps, str) else fields


def _check(project: Project, fields: dict[str, Any]) -> dict[str, Any]:
    """The team fields (``team`` and ``teamID``) the prompt gets, after every reference is checked."""
    check_references(
        project, {k: fields[k] for k in ("tags", "team", "teamID", "targetApps") if k in fields}
    )
    return resolve_team(project, fields)


def create_prompt(project: Project, fields: dict[str, Any], now_ms: int) -> Entity:
    """Create a prompt from validated ``AIConfigCreateDto`` fields (handler and demo seeder)."""
    fields = _apps(fields)
    prompt_id = derive_id(fields["name"])
    if prompt_id in prompts(project):
        raise name_in_use()
    team = _check(project, fields) or {"team": None, "teamID": None}
    prompt = {
        "id": prompt_id,
        "name": fields["name"],
        "description": fields.get("description", ""),
        "creatorID": project.api_user_id,
        **created_fields(project, project.stamp(now_ms)),
        "tags": list(fields.get("tags", [])),
        "targetApps": list(fields.get("targetApps", [])),
        "holdoutIDs": [],
        **team,
        "version": 1,
    }
    prompts(project).add(prompt_id, prompt)
    return prompt


async def list_prompts(call: Call) -> Reply:
    return paged(call, "Prompts listed successfully", prompts(call.project).values())


async def create(call: Call) -> Reply:
    prompt = create_prompt(call.project, validate(CREATE_SCHEMA, call.json_body()), call.now_ms)
    return single("Prompt created successfully", prompt, call.config.create_code(200))


async def read(call: Call) -> Reply:
    return single("Prompt read successfully", get_or_404(prompts(call.project), call.params["id"]))


async def update(call: Call) -> Reply:
    old = get_or_404(prompts(call.project), call.params["id"])
    fields = _apps(validate(UPDATE_SCHEMA, call.json_body()))
    team = _check(call.project, fields)
    new = touch(call.project, {**old, **fields, **team}, call.now_ms)
    prompts(call.project).replace(old["id"], new)
    return single("Prompt updated successfully", new)


def register(router: Router) -> None:
    one = f"{BASE}/{{id}}"
    for method, template, handler in (
        ("GET", BASE, list_prompts),
        ("POST", BASE, create),
        ("GET", one, read),
        ("PATCH", one, update),
    ):
        add_optional(router, KIND, method, template, handler)
