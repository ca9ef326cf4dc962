"""Export → seed → export is identical (``bulkops diff --all`` exits 0) for unusual but legal
content: settings documents the server answered ``null``, and the entities listed below."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import anyio

from bulkops.cli import main
from bulkops.emulator import EmulatorConfig, World, project_from_snapshot, running_emulator
from bulkops.emulator.resources.settings import seed_null_settings
from tests.support.commands import run_export
from tests.test_export_project import manifest_of, project_job

SETTINGS = '[select]\nkinds = ["settings"]\n'


async def export(world: World, job: Path, state: Path) -> int:
    async with running_emulator(world, EmulatorConfig()) as url:
        return await run_export(job, url, state)


def diff_all(old: Path, new: Path) -> int:
    return main(["diff", "--all", str(old), str(new)])


def settings_file(out: Path, document: str) -> Path:
    entry = next(e for e in manifest_of(out)["entities"]["settings"] if e["id"] == document)
    return out / entry["file"]


async def test_a_settings_document_answered_null_round_trips_as_null(tmp_path, world) -> None:
    """A settings document the server answered ``data: null`` is exported as ``null``, seeded,
    answered ``data: null`` again, and re-exported byte for byte (diff --all exits 0)."""
    source = world.project("source")
    seed_null_settings(source, "reviews")
    assert await export(world, project_job(tmp_path / "a", extra=SETTINGS), tmp_path / "sa") == 0
    old = tmp_path / "a" / "out"
    assert settings_file(old, "reviews").read_bytes() == b"null\n"
    seeded = World([project_from_snapshot(old, name="source", console_key=source.console_key)])
    async with (
        running_emulator(seeded, EmulatorConfig()) as url,
        aiohttp.ClientSession(headers={"STATSIG-API-KEY": source.console_key}) as http,
        http.get(f"{url}/console/v1/settings/reviews") as answer,
    ):
        assert answer.status == 200
        assert (await answer.json())["data"] is None
    assert await export(seeded, project_job(tmp_path / "b", extra=SETTINGS), tmp_path / "sb") == 0
    new = tmp_path / "b" / "out"
    assert settings_file(new, "reviews").read_bytes() == b"null\n"
    assert manifest_of(new)["entities"] == manifest_of(old)["entities"]
    assert await anyio.to_thread.run_sync(diff_all, old, new) == 0
