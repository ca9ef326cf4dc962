"""bulkops commands run by tests: in process (fast, no argument parsing) or as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio

from bulkops.api.client import RetryPolicy
from bulkops.commands import planned
from bulkops.commands.run import run_job
from bulkops.commands.session import RunOptions
from bulkops.jobs import load
from bulkops.jobs.spec import JobDefinition, JobSpec

#: Retries with backoffs of milliseconds, so a test that meets faults is not slowed by them.
FAST_RETRY = RetryPolicy(max_attempts=10, base_delay=0.01, max_delay=0.05, max_total=30)


async def loaded(job_path: Path | str) -> JobDefinition[JobSpec]:
    """The job file read off the test's event loop, as the CLI reads it before its loop starts."""
    return await anyio.to_thread.run_sync(load, str(job_path))


async def run_export(job_path: Path, base_url: str, state: Path, **options: Any) -> int:
    """``bulkops run`` of an export job, in process."""
    options.setdefault("retry", FAST_RETRY)
    options.setdefault("progress", False)
    return await run_job(
        await loaded(job_path), RunOptions(state_dir=state, base_url=base_url, **options)
    )


async def bulkops(command: str, job: Path | None, url: str, state: Path, **options: Any) -> int:
    """One planned-job command (run, plan, apply, undo) in process: the CLI's dispatch without
    argument parsing."""
    opts = RunOptions(state_dir=state, base_url=url, retry=FAST_RETRY, progress=False,
                      command=command, **options)  # fmt: skip
    if command == "run":
        return await planned.run_planned(await loaded(str(job)), opts)
    if command == "plan":
        return await planned.plan_command(await loaded(str(job)), opts)
    if command == "apply":
        return await planned.apply_command(opts)
    assert command == "undo"
    return await planned.undo_command(opts)


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, **popen: Any
) -> subprocess.Popen[bytes]:
    """Start ``bulkops`` as a real subprocess, its bytecode cached (not compiled anew each time)."""
    full_env = {name: value for name, value in os.environ.items()
                if name != "PYTHONDONTWRITEBYTECODE"}  # fmt: skip
    full_env.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "bulkops.cli", *args],
        env=full_env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **popen,
    )
