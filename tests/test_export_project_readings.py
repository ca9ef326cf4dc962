"""export_project's reads under each reading of the spec it cannot rule out (docs/api-assumptions.md):
list rows without the ``id`` the spec's examples leave out, lists without ``pagination`` or not
paged at all, the shapes an id list may come in, and overrides answered null or 404 when none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from bulkops.emulator import EmulatorConfig, World, project_from_snapshot, running_emulator
from tests.support.commands import run_export
from tests.test_export_project import manifest_of, project_job


def kinds(*names: str) -> str:
    return "[select]\nkinds = [" + ", ".join(f'"{n}"' for n in names) + "]\n"


async def export(world: World, folder: Path, select: str, **config: Any) -> int:
    """One export of ``select`` into ``folder/out`` against the world under ``config``."""
    job = project_job(folder, extra=select)
    async with running_emulator(world, EmulatorConfig(**config)) as url:
        return await run_export(job, url, folder / "state")


def files_of(out: Path, kind: str) -> dict[str, Any]:
    """The kind's exported objects, by manifest id."""
    entries = manifest_of(out)["entities"][kind]
    return {e["id"]: orjson.loads((out / e["file"]).read_bytes()) for e in entries}


async def test_target_apps_and_teams_listed_without_ids_are_keyed_by_name(tmp_path, world) -> None:
    """Under listed_ids="omitted" (the spec's list examples) every target app and team is
    exported under its name, as listed, and a project seeded from that snapshot serves them
    under the ids the emulator had given them."""
    select = kinds("target_apps", "teams")
    assert await export(world, tmp_path, select, listed_ids="omitted") == 0
    out = tmp_path / "out"
    source = world.project("source")
    for kind in ("target_apps", "teams"):
        stored = {e["name"]: e for e in source.collection(kind).values()}
        exported = files_of(out, kind)
        assert set(exported) == set(stored), kind
        for name, row in exported.items():
            assert row == {k: v for k, v in stored[name].items() if k != "id"}
    seeded = project_from_snapshot(out, name="source")
    for kind in ("target_apps", "teams"):
        assert set(seeded.collection(kind)) == set(source.collection(kind)), kind


async def test_target_apps_and_teams_with_ids_stay_keyed_by_id(tmp_path, world) -> None:
    """With ids in the list rows (the default), target apps and teams keep their ids as keys."""
    assert await export(world, tmp_path, kinds("target_apps", "teams")) == 0
    source = world.project("source")
    for kind in ("target_apps", "teams"):
        assert set(files_of(tmp_path / "out", kind)) == set(source.collection(kind)), kind
