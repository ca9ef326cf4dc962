"""References a clone carries between projects where the spec leaves their spelling open.

docs/api-assumptions.md #6 (an answered override ``groupID``: the group's name or its id) and #7
(target-app references: ids derived from names, or ids each project assigns). The emulator's
default takes the harsher reading of each; the client must be right under every reading.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bulkops.api.client import with_group_names
from bulkops.commands import planned
from bulkops.commands.session import RunOptions
from bulkops.emulator import EmulatorConfig, World, build_demo_world, running_emulator
from bulkops.emulator.resources.target_apps import app_ids, create_target_app
from bulkops.jobs.clone_bodies import with_target_apps
from tests.support.commands import FAST_RETRY, loaded
from tests.support.http import serve
from tests.support.jobs import clone_job, keys_env

V1 = "/console/v1"
GROUP_READINGS = ("id", "name", "sent")


async def clone(tmp_path: Any, config: EmulatorConfig, world: World, **job: Any) -> dict[str, Any]:
    """Run a clone to its end; the exit code, plan and verify report."""
    async with running_emulator(world, config) as url:
        options = RunOptions(
            state_dir=tmp_path / "s", base_url=url, retry=FAST_RETRY, progress=False
        )
        code = await planned.run_planned(await loaded(str(clone_job(tmp_path, **job))), options)
    read = lambda name: orjson.loads((tmp_path / "s" / name).read_bytes())  # noqa: E731
    return {"code": code, "plan": read("plan.json"), "verify": read("verify.json")}


def overridden(world: World) -> list[str]:
    """The source experiments that carry overrides."""
    return sorted(world.project("source").collection("experiments_overrides"))


def override_paths(world: World) -> tuple[str, ...]:
    return tuple(f"{V1}/experiments/{exp_id}/overrides" for exp_id in overridden(world))


# -- #6: an answered override groupID --------------------------------------------------------
@pytest.mark.parametrize("reading", GROUP_READINGS)
async def test_the_emulator_answers_override_groups_as_its_reading_says(
    world: World, reading: str
) -> None:
    """Overrides sent with one group by name and one by id come back with both as group ids
    (the default), both as names, or each as sent."""
    exp_id = overridden(world)[0]
    async with serve(world, EmulatorConfig(override_group_key=reading)) as api:
        exp = (await api.get(f"{V1}/experiments/{exp_id}")).data
        ids = {g["name"]: g["id"] for g in exp["groups"]}
        body = {
            "overrides": [],
            "userIDOverrides": [
                {"groupID": "Control", "ids": ["a"]},
                {"groupID": ids["Test"], "ids": ["b"]},
            ],
        }
        await api.post(f"{V1}/experiments/{exp_id}/overrides", body)
        answer = (await api.get(f"{V1}/experiments/{exp_id}/overrides")).data
    groups = {u["ids"][0]: u["groupID"] for u in answer["userIDOverrides"]}
    want = {
        "id": {"a": ids["Control"], "b": ids["Test"]},
        "name": {"a": "Control", "b": "Test"},
        "sent": {"a": "Control", "b": ids["Test"]},
    }
    assert groups == want[reading]


def test_group_ids_of_the_experiment_read_as_its_group_names() -> None:
    """with_group_names turns the experiment's own group ids into names in both lists and
    keeps any other value (a name, an unknown id) as it is."""
    experiment = {"groups": [{"id": "g1", "name": "Control"}, {"id": "g2", "name": "Test"}]}
    overrides = {
        "overrides": [{"type": "gate", "id": "x", "groupID": "g2"}],
        "userIDOverrides": [{"groupID": "g1", "ids": ["u"]}, {"groupID": "zz", "ids": ["v"]}],
    }
    named = with_group_names(overrides, experiment)
    assert named["overrides"][0]["groupID"] == "Test"
    assert [u["groupID"] for u in named["userIDOverrides"]] == ["Control", "zz"]
    assert with_group_names(overrides, None) == overrides


@pytest.mark.parametrize("reading", GROUP_READINGS)
async def test_the_clone_of_overrides_verifies_clean_under_every_group_reading(
    tmp_path, world: World, reading: str
) -> None:
    """Whether answers give override groups by id, by name or as sent, the clone sets the
    overrides, verifies clean, and a second run plans nothing."""
    config = EmulatorConfig(override_group_key=reading)
    first = await clone(tmp_path, config, world)
    assert first["code"] == 0
    assert first["verify"]["differences"] == 0
    written = [
        op
        for op in first["plan"]["operations"]
        if op["kind"] == "overrides" and op["id"].startswith("experiment:")
    ]
    assert len(written) == len(overridden(world))
    again = await clone(tmp_path, config, world)
    assert again["code"] == 0
    assert again["plan"]["operations"] == []


async def test_gate_and_holdout_overrides_whose_answers_are_lost_are_added_once(
    tmp_path, world: World
) -> None:
    """The source's id overrides of the gates and the holdout a clone creates are added with
    one ``PATCH`` per form; with every answer lost, reading back shows each applied, so none is
    sent twice, and a second run plans nothing."""
    paths = (f"{V1}/gates/", f"{V1}/holdouts/")
    faults = EmulatorConfig(lost_answer_rate=1.0, fault_paths=paths, fault_seed=5)
    result = await clone(tmp_path, faults, world)
    assert result["code"] == 0, result["plan"]["notes"]
    assert result["verify"]["differences"] == 0
    patches = world.requests(project="target", method="PATCH", is_mutation=True)
    added = [r.path for r in patches if r.path.endswith("/overrides")]
    assert any("/gates/" in p for p in added)
    assert any("/holdouts/" in p for p in added)
    planned_adds = [
        op["path"]
        for op in result["plan"]["operations"]
        if op["kind"] == "overrides" and not op["id"].startswith("experiment:")
    ]
    assert sorted(added) == sorted(planned_adds)  # each add sent exactly once
    for owner in ("gates", "holdouts"):
        target = world.project("target").collection(f"{owner}_overrides")
        source = world.project("source").collection(f"{owner}_overrides")
        assert {k: target.get(k) for k in target} == {k: source.get(k) for k in target}
    again = await clone(tmp_path, EmulatorConfig(), world)
    assert again["code"] == 0
    assert again["plan"]["operations"] == []


async def test_a_lost_override_answer_reads_back_as_applied_when_groups_come_back_as_ids(
    tmp_path, world: World
) -> None:
    """Every override write losing its answer (groups answered by id) is recognised as applied
    by reading it back: each is sent once, and the run exits 0."""
    paths = override_paths(world)
    faults = EmulatorConfig(lost_answer_rate=1.0, fault_paths=paths, fault_seed=3)
    result = await clone(tmp_path, faults, world)
    assert result["code"] == 0, result["plan"]["notes"]
    assert result["verify"]["differences"] == 0
    for path in paths:
        sent = world.requests(project="target", method="POST", path_prefix=path)
        assert len(sent) == 1, path


async def test_changed_overrides_of_an_existing_experiment_reconcile_a_lost_answer(
    tmp_path, world: World
) -> None:
    """Overrides changed in the source after a clone are updated in the target; a lost answer
    of that update reads back as applied, not as a conflict, with groups answered by id."""
    first = await clone(tmp_path / "one", EmulatorConfig(), world)
    assert first["code"] == 0
    exp_id = overridden(world)[0]
    coll = world.project("source").collection("experiments_overrides")
    changed = orjson.loads(orjson.dumps(coll.get(exp_id)))
    changed["userIDOverrides"].append({"groupID": "Control", "ids": ["late_user"]})
    coll.replace(exp_id, changed)
    path = f"{V1}/experiments/{exp_id}/overrides"
    faults = EmulatorConfig(lost_answer_rate=1.0, fault_paths=(path,), fault_seed=5)
    before = len(world.requests(project="target", method="POST", path_prefix=path))
    second = await clone(tmp_path / "two", faults, world)
    assert second["code"] == 0, second["plan"]["notes"]
    assert [op["kind"] for op in second["plan"]["operations"]] == ["overrides"]
    assert second["verify"]["differences"] == 0
    assert len(world.requests(project="target", method="POST", path_prefix=path)) == before + 1


# -- #7: target-app references ---------------------------------------------------------------
def app_names(project: Any) -> dict[str, str]:
    """App id -> app name in ``project``."""
    return {a["id"]: a["name"] for a in project.collection("target_apps").values()}


def carried_apps(world: World, kind: str, created: set[str]) -> list[tuple[list[str], list[str]]]:
    """Per entity of ``kind`` the clone created: the names of its target apps in the source
    and in the target."""
    source, target = world.project("source"), world.project("target")
    in_source, in_target = app_names(source), app_names(target)
    pairs = []
    for entity in target.collection(kind).values():
        original = source.collection(kind).get(entity["id"])
        if original is not None and entity["id"] in created:
            pairs.append(
                (
                    sorted(in_source[a] for a in original.get("targetApps") or []),
                    sorted(in_target[a] for a in entity.get("targetApps") or []),
                )
            )
    return pairs


@pytest.mark.parametrize("ids", ["assigned", "derived"])
async def test_the_clone_carries_target_apps_by_name_whatever_their_ids(
    tmp_path, monkeypatch, ids: str
) -> None:
    """Whether each project assigns target-app ids of its own or derives them from names, the
    cloned gates and experiments end in the target's apps of the same names, verify is clean
    and a second run plans nothing."""
    world = build_demo_world(target_app_ids=ids)
    for name, value in keys_env(world).items():
        monkeypatch.setenv(name, value)
    first = await clone(tmp_path, EmulatorConfig(), world)
    assert first["code"] == 0
    assert first["verify"]["differences"] == 0
    created = {op["entity_id"] for op in first["plan"]["operations"] if op["action"] == "create"}
    for kind in ("gates", "experiments"):
        pairs = carried_apps(world, kind, created)
        assert any(want for want, _ in pairs), kind
        assert all(want == have for want, have in pairs), kind
    again = await clone(tmp_path, EmulatorConfig(), world)
    assert again["code"] == 0
    assert again["plan"]["operations"] == []


async def test_an_app_the_target_has_is_referenced_by_the_targets_id(tmp_path, world) -> None:
    """A target app the target already has (same name, another id) is not created again, and
    every body naming it carries the target's id, never the source's."""
    target_web = create_target_app(world.project("target"), {"name": "Web", "description": ""})
    source_web = app_ids(world.project("source"), ["Web"])[0]
    result = await clone(tmp_path, EmulatorConfig(), world)
    assert result["code"] == 0
    ops = result["plan"]["operations"]
    assert not [op for op in ops if op["kind"] == "target_app" and op["body"]["name"] == "Web"]
    bodies = [orjson.dumps(op["body"]).decode() for op in ops]
    assert not [b for b in bodies if source_web in b]
    assert any(target_web["id"] in b for b in bodies)


def test_target_app_conditions_and_lists_map_to_the_targets_ids() -> None:
    """with_target_apps maps targetApps and target_app conditions through the mapping, leaves
    out apps it cannot map from targetApps, and leaves other conditions alone."""
    mapping = {"s-web": "t-web", "s-ios": None}
    body = {
        "targetApps": ["s-web", "s-ios"],
        "rules": [
            {
                "name": "r",
                "conditions": [
                    {"type": "target_app", "operator": "any", "targetValue": ["s-web"]},
                    {"type": "passes_gate", "targetValue": "s-web"},
                ],
            }
        ],
    }
    out = with_target_apps(body, mapping.get)
    assert out["targetApps"] == ["t-web"]
    assert out["rules"][0]["conditions"][0]["targetValue"] == ["t-web"]
    assert out["rules"][0]["conditions"][1]["targetValue"] == "s-web"
    assert body["targetApps"] == ["s-web", "s-ios"]  # the source's body is not changed
