"""Job files for the tests, the environment that holds their keys, and comparable snapshots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from bulkops.emulator import World
from bulkops.jobs.semantics import normalize

SOURCE_ENV = "BULKOPS_TEST_SOURCE_KEY"
TARGET_ENV = "BULKOPS_TEST_TARGET_KEY"
#: The variable an export job reads its (source) key from.
KEY_ENV = SOURCE_ENV
#: Manifest fields that legitimately differ between two runs over the same data.
RUN_FIELDS = ("run_id", "started_at", "published_at")
KINDS = (
    "tags",
    "target_apps",
    "metric_sources",
    "metrics",
    "segments",
    "gates",
    "layers",
    "experiments",
    "holdouts",
    "experiments_overrides",
)


def export_job(folder: Path, *, out: str = "out", concurrency: int = 4, name: str = "exp") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(
        f'job = "export_metrics"\n[source]\napi_key_env = "{KEY_ENV}"\n'
        f'[output]\ndir = "{out}"\n[limits]\nconcurrency = {concurrency}\n'
    )
    return path


def clone_job(
    folder: Path,
    *,
    select: str = "",
    on_conflict: str = "skip",
    concurrency: int = 4,
    name: str = "clone",
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(
        f'job = "clone_experiments"\n[source]\napi_key_env = "{SOURCE_ENV}"\n'
        f'[target]\napi_key_env = "{TARGET_ENV}"\n[select]\n{select}\n'
        f'[options]\non_conflict = "{on_conflict}"\n[limits]\nconcurrency = {concurrency}\n'
    )
    return path


def keys_env(world: World) -> dict[str, str]:
    """The source and target keys of ``world``, by the variables the test jobs name."""
    return {
        SOURCE_ENV: world.project("source").console_key,
        TARGET_ENV: world.project("target").console_key,
    }


def snapshot(out: Path) -> dict[str, Any]:
    """Every exported file's bytes, and the manifest without its per-run fields."""
    files = {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    for field in RUN_FIELDS:
        manifest.pop(field, None)
    return {"files": files, "manifest": manifest}


def dump(world: World, project: str = "target") -> dict[str, Any]:
    """Every entity of a project, server-assigned fields removed, keyed by a stable identity."""
    state: dict[str, Any] = {}
    p = world.project(project)
    for kind in KINDS:
        collection = p.collection(kind)
        entities = {}
        for key in collection:
            entity = collection.get(key)
            identity = entity.get("name") if kind in ("tags", "target_apps") else key
            entities[identity] = normalize(entity)
        state[kind] = entities
    return state


def sandbox_snapshot(folder: Path, kinds: list[str], *, options: str = "") -> Path:
    """An export_project snapshot of the demo world's source project (``kinds`` only), made by
    ``bulkops run --sandbox`` in ``folder``; ``options``: the job's ``[options]`` lines."""
    from bulkops.cli import main

    job = folder / "export.toml"
    job.write_text(
        'job = "export_project"\nname = "prod"\n[source]\napi_key_env = "UNUSED_KEY"\n'
        f'[output]\ndir = "snap"\n[options]\n{options}[select]\nkinds = {orjson.dumps(kinds).decode()}\n'
    )
    assert main(["run", str(job), "--sandbox", "--state", str(folder / "state")]) == 0
    return folder / "snap"
