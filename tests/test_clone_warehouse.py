"""clone_experiments of a warehouse-native experiment: its assignment source travels with it."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest

from bulkops.commands import planned
from bulkops.commands.session import RunOptions
from bulkops.emulator import EmulatorConfig, Project, World, running_emulator, seed_directory
from tests.support.commands import FAST_RETRY, loaded
from tests.support.jobs import clone_job, dump, keys_env
from tests.support.openapi_spec import spec_or_skip
from tests.support.worlds import SOURCE_KEY, TARGET_KEY

SOURCES = "experiments/assignment_sources"
#: The assignment source the warehouse experiment reads (a name with a slash and a space).
SOURCE = {
    "name": "Assignments / web",
    "description": "web assignments",
    "tags": ["growth"],
    "team": "Growth",
    "sql": "SELECT user_id, experiment_id, group_id, ts FROM analytics.assignments",
    "timestampColumn": "ts",
    "experimentIDColumn": "experiment_id",
    "groupIDColumn": "group_id",
    "idTypeMapping": [{"statsigUnitID": "userID", "column": "user_id"}],
}
EXPERIMENT = {
    "id": "whn_checkout",
    "name": "whn checkout",
    "description": "reads its assignments from the warehouse",
    "idType": "userID",
    "assignmentSourceName": SOURCE["name"],
    "assignmentSourceExperimentName": "checkout_test",
    "groups": [
        {"name": "Control", "size": 50, "parameterValues": {}},
        {"name": "Test", "size": 50, "parameterValues": {}},
    ],
}


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    """Two projects with the same directory (unit id types, tags, team) and nothing else."""
    projects = [Project("source", SOURCE_KEY), Project("target", TARGET_KEY)]
    for project in projects:
        seed_directory(project, units=("userID",), tags=("growth",), teams=("Growth",), apps=())
    made = World(projects)
    for name, value in keys_env(made).items():
        monkeypatch.setenv(name, value)
    return made


def options(state, url) -> RunOptions:
    return RunOptions(state_dir=state, base_url=url, retry=FAST_RETRY, progress=False)


async def post(url: str, key: str, path: str, body: dict[str, Any]) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/console/v1/{path}", json=body, headers={"STATSIG-API-KEY": key}) as r,
    ):
        assert r.status in (200, 201), await r.text()


async def clone(tmp_path, world: World, *, target_source: dict[str, Any] | None = None, **job):
    """Seed the source (and optionally the target's source), clone; the plan and what it sent."""
    async with running_emulator(world, EmulatorConfig()) as url:
        await post(url, SOURCE_KEY, SOURCES, SOURCE)
        await post(url, SOURCE_KEY, "experiments", EXPERIMENT)
        if target_source is not None:
            await post(url, TARGET_KEY, SOURCES, target_source)
        seeded = len(target_mutations(world))
        path = clone_job(tmp_path, select='ids = ["whn_checkout"]', **job)
        code = await planned.run_planned(await loaded(path), options(tmp_path / "s", url))
    plan = orjson.loads((tmp_path / "s" / "plan.json").read_bytes())
    return code, plan, target_mutations(world)[seeded:]


def target_mutations(world: World) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in world.requests(project="target", is_mutation=True)]


async def test_an_empty_target_gets_the_assignment_source_before_the_experiment(
    tmp_path, world
) -> None:
    """Into an empty target, the clone creates the assignment source first, then the experiment."""
    code, plan, sent = await clone(tmp_path, world)
    assert code == 0
    create_source = ("POST", "/console/v1/experiments/assignment_sources")
    create_experiment = ("POST", "/console/v1/experiments")
    assert create_source in sent
    assert create_experiment in sent
    assert sent.index(create_source) < sent.index(create_experiment)
    ops = {op["id"]: op for op in plan["operations"]}
    source_op = ops[f"assignment_source:{SOURCE['name']}:create"]
    assert source_op["id"] in ops["experiment:whn_checkout:create"]["deps"]
    target = world.project("target")
    copy = target.collection("assignment_sources").get(SOURCE["name"])
    for field in ("sql", "tags", "team", "idTypeMapping", "experimentIDColumn", "description"):
        assert copy[field] == SOURCE[field], field
    experiment = target.collection("experiments").get("whn_checkout")
    assert experiment["assignmentSourceName"] == SOURCE["name"]
    assert experiment["assignmentSourceExperimentName"] == "checkout_test"
    verify = orjson.loads((tmp_path / "s" / "verify.json").read_bytes())
    assert verify["differences"] == 0
    assert verify["checked"] >= 2


async def test_an_identical_source_in_the_target_is_reused_untouched(tmp_path, world) -> None:
    """A target that already has an identical assignment source gets no write to it, only the experiment."""
    code, plan, sent = await clone(tmp_path, world, target_source=SOURCE)
    assert code == 0
    assert [op["kind"] for op in plan["operations"]] == ["experiment"]
    assert sent == [("POST", "/console/v1/experiments")]
    assert world.project("target").collection("experiments").get("whn_checkout") is not None


