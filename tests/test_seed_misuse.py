"""Seeding from snapshots a careless user has: each bad one ends in one clear sentence (exit 2,
no traceback, no Python repr), and the tolerated ones (hand-edited files, kinds of a newer
bulkops, unavailable kinds, an empty project, an org export) seed what they hold."""

from __future__ import annotations

import hashlib
import re
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from bulkops.cli import main
from bulkops.emulator import SeedNotes, project_from_snapshot
from tests.support.commands import cli
from tests.support.jobs import sandbox_snapshot

JOB = Path(__file__).parents[1] / "jobs" / "batch_rule_update.toml"
#: A Python repr of a string, list or dict: a quote that opens after a space or bracket.
REPR = re.compile(r"(^|[\s(\[{=:])'[^'\s]*'|\bNone\b|\[\]|\{\}")

#: Kinds with every sort of file (details, documents, ids by name) and little data.
KINDS = ["gates", "segments", "environments", "target_apps", "settings", "tags"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A real export_project snapshot of the demo source project (a few kinds, with details)."""
    options = "segment_id_lists = true\n"
    return sandbox_snapshot(tmp_path_factory.mktemp("export"), KINDS, options=options)


@pytest.fixture
def snap(exported: Path, tmp_path: Path) -> Path:
    """A copy of the exported snapshot, for one test to damage."""
    return Path(shutil.copytree(exported, tmp_path / "snap"))


def manifest(snap: Path) -> dict[str, Any]:
    return orjson.loads((snap / "manifest.json").read_bytes())


def save(snap: Path, value: dict[str, Any]) -> None:
    (snap / "manifest.json").write_bytes(orjson.dumps(value, option=orjson.OPT_INDENT_2))


def first(snap: Path, kind: str = "gates") -> dict[str, Any]:
    return manifest(snap)["entities"][kind][0]


def edit_gate(snap: Path, **fields: Any) -> dict[str, Any]:
    """Change fields of the first gate's file by hand; returns its manifest entry."""
    entry = first(snap)
    path = snap / entry["file"]
    path.write_bytes(orjson.dumps({**orjson.loads(path.read_bytes()), **fields}))
    return entry


def rehash(snap: Path, kind: str = "gates", index: int = 0) -> None:
    """Bring the manifest's sha256 of one entity back in line with its file."""
    value = manifest(snap)
    entry = value["entities"][kind][index]
    entry["sha256"] = hashlib.sha256((snap / entry["file"]).read_bytes()).hexdigest()
    save(snap, value)


def test_an_entity_whose_id_is_not_its_manifest_id_is_refused(snap) -> None:
    """A file holding another gate than the one its manifest entry names is refused, naming
    the file and both ids, even when its sha256 was brought up to date."""
    entry = edit_gate(snap, id="renamed_by_hand")
    rehash(snap)
    with pytest.raises(ValueError, match="does not agree with itself") as caught:
        project_from_snapshot(snap, name="p", notes=SeedNotes())
    said = str(caught.value)
    assert entry["file"] in said
    assert f'holds gates "renamed_by_hand", but manifest.json lists it as "{entry["id"]}"' in said


def test_a_hand_edited_file_is_refused_strictly_and_seeded_leniently(snap) -> None:
    """Without notes a changed file is refused; with notes it is seeded as it now is, and the
    file is noted as edited."""
    entry = edit_gate(snap, description="edited by hand to rehearse")
    with pytest.raises(ValueError, match="does not match its sha256"):
        project_from_snapshot(snap, name="p")
    notes = SeedNotes()
    project = project_from_snapshot(snap, name="p", notes=notes)
    assert notes.edited == [entry["file"]]
    gate = project.collection("gates").get(entry["id"])
    assert gate is not None
    assert gate["description"] == "edited by hand to rehearse"


def test_kinds_and_details_of_a_newer_bulkops_are_left_out_leniently(snap) -> None:
    """A kind and a detail this bulkops does not know are refused strictly; leniently they are
    left out and counted, and everything else is seeded."""
    value = manifest(snap)
    value["entities"]["widgets"] = [dict(first(snap, "tags")), dict(first(snap, "tags"))]
    value["details"]["gates"] = [{**first(snap), "detail": "history"}]
    save(snap, value)
    with pytest.raises(ValueError, match='kind "widgets"'):
        project_from_snapshot(snap, name="p")
    notes = SeedNotes()
    project = project_from_snapshot(snap, name="p", notes=notes)
    assert notes.skipped == {"widgets": 2, "gates history": 1}
    assert len(project.collection("gates")) == len(value["entities"]["gates"])


# -- the command line: one clear sentence and exit 2 for each snapshot that cannot be seeded ----
def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The one error line a refused command printed; it is for a person."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("bulkops:")]
    assert len(lines) == 1, err
    assert lines[0].startswith("bulkops: error: ")
    assert "Traceback" not in err
    assert not REPR.search(lines[0]), lines[0]
    return lines[0]


def org_of(snap: Path, *, failed: str | None = None) -> Path:
    """An org export's index beside ``snap``: projects eu and us, each a copy of it; ``failed``
    names a project the export did not finish."""
    org = snap.parent / "org"
    projects = []
    for name in ("eu", "us"):
        shutil.copytree(snap, org / name)
        done = name != failed
        projects.append({"name": name, "dir": name, "complete": done, "status": "complete"})
    index = {"complete": failed is None, "kind": "export_project", "job": "org", "run_id": "r1",
             "failed": [failed] if failed else [], "projects": projects}  # fmt: skip
    (org / "manifest.json").write_bytes(orjson.dumps(index))
    return org


def _metrics(snap: Path) -> Path:
    metrics = snap.parent / "metrics"
    metrics.mkdir()
    header = {"complete": True, "kind": "export_metrics", "job": "nightly", "metric_sources": []}
    (metrics / "manifest.json").write_bytes(orjson.dumps(header))
    return metrics


def _incomplete(snap: Path) -> Path:
    save(snap, {**manifest(snap), "complete": False})
    return snap


def _missing(snap: Path) -> Path:
    (snap / first(snap)["file"]).unlink()
    return snap


def _not_json(snap: Path) -> Path:
    (snap / first(snap)["file"]).write_bytes(b'{"id": "cut short",')
    rehash(snap)
    return snap


def _other_id(snap: Path) -> Path:
    value = manifest(snap)
    value["entities"]["gates"][0]["id"] = "not_this_gate"
    save(snap, value)
    return snap


#: (damage, what the message must say): each makes the snapshot one that cannot be seeded.
REFUSED: list[tuple[Callable[[Path], Path], str]] = [
    (lambda snap: snap.parent / "no-such-folder", "does not exist"),
    (lambda snap: snap / "manifest.json", "is a file, not a snapshot directory"),
    (_metrics, "a manifest of an export_metrics job, not of an export_project job"),
    (_incomplete, "says complete: false. The export that wrote it did not finish"),
    (lambda snap: org_of(snap, failed="us"), 'the export did not finish project "us"'),
    (_missing, "is listed in manifest.json but missing"),
    (_not_json, "is not valid JSON"),
    (_other_id, 'but manifest.json lists it as "not_this_gate"'),
]
REFUSED_IDS = ["missing", "file", "metrics", "incomplete", "org-failed", "lost-file", "not-json",
               "other-id"]  # fmt: skip


@pytest.mark.parametrize(("damage", "says"), REFUSED, ids=REFUSED_IDS)
def test_a_snapshot_that_cannot_be_seeded_stops_plan_with_one_sentence(
    snap, tmp_path, capsys, damage, says
) -> None:
    """``plan --sandbox-from`` on a snapshot that cannot be seeded exits 2 before planning,
    naming the option and the problem in one line, with no traceback or repr."""
    given = damage(snap)
    args = ["plan", str(JOB), "--sandbox-from", f"target={given}", "--state", str(tmp_path / "s")]
    assert main(args) == 2
    line = one_error(capsys)
    assert line.startswith("bulkops: error: --sandbox-from target=")
    assert says in line
    assert not (tmp_path / "s" / "plan.json").exists()


@pytest.mark.parametrize(("damage", "says"), REFUSED, ids=REFUSED_IDS)
def test_a_snapshot_that_cannot_be_seeded_stops_the_emulator_with_one_sentence(
    snap, capsys, damage, says
) -> None:
    """``bulkops emulator --from`` a snapshot that cannot be seeded exits 2 before serving,
    with one line naming the problem."""
    given = damage(snap)
    assert main(["emulator", "--port", "0", "--from", f"prod={given}"]) == 2
    line = one_error(capsys)
    assert line.startswith("bulkops: error: --from")
    assert says in line


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--from", "p={snap}", "--from", "p={snap}"], 'both be served as project "p"'),
        (["--from", "={snap}"], "the project name before = is empty"),
        (["--from", "prod={org}"], "give --from {org} for all of them, or NAME=FOLDER"),
    ],
    ids=["same-name-twice", "empty-name", "org-renamed"],
)
def test_bad_emulator_from_arguments_are_one_sentence(snap, capsys, args, says) -> None:
    """Two snapshots under one NAME, an empty NAME, or a NAME for a whole org each exit 2 with
    one line that says how to write it instead."""
    org = org_of(snap)
    filled = [a.format(snap=snap, org=org) for a in args]
    assert main(["emulator", "--port", "0", *filled]) == 2
    assert says.format(org=org) in one_error(capsys)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("bogus={snap}", "this job has no [bogus]; its projects are [target]"),
        ("target={org}", "is an org snapshot (of projects eu, us), not one project's"),
    ],
    ids=["unknown-role", "org"],
)
def test_bad_sandbox_from_arguments_are_one_sentence(snap, tmp_path, capsys, value, says) -> None:
    """A role the job does not have, or a whole org for one role, exits 2 naming what to give."""
    org = org_of(snap)
    args = ["plan", str(JOB), "--sandbox-from", value.format(snap=snap, org=org)]
    assert main([*args, "--state", str(tmp_path / "s")]) == 2
    line = one_error(capsys)
    assert says in line
    if "org" in value:
        assert f"--sandbox-from target={org / 'eu'}" in line


