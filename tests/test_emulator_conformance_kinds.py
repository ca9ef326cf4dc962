"""The smaller configuration kinds (teams and unit id type writes, environments, warehouse
sources, parameter stores, autotunes) answer what the OpenAPI spec documents.

Same method as ``test_emulator_conformance_entities``: every success answer validates against
the operation's response schema, errors against the documented or the generic error shape, and
the request bodies sent validate against the spec's request schemas (the bad ones fail them).
``test_emulator_conformance_entities.test_every_entity_route_has_a_success_case`` counts these
cases too.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from test_emulator_conformance_entities import Case, _fill, _fill_body, _send
from test_emulator_conformance_entities import conformance_world as entities_world

from bulkops.emulator import EmulatorConfig, World, running_emulator
from bulkops.emulator._config import OPTIONAL_KINDS
from bulkops.emulator._demo_kinds import add_source_kinds
from bulkops.emulator._ids import stable_id
from bulkops.emulator._validation import validate
from bulkops.emulator.resources import autotunes
from tests.support.openapi_spec import OpenApiSpec, SpecMismatch, spec_or_skip

V1 = "/console/v1"
X = f"{V1}/experiments"
AT = f"{V1}/autotunes"
USER = [{"statsigUnitID": "userID", "column": "user_id"}]
TEAM = {
    "name": "Data",
    "description": "d",
    "members": ["a@example.com"],
    "admins": ["b@example.com"],
    "defaultGateMetrics": [],
    "defaultExperimentPrimaryMetrics": [],
    "defaultExperimentSecondaryMetrics": [],
    "defaultHoldoutMetrics": [],
    "changeTeamConfigs": "anyone",
    "reviewApproval": "team_only",
    "defaultTargetApplications": [],
}
ENVS = {
    "environments": [
        {"name": "development", "isProduction": False, "requiresReview": False,
         "requiresReleasePipeline": False},
        {"name": "production", "isProduction": True, "requiresReview": True,
         "requiresReleasePipeline": True},
    ]
}  # fmt: skip
ASSIGNMENT = {
    "name": "new assignments",
    "sql": "SELECT 1",
    "timestampColumn": "ts",
    "experimentIDColumn": "e",
    "groupIDColumn": "g",
    "idTypeMapping": USER,
}
ASSIGNMENT_FULL = {k: v for k, v in ASSIGNMENT.items() if k != "name"}
PROPERTY = {"name": "new props", "sql": "SELECT 1", "idTypeMapping": USER}
QUALIFYING = {
    "name": "new event",
    "sql": "SELECT 1",
    "timestampColumn": "ts",
    "idTypeMapping": USER,
}
QUALIFYING_FULL = {k: v for k, v in QUALIFYING.items() if k != "name"}
AUTOTUNE = {
    "name": "new tune",
    "variants": [{"name": "a", "json": {}}, {"name": "b", "json": {"x": 1}}],
    "successEvent": "click",
    "explorationWindow": "24hr",
    "attributionWindow": "2hr",
    "winnerThreshold": "95%",
}
AUTOTUNE_FULL = {k: v for k, v in AUTOTUNE.items() if k != "name"}
PARAMS = {
    "description": "new",
    "parameters": [
        {"ref_type": "static", "name": "n", "param_type": "number", "value": 3},
        {"ref_type": "gate", "name": "g", "gate_name": "bench_0001_gate", "param_type": "string",
         "pass_value": "on", "fail_value": "off"},
    ],
}  # fmt: skip
PIPELINE = stable_id("release-pipeline", "source", "Staged rollout", 1)  # the demo's first
PHASES = [
    {"name": "Phase 1", "timeIntervalMs": 60000, "requiredReview": False,
     "rules": [{"name": "All", "conditions": [{"type": "public"}], "environments": None}]},
]  # fmt: skip
UNSERVED = EmulatorConfig(unserved_kinds=OPTIONAL_KINDS)
FORBIDDEN = EmulatorConfig(unserved_kinds=("alerts",), unserved_status=403)
c = Case
CASES = [
    # teams, unit id types
    c("team-create", "POST", f"{V1}/users/teams", 200, TEAM),
    c("team-create-400", "POST", f"{V1}/users/teams", 400, {"name": "x"}, body_valid=False),
    c("team-update", "PATCH", f"{V1}/users/teams/{{team}}", 200, {"description": "new"}),
    c("team-update-404", "PATCH", f"{V1}/users/teams/nope", 404, {"description": "new"}),
    c("team-delete", "DELETE", f"{V1}/users/teams/{{team}}", 200),
    c("unit-update", "PATCH", f"{V1}/unit_id_types/stableID", 200, {"description": "new"}),
    c("unit-update-404", "PATCH", f"{V1}/unit_id_types/nope", 404, {"description": "x"}),
    c("unit-delete", "DELETE", f"{V1}/unit_id_types/stableID", 200),
    c("unit-delete-400-in-use", "DELETE", f"{V1}/unit_id_types/userID", 400),
    # environments
    c("envs-read", "GET", f"{V1}/environments", 200),
    c("envs-401", "GET", f"{V1}/environments", 401, key=None),
    c("envs-update", "POST", f"{V1}/environments", 200, ENVS),
    c(
        "envs-update-400",
        "POST",
        f"{V1}/environments",
        400,
        {"environments": [{"name": "x"}]},
        body_valid=False,
    ),
    # warehouse sources
    c("assignments-list", "GET", f"{X}/assignment_sources?limit=1", 200),
    c("assignment-create", "POST", f"{X}/assignment_sources", 201, ASSIGNMENT),
    c(
        "assignment-create-400",
        "POST",
        f"{X}/assignment_sources",
        400,
        {"name": "x"},
        body_valid=False,
    ),
    c(
        "assignment-full",
        "POST",
        f"{X}/assignment_source/Assignments%20(web)",
        200,
        ASSIGNMENT_FULL,
    ),
    c("assignment-full-404", "POST", f"{X}/assignment_source/nope", 404, ASSIGNMENT_FULL),
    c(
        "assignment-patch",
        "PATCH",
        f"{X}/assignment_source/assignments%2Fmobile",
        200,
        {"description": "new", "isVerified": True},
    ),
    c("assignment-delete", "DELETE", f"{X}/assignment_source/assignments%2Fmobile", 200),
    c("properties-list", "GET", f"{X}/entity_properties", 200),
    c("property-create", "POST", f"{X}/entity_properties", 201, PROPERTY),
    c("property-read", "GET", f"{X}/entity_property/User%20properties", 200),
    c(
        "property-full",
        "POST",
        f"{X}/entity_property/User%20properties",
        200,
        {"sql": "SELECT 2", "idTypeMapping": USER},
    ),
    c("property-patch", "PATCH", f"{X}/entity_property/User%20properties", 200, {"tags": []}),
    c("property-delete", "DELETE", f"{X}/entity_property/Company%20tiers", 200),
    c("property-delete-404", "DELETE", f"{X}/entity_property/nope", 404),
    c("qualifying-list", "GET", f"{X}/qualifying_events", 200),
    c("qualifying-create", "POST", f"{X}/qualifying_events", 201, QUALIFYING),
    c(
        "qualifying-create-400",
        "POST",
        f"{X}/qualifying_events",
        400,
        {**QUALIFYING, "name": "Checkout visits"},
    ),
    c("qualifying-read", "GET", f"{X}/qualifying_events/Search%20%25%20sessions", 200),
    c("qualifying-full", "POST", f"{X}/qualifying_events/Checkout%20visits", 200, QUALIFYING_FULL),
    c("qualifying-delete", "DELETE", f"{X}/qualifying_events/Checkout%20visits", 200),
    # parameter stores
    c("stores-list", "GET", f"{V1}/param_stores", 200),
    c(
        "store-create",
        "POST",
        f"{V1}/param_stores",
        200,
        {"name": "new_store", "description": "d", "displayName": "New"},
    ),
    c(
        "store-create-400",
        "POST",
        f"{V1}/param_stores",
        400,
        {"name": "empty_store", "description": "d", "displayName": "E"},
    ),
    c("store-read", "GET", f"{V1}/param_stores/checkout_params", 200),
    c("store-read-404", "GET", f"{V1}/param_stores/nope", 404),
    c("store-update", "POST", f"{V1}/param_stores/empty_store", 200, PARAMS),
    # autotunes
    c("autotunes-list", "GET", f"{AT}?limit=1", 200),
    c("autotune-create", "POST", AT, 201, AUTOTUNE),
    c(
        "autotune-create-400",
        "POST",
        AT,
        400,
        {**AUTOTUNE, "winnerThreshold": "50%"},
        body_valid=False,
    ),
    c("autotune-read", "GET", f"{AT}/banner_copy", 200),
    c("autotune-read-404", "GET", f"{AT}/nope", 404),
    c("autotune-full", "POST", f"{AT}/banner_copy", 200, AUTOTUNE_FULL),
    c("autotune-patch", "PATCH", f"{AT}/banner_copy", 200, {"description": "new"}),
    c("autotune-delete", "DELETE", f"{AT}/onboarding_tips", 200),
    c("autotune-start", "PUT", f"{AT}/onboarding_tips/start", 200),
    c("autotune-start-400", "PUT", f"{AT}/banner_copy/start", 400),
    c("autotune-reset", "PUT", f"{AT}/banner_copy/reset", 200),
    c(
        "autotune-decision",
        "PUT",
        f"{AT}/banner_copy/make_decision",
        200,
        {"id": "short", "decisionReason": "won"},
    ),
    c(
        "autotune-decision-400",
        "PUT",
        f"{AT}/onboarding_tips/make_decision",
        400,
        {"id": "short", "decisionReason": "won"},
    ),
    # alerts, release pipelines, roles, prompts, settings (the optional kinds)
    c("alerts-list", "GET", f"{V1}/alerts?limit=1", 200),
    c("alerts-list-403", "GET", f"{V1}/alerts", 403, config=FORBIDDEN),
    c("alerts-list-404-unserved", "GET", f"{V1}/alerts", 404, config=UNSERVED),
    c("pipelines-list", "GET", f"{V1}/release_pipelines?limit=1", 200),
    c("pipeline-create", "POST", f"{V1}/release_pipelines", 200, {"name": "new", "phases": PHASES}),
    c("pipeline-create-400", "POST", f"{V1}/release_pipelines", 400, {"phases": PHASES},
      body_valid=False),
    c("pipeline-read", "GET", f"{V1}/release_pipelines/{PIPELINE}", 200),
    c("pipeline-read-404", "GET", f"{V1}/release_pipelines/nope", 404),
    c("pipeline-update", "POST", f"{V1}/release_pipelines/{PIPELINE}", 200, {"phases": PHASES}),
    c("pipeline-delete", "DELETE", f"{V1}/release_pipelines/{PIPELINE}", 200),
    c("roles-list", "GET", f"{V1}/roles?limit=1", 200),
    c(
        "role-create",
        "POST",
        f"{V1}/roles",
        201,
        {"name": "Auditor", "permissions": {"use_metrics_explorer": True}},
    ),
    c("role-create-400", "POST", f"{V1}/roles", 400, {"name": "x"}, body_valid=False),
    c("role-create-400-taken", "POST", f"{V1}/roles", 400, {"name": "Admin", "permissions": {}}),
    c("role-read", "GET", f"{V1}/roles/Release%20Manager", 200),
    c("role-read-404-case", "GET", f"{V1}/roles/release%20manager", 404),
    c(
        "role-update",
        "PATCH",
        f"{V1}/roles/Release%20Manager",
        200,
        {"permissions": {"create_configs": True}},
    ),
    c("role-delete", "DELETE", f"{V1}/roles/Release%20Manager", 200),
    c("role-delete-400-default", "DELETE", f"{V1}/roles/Analyst", 400),
    c("prompts-list", "GET", f"{V1}/prompts?limit=1", 200),
    c("prompts-list-404-unserved", "GET", f"{V1}/prompts", 404, config=UNSERVED),
    c("prompt-create", "POST", f"{V1}/prompts", 200, {"name": "new prompt", "targetApps": "{app}"}),
    c("prompt-create-400", "POST", f"{V1}/prompts", 400, {"name": "ab"}, body_valid=False),
    c("prompt-read", "GET", f"{V1}/prompts/support_reply", 200),
    c("prompt-read-404", "GET", f"{V1}/prompts/nope", 404),
    c("prompt-update", "PATCH", f"{V1}/prompts/support_reply", 200, {"description": "new"}),
    *(
        c(f"settings-{doc}-read", "GET", f"{V1}/settings/{doc}", 200)
        for doc in ("project", "reviews", "roles", "teams")
    ),
    c("settings-project-update", "POST", f"{V1}/settings/project", 200,
      {"name": "Prod", "visibility": "OPEN"}),
    c("settings-project-update-400", "POST", f"{V1}/settings/project", 400, {"name": "Prod"},
      body_valid=False),
    c("settings-reviews-update", "POST", f"{V1}/settings/reviews", 200,
      {"is_config_review_required": False, "is_metric_review_required": True,
       "is_metric_review_required_on_verified_only": True}),
    c("settings-roles-update", "POST", f"{V1}/settings/roles", 200,
      {"default_project_role": "Read Only"}),
    c("settings-roles-update-400", "POST", f"{V1}/settings/roles", 400,
      {"default_project_role": "Nobody"}),
    c("settings-teams-update", "POST", f"{V1}/settings/teams", 200,
      {"require_teams_on_configs": True}),
    c("settings-404-unserved", "GET", f"{V1}/settings/teams", 404, config=UNSERVED),
]  # fmt: skip


def conformance_world() -> World:
    """The entity conformance world plus the demo's environments, sources, stores and autotunes."""
    world = entities_world()
    project = world.project("source")
    ticks = iter(range(1_750_000_000_000, 1_750_000_100_000, 1000))
    add_source_kinds(project, lambda: next(ticks))
    return world


