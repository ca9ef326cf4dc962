"""Deterministic config entities for the demo world (gates and segments: :mod:`._demo_gates`;
the ``populate_experiments`` benchmark knob: :mod:`._demo_bench`).

``source`` is a rich clone source and a batch-edit playground: unit id types (one custom),
tags (one named "★ Core"), teams, target apps, rule-based and id-list segments, ~300 gates in
three families (``checkout_*``, ``search_*``, ``growth_*``) whose rules mix "Internal" email
rules, user-id lists, segment and gate conditions (gate chains up to three deep) at varied pass
percentages, dynamic configs with return values, an explicit layer with parameters, a dozen
experiments in setup / active / decision_made (some in the layer, some with implicit layers, with
targeting gates, metrics, metric tags, tags, target apps and overrides) and a holdout holding
some of them. ``target`` already has part of it, with its own ids: two of the tags, one team,
only ``userID``/``stableID``, and one of the gates with a different rule. Environments,
warehouse sources, parameter stores and autotunes come from :mod:`._demo_kinds`.

Every entity is made by the same builders the create endpoints use, from bodies validated by
the same schemas, so demo data has exactly the shape of API-created data.
"""

from __future__ import annotations

import random
from typing import Any

from ._demo_gates import FAMILIES, add_gates, add_segments
from ._demo_kinds import add_environments, add_source_kinds
from ._demo_kit import PCTS, Tick, metric_ref, rng, rule, seed_directory
from ._store import Project
from ._validation import validate
from .resources import dynamic_configs, experiments, layers
from .resources._common import metrics as metrics_of
from .resources._entities import EXPERIMENTS, LAYERS, touch
from .resources._id_overrides import EMPTY_OVERRIDES, apply_overrides
from .resources.gates import CREATE_SCHEMA as GATE_SCHEMA
from .resources.gates import create_gate
from .resources.holdouts import create_holdout, set_members
from .resources.target_apps import app_ids

__all__ = ["add_source_entities", "add_target_entities"]

TAGS = ("★ Core", "growth", "finance", "non_production", "mobile", "web", "north star",
        "checkout", "search")  # fmt: skip
_SHARED_GATE = "checkout_new_flow_1"  # exists in both demo projects, with different rules


def _dynamic_configs(project: Project, rng: random.Random, tick: Tick, gate_ids: list[str]) -> None:
    for i, family in enumerate(FAMILIES * 6, start=1):
        name = f"{family}_config_{i}"
        rules = [
            rule(
                "Internal",
                100,
                {"type": "email", "operator": "str_contains_any", "targetValue": ["@example.com"]},
                returnValue={"enabled": True, "variant": "internal"},
            ),
            rule(
                "Gated",
                rng.choice(PCTS),
                {"type": "passes_gate", "targetValue": rng.choice(gate_ids)},
                returnValue={"enabled": True, "limit": rng.randint(1, 50)},
            ),
        ]
        if rng.random() < 0.5:
            rules.append(
                rule(
                    "EU",
                    50,
                    {"type": "passes_segment", "targetValue": "eu_users"},
                    returnValue={"enabled": False},
                )
            )
        body = {
            "name": name,
            "description": f"Demo config {name}",
            "rules": rules,
            "defaultValue": {"enabled": False, "limit": 10},
            "tags": [family],
            "targetApps": app_ids(project, ["Web"] if rng.random() < 0.5 else []),
        }
        dynamic_configs.create_dynamic_config(
            project, validate(dynamic_configs.CREATE_SCHEMA, body), tick()
        )


_LAYER_PARAMS = [
    {"name": "button_color", "type": "string", "defaultValue": "blue"},
    {"name": "discount_pct", "type": "number", "defaultValue": 0},
    {"name": "show_banner", "type": "boolean", "defaultValue": False},
    {"name": "layout", "type": "object", "defaultValue": {"columns": 2}},
]


def _layer(project: Project, tick: Tick) -> None:
    layer = layers.create_layer(
        project,
        {
            "name": "checkout layer",
            "idType": "userID",
            "description": "Checkout page experiments",
            "team": "Payments",
        },
        tick(),
    )
    new = {**layer, "parameters": _LAYER_PARAMS}
    LAYERS.coll(project).replace(layer["id"], touch(project, new, tick()))


def _experiment_body(
    rng: random.Random, i: int, gate_ids: list[str], metric_ids: list[str]
) -> dict[str, Any]:
    in_layer = i % 3 == 0
    values = (
        {"button_color": "green", "discount_pct": 10}
        if in_layer
        else {"hero_text": "Buy now", "max_items": rng.randint(3, 9)}
    )
    control = (
        {"button_color": "blue", "discount_pct": 0}
        if in_layer
        else {"hero_text": "Welcome", "max_items": 5}
    )
    picks = rng.sample(metric_ids, 3)
    body: dict[str, Any] = {
        "name": f"{FAMILIES[i % 3]} experiment {i}",
        "hypothesis": f"Variant {i} helps",
        "description": f"Demo experiment {i}",
        "idType": "userID",
        "targetingGateID": rng.choice(gate_ids),
        "tags": ["★ Core"] if i % 2 else ["growth"],
        "primaryMetrics": [metric_ref(picks[0]), metric_ref(picks[1])],
        "secondaryMetrics": [metric_ref(picks[2])],
        "primaryMetricTags": ["north star"],
        "secondaryMetricTags": ["growth"] if i % 4 == 0 else [],
        "targetApps": ["iOS App", "Android"] if i % 2 else ["Web"],  # names: ids below
        "team": "Growth" if i % 2 else "Payments",
        "allocation": rng.choice((50, 100)),
        "groups": [
            {"name": "Control", "size": 50, "parameterValues": control},
            {"name": "Test", "size": 50, "parameterValues": values},
        ],
    }
    if in_layer:
        body["layerID"] = "checkout_layer"
    return body


