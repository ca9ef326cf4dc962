"""Project directories entities point into: teams (``/users/teams``) and unit id types.

Teams: ``team`` (name) and ``teamID`` on entities must name a team that exists. A team's id is
per project (derived from project and name), so the same team name has different ids in two
projects; clients should map teams by name (reference §10).

Unit id types (``/unit_id_types``): the name is the id. Every entity's ``idType`` must be one of
them. Creating one answers 201 per the spec.
"""

from __future__ import annotations

from typing import Any

from .._context import Call, Reply
from .._envelopes import paged, single
from .._errors import name_in_use
from .._ids import stable_id
from .._routing import Router
from .._store import Collection, Entity, Project
from .._validation import Obj, Str, validate
from ._common import first_named, get_or_404, indexed_by_name

__all__ = [
    "create_team",
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


def create_unit_id_type(project: Project, fields: dict[str, Any]) -> Entity:
    coll = unit_id_types(project)
    if fields["name"] in coll:
        raise name_in_use()
    unit = {"name": fields["name"], "description": fields.get("description", "")}
    coll.add(unit["name"], unit)
    return unit


async def list_teams(call: Call) -> Reply:
    return paged(call, "Teams listed successfully.", teams(call.project).values())


async def read_team(call: Call) -> Reply:
    found = get_or_404(teams(call.project), call.params["id"])
    return single("Team read successfully.", found)


async def list_units(call: Call) -> Reply:
    return paged(call, "Unit ID Types listed successfully.", unit_id_types(call.project).values())


async def create_unit(call: Call) -> Reply:
    fields = validate(UNIT_ID_TYPE_SCHEMA, call.json_body())
    unit = create_unit_id_type(call.project, fields)
    return single("Unit ID Type created successfully.", unit, call.config.create_code(201))


async def read_unit(call: Call) -> Reply:
    found = get_or_404(unit_id_types(call.project), call.params["id"])
    return single("Unit ID Type read successfully.", found)


def register(router: Router) -> None:
    router.add("GET", TEAMS, list_teams)
    router.add("GET", f"{TEAMS}/{{id}}", read_team)
    router.add("GET", UNIT_ID_TYPES, list_units)
    router.add("POST", UNIT_ID_TYPES, create_unit)
    router.add("GET", f"{UNIT_ID_TYPES}/{{id}}", read_unit)