def test_the_demo_autotune_bodies_pass_the_create_schema() -> None:
    """The autotune create body the cases send is accepted by the emulator's own schema."""
    assert validate(autotunes.CREATE_SCHEMA, AUTOTUNE)["name"] == "new tune"


@pytest.fixture
def spec() -> OpenApiSpec:
    return spec_or_skip()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_response_matches_spec(spec: OpenApiSpec, case: Case) -> None:
    """The answer has the documented status and validates against the spec."""
    world = conformance_world()
    path, body = _fill(case.path, world), _fill_body(case.body, world)
    async with running_emulator(world, case.config) as base_url:
        status, raw = await _send(base_url, case.method, path, body, case.key)
    assert status == case.status, raw[:500]
    success = 200 <= status < 300
    spec.validate_response(
        case.method, path, status, orjson.loads(raw), allow_undocumented=not success
    )


@pytest.mark.parametrize("case", [c for c in CASES if c.body is not None], ids=lambda c: c.id)
def test_request_bodies_sent_match_the_spec(spec: OpenApiSpec, case: Case) -> None:
    """Valid bodies conform; the deliberately bad ones are rejected by the spec too."""
    body: Any = _fill_body(case.body, conformance_world())
    if case.body_valid:
        spec.validate_request_body(case.method, case.path, body)
    else:
        with pytest.raises(SpecMismatch):
            spec.validate_request_body(case.method, case.path, body)


_LISTS = (
    "experiments/assignment_sources",
    "experiments/entity_properties",
    "experiments/qualifying_events",
    "param_stores",
    "autotunes",
    "alerts",
    "release_pipelines",
    "roles",
    "prompts",
)


async def test_every_new_kind_in_the_demo_world_matches_the_spec(spec: OpenApiSpec) -> None:
    """Every page of the new lists, and the environments, of both demo projects validate."""
    from bulkops.emulator import build_demo_world

    checked = 0
    async with running_emulator(build_demo_world()) as base_url:
        for key in ("console-demo-source-key", "console-demo-target-key"):
            path = f"{V1}/environments"
            status, raw = await _send(base_url, "GET", path, None, key)
            assert status == 200
            spec.validate_response("GET", path, 200, orjson.loads(raw))
            for kind in _LISTS:
                link: str | None = f"{V1}/{kind}?limit=1"
                while link:
                    status, raw = await _send(base_url, "GET", link, None, key)
                    body = orjson.loads(raw)
                    assert status == 200
                    spec.validate_response("GET", link, 200, body)
                    checked += 1
                    link = body["pagination"]["nextPage"]
    assert checked >= 15
