"""What every emulator entity shares (versions, times, reviews, the pipeline); the demo world's entities."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from bulkops.emulator import (
    EmulatorConfig,
    Project,
    World,
    build_demo_world,
    populate_experiments,
    set_review_required,
)
from bulkops.emulator.resources._entities import DYNAMIC_CONFIGS, latest_review
from tests.support.http import REVIEW, V1, seg, serve
from tests.support.worlds import NEW_GATE, SOURCE_RO_KEY, entities_world

GATE = NEW_GATE


# -- versions, times, reviews, pipeline -----------------------------------------------------------


async def test_version_and_last_modified_time_move_on_every_change() -> None:
    """With a frozen wall clock every change still gets a strictly later lastModifiedTime."""
    async with serve(entities_world(frozen=True)) as api:
        gate = (await api.post(f"{V1}/gates", GATE)).data
        rule_id = gate["rules"][0]["id"]
        steps = [
            ("PATCH", "", {"description": "a"}),
            ("PUT", "/disable", None),
            ("POST", "/rule", {"name": "r2", "passPercentage": 5, "conditions": []}),
            ("PATCH", f"/rules/{seg(rule_id)}", {"passPercentage": 50}),
            ("POST", "/overrides", {"passingUserIDs": ["x"], "failingUserIDs": []}),
        ]
        last = (gate["version"], gate["lastModifiedTime"])
        for method, suffix, body in steps:
            answer = await api.call(method, f"{V1}/gates/new_checkout{suffix}", body)
            assert answer.status in (200, 201), (method, suffix, answer.body)
            now = (await api.get(f"{V1}/gates/new_checkout")).data
            assert now["version"] == last[0] + 1, suffix
            assert now["lastModifiedTime"] > last[1], suffix
            last = (now["version"], now["lastModifiedTime"])


async def test_review_header_holds_changes_on_entities_that_require_review() -> None:
    """With the header, a change to a review-required entity is not applied but pending;
    without it, it applies; committing the review applies the held change (every kind showing
    ``activeReview``: the ``review_shown="all"`` reading)."""
    world = entities_world()
    async with serve(world, EmulatorConfig(review_shown="all")) as api:
        await api.post(f"{V1}/gates", {**GATE, "reviewSettings": {"requiredReview": True}})
        held = await api.patch(
            f"{V1}/gates/new_checkout", {"description": "reviewed"}, headers=REVIEW
        )
        assert held.status == 200
        assert held.data["description"] == "a gate"
        review = held.data["activeReview"]
        assert review["reviewStatus"] == "pending"
        assert review["description"]
        assert held.data["version"] == 1
        stored = (await api.get(f"{V1}/gates/new_checkout")).data
        assert stored["description"] == "a gate"
        assert stored["activeReview"] == review
        commit = f"{V1}/gates/new_checkout/reviews/{review['reviewID']}/commit"
        assert (await api.put(commit)).body == {"message": "Gate review committed successfully"}
        stored = (await api.get(f"{V1}/gates/new_checkout")).data
        assert stored["description"] == "reviewed"
        assert "activeReview" not in stored
        assert stored["version"] == 2
        direct = await api.patch(f"{V1}/gates/new_checkout", {"description": "direct"})
        assert direct.data["description"] == "direct"
        assert direct.data["version"] == 3
        empty = await api.patch(
            f"{V1}/gates/new_checkout",
            {"description": "e"},
            headers={"x-respect-review-settings": ""},
        )
        assert empty.data["description"] == "e"  # an empty header value does not count
        set_review_required(world.project("source"), "experiments", "bench_0001_exp")
        start = await api.put(f"{V1}/experiments/bench_0001_exp/start", {}, headers=REVIEW)
        assert start.status == 200
        assert start.data["status"] == "setup"
        assert start.data["activeReview"]["reviewStatus"] == "pending"
        config = await api.post(f"{V1}/dynamic_configs", {"name": "guarded config"})
        set_review_required(world.project("source"), "dynamic_configs", config.data["id"])
        first = await api.put(f"{V1}/dynamic_configs/guarded_config/disable", headers=REVIEW)
        second = await api.patch(
            f"{V1}/dynamic_configs/guarded_config", {"description": "x"}, headers=REVIEW
        )
        assert first.data["isEnabled"] is True
        assert second.data["description"] == ""
        stale = first.data["activeReview"]["reviewID"]
        replaced = await api.put(f"{V1}/dynamic_configs/guarded_config/reviews/{stale}/commit")
        assert replaced.status == 400  # a newer review replaced it
        latest = second.data["activeReview"]["reviewID"]
        await api.patch(f"{V1}/dynamic_configs/guarded_config", {"tags": ["growth"]})
        moved = await api.put(f"{V1}/dynamic_configs/guarded_config/reviews/{latest}/commit")
        assert moved.status == 400
        assert "changed after" in moved.body["message"]
        plain = await api.patch(
            f"{V1}/experiments/bench_0002_exp", {"hypothesis": "h"}, headers=REVIEW
        )
        assert plain.data["hypothesis"] == "h"  # no review required on this one


async def test_a_dynamic_config_held_for_review_answers_as_it_was() -> None:
    """``DynamicConfigDto`` has no ``activeReview``: by default a held config change answers the
    config unchanged, version unmoved; only its newest review commits, and only while the config
    is unchanged."""
    world = entities_world()
    async with serve(world) as api:
        created = await api.post(f"{V1}/dynamic_configs", {"name": "guarded config"})
        set_review_required(world.project("source"), "dynamic_configs", created.data["id"])
        path = f"{V1}/dynamic_configs/guarded_config"
        version = (await api.get(path)).data["version"]
        held = await api.patch(path, {"description": "x"}, headers=REVIEW)
        assert held.status == 200
        assert "activeReview" not in held.data
        assert (held.data["description"], held.data["version"]) == ("", version)
        assert (await api.get(path)).data == held.data
        first = latest_review(world.project("source"), DYNAMIC_CONFIGS, "guarded_config")
        await api.patch(path, {"description": "y"}, headers=REVIEW)
        newest = latest_review(world.project("source"), DYNAMIC_CONFIGS, "guarded_config")
        assert (await api.put(f"{path}/reviews/{first}/commit")).status == 400
        assert (await api.put(f"{path}/reviews/{newest}/commit")).status == 200
        committed = (await api.get(path)).data
        assert (committed["description"], committed["version"]) == ("y", version + 1)


async def test_mutations_go_through_quota_faults_and_read_only_keys() -> None:
    """429 past the quota, 403 for read-only keys, lost_answer applies then drops."""
    config = EmulatorConfig(mutation_windows=("2/10s",))
    async with serve(entities_world(), config) as api:
        assert (await api.patch(f"{V1}/gates/bench_0001_gate", {"description": "1"})).status == 200
        assert (await api.put(f"{V1}/experiments/bench_0001_exp/start", {})).status == 200
        assert (await api.post(f"{V1}/tags", {"name": "t", "description": ""})).status == 429
    async with serve(entities_world()) as api:
        denied = await api.post(f"{V1}/gates", GATE, key=SOURCE_RO_KEY)
        assert denied.status == 403
        assert (await api.get(f"{V1}/gates", key=None)).status == 401
    world = entities_world()
    async with serve(world, EmulatorConfig(lost_answer_rate=1.0)) as api:
        with pytest.raises(aiohttp.ClientError):
            await api.post(f"{V1}/gates", GATE)
    assert "new_checkout" in world.project("source").collection("gates")
    assert world.count(fault="lost_answer") == 1


# -- demo world ---------------------------------------------------------------------------------


def _snapshot(world: World) -> dict[str, Any]:
    return {
        name: {
            kind: project.collection(kind).values()
            for kind in (
                "tags",
                "teams",
                "target_apps",
                "unit_id_types",
                "segments",
                "gates",
                "dynamic_configs",
                "layers",
                "experiments",
                "holdouts",
                "experiments_overrides",
                "gates_overrides",
            )
        }
        for name, project in world.projects.items()
    }


def test_demo_world_is_deterministic_and_rich() -> None:
    """Two builds are identical; source has everything a clone and a batch edit need."""
    first, second = build_demo_world(), build_demo_world()
    assert _snapshot(first) == _snapshot(second)
    assert _snapshot(build_demo_world(seed="other")) != _snapshot(first)
    src, tgt = first.project("source"), first.project("target")
    gates = src.collection("gates").values()
    assert len(gates) >= 300
    assert {g["id"].split("_")[0] for g in gates} == {"checkout", "search", "growth"}
    rules = [r for g in gates for r in g["rules"]]
    kinds = {c["type"] for r in rules for c in r["conditions"]}
    assert {"email", "user_id", "passes_segment", "passes_gate"} <= kinds
    assert any(r["name"] == "Internal" for r in rules)
    assert len({r["passPercentage"] for r in rules}) >= 5
    exps = src.collection("experiments").values()
    assert {e["status"] for e in exps} == {"setup", "active", "decision_made"}
    assert any(e["layerID"] == "checkout_layer" for e in exps)
    assert any(e["layerID"].startswith("statsig::") for e in exps)
    assert all(e["targetingGateID"] and e["primaryMetrics"] for e in exps)
    assert any(e["holdoutIDs"] for e in exps)
    assert {s["type"] for s in src.collection("segments").values()} == {"rule_based", "id_list"}
    assert "★ Core" in [t["name"] for t in src.collection("tags").values()]
    assert [u["name"] for u in src.collection("unit_id_types").values()] == [
        "userID",
        "stableID",
        "companyID",
    ]
    assert len(src.collection("teams")) == 2
    assert len(tgt.collection("teams")) == 1
    src_tags = {t["name"]: t["id"] for t in src.collection("tags").values()}
    tgt_tags = {t["name"]: t["id"] for t in tgt.collection("tags").values()}
    assert set(tgt_tags) < set(src_tags)
    assert all(tgt_tags[n] != src_tags[n] for n in tgt_tags)
    shared = tgt.collection("gates").values()
    assert len(shared) == 1
    assert shared[0]["rules"] != src.collection("gates").get(shared[0]["id"])["rules"]
    assert "companyID" not in tgt.collection("unit_id_types")
    assert len(src.collection("experiments_overrides")) > 0


def test_populate_experiments_builds_n_complete_experiments() -> None:
    """Each bench experiment has a targeting gate, a segment, 2 metrics and overrides."""
    project = Project("bench", "console-bench-key")
    made = populate_experiments(project, 25, seed="s")
    assert len(made) == 25
    assert made[0] == "bench_0001_exp"
    exp = project.collection("experiments").get(made[-1])
    assert exp is not None
    assert exp["targetingGateID"] in project.collection("gates")
    assert len(exp["primaryMetrics"]) + len(exp["secondaryMetrics"]) == 2
    assert len(project.collection("segments")) == 25
    assert made[-1] in project.collection("experiments_overrides")
