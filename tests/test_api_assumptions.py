"""The client is right under every reasonable reading of what the spec leaves open.

Each test names one assumption of docs/api-assumptions.md and runs the client against an emulator
variant (EmulatorConfig) that takes the reading our client did not guess, or pins that the
emulator really takes that reading.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import orjson
import pytest

from bulkops.commands import planned
from bulkops.commands.session import RunOptions
from bulkops.emulator import EmulatorConfig, World, running_emulator
from bulkops.emulator.resources.target_apps import app_ids, create_target_app
from bulkops.jobs.semantics import differences, normalize
from tests.support.commands import FAST_RETRY, loaded
from tests.support.jobs import clone_job
from tests.support.openapi_spec import spec_or_skip

V1 = "/console/v1"
HARSH = EmulatorConfig(full_update="replace", override_key="name", list_order="reversed")


@pytest.fixture
def world(world: World) -> World:
    """The demo world, with the source layer in a target app (so a full update can lose it)
    that the target has too, under an id of its own (api-assumptions #7)."""
    create_target_app(world.project("target"), {"name": "Web", "description": "web app"})
    layers = world.project("source").collection("layers")
    layer = layers.get("checkout_layer")
    web = app_ids(world.project("source"), ["Web"])
    layers.replace("checkout_layer", {**layer, "targetApps": web})
    return world


def options(state: Any, url: str) -> RunOptions:
    return RunOptions(state_dir=state, base_url=url, retry=FAST_RETRY, progress=False)


async def clone(tmp_path: Any, config: EmulatorConfig, world: World, **job: Any) -> dict[str, Any]:
    """Run a clone to its end; the exit code, plan and verify report."""
    async with running_emulator(world, config) as url:
        code = await planned.run_planned(await loaded(str(clone_job(tmp_path, **job))), options(
            tmp_path / "s", url
        ))  # fmt: skip
    read = lambda name: orjson.loads((tmp_path / "s" / name).read_bytes())  # noqa: E731
    return {"code": code, "plan": read("plan.json"), "verify": read("verify.json")}


# -- full updates replace the entity -------------------------------------------------------------
async def test_replace_semantics_and_name_identified_overrides_the_clone_verifies_clean(
    tmp_path, world
) -> None:
    """An emulator variant with replace-semantics full updates and name-identified overrides:
    the clone verifies clean, and the layer keeps its target apps."""
    result = await clone(tmp_path, HARSH, world, on_conflict="update")
    assert result["code"] == 0
    assert result["verify"]["differences"] == 0
    assert result["verify"]["checked"] > 0
    assert any(op["kind"] == "overrides" for op in result["plan"]["operations"])
    source, target = world.project("source"), world.project("target")
    assert target.collection("layers").get("checkout_layer")["targetApps"] == app_ids(
        target, ["Web"]
    )
    updated = [op for op in result["plan"]["operations"] if op["action"] == "update"]
    assert {"metric"} <= {op["kind"] for op in updated}, "the demo target has a differing metric"
    for op in updated:
        if op["kind"] == "metric":
            want = source.collection("metrics").get(op["entity_id"])
            have = target.collection("metrics").get(op["entity_id"])
            for field in ("description", "tags", "unitTypes", "warehouseNative", "isVerified"):
                assert normalize(have.get(field)) == normalize(want.get(field)), field


READINGS = [
    *(
        EmulatorConfig(full_update=full, override_key=key)
        for full in ("replace", "merge")
        for key in ("id", "name", "both")
    ),
    EmulatorConfig(list_order="kept"),
]


@pytest.mark.parametrize(
    "config",
    READINGS,
    ids=[f"{c.full_update}-{c.override_key}-{c.list_order}" for c in READINGS],
)
async def test_the_clone_verifies_clean_under_every_reading(
    tmp_path, world, config: EmulatorConfig
) -> None:
    """Whichever key names answered overrides, in whatever order, and whatever a full update
    does with omitted fields, a clone exits 0 and a second run plans nothing."""
    first = await clone(tmp_path, config, world, on_conflict="update")
    assert first["code"] == 0
    assert first["verify"]["differences"] == 0
    again = await clone(tmp_path, config, world, on_conflict="update")
    assert again["code"] == 0
    assert again["plan"]["operations"] == []


async def test_every_full_update_carries_every_field_of_its_dto_the_source_has(
    tmp_path, world
) -> None:
    """Each POST /{kind}/{id} of a plan holds each field of its full-update DTO that the source
    entity has (so a replacing server loses nothing); a layer's parameters go by PATCH."""
    spec = spec_or_skip()
    result = await clone(tmp_path, HARSH, world, on_conflict="update")
    source = world.project("source")
    collections = {"metric": "metrics", "metric_source": "metric_sources", "layer": "layers"}
    full_updates = [
        op
        for op in result["plan"]["operations"]
        if op["method"] == "POST"
        and op["action"] != "create"
        and not re.search(r"/(overrides|conditional)$", op["path"])
    ]
    assert full_updates, "the demo target has a metric that differs"
    target_teams = {t["name"] for t in world.project("target").collection("teams").values()}
    for op in full_updates:
        schema = spec.request_schema("POST", op["path"]) or {}
        entity = source.collection(collections[op["kind"]]).get(op["entity_id"])
        has = {k for k in schema.get("properties", {}) if entity.get(k) not in (None, "", [])}
        not_carried = {"teamID", "owner"}  # per-project ids, server-side users
        if entity.get("team") not in target_teams:
            not_carried.add("team")  # reported as cannot-carry
        missing = has - set(op["body"]) - not_carried
        assert not missing, f"{op['path']} omits {sorted(missing)}"
    layer_ops = [op for op in result["plan"]["operations"] if op["kind"] == "layer"]
    assert [op["method"] for op in layer_ops] == ["POST", "PATCH"]  # create, then parameters


async def test_a_difference_the_api_cannot_update_is_noted_not_retried(tmp_path, world) -> None:
    """A metric differing in a field its update DTO lacks (metricEvents) is noted in the plan,
    left out of the update's after-image, and the re-run does not send the update again."""
    metrics = world.project("target").collection("metrics")
    metric_id = next(
        m["id"]
        for m in world.project("source").collection("metrics").values()
        if m["id"] in metrics
    )
    metrics.replace(
        metric_id, {**metrics.get(metric_id), "metricEvents": [{"name": "other", "criteria": []}]}
    )
    first = await clone(tmp_path, HARSH, world, on_conflict="update")
    notes = [n for n in first["plan"]["notes"] if n["kind"] == "cannot_update"]
    assert any(metric_id in n["message"] and "metricEvents" in n["message"] for n in notes)
    assert first["code"] == 0
    assert first["verify"]["differences"] == 0
    again = await clone(tmp_path, HARSH, world, on_conflict="update")
    assert not any(op["entity_id"] == metric_id for op in again["plan"]["operations"])


# -- create status codes ----------------------------------------------------------------------
@pytest.mark.parametrize("status", ["200", "201"])
async def test_creates_answered_200_or_201_both_succeed(tmp_path, world, status: str) -> None:
    """The spec's create codes drift between versions (200 vs 201); the clone accepts either."""
    result = await clone(tmp_path, EmulatorConfig(create_status=status), world)
    assert result["code"] == 0
    assert result["verify"]["differences"] == 0
    assert world.requests(project="target", status=int(status), method="POST")


# -- verify compares meaning, not spelling -----------------------------------------------------
SENT = {
    "overrides": [
        {"type": "gate", "id": "g1", "groupID": "Test"},
        {"type": "segment", "id": "s1", "groupID": "Control", "environment": "staging"},
    ],
    "userIDOverrides": [{"groupID": "Test", "ids": ["u1", "u2"]}],
}


def answered(key: str, **changes: Any) -> dict[str, Any]:
    """SENT as a server would answer it, naming gates and segments by ``key``, reordered."""
    items = []
    for item in reversed(SENT["overrides"]):
        target = item["id"]
        shown = {k: v for k, v in item.items() if k != "id"}
        shown.update({key: target} if key != "both" else {"id": target, "name": target})
        items.append({"environment": None, **shown})
    users = [
        {**u, "ids": list(reversed(u["ids"])), "unitType": None} for u in SENT["userIDOverrides"]
    ]
    return {"overrides": items, "userIDOverrides": users, **changes}


@pytest.mark.parametrize("key", ["id", "name", "both"])
def test_overrides_match_whichever_key_names_the_target_and_in_any_order(key: str) -> None:
    """Overrides named by id, by name or both, in another order, equal what was sent."""
    assert differences(answered(key), SENT) == {}


def test_a_real_override_difference_is_still_reported() -> None:
    """Another gate, another group or a missing id are differences, under either key."""
    other_gate = answered("name")
    other_gate["overrides"][1] = {**other_gate["overrides"][1], "name": "g2"}
    assert "overrides" in differences(other_gate, SENT)
    other_group = answered("id")
    other_group["overrides"][0] = {**other_group["overrides"][0], "groupID": "Test"}
    assert "overrides" in differences(other_group, SENT)
    fewer_ids = answered("both", userIDOverrides=[{"groupID": "Test", "ids": ["u1"]}])
    assert set(differences(fewer_ids, SENT)) == {"userIDOverrides"}


def test_unordered_lists_compare_as_multisets_and_rules_keep_their_order() -> None:
    """Tags, target apps and conditions in another order are equal; rules reordered, or a tag
    missing, are not; server-assigned fields and empty-vs-absent never count."""
    rules = [
        {"name": "a", "passPercentage": 10, "conditions": [{"type": "public"}, {"type": "email"}]},
        {"name": "b", "passPercentage": 20, "conditions": []},
    ]
    want = {"tags": ["x", "y"], "targetApps": ["web", "ios"], "rules": rules, "description": ""}
    have = {
        "tags": ["y", "x"],
        "targetApps": ["ios", "web"],
        "rules": [
            {**rules[0], "id": "r1:10.00:1", "conditions": list(reversed(rules[0]["conditions"]))},
            {**rules[1], "baseID": "r2"},
        ],
        "description": None,
        "version": 7,
    }
    assert differences(have, want) == {}
    assert set(differences({**have, "rules": list(reversed(have["rules"]))}, want)) == {"rules"}
    assert set(differences({**have, "tags": ["x"]}, want)) == {"tags"}
    assert set(differences({**have, "tags": ["x", "x", "y"]}, want)) == {"tags"}


# -- the emulator takes each reading it is asked to --------------------------------------------
async def _call(url: str, key: str, method: str, path: str, body: Any = None) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url + path, json=body, headers={"STATSIG-API-KEY": key}) as resp,
    ):
        assert resp.status < 300, await resp.text()
        return (await resp.json())["data"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("reading", "kept"), [("replace", False), ("merge", True)], ids=["replace", "merge"]
)
async def test_the_emulator_full_update_resets_or_keeps_omitted_fields(
    world, reading: str, kept: bool
) -> None:
    """Under replace, a full update of a layer, metric or metric source resets the optional
    fields it omits; under merge it keeps them."""
    key = world.project("source").console_key
    source = world.project("source")
    metric = next(m for m in source.collection("metrics").values() if m.get("tags"))
    metric_source = next(s for s in source.collection("metric_sources").values() if s.get("tags"))
    async with running_emulator(world, EmulatorConfig(full_update=reading)) as url:
        layer = await _call(
            url, key, "POST", f"{V1}/layers/checkout_layer",
            {"description": "d", "parameters": source.collection("layers").get(
                "checkout_layer")["parameters"]},
        )  # fmt: skip
        path = f"{V1}/metrics/{metric['id'].replace(':', '%3A')}"
        updated_metric = await _call(url, key, "POST", path, {"description": "d"})
        required = {k: metric_source[k] for k in ("sql", "timestampColumn", "idTypeMapping")}
        name = metric_source["name"].replace(" ", "%20")
        updated_source = await _call(
            url, key, "POST", f"{V1}/metrics/metric_source/{name}", required
        )
    assert (layer["targetApps"] == app_ids(source, ["Web"])) is kept
    assert (updated_metric["tags"] == metric["tags"]) is kept
    assert (updated_source["tags"] == metric_source["tags"]) is kept
    assert updated_metric["name"] == metric["name"]  # part of the id: never reset


