"""A clone's creates against the names the target already holds, found at plan time.

A refused create still spends a mutation of the quota, and a layer or holdout created under
another id than the source's would leave the experiments pointing at the source's id
(docs/api-assumptions.md #24 and #29). Each case fails the experiment at plan time, naming what
to change, and sends nothing for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bulkops.commands import planned
from bulkops.commands.session import RunOptions
from bulkops.emulator import EmulatorConfig, World, running_emulator
from bulkops.emulator._validation import validate
from bulkops.emulator.resources import gates
from tests.support.commands import FAST_RETRY, loaded
from tests.support.jobs import clone_job


async def _clone(tmp_path: Path, world: World, exp_id: str) -> int:
    job = clone_job(tmp_path, select=f'ids = ["{exp_id}"]')
    async with running_emulator(world, EmulatorConfig()) as url:
        options = RunOptions(
            state_dir=tmp_path / "s", base_url=url, retry=FAST_RETRY, progress=False
        )
        return await planned.run_planned(await loaded(str(job)), options)


def _experiment(world: World, field: str, value: Any = None) -> dict[str, Any]:
    return next(
        e
        for e in world.project("source").collection("experiments").values()
        if e.get(field) and (value is None or e[field] == value)
    )


def _rename(world: World, collection: str, entity_id: str, name: str) -> None:
    stored = world.project("source").collection(collection)
    stored.replace(entity_id, {**stored.get(entity_id), "name": name})


@pytest.mark.parametrize(
    ("name", "derived"),
    [("Payments layer", "payments_layer"), ("Checkout-Layer", "checkout-layer")],
)
async def test_a_layer_renamed_in_the_source_fails_its_experiment_at_plan_time(
    tmp_path, world, capsys, name, derived
) -> None:
    """The layer's create takes no id, so one created from its new name would get another id
    than the ``layerID`` its experiments carry: nothing is sent, and the message says how.
    ``Checkout-Layer`` may derive to ``checkout_layer`` on some server, but the emulator keeps
    the hyphen, as §6's inference does: the client cannot be sure, so it refuses."""
    experiment = _experiment(world, "layerID", "checkout_layer")
    _rename(world, "layers", "checkout_layer", name)
    assert await _clone(tmp_path, world, experiment["id"]) == 3
    err = capsys.readouterr().err
    assert f"layer 'checkout_layer' is named {name!r} in the source" in err
    assert f"gets its id from the name ({derived!r}" in err
    assert "create layer 'checkout_layer' in the target first" in err
    assert not world.requests(project="target", is_mutation=True)


async def test_a_layer_whose_name_derives_to_its_id_is_cloned(tmp_path, world) -> None:
    """``Checkout Layer`` derives to ``checkout_layer``: not a rename."""
    experiment = _experiment(world, "layerID", "checkout_layer")
    _rename(world, "layers", "checkout_layer", "Checkout Layer")
    assert await _clone(tmp_path, world, experiment["id"]) == 0
    assert experiment["id"] in world.project("target").collection("experiments")


async def test_a_holdout_renamed_in_the_source_fails_its_members_at_plan_time(
    tmp_path, world, capsys
) -> None:
    holdout = next(iter(world.project("source").collection("holdouts").values()))
    _rename(world, "holdouts", holdout["id"], "Quarterly holdout")
    assert await _clone(tmp_path, world, holdout["experimentIDs"][0]) == 3
    err = capsys.readouterr().err
    assert f"holdout {holdout['id']!r} is named 'Quarterly holdout' in the source" in err
    assert not world.requests(project="target", is_mutation=True)


async def test_a_target_gate_holding_the_id_a_name_derives_to_fails_at_plan_time(
    tmp_path, world, capsys
) -> None:
    """A gate named ``Beta Access`` under the id ``beta_gate`` meets a target whose gate
    ``beta_access`` (another name) holds the id the name derives to: refused there as well."""
    experiment = _experiment(world, "targetingGateID")
    gate_id = experiment["targetingGateID"]
    _rename(world, "gates", gate_id, "Beta Access")
    body = {"id": "beta_access", "name": "Something else"}
    gates.create_gate(world.project("target"), validate(gates.CREATE_SCHEMA, body), 1)
    assert await _clone(tmp_path, world, experiment["id"]) == 3
    err = capsys.readouterr().err
    assert f"gate {gate_id!r} cannot be created in the target" in err
    assert "taken there by gate 'beta_access'" in err
    assert not world.requests(project="target", is_mutation=True)
