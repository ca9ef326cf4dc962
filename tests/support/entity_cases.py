"""The config-entity conformance cases: one request per documented status of each operation.

Kept apart from test_emulator_conformance_entities.py, which runs them, so the table of cases can
grow without the tests around it growing too. ``path`` and ``body`` may hold placeholders
(``{gate_rule}``, ``{config_rule}``, ``{tag}``, ``{team}``, ``{app}``: the id of the app named
"iOS App", each project's own) that the test fills from the world.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from bulkops.emulator import EmulatorConfig
from tests.support.worlds import SOURCE_KEY, SOURCE_RO_KEY

V1 = "/console/v1"
RULE = {
    "name": "r",
    "passPercentage": 25,
    "conditions": [{"type": "country", "operator": "any", "targetValue": ["US"]}],
}
GATE_BODY = {
    "name": "conf gate",
    "description": "d",
    "idType": "userID",
    "tags": ["growth"],
    "rules": [RULE],
    "reviewSettings": {"requiredReview": False},
}
FULL_GATE = {"isEnabled": True, "description": "full", "rules": [RULE]}
CONFIG_BODY = {
    "name": "new config",
    "description": "d",
    "defaultValue": {"a": 1},
    "rules": [{**RULE, "returnValue": {"a": 2}}],
}
FULL_CONFIG = {"isEnabled": True, "description": "full", "rules": [{**RULE, "returnValue": {}}]}
EXP_FULL = {
    "idType": "userID",
    "description": "d",
    "hypothesis": "h",
    "allocation": 100,
    "targetingGateID": "",
    "bonferroniCorrection": False,
    "defaultConfidenceInterval": "95",
    "status": "setup",
    "groups": [
        {"name": "Control", "size": 50, "parameterValues": {}},
        {"name": "Test", "size": 50, "parameterValues": {}},
    ],
}
OVERRIDES = {"passingUserIDs": ["a"], "failingUserIDs": ["b"]}
ENV_OVERRIDES = {
    "environmentOverrides": [
        {"environment": "staging", "unitID": "userID", "passingIDs": ["c"], "failingIDs": []}
    ]
}
EXP_OVERRIDES = {
    "overrides": [{"type": "gate", "id": "bench_0002_gate", "groupID": "Test"}],
    "userIDOverrides": [{"groupID": "Control", "ids": ["u1"]}],
}
LAYER_OVERRIDES = {
    "conditionalOverrides": [
        {
            "type": "gate",
            "name": "bench_0001_gate",
            "experimentName": "conf_in_layer",
            "groupName": "Test",
        }
    ],
    "idOverrides": [{"groupName": "Control", "ids": ["u1"]}],
}
HOLDOUT_FULL = {
    "isEnabled": True,
    "description": "d",
    "passPercentage": 5,
    "gateIDs": [],
    "experimentIDs": ["bench_0001_exp"],
    "layerIDs": [],
    "isGlobal": False,
    "targetingGateID": None,
}
PARAMS = [{"name": "color", "type": "string", "defaultValue": "blue"}]


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str  # may hold {gate_rule}, {config_rule}, {tag}, {team}, {app}: filled from the world
    status: int
    body: Any = None
    key: str | None = SOURCE_KEY
    body_valid: bool = True  # does the request body conform to the spec?
    body_in_spec: bool = True  # False: the spec declares no body (DELETE bodies)
    old_spec: bool = False  # validate against the 2025-03-12 spec
    config: EmulatorConfig = field(default_factory=EmulatorConfig)


def c(*args: Any, **kw: Any) -> Case:
    return Case(*args, **kw)


ID_OVERRIDES = EmulatorConfig(override_key="id")
G, D, E, L, H, S = (
    f"{V1}/{x}"
    for x in ("gates", "dynamic_configs", "experiments", "layers", "holdouts", "segments")
)
CASES = [
    # tags, target apps, teams, unit id types
    c("tags-list", "GET", f"{V1}/tags", 200),
    c("tags-401", "GET", f"{V1}/tags", 401, key=None),
    c("tag-create", "POST", f"{V1}/tags", 200, {"name": "new tag", "description": "d"}),
    c("tag-create-400", "POST", f"{V1}/tags", 400, {"name": "growth", "description": "d"}),
    c("tag-read", "GET", f"{V1}/tags/{{tag}}", 200),
    c("tag-read-name", "GET", f"{V1}/tags/growth", 200),
    c("tag-read-404", "GET", f"{V1}/tags/nope", 404),
    c("tag-update", "PATCH", f"{V1}/tags/{{tag}}", 200, {"description": "new"}),
    c("tag-delete", "DELETE", f"{V1}/tags/{{tag}}", 200),
    c("apps-list", "GET", f"{V1}/target_app", 200),
    c("apps-401", "GET", f"{V1}/target_app", 401, key=None),
    c(
        "app-create",
        "POST",
        f"{V1}/target_app",
        200,
        {"name": "Web", "description": "d", "gates": ["bench_0001_gate"]},
    ),
    c("app-read", "GET", f"{V1}/target_app/{{app}}", 200),
    c("app-update", "PATCH", f"{V1}/target_app/{{app}}", 200, {"description": "new"}),
    c("app-update-404", "PATCH", f"{V1}/target_app/nope", 404, {"description": "new"}),
    c("app-delete", "DELETE", f"{V1}/target_app/{{app}}", 200),
    c(
        "apps-assign",
        "PATCH",
        f"{V1}/target_app",
        200,
        {"targetApps": ["{app}"], "gates": ["bench_0001_gate"], "experiments": []},
    ),
    c(
        "apps-assign-404",
        "PATCH",
        f"{V1}/target_app",
        404,
        {"targetApps": ["{app}"], "gates": ["not a gate"]},
    ),
    c("teams-list", "GET", f"{V1}/users/teams", 200),
    c("team-read", "GET", f"{V1}/users/teams/{{team}}", 200),
    c("project-read", "GET", f"{V1}/project", 200),
    c("project-401", "GET", f"{V1}/project", 401, key=None),
    c("units-list", "GET", f"{V1}/unit_id_types", 200),
    c("unit-create", "POST", f"{V1}/unit_id_types", 201, {"name": "orgID", "description": "d"}),
    c("unit-read", "GET", f"{V1}/unit_id_types/userID", 200),
    # segments
    c("segments-list", "GET", S, 200),
    c("segments-401", "GET", S, 401, key=None),
    c(
        "segment-create",
        "POST",
        S,
        201,
        {"name": "new seg", "type": "rule_based", "rules": [RULE], "tags": ["growth"]},
    ),
    c("segment-read", "GET", f"{S}/bench_0001_segment", 200),
    c("segment-read-404", "GET", f"{S}/nope", 404),
    c("segment-delete", "DELETE", f"{S}/bench_0001_segment", 200),
    c("segment-delete-404", "DELETE", f"{S}/nope", 404),
    c("segment-archive", "PUT", f"{S}/bench_0001_segment/archive", 200),
    c(
        "segment-conditional",
        "POST",
        f"{S}/bench_0001_segment/conditional",
        200,
        [RULE],
        config=EmulatorConfig(segment_rules_answer="segment"),
    ),  # the schema's answer (#27)
    c("segment-conditional-400", "POST", f"{S}/conf_ids/conditional", 400, [RULE]),
    c("segment-conditional-404", "POST", f"{S}/nope/conditional", 404, [RULE]),
    c("segment-ids-add", "PATCH", f"{S}/conf_ids/id_list", 200, {"ids": ["x", "y"]}),
    c("segment-ids-add-400", "PATCH", f"{S}/bench_0001_segment/id_list", 400, {"ids": ["x"]}),
    c(
        "segment-ids-remove",
        "DELETE",
        f"{S}/conf_ids/id_list",
        200,
        {"ids": ["a"]},
        body_in_spec=False,
    ),
    c("segment-ids-reset", "POST", f"{S}/conf_ids/id_list/reset", 200, {"ids": ["z"]}),
    c("segment-ids-meta", "GET", f"{S}/conf_ids/idlist_metadata", 200),
    c("segment-add-ids", "PATCH", f"{S}/conf_store/add_ids", 200, {"ids": ["x"]}),
    c("segment-remove-ids", "PATCH", f"{S}/conf_store/remove_ids", 200, {"ids": ["x"]}),
    c("segment-add-ids-400", "PATCH", f"{S}/conf_ids/add_ids", 400, {"ids": ["x"]}),
    # gates
    c("gates-list", "GET", f"{G}?idType=userID&type=PERMANENT&tags=growth", 200),
    c("gate-create", "POST", G, 201, GATE_BODY),
    c("gate-create-400", "POST", G, 400, {**GATE_BODY, "name": "x"}, body_valid=False),
    c("gate-create-403", "POST", G, 403, GATE_BODY, key=SOURCE_RO_KEY),
    c("gate-read", "GET", f"{G}/bench_0001_gate", 200),
    c("gate-read-404", "GET", f"{G}/nope", 404),
    c("gate-full", "POST", f"{G}/bench_0001_gate", 200, FULL_GATE),
    c("gate-full-400", "POST", f"{G}/bench_0001_gate", 400, {"rules": []}, body_valid=False),
    c("gate-partial", "PATCH", f"{G}/bench_0001_gate", 200, {"description": "p", "tags": []}),
    c("gate-delete", "DELETE", f"{G}/bench_0001_gate", 200),
    *[
        c(f"gate-{a}", "PUT", f"{G}/bench_0001_gate/{a}", 200)
        for a in ("enable", "disable", "launch", "archive", "unarchive")
    ],
    c("gate-rules", "GET", f"{G}/bench_0001_gate/rules", 200),
    c("gate-rule-add", "POST", f"{G}/bench_0001_gate/rule", 200, RULE),
    c("gate-rules-add", "POST", f"{G}/bench_0001_gate/rules", 200, {"rules": [RULE, RULE]}),
    c(
        "gate-rules-update",
        "PATCH",
        f"{G}/bench_0001_gate/rules",
        200,
        {"rules": [{"id": "{gate_rule}", "passPercentage": 50}]},
    ),
    c(
        "gate-rule-update",
        "PATCH",
        f"{G}/bench_0001_gate/rules/{{gate_rule}}",
        200,
        {"passPercentage": 75, "name": "renamed"},
    ),
    c("gate-rule-delete", "DELETE", f"{G}/bench_0001_gate/rules/{{gate_rule}}", 200),
    c("gate-overrides-read", "GET", f"{G}/bench_0001_gate/overrides", 201),
    c("gate-overrides-set", "POST", f"{G}/bench_0001_gate/overrides", 201, OVERRIDES),
    c("gate-overrides-add", "PATCH", f"{G}/bench_0001_gate/overrides", 201, ENV_OVERRIDES),
    c(
        "gate-overrides-remove",
        "DELETE",
        f"{G}/bench_0001_gate/overrides",
        201,
        OVERRIDES,
        body_in_spec=False,
    ),
    # dynamic configs
    c("configs-list", "GET", D, 200),
    c("config-create", "POST", D, 201, CONFIG_BODY),
    c("config-create-400", "POST", D, 400, {"description": "no name"}, body_valid=False),
    c("config-create-401", "POST", D, 401, CONFIG_BODY, key=None),
    c(
        "config-create-old",
        "POST",
        D,
        200,
        CONFIG_BODY,
        old_spec=True,
        config=EmulatorConfig(create_status="200"),
    ),
    c("config-read", "GET", f"{D}/conf_config", 200),
    c("config-read-404", "GET", f"{D}/nope", 404),
    c("config-full", "POST", f"{D}/conf_config", 200, FULL_CONFIG),
    c("config-full-400", "POST", f"{D}/conf_config", 400, {"isEnabled": "yes"}, body_valid=False),
    c("config-partial", "PATCH", f"{D}/conf_config", 200, {"defaultValue": {"b": 1}}),
    c("config-partial-404", "PATCH", f"{D}/nope", 404, {"description": "x"}),
    c("config-delete", "DELETE", f"{D}/conf_config", 200),
    c("config-delete-404", "DELETE", f"{D}/nope", 404),
    *[
        c(f"config-{a}", "PUT", f"{D}/conf_config/{a}", 200)
        for a in ("enable", "disable", "archive", "unarchive")
    ],
    c("config-rules", "GET", f"{D}/conf_config/rules", 200),
    c("config-rule-read", "GET", f"{D}/conf_config/rule/{{config_rule}}", 200),
    c(
        "config-rule-update",
        "PATCH",
        f"{D}/conf_config/rule/{{config_rule}}",
        200,
        {"passPercentage": 40, "returnValue": {"x": 1}},
    ),
    c("config-rule-delete", "DELETE", f"{D}/conf_config/rule/{{config_rule}}", 200),
    c(
        "config-rule-add-old",
        "POST",
        f"{D}/conf_config/rule",
        200,
        {**RULE, "returnValue": {"y": 1}},
        old_spec=True,
    ),
    c(
        "config-rules-add-old",
        "POST",
        f"{D}/conf_config/rules",
        200,
        {"rules": [RULE]},
        old_spec=True,
    ),
    c(
        "config-rules-update-old",
        "PATCH",
        f"{D}/conf_config/rules",
        200,
        {"rules": [{"baseID": "{config_base}", "passPercentage": 10}]},
        old_spec=True,
    ),
    c(
        "config-rule-name-update-old",
        "PATCH",
        f"{D}/conf_config/rule/name/Internal",
        200,
        {"passPercentage": 60},
        old_spec=True,
    ),
    c(
        "config-rule-name-delete-old",
        "DELETE",
        f"{D}/conf_config/rule/name/Internal",
        200,
        old_spec=True,
    ),
    # layers
    c("layers-list", "GET", L, 200),
    c("layers-401", "GET", L, 401, key=None),
    c("layer-create", "POST", L, 201, {"name": "new layer", "idType": "userID"}),
    c("layer-create-400", "POST", L, 400, {"name": "no id type"}, body_valid=False),
    c("layer-read", "GET", f"{L}/conf_layer", 200),
    c("layer-read-implicit", "GET", f"{L}/{quote('statsig::bench_0001_exp_layer')}", 200),
    c("layer-read-404", "GET", f"{L}/nope", 404),
    c("layer-full", "POST", f"{L}/conf_layer", 200, {"description": "d", "parameters": PARAMS}),
    c("layer-partial", "PATCH", f"{L}/conf_layer", 200, {"description": "p"}),
    c("layer-delete", "DELETE", f"{L}/empty_layer", 200),
    c("layer-delete-400", "DELETE", f"{L}/conf_layer", 400),
    c("layer-delete-404", "DELETE", f"{L}/nope", 404),
    c("layer-experiments", "GET", f"{L}/conf_layer/experiments", 200),
    c("layer-overrides-read", "GET", f"{L}/conf_layer/overrides", 200),
    c("layer-overrides-404", "GET", f"{L}/nope/overrides", 404),
    c("layer-overrides-set", "POST", f"{L}/conf_layer/overrides", 200, LAYER_OVERRIDES),
    c(
        "layer-overrides-add",
        "PATCH",
        f"{L}/conf_layer/overrides",
        200,
        {**LAYER_OVERRIDES, "op": "add"},
    ),
    c("layer-overrides-clear", "DELETE", f"{L}/conf_layer/overrides", 200),
    c("gate-overrides-clear", "DELETE", f"{G}/bench_0001_gate/overrides", 201),
    c("experiment-overrides-clear", "DELETE", f"{E}/bench_0001_exp/overrides", 200),
    c("holdout-overrides-clear", "DELETE", f"{H}/conf_holdout/overrides", 200),
    c(
        "layer-overrides-remove",
        "DELETE",
        f"{L}/conf_layer/overrides",
        200,
        LAYER_OVERRIDES,
        body_in_spec=False,
    ),
    # experiments
    c("experiments-list", "GET", f"{E}?status=setup&status=active", 200),
    c("experiments-401", "GET", E, 401, key=None),
    c(
        "experiment-create",
        "POST",
        E,
        201,
        {
            "name": "new exp",
            "tags": ["★ Core"],
            "primaryMetrics": [{"name": "s_s1_m1", "type": "user_warehouse"}],
        },
    ),
    c("experiment-create-400", "POST", E, 400, {"name": "bench_0001_exp"}),
    c("experiment-create-401", "POST", E, 401, {"name": "x exp"}, key=None),
    c("experiment-read", "GET", f"{E}/bench_0001_exp", 200),
    c("experiment-read-404", "GET", f"{E}/nope", 404),
    c("experiment-full", "POST", f"{E}/bench_0001_exp", 200, EXP_FULL),
    c(
        "experiment-full-400",
        "POST",
        f"{E}/bench_0001_exp",
        400,
        {**EXP_FULL, "name": "bench_0002_exp"},
    ),
    c("experiment-partial", "PATCH", f"{E}/bench_0001_exp", 200, {"hypothesis": "new"}),
    c("experiment-partial-404", "PATCH", f"{E}/nope", 404, {"hypothesis": "new"}),
    c("experiment-delete", "DELETE", f"{E}/bench_0001_exp", 200),
    c("experiment-delete-404", "DELETE", f"{E}/nope", 404),
    c("experiment-start", "PUT", f"{E}/bench_0001_exp/start", 200, {}),
    c("experiment-start-404", "PUT", f"{E}/nope/start", 404, {}),
    c("experiment-abandon-400", "PUT", f"{E}/bench_0001_exp/abandon", 400, {"decisionReason": "x"}),
    c("experiment-abandon", "PUT", f"{E}/conf_active/abandon", 200, {"decisionReason": "x"}),
    c(
        "experiment-decide",
        "PUT",
        f"{E}/conf_active/make_decision",
        200,
        {"id": "Test", "decisionReason": "won"},
    ),
    c(
        "experiment-decide-400",
        "PUT",
        f"{E}/bench_0001_exp/make_decision",
        400,
        {"id": "Test", "decisionReason": "won"},
    ),
    c("experiment-reset", "PUT", f"{E}/conf_active/reset", 200),
    c("experiment-reset-400", "PUT", f"{E}/bench_0001_exp/reset", 400),
    c("experiment-archive", "PUT", f"{E}/bench_0001_exp/archive", 200, {"archiveReason": "x"}),
    c("experiment-unarchive", "PUT", f"{E}/conf_archived/unarchive", 200),
    c(
        "experiment-enable-groups",
        "POST",
        f"{E}/bench_0001_exp/enable_groups",
        201,
        {"group_names": ["Test"]},
    ),
    c(
        "experiment-disable-groups",
        "POST",
        f"{E}/bench_0001_exp/disable_groups",
        201,
        {"group_names": ["Test"]},
    ),
    # The schema requires `id` in answered overrides; its GET examples show `name`, which the
    # emulator answers by default (the harsher reading): the schema's reading is checked here.
    c(
        "experiment-overrides-read",
        "GET",
        f"{E}/bench_0001_exp/overrides",
        200,
        config=ID_OVERRIDES,
    ),
    c("experiment-overrides-404", "GET", f"{E}/nope/overrides", 404),
    c(
        "experiment-overrides-set",
        "POST",
        f"{E}/bench_0001_exp/overrides",
        200,
        EXP_OVERRIDES,
        config=ID_OVERRIDES,
    ),
    c(
        "experiment-overrides-add",
        "PATCH",
        f"{E}/bench_0001_exp/overrides",
        200,
        EXP_OVERRIDES,
        config=ID_OVERRIDES,
    ),
    c(
        "experiment-overrides-remove",
        "DELETE",
        f"{E}/bench_0001_exp/overrides",
        200,
        EXP_OVERRIDES,
        body_in_spec=False,
        config=ID_OVERRIDES,
    ),
    c("metric-experiments", "GET", f"{V1}/metrics/bench_0001_metric_1%3A%3Asum/experiments", 200),
    # holdouts
    c("holdouts-list", "GET", H, 200),
    c("holdouts-401", "GET", H, 401, key=None),
    c("holdout-create", "POST", H, 200, {"name": "new holdout", "description": "d"}),
    c("holdout-create-400", "POST", H, 400, {"name": "conf holdout"}),
    c("holdout-read", "GET", f"{H}/conf_holdout", 200),
    c("holdout-full", "POST", f"{H}/conf_holdout", 200, HOLDOUT_FULL),
    c("holdout-full-400", "POST", f"{H}/conf_holdout", 400, {"isEnabled": True}, body_valid=False),
    c("holdout-partial", "PATCH", f"{H}/conf_holdout", 200, {"gateIDs": ["bench_0001_gate"]}),
    c("holdout-partial-404", "PATCH", f"{H}/nope", 404, {"isEnabled": False}),
    c("holdout-delete", "DELETE", f"{H}/conf_holdout", 200),
    c("holdout-delete-404", "DELETE", f"{H}/nope", 404),
    c("holdout-overrides-read", "GET", f"{H}/conf_holdout/overrides", 200),
    c("holdout-overrides-set", "POST", f"{H}/conf_holdout/overrides", 200, OVERRIDES),
    c("holdout-overrides-add", "PATCH", f"{H}/conf_holdout/overrides", 200, ENV_OVERRIDES),
    c(
        "holdout-overrides-remove",
        "DELETE",
        f"{H}/conf_holdout/overrides",
        200,
        OVERRIDES,
        body_in_spec=False,
    ),
]
