"""What a job over many projects costs beyond the same pages in one project (issue 10): work done
once per fleet stays once per fleet, and nothing per page is held longer than it must be."""

from __future__ import annotations

from pathlib import Path

import orjson

from bulkops.commands import fleet
from bulkops.emulator import Project, World, populate_metrics, running_emulator
from bulkops.jobs.spec import JobDefinition
from tests.support.commands import loaded
from tests.test_multi_project import export_job, options, set_keys

PROJECTS = 6


async def test_a_fleet_builds_its_members_once(tmp_path: Path, monkeypatch) -> None:
    """An export over six projects builds the per-project jobs (one spec copy each) once, not
    once more per project, and still publishes every project and the index."""
    projects = [Project(f"p{n}", f"console-p{n}-key") for n in range(PROJECTS)]
    for project in projects:
        populate_metrics(project, 1, 2, prefix=project.name)
    world = World(projects)
    set_keys(monkeypatch, world)
    built = 0
    members = JobDefinition.members

    def counting(self: JobDefinition) -> dict:  # type: ignore[type-arg]
        nonlocal built
        built += 1
        return members(self)

    async with running_emulator(world) as url:
        job = await loaded(export_job(tmp_path, {p.name: url for p in projects}))
        monkeypatch.setattr(JobDefinition, "members", counting)
        assert await fleet.run_fleet(job, options(tmp_path / "state")) == 0
    assert built == 1
    index = orjson.loads((tmp_path / "out" / "manifest.json").read_bytes())
    assert [entry["name"] for entry in index["projects"]] == [p.name for p in projects]
    assert all(entry["complete"] for entry in index["projects"])
