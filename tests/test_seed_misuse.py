"""Seeding from snapshots a careless user has: each bad one ends in one clear sentence (exit 2,
no traceback, no Python repr), and the tolerated ones (hand-edited files, kinds of a newer
bulkops, unavailable kinds, an empty project, an org export) seed what they hold."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from bulkops.emulator import SeedNotes, project_from_snapshot

#: Kinds with every sort of file (details, documents, ids by name) and little data.
KINDS = '["gates", "segments", "environments", "target_apps", "settings", "tags"]'


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A real export_project snapshot of the demo source project (a few kinds, with details)."""
    from bulkops.cli import main

    folder = tmp_path_factory.mktemp("export")
    job = folder / "export.toml"
    job.write_text(
        'job = "export_project"\nname = "prod"\n[source]\napi_key_env = "UNUSED_KEY"\n'
        f'[output]\ndir = "snap"\n[options]\nsegment_id_lists = true\n[select]\nkinds = {KINDS}\n'
    )
    assert main(["run", str(job), "--sandbox", "--state", str(folder / "state")]) == 0
    return folder / "snap"


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
