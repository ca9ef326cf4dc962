"""Reference checks: every name or id an entity body points at must exist in *this* project.

The real API's behaviour for dangling references is undocumented (reference §10 lists only the
target-app 404). The emulator rejects them with the validation 400 (``Bad Request Exception``,
one ``{property, errorMessage}`` per bad reference, all reported at once), because a clone that
runs in the wrong dependency order, or forgets to map an id between projects, should fail loudly
on the sandbox rather than create an entity that silently points nowhere. Messages name the
project and the endpoint that creates what is missing.

Checked: ``tags``/``primaryMetricTags``/``secondaryMetricTags`` (tag names), ``team`` (team
name), ``teamID``, ``idType``/``secondaryIDType`` (unit id types), ``targetApps`` (target-app
ids), ``primaryMetrics``/``secondaryMetrics``/``otherMetrics`` (``{name, type}`` → metric
``name::type``), ``targetingGateID`` (gate id; ``""`` and null mean none), ``assignmentSourceName``
(a warehouse-native experiment's assignment source), ``idTypeMapping[].statsigUnitID`` (the unit
id types a warehouse source maps). ``monitoringMetrics``
are not checked: the spec's own example names a metric ``{"name":"dau","type":"user"}`` that is no
metric type.
"""

from __future__ import annotations

from typing import Any

from .._errors import validation_failed
from .._store import Project
from ._common import metrics
from ._entities import GATES
from .directory import team_by_name, teams, unit_id_types
from .tags import tag_by_name
from .target_apps import target_apps

__all__ = ["Errors", "check_references", "reference_errors", "resolve_team"]

Errors = list[dict[str, str]]

_TAG_KEYS = ("tags", "primaryMetricTags", "secondaryMetricTags")
_METRIC_KEYS = ("primaryMetrics", "secondaryMetrics", "otherMetrics")
_UNIT_KEYS = ("idType", "secondaryIDType")


def _err(errors: Errors, prop: str, message: str) -> None:
    errors.append({"property": prop, "errorMessage": message})


def _tag_errors(project: Project, fields: dict[str, Any], errors: Errors) -> None:
    for key in _TAG_KEYS:
        for i, name in enumerate(fields.get(key) or []):
            if tag_by_name(project, name) is None:
                _err(
                    errors,
                    f"{key}.{i}",
                    f"Tag {name!r} does not exist in project "
                    f"{project.name!r}; create it first with POST /console/v1/tags",
                )


def _metric_errors(project: Project, fields: dict[str, Any], errors: Errors) -> None:
    known = metrics(project)
    for key in _METRIC_KEYS:
        for i, ref in enumerate(fields.get(key) or []):
            if f"{ref['name']}::{ref['type']}" not in known:
                _err(
                    errors,
                    f"{key}.{i}",
                    f"Metric {ref['name']!r} of type {ref['type']!r} "
                    f"does not exist in project {project.name!r}; create it first with "
                    "POST /console/v1/metrics",
                )


def _directory_errors(project: Project, fields: dict[str, Any], errors: Errors) -> None:
    team = fields.get("team")
    if team and team_by_name(project, team) is None:
        _err(
            errors,
            "team",
            f"Team {team!r} does not exist in project {project.name!r} "
            "(see GET /console/v1/users/teams); teams are matched by name",
        )
    team_id = fields.get("teamID")
    if team_id and team_id not in teams(project):
        _err(
            errors,
            "teamID",
            f"Team id {team_id!r} does not exist in project "
            f"{project.name!r}; team ids differ between projects, send the team name",
        )
    for key in _UNIT_KEYS:
        unit = fields.get(key)
        if unit and unit not in unit_id_types(project):
            _err(
                errors,
                key,
                f"Unit id type {unit!r} does not exist in project "
                f"{project.name!r}; create it first with POST /console/v1/unit_id_types",
            )
    apps = fields.get("targetApps")
    for i, app in enumerate([apps] if isinstance(apps, str) else apps or []):
        if app not in target_apps(project):
            _err(
                errors,
                f"targetApps.{i}",
                f"Target app {app!r} does not exist in project "
                f"{project.name!r}; create it first with POST /console/v1/target_app",
            )


def reference_errors(project: Project, fields: dict[str, Any]) -> Errors:
    """Every dangling reference in validated ``fields`` (empty when all resolve)."""
    errors: Errors = []
    _tag_errors(project, fields, errors)
    _metric_errors(project, fields, errors)
    _directory_errors(project, fields, errors)
    gate = fields.get("targetingGateID")
    if gate and gate not in GATES.coll(project):
        _err(
            errors,
            "targetingGateID",
            f"Gate {gate!r} does not exist in project "
            f"{project.name!r}; create the targeting gate first",
        )
    source = fields.get("assignmentSourceName")
    if source and source not in project.collection("assignment_sources"):
        _err(
            errors,
            "assignmentSourceName",
            f"Assignment source {source!r} does not exist in project {project.name!r}; create "
            "it first with POST /console/v1/experiments/assignment_sources",
        )
    for i, mapping in enumerate(fields.get("idTypeMapping") or []):
        unit = mapping.get("statsigUnitID")
        if unit and unit not in unit_id_types(project):
            _err(
                errors,
                f"idTypeMapping.{i}.statsigUnitID",
                f"Unit id type {unit!r} does not exist in project "
                f"{project.name!r}; create it first with POST /console/v1/unit_id_types",
            )
    return errors


def check_references(project: Project, fields: dict[str, Any], extra: Errors | None = None) -> None:
    """Raise the validation 400 if any reference in ``fields`` (or ``extra``) is dangling."""
    errors = [*reference_errors(project, fields), *(extra or [])]
    if errors:
        raise validation_failed(errors)


def resolve_team(project: Project, fields: dict[str, Any]) -> dict[str, Any]:
    """``{team, teamID}`` filled from whichever of the two the body gave (both if given)."""
    out: dict[str, Any] = {}
    if "team" in fields or "teamID" in fields:
        team = fields.get("team")
        team_id = fields.get("teamID")
        if team and not team_id:
            found = team_by_name(project, team)
            team_id = found["id"] if found else None
        elif team_id and not team:
            found = teams(project).get(team_id)
            team = found["name"] if found else None
        out = {"team": team or None, "teamID": team_id or None}
    return out
