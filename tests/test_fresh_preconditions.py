"""A mutation goes out on a recent read: a person's edit made while it waited for quota is a conflict."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

from bulkops.api.governor import READ_LEAD_MIN_S, READ_MAX_AGE_S, RateGovernor, StaleRead
from bulkops.api.windows import RateWindow
from bulkops.emulator import EmulatorConfig, World, running_emulator
from tests.support.batch import (
    BETA,
    EMPLOYEES_EDITS,
    KEY,
    KEY_ENV,
    build_world,
    mutations,
)
from tests.support.commands import bulkops

TWO_GATES = 'entity = "gates"\nid_pattern = "checkout_00[01]"\nrule_name = "Internal"'
#: A person's change to another rule of the gate (so the edit's precondition no longer holds).
BETA_AT_30 = {"name": "Beta", "passPercentage": 30, "conditions": [BETA]}


@pytest.fixture
def world(monkeypatch) -> World:
    monkeypatch.setenv(KEY_ENV, KEY)
    return build_world()


def two_gate_job(folder: Path, windows: str) -> Path:
    """The Employees edits on checkout_000 and checkout_001, paced by ``windows``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "fresh.toml"
    path.write_text(
        f'job = "batch_rule_update"\n[target]\napi_key_env = "{KEY_ENV}"\n[select]\n{TWO_GATES}\n'
        f"{textwrap.dedent(EMPLOYEES_EDITS)}\n"
        f'[limits]\nconcurrency = 8\nmutation_rate = ["{windows}"]\n'
    )
    return path


def applied(world: World) -> list[str]:
    """The gates the job's accepted mutations went to."""
    answered = world.requests(is_mutation=True, project="target", status=200)
    return [r.path.rsplit("/", 1)[-1] for r in answered]


async def edit_the_unsent_gate_once_one_is_sent(world: World) -> str:
    """Wait for the job's first accepted mutation, then change the other gate's Beta rule in the
    console (the console's own edits do not draw from the Console API's quota: to the store)."""
    with anyio.fail_after(10):
        while not applied(world):  # noqa: ASYNC110 (the emulator's log has no event to wait on)
            await anyio.sleep(0.005)
    (sent,) = applied(world)
    other = "checkout_001" if sent == "checkout_000" else "checkout_000"
    gates = world.project("target").collection("gates")
    gate = dict(gates.get(other) or {})
    gate["rules"] = [BETA_AT_30 | {"id": r["id"], "baseID": r["baseID"]} if r["name"] == "Beta"
                     else r for r in gate["rules"]]  # fmt: skip
    gate["version"] += 1
    gate["lastModifiedTime"] += 1000
    gates.replace(other, gate)
    return other


async def run_with_a_human_edit(
    world: World, job: Path, state: Path, emulator: EmulatorConfig
) -> tuple[int, str]:
    """Run the job while a person edits the gate still waiting to be sent: (exit code, that gate)."""
    result: dict[str, Any] = {}
    async with running_emulator(world, emulator) as url:

        async def human() -> None:
            result["edited"] = await edit_the_unsent_gate_once_one_is_sent(world)

        async with anyio.create_task_group() as group:
            group.start_soon(human)
            result["code"] = await bulkops("run", job, url, state)
    return result["code"], result["edited"]


def beta_of(world: World, gate_id: str) -> int:
    gate = world.project("target").collection("gates").get(gate_id) or {}
    return next(r["passPercentage"] for r in gate["rules"] if r["name"] == "Beta")


async def test_an_edit_made_while_the_mutation_waits_for_its_window_is_a_conflict(
    tmp_path, world
) -> None:
    """At 1 mutation per 2 s the second gate is read when its window opens, not 2 s before it: the
    person's edit made meanwhile is seen (exit 3, a conflict), not overwritten, and not sent."""
    job = two_gate_job(tmp_path, "1/2s")
    emulator = EmulatorConfig(mutation_windows=("1/2s",))
    code, edited = await run_with_a_human_edit(world, job, tmp_path / "state", emulator)
    assert code == 3
    assert beta_of(world, edited) == 30  # the person's change stands
    assert mutations(world) == 1  # the first gate's; the second's precondition failed


async def test_a_read_made_before_a_429_pause_is_made_again_before_the_retry(
    tmp_path, world
) -> None:
    """The job guesses 100/10s but the server allows 1/3s: the second gate's write is refused, the
    pause outlasts its read, so it is read again before it is retried and the edit is seen."""
    job = two_gate_job(tmp_path, "100/10s")
    emulator = EmulatorConfig(mutation_windows=("1/3s",))
    code, edited = await run_with_a_human_edit(world, job, tmp_path / "state", emulator)
    assert code == 3
    assert beta_of(world, edited) == 30
    refused = world.count(is_mutation=True, project="target", status=429)
    assert refused >= 1  # the guess was wrong: the premise of this test
    assert len(applied(world)) == 1  # the refused write was not retried on the old read


async def test_the_slot_refuses_a_stale_read_and_counts_nothing() -> None:
    """A read older than READ_MAX_AGE_S raises StaleRead before anything is sent or reserved."""
    gov = RateGovernor("p", mutation_windows=[RateWindow.parse("10/10s")], concurrency=8)
    with pytest.raises(StaleRead):
        async with gov.mutation_slot(read_at=gov.now() - READ_MAX_AGE_S - 1):
            raise AssertionError("sent on a stale read")
    assert gov.mutations_sent == 0
    async with gov.mutation_slot(read_at=gov.now()):
        pass
    assert gov.mutations_sent == 1


async def test_turns_open_once_the_window_is_about_to() -> None:
    """With the window full for 2 s, a mutation's turn (its read) starts READ_LEAD_MIN_S before it
    reopens, not at once."""
    clock = [0.0]

    async def sleep(seconds: float) -> None:
        clock[0] += seconds
        await anyio.lowlevel.checkpoint()

    gov = RateGovernor(
        "p", mutation_windows=[RateWindow.parse("1/2s")], clock=lambda: clock[0], sleep=sleep
    )
    async with gov.mutation_turn(), gov.mutation_slot(read_at=gov.now()):
        pass
    gov.on_success()
    async with gov.mutation_turn():
        started = clock[0]
    # The window reopens 2 s after the first answer (+ a margin).
    assert 1.95 - READ_LEAD_MIN_S < started <= 2.1 - READ_LEAD_MIN_S
