"""The typed contract of job kinds, and the table of Statsig entity kinds the jobs share."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from bulkops.jobs import PLANNED, READING, is_planned, kind_of, planned_kind, reading_kind
from bulkops.jobs.entity_kinds import ENTITY_KINDS, EntityKind
from tests.support.openapi_spec import spec_or_skip

ROOT = Path(__file__).resolve().parents[1]


def test_each_kind_is_registered_once_under_its_own_name() -> None:
    """Every registered kind's spec model carries the name it is registered by, in one registry."""
    assert not READING.keys() & PLANNED.keys()
    for name in READING:
        assert reading_kind(name).spec_model.kind == name
        assert not is_planned(name)
    for name in PLANNED:
        assert planned_kind(name).spec_model.kind == name
        assert is_planned(name)
    assert kind_of("batch_rule_update").sandbox_projects == {"target": "source"}


def test_validate_imports_only_the_kind_of_its_job_file(tmp_path: Path) -> None:
    """Loading an export job imports no other job kind (the registry stays lazy)."""
    job = tmp_path / "export.toml"
    job.write_text('job = "export_metrics"\n[source]\napi_key_env = "K"\n[output]\ndir = "out"\n')
    code = (
        "import sys; from bulkops.jobs import load; load(sys.argv[1]); "
        "print(sorted(m for m in sys.modules if m.startswith('bulkops.jobs.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(job)], capture_output=True, text=True, check=True
    ).stdout
    assert "bulkops.jobs.export_metrics" in out
    assert "batch_rule_update" not in out
    assert "clone_experiments" not in out


def test_a_kind_with_a_misnamed_hook_fails_the_type_check(tmp_path: Path) -> None:
    """mypy refuses a kind whose hook is misnamed where it is registered, and only that kind."""
    module = tmp_path / "kinds_under_test.py"
    hooks = """
        spec_model = Spec
        sandbox_projects: Mapping[str, str] = {}

        def check(self, job: JobDefinition[Spec]) -> None: ...
        def preflight(self, job: JobDefinition[Spec]) -> None: ...
        def root_tasks(self, ctx: RunContext[Spec]) -> list[Task]: return []
        def summary(self, ctx: RunContext[Spec]) -> dict[str, Any]: return {}
        def progress(self, ctx: RunContext[Spec]) -> Count | None: return None
    """
    misnamed = hooks.replace("def root_tasks(", "def root_task(")
    assert misnamed != hooks
    module.write_text(
        textwrap.dedent(
            """
            from __future__ import annotations

            from collections.abc import Mapping
            from typing import Any

            from bulkops.engine.graph import Task
            from bulkops.jobs.base import Count, ReadingKind, RunContext
            from bulkops.jobs.export_metrics import Spec
            from bulkops.jobs.spec import JobDefinition
            """
        )
        + f"\n\nclass Good:{hooks}\n\nclass Misnamed:{misnamed}\n"
        + textwrap.dedent(
            """

            def good() -> ReadingKind[Any]:
                return Good()


            def misnamed() -> ReadingKind[Any]:
                return Misnamed()
            """
        )
    )
    result = subprocess.run(
        [str(Path(sys.executable).parent / "mypy"), str(module)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(errors) == 1, result.stdout
    assert "Misnamed" in errors[0], result.stdout
    assert "root_tasks" in result.stdout


# -- the table of entity kinds -----------------------------------------------------------------
def _request_fields(spec: Any, method: str, path: str) -> set[str]:
    """The top-level fields of a request body; a body that is a list of rules is ``rules``."""
    schema = spec.request_schema(method, path) or {}
    if schema.get("type") == "array" and "passPercentage" in schema["items"]["properties"]:
        return {"rules"}
    fields = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        fields |= set(part.get("properties", {}))
    return fields


@pytest.mark.parametrize("kind", list(ENTITY_KINDS.values()), ids=list(ENTITY_KINDS))
def test_each_entity_kind_is_where_the_spec_says(kind: EntityKind) -> None:
    """Its list, create and update exist in the spec, and every field it sends is in their DTOs."""
    spec = spec_or_skip()
    spec.operation("GET", kind.list_path())
    if kind.item is not None:
        spec.match_path(kind.item_path("k"))
    if kind.create_fields:
        fields = _request_fields(spec, "POST", kind.collection_path())
        assert set(kind.create_fields) <= fields, set(kind.create_fields) - fields
    if kind.update_method is not None:
        fields = _request_fields(spec, kind.update_method, kind.update_path("k"))
        assert set(kind.update_fields) <= fields, set(kind.update_fields) - fields
