"""Demo data for the newer, optional kinds: topline alerts, release pipelines, custom roles,
prompts and the four settings documents.

Small and deterministic (times come from the caller's ``tick``), built with the create
endpoints' own builders and schemas, for the ``source`` demo project: two or three of each, a
role name with a space and a prompt name with a dot, every settings document written.
"""

from __future__ import annotations

from typing import Any

from ._demo_kit import Tick
from ._store import Project
from ._validation import validate
from .resources import alerts, prompts, release_pipelines, roles, settings

__all__ = ["add_optional_kinds"]


def _alerts(project: Project) -> None:
    for name, priority, threshold in (("Checkout errors", "P0", 50.0), ("DAU drop", "P2", -10.0)):
        alerts.add_alert(
            project,
            {
                "name": name,
                "alertType": "threshold" if threshold > 0 else "pct_change",
                "metrics": {"event_count": {"eventName": name.lower().replace(" ", "_")}},
                "metricGroupBys": {},
                "message": f"{name} crossed its threshold",
                "priority": priority,
                "alertThreshold": threshold,
                "warningThreshold": threshold / 2,
                "windowMs": 3_600_000,
                "condition": "greater" if threshold > 0 else "less",
                "renotificationConditions": ["raise"],
                "renotificationWindowMs": 86_400_000,
                "team": None,
                "tags": ["ops"] if priority == "P0" else [],
            },
        )


def _pipelines(project: Project, tick: Tick) -> None:
    rule: dict[str, Any] = {
        "name": "Employees",
        "conditions": [{"type": "email", "operator": "str_contains_any", "targetValue": ["@"]}],
        "environments": None,
    }
    for name, phases in (("Staged rollout", 3), ("Straight to prod", 1)):
        body = {
            "name": name,
            "phases": [
                {
                    "name": f"Phase {n}",
                    "timeIntervalMs": 3_600_000 * n,
                    "requiredReview": n == phases,
                    "rules": [rule],
                }
                for n in range(1, phases + 1)
            ],
        }
        release_pipelines.create_pipeline(
            project, validate(release_pipelines.CREATE_SCHEMA, body), tick()
        )


def _roles(project: Project) -> None:
    for name, granted in (
        ("Release Manager", ("launch_to_production", "create_release_pipelines")),
        ("Analyst", ("use_metrics_explorer", "local_metrics")),
    ):
        body = {"name": name, "permissions": {p: True for p in granted}}
        roles.create_role(project, validate(roles.CREATE_SCHEMA, body))


def _prompts(project: Project, tick: Tick) -> None:
    for name, description in (("support_reply", "Drafts support replies"), ("Summary v2.1", "")):
        body = {"name": name, "description": description}
        prompts.create_prompt(project, validate(prompts.CREATE_SCHEMA, body), tick())


def _settings(project: Project) -> None:
    documents = {
        "project": {"name": project.name, "visibility": "CLOSED", "default_unit_type": "userID"},
        "reviews": {
            "is_config_review_required": True,
            "is_metric_review_required": False,
            "is_metric_review_required_on_verified_only": False,
        },
        "roles": {"default_project_role": "Analyst"},
        "teams": {"require_teams_on_configs": False},
    }
    for document, body in documents.items():
        settings.set_settings(project, document, validate(settings.SCHEMAS[document], body))


def add_optional_kinds(project: Project, tick: Tick) -> None:
    """Everything this module seeds."""
    _alerts(project)
    _pipelines(project, tick)
    _roles(project)
    _prompts(project, tick)
    _settings(project)
