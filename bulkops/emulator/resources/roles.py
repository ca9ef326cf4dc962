"""Custom roles: ``/console/v1/roles`` (list, create) and ``/roles/{id}`` (read, ``PATCH``,
delete).

``RoleContractDto`` is only ``{name, permissions}``: the spec gives a role no id, so the ``{id}``
of its item path can only be the role's name (docs/api-assumptions.md). The emulator takes the
harsher side of every reading: answers carry no ``id`` field (a client that looks for one finds
none), the path takes the exact name and nothing else (case-sensitive, percent-decoded: "Custom
Role" is ``/roles/Custom%20Role``), and a name is never changed (``RoleUpdateContractDto`` has
only ``permissions``). A stored role lists every permission of the spec's DTO, those not sent
false; ``PATCH`` replaces the permissions whole (those it leaves out become false: the harsher
reading of "Update Role"). Create answers **201**, the spec's code. The built-in roles
(``Admin``, ``Member``, ``Read Only``) are not listed and their names are taken (400 "Name is
already in use"); deleting the role ``settings/roles`` names as the default is a 400. The kind
is optional (see :mod:`._optional`).
"""

from __future__ import annotations

from typing import Any

from .._context import Call, Reply
from .._envelopes import message_only, paged, single
from .._errors import bad_field, name_in_use
from .._routing import Router
from .._store import Collection, Entity, Project
from .._validation import Bool, Obj, Str, validate
from ._common import get_or_404
from ._optional import add_optional

__all__ = ["BUILT_IN", "CREATE_SCHEMA", "UPDATE_SCHEMA", "create_role", "register", "roles"]

BASE = "/console/v1/roles"
KIND = "roles"
BUILT_IN = ("Admin", "Member", "Read Only")
PERMISSIONS = (
    "invitation_access", "create_configs", "edit_or_delete_configs", "launch_to_production",
    "launch_or_disable_configs", "start_experiments", "create_or_edit_templates",
    "create_or_edit_dashboards", "create_teams", "edit_dynamic_config_schemas",
    "create_release_pipelines", "approve_required_review_release_pipeline_phase",
    "self_approve_review", "approve_reviews", "bypass_reviews_for_overrides", "metric_management",
    "event_dimensions_access", "verify_metrics", "use_metrics_explorer", "local_metrics",
    "manage_alerts", "integrations_edit_access", "source_connection_and_creation",
    "data_warehouse_ingestion_and_exports_edit_access", "edit_and_tag_configs_with_core_tag",
    "reset_experiments", "manual_whn_reload",
)  # fmt: skip
_PERMISSIONS = Obj(fields={name: Bool() for name in PERMISSIONS})
CREATE_SCHEMA = Obj(
    fields={"name": Str(min_len=1, max_len=100), "permissions": _PERMISSIONS},
    required=("name", "permissions"),
)
UPDATE_SCHEMA = Obj(fields={"permissions": _PERMISSIONS}, required=("permissions",))


def roles(project: Project) -> Collection:
    """The project's custom roles keyed by name."""
    return project.collection(KIND)


def _permissions(sent: dict[str, Any]) -> dict[str, bool]:
    return {name: bool(sent.get(name, False)) for name in PERMISSIONS}


def create_role(project: Project, fields: dict[str, Any]) -> Entity:
    """Create a role from validated ``RoleContractDto`` fields (handler and demo seeder)."""
    name = fields["name"]
    if name in roles(project) or name in BUILT_IN:
        raise name_in_use()
    role = {"name": name, "permissions": _permissions(fields["permissions"])}
    roles(project).add(name, role)
    return role


async def list_roles(call: Call) -> Reply:
    return paged(call, "Roles listed successfully.", roles(call.project).values())


async def create(call: Call) -> Reply:
    role = create_role(call.project, validate(CREATE_SCHEMA, call.json_body()))
    return single("Role created successfully.", role, call.config.create_code(201))


async def read(call: Call) -> Reply:
    return single("Role read successfully.", get_or_404(roles(call.project), call.params["id"]))


async def update(call: Call) -> Reply:
    old = get_or_404(roles(call.project), call.params["id"])
    fields = validate(UPDATE_SCHEMA, call.json_body())
    new = {**old, "permissions": _permissions(fields["permissions"])}
    roles(call.project).replace(old["name"], new)
    return single("Role updated successfully.", new)


async def delete(call: Call) -> Reply:
    old = get_or_404(roles(call.project), call.params["id"])
    default = call.project.collection("settings").get("roles") or {}
    if default.get("default_project_role") == old["name"]:
        raise bad_field(
            "id",
            f"Role {old['name']!r} is the project's default role (settings/roles); "
            "choose another default first",
        )
    roles(call.project).remove(old["name"])
    return message_only("Role deleted successfully.")


def register(router: Router) -> None:
    one = f"{BASE}/{{id}}"
    for method, template, handler in (
        ("GET", BASE, list_roles),
        ("POST", BASE, create),
        ("GET", one, read),
        ("PATCH", one, update),
        ("DELETE", one, delete),
    ):
        add_optional(router, KIND, method, template, handler)