def _advance(project: Project, exp_id: str, status: str, now: int) -> None:
    """Move a demo experiment along its lifecycle as the PUT endpoints would."""
    exp = EXPERIMENTS.coll(project).get(exp_id)
    assert exp is not None
    new = {**exp, "status": "active", "startTime": now}
    if status == "decision_made":
        new.update(
            status=status,
            launchedGroupID=exp["groups"][1]["id"],
            decisionReason="Test won",
            decisionTime=now + 1,
            endTime=now + 1,
        )
    EXPERIMENTS.coll(project).replace(exp_id, touch(project, new, now))


def _experiments(
    project: Project, rng: random.Random, tick: Tick, gate_ids: list[str]
) -> list[str]:
    events = [m["id"] for m in metrics_of(project).values() if m["type"] != "user_warehouse"]
    whn = [m["id"] for m in metrics_of(project).values() if m["type"] == "user_warehouse"][:20]
    made = []
    for i in range(1, 13):
        body = _experiment_body(rng, i, gate_ids, events + whn)
        body["targetApps"] = app_ids(project, body["targetApps"])
        exp = experiments.create_experiment(
            project, validate(experiments.CREATE_SCHEMA, body), tick()
        )
        status = ("setup", "active", "active", "decision_made")[i % 4]
        if status != "setup":
            _advance(project, exp["id"], status, tick())
        made.append(exp["id"])
    _experiment_overrides(project, made[::2], gate_ids)
    return made


def _experiment_overrides(project: Project, exp_ids: list[str], gate_ids: list[str]) -> None:
    coll = project.collection("experiments_overrides")
    for n, exp_id in enumerate(exp_ids):
        coll.add(
            exp_id,
            {
                "overrides": [
                    {
                        "type": "gate",
                        "id": gate_ids[n],
                        "name": gate_ids[n],
                        "groupID": "Test",
                        "environment": None,
                    },
                    {
                        "type": "segment",
                        "id": "internal_employees",
                        "name": "internal_employees",
                        "groupID": "Control",
                        "environment": "staging",
                    },
                ],
                "userIDOverrides": [
                    {
                        "groupID": "Test",
                        "ids": [f"user_{n}", "owner_1"],
                        "environment": None,
                        "unitType": "userID",
                    }
                ],
            },
        )


def add_source_entities(project: Project, seed: str, tick: Tick) -> None:
    """The rich clone source described in the module docstring (after metrics exist)."""
    random_ = rng(seed, project.name, "entities")
    seed_directory(
        project,
        units=("userID", "stableID", "companyID"),
        tags=TAGS,
        teams=("Growth", "Payments"),
        apps=("iOS App", "Android", "Web"),
    )
    add_segments(project, tick)
    gate_ids = add_gates(project, random_, tick, per_family=100)
    _dynamic_configs(project, random_, tick, gate_ids)
    _layer(project, tick)
    exp_ids = _experiments(project, random_, tick, gate_ids)
    holdout = create_holdout(
        project, {"name": "Q1 holdout", "description": "Quarterly holdout"}, tick()
    )
    new = {**holdout, "passPercentage": 5, "experimentIDs": exp_ids[:3], "gateIDs": gate_ids[:2]}
    stored = touch(project, new, tick())
    project.collection("holdouts").replace(holdout["id"], stored)
    set_members(project, holdout, stored, tick())
    _holdout_overrides(project, holdout["id"])
    add_source_kinds(project, tick)


def _holdout_overrides(project: Project, holdout_id: str) -> None:
    """QA accounts kept out of the holdout, one forced into it: what an export must carry."""
    body = {"passingUserIDs": ["holdout_member_1"], "failingUserIDs": ["qa_1", "owner_1"]}
    project.collection("holdouts_overrides").add(
        holdout_id, apply_overrides(dict(EMPTY_OVERRIDES), body, "replace")
    )


def add_target_entities(project: Project, seed: str, tick: Tick) -> None:
    """Part of the source's entities, with this project's own ids and one differing gate."""
    seed_directory(
        project, units=("userID", "stableID"), tags=("★ Core", "growth"), teams=("Growth",), apps=()
    )
    body = {
        "name": _SHARED_GATE,
        "description": "Target's own version",
        "rules": [
            rule("Target only", 10, {"type": "country", "operator": "any", "targetValue": ["US"]})
        ],
    }
    create_gate(project, validate(GATE_SCHEMA, body), tick())
    add_environments(project)