async def test_a_different_source_is_reused_and_reported_as_other_conflicts_are(
    tmp_path, world, capsys
) -> None:
    """A differing assignment source is reused as it is and reported (on_conflict=skip), like any entity."""
    other = {**SOURCE, "sql": "SELECT * FROM other.assignments", "description": "theirs"}
    code, plan, sent = await clone(tmp_path, world, target_source=other)
    assert code == 0
    assert sent == [("POST", "/console/v1/experiments")]
    notes = [n for n in plan["notes"] if n["kind"] == "differs"]
    assert any(
        "assignment_source 'Assignments / web'" in n["message"] and "sql" in n["message"]
        for n in notes
    )
    kept = world.project("target").collection("assignment_sources").get(SOURCE["name"])
    assert kept["sql"] == other["sql"]
    assert world.project("target").collection("experiments").get("whn_checkout") is not None


async def test_on_conflict_update_replaces_a_different_source_with_the_full_update(
    tmp_path, world
) -> None:
    """With on_conflict=update, a differing assignment source is overwritten by its full update (POST)."""
    other = {**SOURCE, "sql": "SELECT * FROM other.assignments", "description": "theirs"}
    code, plan, _ = await clone(tmp_path, world, target_source=other, on_conflict="update")
    assert code == 0
    update = next(op for op in plan["operations"] if op["kind"] == "assignment_source")
    assert (update["action"], update["method"]) == ("update", "POST")
    assert update["before"]["sql"] == other["sql"]
    kept = world.project("target").collection("assignment_sources").get(SOURCE["name"])
    assert (kept["sql"], kept["description"]) == (SOURCE["sql"], SOURCE["description"])


async def test_on_conflict_fail_names_the_differing_source(tmp_path, world) -> None:
    """With on_conflict=fail, a differing assignment source fails the experiment (exit 3), unwritten."""
    other = {**SOURCE, "sql": "SELECT * FROM other.assignments"}
    code, plan, sent = await clone(tmp_path, world, target_source=other, on_conflict="fail")
    assert code == 3
    failed = [n["message"] for n in plan["notes"] if n.get("fail")]
    assert any("assignment_source 'Assignments / web'" in m for m in failed)
    assert sent == []


async def test_rerunning_a_warehouse_clone_sends_nothing(tmp_path, world) -> None:
    """A finished warehouse clone, run again, sends no mutation and changes nothing."""
    code, _, _ = await clone(tmp_path, world)
    assert code == 0
    async with running_emulator(world, EmulatorConfig()) as url:
        before, state = len(target_mutations(world)), dump(world)
        path = clone_job(tmp_path, select='ids = ["whn_checkout"]')
        assert await planned.run_planned(await loaded(path), options(tmp_path / "s", url)) == 0
    assert len(target_mutations(world)) == before
    assert dump(world) == state


async def test_warehouse_clone_bodies_validate_against_the_spec(tmp_path, world) -> None:
    """The assignment source's create and update bodies, and the experiment's, validate against the spec."""
    spec = spec_or_skip()
    other = {**SOURCE, "sql": "SELECT 1"}
    _, plan, _ = await clone(tmp_path, world, target_source=other, on_conflict="update")
    _, created, _ = await clone(tmp_path / "b", _fresh(), on_conflict="update")
    for op in plan["operations"] + created["operations"]:
        spec.validate_request_body(op["method"], op["path"], op["body"])


def _fresh() -> World:
    projects = [Project("source", SOURCE_KEY), Project("target", TARGET_KEY)]
    for project in projects:
        seed_directory(project, units=("userID",), tags=("growth",), teams=("Growth",), apps=())
    return World(projects)


async def test_the_emulator_refuses_dangling_warehouse_references(world) -> None:
    """The emulator refuses (400) a missing assignment source, tag or unit id type named in a body."""
    bad_source = {
        **SOURCE,
        "tags": ["nope"],
        "idTypeMapping": [{"statsigUnitID": "deviceID", "column": "d"}],
    }
    async with running_emulator(world, EmulatorConfig()) as url, aiohttp.ClientSession() as s:
        headers = {"STATSIG-API-KEY": TARGET_KEY}
        async with s.post(f"{url}/console/v1/experiments", json=EXPERIMENT, headers=headers) as r:
            assert r.status == 400
            assert "assignmentSourceName" in [e["property"] for e in (await r.json())["errors"]]
        async with s.post(f"{url}/console/v1/{SOURCES}", json=bad_source, headers=headers) as r:
            assert r.status == 400
            props = [e["property"] for e in (await r.json())["errors"]]
            assert props == ["tags.0", "idTypeMapping.0.statsigUnitID"]
    assert world.project("target").collection("experiments").get("whn_checkout") is None