@pytest.mark.parametrize(
    ("key", "shown"), [("name", {"name"}), ("id", {"id"}), ("both", {"id", "name"})]
)
async def test_the_emulator_names_override_targets_as_configured(
    world, key: str, shown: set[str]
) -> None:
    """GET overrides names each gate or segment by the configured key(s) only."""
    overrides = world.project("source").collection("experiments_overrides")
    exp_id = next(e for e in overrides if overrides.get(e)["overrides"])
    api_key = world.project("source").console_key
    async with running_emulator(world, EmulatorConfig(override_key=key)) as url:
        data = await _call(url, api_key, "GET", f"{V1}/experiments/{exp_id}/overrides")
    for item in data["overrides"]:
        assert {"id", "name"} & set(item) == shown


async def test_the_emulator_answers_overrides_reversed_unless_told_to_keep_order(world) -> None:
    """By default answered overrides and their ids come back in reverse order; kept: as stored."""
    overrides = world.project("source").collection("experiments_overrides")
    exp_id = next(e for e in overrides if len(overrides.get(e)["overrides"]) > 1)
    stored = [o["id"] for o in overrides.get(exp_id)["overrides"]]
    api_key = world.project("source").console_key
    path = f"{V1}/experiments/{exp_id}/overrides"
    answers = {}
    for order in ("reversed", "kept"):
        async with running_emulator(world, EmulatorConfig(list_order=order)) as url:
            answers[order] = [
                o["name"] for o in (await _call(url, api_key, "GET", path))["overrides"]
            ]
    assert answers == {"reversed": stored[::-1], "kept": stored}


@pytest.mark.parametrize("field", ["full_update", "override_key", "list_order"])
def test_an_unknown_reading_is_refused_naming_the_field(field: str) -> None:
    """A misspelt variant fails when the config is made, naming the field and the choices."""
    with pytest.raises(ValueError, match=f"EmulatorConfig.{field} must be one of"):
        EmulatorConfig(**{field: "sometimes"})
