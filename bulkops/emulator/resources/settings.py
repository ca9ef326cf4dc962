"""Project settings: ``GET`` and ``POST /console/v1/settings/{project,reviews,roles,teams}``,
four singleton documents.

Each document is stored whole in the ``settings`` collection under its path segment and answered
as stored; ``POST`` validates the body against its DTO (``SettingsProjectContractDto`` and the
others) and replaces the document with it (fields left out are gone: the harsher reading of an
update whose DTO has required fields). A project that never had a document answers its defaults
(the project's own name, ``CLOSED``, no reviews required, ``Member`` as the default role, teams
not required) without storing them. A document seeded as ``null`` (a snapshot of a server that
answered ``data: null``, see :func:`seed_null_settings`) is answered ``data: null`` until the
first ``POST`` replaces it. ``settings/roles``' ``default_project_role`` must name a
built-in or custom role (the validation 400 otherwise). The ``name`` of ``settings/project`` is
stored as sent and does not rename the emulator's project. The kind is optional (see
:mod:`._optional`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._context import Call, Reply
from .._envelopes import single
from .._errors import bad_field
from .._routing import Router
from .._store import Collection, Entity, Project
from .._validation import Bool, Enum, Obj, Str, validate
from ._optional import add_optional
from .roles import BUILT_IN, roles

__all__ = [
    "DOCUMENTS",
    "SCHEMAS",
    "register",
    "seed_null_settings",
    "set_settings",
    "settings",
    "settings_of",
]

BASE = "/console/v1/settings"
KIND = "settings"
SCHEMAS: dict[str, Obj] = {
    "project": Obj(
        fields={
            "name": Str(min_len=1),
            "visibility": Enum(values=("OPEN", "CLOSED", "EXTERNAL")),
            "default_unit_type": Str(),
        },
        required=("name", "visibility"),
    ),
    "reviews": Obj(
        fields={
            "is_config_review_required": Bool(),
            "is_metric_review_required": Bool(),
            "is_metric_review_required_on_verified_only": Bool(),
            "is_whn_analysis_only_review_required": Bool(),
            "is_whn_source_review_required": Bool(),
        },
        required=(
            "is_config_review_required",
            "is_metric_review_required",
            "is_metric_review_required_on_verified_only",
        ),
    ),
    "roles": Obj(
        fields={"default_project_role": Str(min_len=1)}, required=("default_project_role",)
    ),
    "teams": Obj(
        fields={"require_teams_on_configs": Bool()}, required=("require_teams_on_configs",)
    ),
}
#: The documents, in the order an export lists them.
DOCUMENTS = tuple(SCHEMAS)
_DEFAULTS: dict[str, Callable[[Project], Entity]] = {
    "project": lambda p: {"name": p.name, "visibility": "CLOSED"},
    "reviews": lambda p: {
        "is_config_review_required": False,
        "is_metric_review_required": False,
        "is_metric_review_required_on_verified_only": False,
    },
    "roles": lambda p: {"default_project_role": "Member"},
    "teams": lambda p: {"require_teams_on_configs": False},
}


#: The stored form of a document answered ``data: null`` (collections hold objects only).
_NULL: Entity = {"\x00seeded-null": True}


def settings(project: Project) -> Collection:
    """The project's settings documents keyed by path segment (only those ever written)."""
    return project.collection(KIND)


def settings_of(project: Project, document: str) -> Entity | None:
    """The document as the API answers it: stored, the project's defaults, or None (seeded as
    ``null``)."""
    stored = settings(project).get(document)
    if stored == _NULL:
        return None
    return stored or _DEFAULTS[document](project)


def seed_null_settings(project: Project, document: str) -> None:
    """Store ``document`` as one the server answers ``data: null`` (seeding a snapshot)."""
    settings(project).put(document, dict(_NULL))


def set_settings(project: Project, document: str, fields: dict[str, Any]) -> Entity:
    """Replace ``document`` with validated ``fields`` (handler and demo seeder)."""
    role = fields.get("default_project_role")
    if role is not None and role not in BUILT_IN and role not in roles(project):
        raise bad_field(
            "default_project_role",
            f"No role {role!r} in project {project.name!r}; name one of "
            f"{', '.join(BUILT_IN)} or a custom role (GET /console/v1/roles)",
        )
    settings(project).put(document, dict(fields))
    return dict(fields)


def _handlers(document: str) -> tuple[Callable[[Call], Any], Callable[[Call], Any]]:
    async def read(call: Call) -> Reply:
        return single("Settings read successfully.", settings_of(call.project, document))

    async def update(call: Call) -> Reply:
        fields = validate(SCHEMAS[document], call.json_body())
        return single(
            "Settings updated successfully.", set_settings(call.project, document, fields)
        )

    return read, update


def register(router: Router) -> None:
    for document in DOCUMENTS:
        read, update = _handlers(document)
        add_optional(router, KIND, "GET", f"{BASE}/{document}", read)
        add_optional(router, KIND, "POST", f"{BASE}/{document}", update)
