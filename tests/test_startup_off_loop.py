"""Start-up and wind-down off the event loop: while one project's pipeline sends its requests,
another's start-up (the state directory's lock and run.json, the plan, the refusals, the output
probe, the summary) runs in the same loop without blocking it.

The autouse blockbuster fixture (tests/conftest.py) turns any blocking call made by bulkops
inside the running loop into a failure, so these tests fail if any start-up step is put back on
the loop; they also check that the start-ups really did overlap another project's requests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from bulkops.emulator import EmulatorConfig, World, running_emulator
from tests.test_multi_project import (
    METRICS_PATH,
    batch_job,
    export_job,
    gates_project,
    metrics_project,
    run,
    set_keys,
)


async def _while_exporting(
    world: World, url: str, tmp_path, during: Callable[[], Awaitable[None]]
) -> None:
    """Run ``during`` once a slow one-project export is under way in the same loop, and check
    the export kept sending meanwhile."""
    done: list[int] = []

    async def export() -> None:
        job = export_job(tmp_path / "slow", {"slow": url}, concurrency=1)
        done.append(await run(job, tmp_path / "slow" / "state"))

    async with anyio.create_task_group() as group:
        group.start_soon(export)
        with anyio.fail_after(30):
            # The emulator serves from a thread of its own: nothing to wait on but its count.
            while world.count(path_prefix=METRICS_PATH) == 0:  # noqa: ASYNC110
                await anyio.sleep(0.005)
        before = world.count()
        await during()
        during_count = world.count() - before
    assert done == [0]
    assert during_count > 0, "the export sent nothing while the other project started"


async def test_a_projects_start_up_does_not_block_another_projects_requests(
    tmp_path, monkeypatch
) -> None:
    """A job over two targets plans, applies and undoes (each project's lock, run.json, plan and
    refusals read and written at its start-up) while another project's export is mid-run in the
    same event loop: no start-up step blocks the loop, and the export goes on meanwhile."""
    slow = World([metrics_project("slow", sources=1, per_source=400)])
    targets = World([gates_project("eu"), gates_project("us")])
    set_keys(monkeypatch, slow, targets)
    slow_config = EmulatorConfig(latency_ms=15.0, max_page_limit=10)
    async with (
        running_emulator(slow, slow_config) as slow_url,
        running_emulator(targets, EmulatorConfig(mutation_windows=("2000/10s",))) as url,
    ):
        job = batch_job(tmp_path / "org", {"eu": url, "us": url})
        state = tmp_path / "org" / "state"
        codes: list[int] = []

        async def plan_apply_undo() -> None:
            for command in ("plan", "apply", "undo"):
                codes.append(await run(job, state, command))

        await _while_exporting(slow, slow_url, tmp_path, plan_apply_undo)
    assert codes == [0, 0, 0]
    assert targets.count(is_mutation=True) == 2 * 7 * 2  # applied and undone in both projects


async def test_an_exports_start_up_and_summary_do_not_block_another_export(
    tmp_path, monkeypatch
) -> None:
    """An export over two sources (its output probe, lock, run.json and summary) starts and
    ends while another project's export is mid-run in the same loop, without blocking it."""
    slow = World([metrics_project("slow", sources=1, per_source=400)])
    sources = World([metrics_project("eu"), metrics_project("us")])
    set_keys(monkeypatch, slow, sources)
    slow_config = EmulatorConfig(latency_ms=15.0, max_page_limit=10)
    async with (
        running_emulator(slow, slow_config) as slow_url,
        running_emulator(sources) as url,
    ):
        job = export_job(tmp_path / "org", {"eu": url, "us": url})
        codes: list[int] = []

        async def export_two() -> None:
            codes.append(await run(job, tmp_path / "org" / "state"))

        await _while_exporting(slow, slow_url, tmp_path, export_two)
    assert codes == [0]
