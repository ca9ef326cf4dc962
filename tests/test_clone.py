"""clone_experiments end to end on two emulated projects: plan, apply, verify, re-run, conflicts."""

from __future__ import annotations

import orjson
import pytest

from bulkops.commands import planned
from bulkops.commands.session import RunOptions
from bulkops.emulator import EmulatorConfig, running_emulator
from bulkops.jobs.semantics import normalize
from tests.support.commands import FAST_RETRY, loaded
from tests.support.jobs import clone_job, dump
from tests.support.openapi_spec import spec_or_skip

#: Entities the demo target already holds with other content; on_conflict=skip reuses them.
PREEXISTING: set[str] = set()


def options(state, url, **extra) -> RunOptions:
    return RunOptions(state_dir=state, base_url=url, retry=FAST_RETRY, progress=False, **extra)


def mutations(world) -> int:
    return len(world.requests(project="target", is_mutation=True))


async def test_a_clone_carries_every_experiment_with_its_closure(tmp_path, world) -> None:
    """A clone creates every source experiment in the target with what it refers to, one call per op."""
    job = clone_job(tmp_path)
    async with running_emulator(world, EmulatorConfig()) as url:
        assert await planned.run_planned(await loaded(str(job)), options(tmp_path / "s", url)) == 0
    source, target = world.project("source"), world.project("target")
    plan = orjson.loads((tmp_path / "s" / "plan.json").read_bytes())
    assert mutations(world) == len(plan["operations"])  # no wasted call
    for experiment in source.collection("experiments").values():
        copy = target.collection("experiments").get(experiment["id"])
        assert copy is not None, experiment["id"]
        assert copy["status"] == "setup"
        for field in (
            "hypothesis",
            "description",
            "allocation",
            "idType",
            "targetingGateID",
            "primaryMetrics",
            "secondaryMetrics",
            "tags",
            "primaryMetricTags",
        ):
            assert normalize(copy.get(field)) == normalize(experiment.get(field)), field
        assert [(g["name"], g["size"], g["parameterValues"]) for g in copy["groups"]] == [
            (g["name"], g["size"], g["parameterValues"]) for g in experiment["groups"]
        ]
        assert {g["id"] for g in copy["groups"]}.isdisjoint({g["id"] for g in experiment["groups"]})
        layer = experiment.get("layerID")
        if layer and not layer.startswith("statsig::"):
            assert copy["layerID"] == layer
            assert (
                target.collection("layers").get(layer)["parameters"]
                == source.collection("layers").get(layer)["parameters"]
            )
        gate = experiment.get("targetingGateID")
        if gate:
            assert (
                normalize(target.collection("gates").get(gate).get("rules"))
                == normalize(source.collection("gates").get(gate).get("rules"))
                or gate in PREEXISTING
            )
    source_tags = {t["name"]: t["id"] for t in source.collection("tags").values()}
    for tag in target.collection("tags").values():
        if tag["name"] in source_tags:
            assert tag["id"] != source_tags[tag["name"]]  # tag ids are per project
    verify = orjson.loads((tmp_path / "s" / "verify.json").read_bytes())
    assert verify["differences"] == 0
    assert verify["checked"] > 0


async def test_gates_segments_and_overrides_arrive_intact(tmp_path, world) -> None:
    """Cloned gates, segments and overrides equal the source's, server fields aside."""
    job = clone_job(tmp_path)
    async with running_emulator(world, EmulatorConfig()) as url:
        assert await planned.run_planned(await loaded(str(job)), options(tmp_path / "s", url)) == 0
    source, target = world.project("source"), world.project("target")
    plan = orjson.loads((tmp_path / "s" / "plan.json").read_bytes())
    created = {
        (op["kind"], op["entity_id"]) for op in plan["operations"] if op["action"] == "create"
    }
    for kind, collection in (("gate", "gates"), ("segment", "segments")):
        for _, entity_id in [c for c in created if c[0] == kind]:
            want = normalize(source.collection(collection).get(entity_id).get("rules"))
            assert normalize(target.collection(collection).get(entity_id).get("rules")) == want
    cloned_overrides = [op for op in plan["operations"] if op["kind"] == "overrides"]
    owners = {op["id"].split(":")[0] for op in cloned_overrides}
    assert owners == {"experiment", "gate", "holdout"}, "the demo source has overrides of each"
    for op in cloned_overrides:
        owner = op["id"].split(":")[0]
        stored = target.collection(f"{owner}s_overrides").get(op["entity_id"])
        assert stored is not None
        if owner != "experiment":  # gates' and holdouts' ids carry over as they are
            assert stored == source.collection(f"{owner}s_overrides").get(op["entity_id"])


async def test_rerunning_a_finished_clone_sends_zero_mutations(tmp_path, world) -> None:
    """Running a finished clone again sends no mutation and changes nothing."""
    job = clone_job(tmp_path)
    async with running_emulator(world, EmulatorConfig()) as url:
        assert await planned.run_planned(await loaded(str(job)), options(tmp_path / "s", url)) == 0
        before, state = mutations(world), dump(world)
        assert await planned.run_planned(await loaded(str(job)), options(tmp_path / "s", url)) == 0
    assert mutations(world) == before
    assert dump(world) == state


