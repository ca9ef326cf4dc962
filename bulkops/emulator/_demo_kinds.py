"""Demo data for the smaller configuration kinds: environments, warehouse-native experiment
sources (assignment sources, entity property sources, qualifying events), parameter stores and
autotunes; and, through ``_demo_optional``, the newer optional kinds.

Small and deterministic (times come from the caller's ``tick``): ``source`` gets a few of each,
one parameter store referencing a demo gate and the demo layer, one autotune running; ``target``
gets its environments only. Built with the create endpoints' own builders and schemas.
"""

from __future__ import annotations

from typing import Any

from ._demo_kit import Tick
from ._demo_optional import add_optional_kinds
from ._store import Project
from ._validation import validate
from .resources import autotunes, environments, param_stores, warehouse_sources
from .resources._entities import touch
from .resources.directory import team_by_name
from .resources.warehouse_sources import ASSIGNMENT_SOURCES, ENTITY_PROPERTIES, QUALIFYING_EVENTS

__all__ = ["add_environments", "add_source_kinds"]

_ENVIRONMENTS = (("development", False), ("staging", False), ("production", True))
_USER = [{"statsigUnitID": "userID", "column": "user_id"}]


def add_environments(project: Project) -> None:
    """Development, staging and production; production requires review."""
    items = [
        {
            "name": name,
            "isProduction": prod,
            "requiresReview": prod,
            "requiresReleasePipeline": False,
        }
        for name, prod in _ENVIRONMENTS
    ]
    environments.set_environments(
        project, validate(environments.UPDATE_SCHEMA, {"environments": items})["environments"]
    )


def _sources(project: Project) -> None:
    for name in ("Assignments (web)", "assignments/mobile"):
        body: dict[str, Any] = {
            "name": name,
            "description": f"Demo assignment source {name}",
            "sql": "SELECT user_id, experiment_id, group_id, ts FROM analytics.assignments",
            "timestampColumn": "ts",
            "experimentIDColumn": "experiment_id",
            "groupIDColumn": "group_id",
            "idTypeMapping": _USER,
        }
        fields = validate(ASSIGNMENT_SOURCES.create_schema, body)
        warehouse_sources.create_named_source(project, ASSIGNMENT_SOURCES, fields)
    for name, day in (("User properties", True), ("Company tiers", False)):
        body = {
            "name": name,
            "description": f"Demo entity properties {name}",
            "sql": "SELECT user_id, country, tier FROM analytics.users",
            "timestampColumn": "ds",
            "timestampAsDay": day,
            "idTypeMapping": _USER,
        }
        fields = validate(ENTITY_PROPERTIES.create_schema, body)
        warehouse_sources.create_named_source(project, ENTITY_PROPERTIES, fields)
    for name in ("Checkout visits", "Search % sessions"):
        body = {
            "name": name,
            "description": f"Demo qualifying event {name}",
            "sql": "SELECT user_id, ts FROM analytics.events WHERE event = 'visit'",
            "timestampColumn": "ts",
            "idTypeMapping": _USER,
        }
        fields = validate(QUALIFYING_EVENTS.create_schema, body)
        warehouse_sources.create_named_source(project, QUALIFYING_EVENTS, fields)


def _param_stores(project: Project, tick: Tick) -> None:
    body = {"name": "checkout_params", "displayName": "Checkout", "description": "Checkout knobs"}
    if team_by_name(project, "Payments") is not None:
        body["team"] = "Payments"
    store = param_stores.create_param_store(
        project, validate(param_stores.CREATE_SCHEMA, body), tick()
    )
    parameters = [
        {"ref_type": "static", "name": "max_items", "param_type": "number", "value": 20},
        {
            "ref_type": "gate",
            "name": "new_flow",
            "gate_name": "checkout_new_flow_1",
            "param_type": "boolean",
            "pass_value": True,
            "fail_value": False,
        },
        {
            "ref_type": "layer",
            "name": "button",
            "param_type": "string",
            "layer_name": "checkout_layer",
            "param_name": "button_color",
        },
    ]
    update = validate(param_stores.UPDATE_SCHEMA, {"parameters": parameters})
    param_stores.param_stores(project).replace(store["name"], {**store, **update})
    body = {"name": "empty_store", "displayName": "Empty", "description": "No parameters yet"}
    param_stores.create_param_store(project, validate(param_stores.CREATE_SCHEMA, body), tick())


def _autotunes(project: Project, tick: Tick) -> None:
    for name, started in (("Banner copy", True), ("Onboarding tips", False)):
        body = {
            "name": name,
            "description": f"Demo autotune {name}",
            "variants": [
                {"name": "Short", "json": {"text": "Go"}},
                {"name": "Long", "json": {"text": "Get started now"}},
            ],
            "successEvent": "click",
            "explorationWindow": "24hr",
            "attributionWindow": "2hr",
            "winnerThreshold": "95%",
        }
        made = autotunes.create_autotune(project, validate(autotunes.CREATE_SCHEMA, body), tick())
        if started:
            stored = touch(project, {**made, "isStarted": True}, tick())
            autotunes.AUTOTUNES.coll(project).replace(made["id"], stored)


def add_source_kinds(project: Project, tick: Tick) -> None:
    """Everything this module seeds, for the ``source`` demo project."""
    add_environments(project)
    _sources(project)
    _param_stores(project, tick)
    _autotunes(project, tick)
    add_optional_kinds(project, tick)
