"""A fleet's start line: every project's first mutation leaves together, none waits for long."""

from __future__ import annotations

import time

import anyio
from anyio import wait_all_tasks_blocked

from bulkops.commands.member import StartLine


async def test_the_line_opens_once_every_project_is_at_it() -> None:
    """Ready projects wait until every one's first mutation is at the line, then all go."""
    line = StartLine(["a", "b"], grace=60.0)
    line.ready("a")
    line.ready("b")
    passed: list[str] = []

    async def first_mutation(name: str) -> None:
        await line.at_line(name)
        passed.append(name)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(first_mutation, "a")
            await wait_all_tasks_blocked()
            assert passed == []
            group.start_soon(first_mutation, "b")
    assert sorted(passed) == ["a", "b"]


async def test_a_project_whose_command_ended_holds_no_one_up() -> None:
    """A project whose command ended (never ready) counts as at the line."""
    line = StartLine(["a", "b"], grace=60.0)
    line.ready("a")
    line.reach("b")
    with anyio.fail_after(5):
        await line.at_line("a")


async def test_a_late_first_mutation_holds_the_others_only_for_the_grace() -> None:
    """Once every project is ready, a project whose first mutation never comes up to the line
    holds the others no longer than the grace; before all are ready, the grace does not run."""
    line = StartLine(["a", "b"], grace=0.05)
    line.ready("a")
    passed = anyio.Event()

    async def first_mutation() -> None:
        await line.at_line("a")
        passed.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(first_mutation)
            await anyio.sleep(0.2)
            assert not passed.is_set()  # "b" still plans
            ready = time.monotonic()
            line.ready("b")
            await passed.wait()
    assert 0.04 <= time.monotonic() - ready < 2.0
