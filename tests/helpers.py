"""Shared helpers for integration tests: job files, export snapshots, CLI subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from bulkops.api.client import RetryPolicy
from bulkops.commands.run import run_job
from bulkops.commands.session import RunOptions
from bulkops.jobs import load

KEY_ENV = "BULKOPS_TEST_SOURCE_KEY"
FAST_RETRY = RetryPolicy(max_attempts=10, base_delay=0.01, max_delay=0.05, max_total=30)
#: Manifest fields that legitimately differ between two runs over the same data.
RUN_FIELDS = ("run_id", "started_at", "published_at")


def export_job(folder: Path, *, out: str = "out", concurrency: int = 4, name: str = "exp") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(
        f'job = "export_metrics"\n[source]\napi_key_env = "{KEY_ENV}"\n'
        f'[output]\ndir = "{out}"\n[limits]\nconcurrency = {concurrency}\n'
    )
    return path


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


async def run_export(job_path: Path, base_url: str, state: Path, **options: Any) -> int:
    options.setdefault("retry", FAST_RETRY)
    options.setdefault("progress", False)
    return await run_job(
        load(str(job_path)), RunOptions(state_dir=state, base_url=base_url, **options)
    )


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, **popen: Any
) -> subprocess.Popen[bytes]:
    """Start ``bulkops`` as a real subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "bulkops.cli", *args],
        env=full_env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **popen,
    )
