"""Helpers for clone tests: job files and a comparable dump of a project's state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bulkops.emulator import World
from bulkops.jobs.semantics import normalize

SOURCE_ENV = "BULKOPS_TEST_SOURCE_KEY"
TARGET_ENV = "BULKOPS_TEST_TARGET_KEY"
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
    return {
        SOURCE_ENV: world.project("source").console_key,
        TARGET_ENV: world.project("target").console_key,
    }


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
