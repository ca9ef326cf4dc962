"""The batch_rule_update tests' world (300 gates) and job file, shared with the safety tests."""

from __future__ import annotations

import contextlib
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bulkops.emulator import EmulatorConfig, Project, World
from tests.support.jobs import TARGET_ENV

KEY_ENV = TARGET_ENV
KEY = "console-brt-target-key"
#: High enough that no test waits for the quota (the benchmark script measures pacing).
FAST_QUOTA = ("2000/10s",)
FAMILIES = ("checkout", "search", "growth")
PER_FAMILY = 100
EMAIL = {"type": "email", "operator": "str_contains_any", "targetValue": ["@example.com"]}
USERS = {"type": "user_id", "operator": "any", "targetValue": ["u1", "u2"]}
BETA = {"type": "passes_segment", "targetValue": "beta_users"}
PUBLIC = {"type": "public"}

EMPLOYEES_EDITS = """
[[edits]]
op = "add_condition"
condition = { type = "email", operator = "str_contains_any", targetValue = ["@example.com"] }
[[edits]]
op = "set_pass_percentage"
value = 50
"""
CHECKOUT_INTERNAL = 'entity = "gates"\nid_pattern = "checkout_*"\nrule_name = "Internal"'


def gate_rules(index: int) -> list[dict[str, Any]]:
    """Every 5th gate has no Internal rule; every 10th (from 3) has it edited already."""
    everyone = {"name": "Everyone", "passPercentage": 100, "conditions": [PUBLIC]}
    beta = {"name": "Beta", "passPercentage": 20, "conditions": [BETA]}
    if index % 5 == 4:
        return [beta, everyone]
    if index % 10 == 3:
        internal = {"name": "Internal", "passPercentage": 50, "conditions": [USERS, EMAIL]}
    else:
        internal = {"name": "Internal", "passPercentage": 10, "conditions": [USERS]}
    return [internal, beta, everyone]


def build_world() -> World:
    """One target project: 300 gates in three families (checkout, search, growth) and two segments."""
    from bulkops.emulator.resources.gates import create_gate
    from bulkops.emulator.resources.segments import create_segment
    from bulkops.emulator.resources.tags import create_tag

    project = Project("target", KEY)
    now = 1_704_067_200_000
    create_tag(project, {"name": "growth", "description": "growth team"})
    for segment in ("beta_users", "beta_users_v2"):
        create_segment(project, {"name": segment, "type": "id_list"}, now, ids=["u1"])
    for family in FAMILIES:
        for i in range(PER_FAMILY):
            tags = ["growth"] if family == "growth" else []
            fields = {"id": f"{family}_{i:03d}", "name": f"{family} {i:03d}",
                      "rules": gate_rules(i), "tags": tags}  # fmt: skip
            create_gate(project, fields, now + i)
    return World([project])


def changed_checkout_ids() -> set[str]:
    """The checkout gates the standard edits change (those with an Internal rule not yet edited)."""
    return {f"checkout_{i:03d}" for i in range(PER_FAMILY) if i % 5 != 4 and i % 10 != 3}


def mutations(world: World) -> int:
    """Mutations the target project received."""
    return world.count(is_mutation=True, project="target")


def config(**kwargs: Any) -> EmulatorConfig:
    """An emulator config whose quota no test waits for."""
    return EmulatorConfig(mutation_windows=FAST_QUOTA, **kwargs)


def job_file(folder: Path, *, select: str = CHECKOUT_INTERNAL, edits: str = EMPLOYEES_EDITS,
             extra: str = "", name: str = "brt", concurrency: int = 8) -> Path:  # fmt: skip
    """A batch_rule_update job file: by default the Employees edits on the checkout gates."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(
        f'job = "batch_rule_update"\n[target]\napi_key_env = "{KEY_ENV}"\n[select]\n{select}\n'
        f"{textwrap.dedent(edits)}\n{textwrap.dedent(extra)}\n"
        f'[limits]\nconcurrency = {concurrency}\nmutation_rate = ["{FAST_QUOTA[0]}"]\n'
    )
    return path


def outcomes(state: Path) -> int:
    """How many operation outcomes the journal holds (a killed writer's torn line is skipped)."""
    journal = state / "journal.jsonl"
    if not journal.exists():
        return 0
    count = 0
    for line in journal.read_bytes().splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):  # the torn last line of a killed writer
            count += orjson.loads(line).get("type") == "outcome"
    return count


async def in_console(url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """Somebody's request in the console (``path`` under ``/console/v1/``): (status, ``data``)."""
    headers = {"STATSIG-API-KEY": KEY, "Content-Type": "application/json"}
    data = None if body is None else orjson.dumps(body)
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{url}/console/v1/{path}", data=data, headers=headers) as answer,
    ):
        return answer.status, (await answer.json()).get("data")