async def test_plan_sends_no_mutation_and_reports_what_cannot_be_carried(
    tmp_path, world, capsys
) -> None:
    """plan sends no mutation and reports what it would do and what it cannot carry."""
    job = clone_job(tmp_path)
    async with running_emulator(world, EmulatorConfig()) as url:
        assert await planned.plan_command(await loaded(str(job)), options(tmp_path / "s", url)) == 0
    assert mutations(world) == 0
    out = capsys.readouterr().out
    assert "mutation(s)" in out
    assert "create experiment" in out
    assert "implicit layer" in out
    assert "setup in the target" in out


async def test_a_concurrent_edit_between_plan_and_apply_is_a_conflict(tmp_path, world) -> None:
    """An entity created by hand between plan and apply is a conflict (exit 3) and is not overwritten."""
    job = clone_job(tmp_path, on_conflict="update")
    state = tmp_path / "s"
    async with running_emulator(world, EmulatorConfig()) as url:
        assert await planned.plan_command(await loaded(str(job)), options(state, url)) == 0
        plan = orjson.loads((state / "plan.json").read_bytes())
        create = next(
            op for op in plan["operations"] if op["kind"] == "gate" and op["action"] == "create"
        )
        # Someone creates that gate by hand, with other content, before apply.
        import aiohttp

        async with aiohttp.ClientSession() as session:
            response = await session.post(
                f"{url}/console/v1/gates",
                json={
                    "id": create["entity_id"],
                    "name": create["entity_id"],
                    "description": "made by hand",
                },
                headers={"STATSIG-API-KEY": world.project("target").console_key},
            )
            assert response.status in (200, 201)
        code = await planned.apply_command(options(state, url))
    assert code == 3
    gate = world.project("target").collection("gates").get(create["entity_id"])
    assert gate["description"] == "made by hand"  # not overwritten


async def test_on_conflict_fail_marks_the_experiment_failed(tmp_path, world) -> None:
    """on_conflict=fail fails the experiments whose entities exist and differ (exit 3)."""
    job = clone_job(tmp_path, on_conflict="fail")
    async with running_emulator(world, EmulatorConfig()) as url:
        code = await planned.run_planned(await loaded(str(job)), options(tmp_path / "s", url))
    plan = orjson.loads((tmp_path / "s" / "plan.json").read_bytes())
    failed = [n for n in plan["notes"] if n.get("fail")]
    assert failed
    assert code == 3


async def test_request_bodies_validate_against_the_spec(tmp_path, world) -> None:
    """Every body a clone plans to send validates against the spec's request schema."""
    spec = spec_or_skip()
    job = clone_job(tmp_path)
    async with running_emulator(world, EmulatorConfig()) as url:
        assert await planned.plan_command(await loaded(str(job)), options(tmp_path / "s", url)) == 0
    plan = orjson.loads((tmp_path / "s" / "plan.json").read_bytes())
    for op in plan["operations"]:
        spec.validate_request_body(op["method"], op["path"], op["body"])


async def test_on_conflict_update_overwrites_what_differs_and_skip_reports_it(
    tmp_path, world, capsys
) -> None:
    """on_conflict=skip reports entities that differ; update overwrites them, keeping a before-image."""
    async with running_emulator(world, EmulatorConfig()) as url:
        skip_state = tmp_path / "skip"
        assert (
            await planned.plan_command(
                await loaded(str(clone_job(tmp_path / "a"))), options(skip_state, url)
            )
            == 0
        )
        assert "exists in the target and differs" in capsys.readouterr().out
        job = clone_job(tmp_path / "b", on_conflict="update")
        assert (
            await planned.run_planned(await loaded(str(job)), options(tmp_path / "upd", url)) == 0
        )
    plan = orjson.loads((tmp_path / "upd" / "plan.json").read_bytes())
    updates = [op for op in plan["operations"] if op["action"] == "update"]
    assert updates, "the demo target holds entities that differ from the source"
    source, target = world.project("source"), world.project("target")
    for op in updates:
        if op["kind"] == "gate":
            assert normalize(target.collection("gates").get(op["entity_id"])["rules"]) == normalize(
                source.collection("gates").get(op["entity_id"])["rules"]
            )
        assert op["precondition"] != "absent"
        assert op["before"] is not None


async def test_apply_refuses_a_changed_job_file(tmp_path, world) -> None:
    """apply refuses a plan whose job file changed since it was made."""
    from bulkops.errors import StateError

    job = clone_job(tmp_path)
    async with running_emulator(world, EmulatorConfig()) as url:
        assert await planned.plan_command(await loaded(str(job)), options(tmp_path / "s", url)) == 0
        job.write_text(job.read_text().replace("concurrency = 4", "concurrency = 3"))
        with pytest.raises(StateError, match="changed since the plan"):
            await planned.apply_command(options(tmp_path / "s", url))
    assert mutations(world) == 0
