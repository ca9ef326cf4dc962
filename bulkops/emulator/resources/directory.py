"""Project directories entities point into: teams (``/users/teams``) and unit id types.

Teams: ``team`` (name) and ``teamID`` on entities must name a team that exists. A team's id is
per project (derived from project and name), so the same team name has different ids in two
projects; clients should map teams by name (reference §10). ``POST /users/teams`` creates one
(200, the spec's code; a taken name is 400 "Name is already in use"); its ``members`` and
``admins`` are e-mail addresses, answered as ``{email, firstName, lastName, role}`` users (the
emulator has no user directory: names are empty, the role is "Member" or "Admin").
``PATCH /users/teams/{id}`` replaces the fields it is given ("Ops: Replace"); the id never
changes. ``DELETE`` removes the team; entities naming it keep the name (as with tags).

Unit id types (``/unit_id_types``): the name is the id. Every entity's ``idType`` must be one of
them. Creating one answers 201 per the spec; ``PATCH /{id}`` sets the description (its only
field); ``DELETE /{id}`` refuses (400) while a config entity still uses the type as ``idType``.
"""

from __future__ import annotations

from typing import Any

from .._context import Call, Reply
from .._envelopes import message_only, paged, single
from .._errors import ApiError, name_in_use
from .._ids import stable_id
from .._routing import Router
from .._store import Collection, Entity, Project
from .._validation import Bool, Enum, ListOf, Obj, Str, validate
from ._common import first_named, get_or_404, indexed_by_name, listed_rows

__all__ = [
    "create_team",
    "create_team_from",
    "create_unit_id_type",
    "register",
    "team_by_name",
    "teams",
    "unit_id_types",
]

TEAMS = "/console/v1/users/teams"
UNIT_ID_TYPES = "/console/v1/unit_id_types"

UNIT_ID_TYPE_SCHEMA = Obj(
    fields={"name": Str(min_len=1, max_len=100), "description": Str(max_len=1000)},
    required=("name",),
)
UNIT_ID_TYPE_UPDATE_SCHEMA = Obj(
    fields={"description": Str(max_len=1000)}, required=("description",)
)

