"""Rehearsals on a copy of a real project: --sandbox-from seeds a role from a snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkops.cli import main
from tests.support.jobs import sandbox_snapshot

JOBS = Path(__file__).parents[1] / "jobs"


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> Path:
    """An export_project snapshot of the demo world's source project (gates and experiments)."""
    kinds = ["gates", "segments", "experiments", "layers", "holdouts", "tags", "target_apps",
             "metric_sources", "metrics", "unit_id_types", "teams"]  # fmt: skip
    return sandbox_snapshot(tmp_path_factory.mktemp("snap"), kinds)


def test_a_batch_edit_rehearses_on_the_snapshot(snapshot, tmp_path, capsys) -> None:
    """A bare SNAP seeds [target] (the job has no source): plan, apply and undo all run on it."""
    job = str(JOBS / "batch_rule_update.toml")
    state = str(tmp_path / "state")
    seeded = ("--sandbox-from", str(snapshot))
    assert main(["plan", job, *seeded, "--state", state]) == 0
    assert "47 to update" in capsys.readouterr().out
    assert main(["apply", "--state", state, *seeded]) == 0
    assert main(["undo", "--state", state, *seeded]) == 0


def test_a_clone_rehearses_from_the_snapshot_into_an_empty_project(
    snapshot, tmp_path, capsys
) -> None:
    """A bare SNAP seeds [source]; [target] starts as a new project; the clone verifies clean."""
    job = str(JOBS / "clone_experiments.toml")
    assert main(["run", job, "--sandbox-from", str(snapshot), "--state", str(tmp_path)]) == 0
    assert "all as planned" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("target=/no/such/dir", "snapshot /no/such/dir does not exist"),
        ("bogus={snap}", "this job has no [bogus]"),
    ],
)
def test_a_bad_sandbox_from_is_a_usage_error(snapshot, tmp_path, capsys, value, says) -> None:
    """A missing snapshot or a role the job lacks exits 2 with the reason."""
    job = str(JOBS / "clone_experiments.toml")
    args = ["run", job, "--sandbox-from", value.format(snap=snapshot), "--state", str(tmp_path)]
    assert main(args) == 2
    assert says in capsys.readouterr().err


def test_each_sandbox_copy_of_the_demo_project_is_named_as_its_project() -> None:
    """A fleet's sandbox projects are copies of one demo project; each one's settings/project
    document names it (an export of it, served again, is that project, not "source")."""
    from bulkops.commands.sandbox import _demo_copies
    from bulkops.emulator.resources.settings import settings_of

    world = _demo_copies({"eu": "source", "us": "source"})
    for name in ("eu", "us"):
        document = settings_of(world.project(name), "project")
        assert document is not None
        assert document["name"] == name
