"""The house rules hold: ruff (lint and format), mypy, and the import contracts pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """A tool of the venv: ``python -m TOOL``, or its script beside the interpreter."""
    script = Path(sys.executable).parent / args[0]
    command = [str(script), *args[1:]] if script.exists() else [sys.executable, "-m", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "command",
    [
        ("ruff", "check", "bulkops", "tests", "scripts"),
        ("ruff", "format", "--check", "bulkops", "tests", "scripts"),
        ("mypy", "bulkops"),
        ("lint-imports", "--no-cache"),
    ],
    ids=["ruff-check", "ruff-format", "mypy", "import-contracts"],
)
def test_code_quality_gate(command: tuple[str, ...]) -> None:
    """Each tool of the gate passes on the whole code base."""
    result = run(*command)
    assert result.returncode == 0, result.stdout + result.stderr