_EMAIL = Str(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_METRIC_REFS = ListOf(Obj(fields={"name": Str(), "type": Str()}, required=("name", "type")))
_TEAM_FIELDS = {
    "name": Str(min_len=1, max_len=100),
    "description": Str(max_len=1000),
    "members": ListOf(_EMAIL),
    "admins": ListOf(_EMAIL),
    "defaultGateMetrics": _METRIC_REFS,
    "defaultExperimentPrimaryMetrics": _METRIC_REFS,
    "defaultExperimentSecondaryMetrics": _METRIC_REFS,
    "defaultHoldoutMetrics": _METRIC_REFS,
    "changeTeamConfigs": Enum(values=("anyone", "team_only")),
    "reviewApproval": Enum(values=("anyone", "team_only", "admin_only")),
    "defaultTargetApplications": ListOf(Str()),
    "defaultHoldoutID": Str(nullable=True),
    "requireReviews": Bool(nullable=True),
    "requireGateTemplates": Bool(nullable=True),
    "requireExperimentTemplates": Bool(nullable=True),
    "requireDynamicConfigTemplates": Bool(nullable=True),
}
TEAM_CREATE_SCHEMA = Obj(
    fields=_TEAM_FIELDS,
    required=(
        "name",
        "members",
        "admins",
        "defaultGateMetrics",
        "defaultExperimentPrimaryMetrics",
        "defaultExperimentSecondaryMetrics",
        "defaultHoldoutMetrics",
        "changeTeamConfigs",
        "reviewApproval",
        "defaultTargetApplications",
    ),
)
TEAM_UPDATE_SCHEMA = Obj(fields={**_TEAM_FIELDS, "id": Str()})
#: Config kinds whose entities carry an ``idType`` (a unit id type in use cannot be deleted).
_ID_TYPE_USERS = ("gates", "dynamic_configs", "experiments", "segments", "layers", "autotunes")


def teams(project: Project) -> Collection:
    return indexed_by_name(project, "teams")


def team_by_name(project: Project, name: str) -> Entity | None:
    return first_named(teams(project), name)


def unit_id_types(project: Project) -> Collection:
    """Unit id types keyed by name."""
    return project.collection("unit_id_types")


def create_team(project: Project, name: str, description: str = "") -> Entity:
    """A ``TeamDto`` with empty defaults (demo seeding; the API's team create is not emulated)."""
    if team_by_name(project, name) is not None:
        raise name_in_use()
    team: Entity = {
        "id": stable_id("team", project.name, name),
        "name": name,
        "description": description,
        "defaultGateMetrics": [],
        "defaultExperimentPrimaryMetrics": [],
        "defaultExperimentSecondaryMetrics": [],
        "defaultHoldoutMetrics": [],
        "changeTeamConfigs": "anyone",
        "reviewApproval": "anyone",
        "defaultTargetApplications": [],
        "defaultHoldoutID": None,
        "members": [],
        "admins": [],
    }
    teams(project).add(team["id"], team)
    return team


def _users(emails: list[str], role: str) -> list[dict[str, str]]:
    return [{"email": e, "firstName": "", "lastName": "", "role": role} for e in emails]


def _team_values(fields: dict[str, Any]) -> dict[str, Any]:
    """Validated team fields as stored: member and admin e-mails become user objects."""
    out = {k: v for k, v in fields.items() if k != "id"}
    if "members" in out:
        out["members"] = _users(out["members"], "Member")
    if "admins" in out:
        out["admins"] = _users(out["admins"], "Admin")
    return out


def create_team_from(project: Project, fields: dict[str, Any]) -> Entity:
    """Create a team from validated ``TeamCreationDto`` fields (the handler)."""
    team = create_team(project, fields["name"], fields.get("description", ""))
    stored = {**team, **_team_values(fields)}
    teams(project).replace(team["id"], stored)
    return stored


def create_unit_id_type(project: Project, fields: dict[str, Any]) -> Entity:
    coll = unit_id_types(project)
    if fields["name"] in coll:
        raise name_in_use()
    unit = {"name": fields["name"], "description": fields.get("description", "")}
    coll.add(unit["name"], unit)
    return unit


async def list_teams(call: Call) -> Reply:
    found = list(teams(call.project).values())
    return paged(call, "Teams listed successfully.", listed_rows(call, found))


async def read_team(call: Call) -> Reply:
    found = get_or_404(teams(call.project), call.params["id"])
    return single("Team read successfully.", found)


async def create_team_handler(call: Call) -> Reply:
    fields = validate(TEAM_CREATE_SCHEMA, call.json_body())
    team = create_team_from(call.project, fields)
    return single("Team created successfully.", team, call.config.create_code(200))


async def update_team(call: Call) -> Reply:
    old = get_or_404(teams(call.project), call.params["id"])
    fields = validate(TEAM_UPDATE_SCHEMA, call.json_body())
    name = str(fields.get("name", old["name"]))
    if name != old["name"] and team_by_name(call.project, name) is not None:
        raise name_in_use()
    new = {**old, **_team_values(fields)}
    teams(call.project).replace(old["id"], new)
    return single("Team updated successfully.", new)


async def delete_team(call: Call) -> Reply:
    old = get_or_404(teams(call.project), call.params["id"])
    teams(call.project).remove(old["id"])
    return message_only("Team deleted successfully")


async def list_units(call: Call) -> Reply:
    return paged(call, "Unit ID Types listed successfully.", unit_id_types(call.project).values())


async def create_unit(call: Call) -> Reply:
    fields = validate(UNIT_ID_TYPE_SCHEMA, call.json_body())
    unit = create_unit_id_type(call.project, fields)
    return single("Unit ID Type created successfully.", unit, call.config.create_code(201))


async def read_unit(call: Call) -> Reply:
    found = get_or_404(unit_id_types(call.project), call.params["id"])
    return single("Unit ID Type read successfully.", found)


async def update_unit(call: Call) -> Reply:
    old = get_or_404(unit_id_types(call.project), call.params["id"])
    fields = validate(UNIT_ID_TYPE_UPDATE_SCHEMA, call.json_body())
    new = {**old, "description": fields["description"]}
    unit_id_types(call.project).replace(old["name"], new)
    return single("Unit ID Type updated successfully.", new)


async def delete_unit(call: Call) -> Reply:
    old = get_or_404(unit_id_types(call.project), call.params["id"])
    users = sum(
        1
        for kind in _ID_TYPE_USERS
        for entity in call.project.collection(kind).values()
        if entity.get("idType") == old["name"]
    )
    if users:
        raise ApiError(
            400,
            f"Invalid request. Unit ID type {old['name']!r} is the idType of {users} "
            "entit(ies); change or delete those first.",
        )
    unit_id_types(call.project).remove(old["name"])
    return message_only("Unit ID Type deleted successfully.")


def register(router: Router) -> None:
    router.add("GET", TEAMS, list_teams)
    router.add("POST", TEAMS, create_team_handler)
    router.add("GET", f"{TEAMS}/{{id}}", read_team)
    router.add("PATCH", f"{TEAMS}/{{id}}", update_team)
    router.add("DELETE", f"{TEAMS}/{{id}}", delete_team)
    router.add("GET", UNIT_ID_TYPES, list_units)
    router.add("POST", UNIT_ID_TYPES, create_unit)
    router.add("GET", f"{UNIT_ID_TYPES}/{{id}}", read_unit)
    router.add("PATCH", f"{UNIT_ID_TYPES}/{{id}}", update_unit)
    router.add("DELETE", f"{UNIT_ID_TYPES}/{{id}}", delete_unit)