# -- snapshots that seed, with what was tolerated said --------------------------------------------
def test_a_hand_edited_snapshot_rehearses_as_edited_and_says_so(snap, tmp_path, capsys) -> None:
    """A gate edited by hand after the export (sha256 no longer matching) is planned from its
    edited content, and a warning names the file; exit 0."""
    value = manifest(snap)
    for entry in value["entities"]["gates"]:
        gate = orjson.loads((snap / entry["file"]).read_bytes())
        internal = [r for r in gate["rules"] if r["name"] == "Internal"]
        if entry["id"].startswith("checkout_") and internal:
            break
    internal[0]["passPercentage"] = 77
    (snap / entry["file"]).write_bytes(orjson.dumps(gate))
    state = tmp_path / "s"
    assert main(["plan", str(JOB), "--sandbox-from", str(snap), "--state", str(state)]) == 0
    err = capsys.readouterr().err
    assert "1 file changed since the export" in err
    assert entry["file"] in err
    plan = orjson.loads((state / "plan.json").read_bytes())
    befores = [r["passPercentage"] for op in plan["operations"] for r in op["before"]["rules"]]
    assert 77 in befores


def test_newer_unavailable_and_null_content_seeds_and_plans(snap, tmp_path, capsys) -> None:
    """A snapshot with a kind of a newer bulkops, kinds listed unavailable and a settings
    document of null plans with exit 0; the unknown kind is named as left out."""
    value = manifest(snap)
    value["entities"]["widgets"] = [first(snap, "tags")]
    value["unavailable"] = {"roles": "403: Forbidden resource", "alerts": "404: Not Found"}
    reviews = next(e for e in value["entities"]["settings"] if e["id"] == "reviews")
    (snap / reviews["file"]).write_bytes(b"null\n")
    reviews["sha256"] = hashlib.sha256(b"null\n").hexdigest()
    save(snap, value)
    args = ["plan", str(JOB), "--sandbox-from", f"target={snap}", "--state", str(tmp_path / "s")]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "left out, as this bulkops does not know them" in err
    assert "widgets (1 file)" in err


def test_the_emulator_serves_every_project_of_an_org_export(snap) -> None:
    """``--from ORG`` serves each project of an org export's index under its own name, and warns
    about a hand-edited file in one of them."""
    org = org_of(snap)
    entry = edit_gate(org / "us", description="edited")
    proc = cli("emulator", "--port", "0", "--from", str(org))
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().decode().strip() for _ in range(3)]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert lines[0].startswith("Statsig Console API emulator listening on http://127.0.0.1:")
    assert [line.split(" key ")[0] for line in lines[1:]] == ["project eu", "project us"]
    assert "bulkops: warning: project us: 1 file changed since the export" in err.decode()
    assert entry["file"] in err.decode()
    assert "Traceback" not in err.decode()


def test_an_export_without_a_project_name_is_served_under_its_settings_name(snap) -> None:
    """The API gives an export no project name: the seeded project takes the name its
    settings/project document holds; without that document, NAME= is asked for."""
    assert manifest(snap)["project"]["name"] is None
    assert project_from_snapshot(snap).name == "source"
    value = manifest(snap)
    value["entities"].pop("settings")
    save(snap, value)
    with pytest.raises(ValueError, match=f"serve it under a name of your choice: NAME={snap}"):
        project_from_snapshot(snap)
