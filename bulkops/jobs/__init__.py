"""The job kinds bulkops knows, by the name used in a job file's ``job = "..."`` key."""

from __future__ import annotations

import importlib
from typing import cast

from bulkops.jobs.spec import JobDefinition, JobSpec, load_job

_MODULES = {
    "export_metrics": "bulkops.jobs.export_metrics",
    "batch_rule_update": "bulkops.jobs.batch_rule_update",
    "clone_experiments": "bulkops.jobs.clone_experiments",
}


def kind_module(kind: str):  # -> JobKind; imported lazily so the CLI starts fast
    from bulkops.jobs.base import JobKind

    return cast(JobKind, importlib.import_module(_MODULES[kind]))


def spec_models() -> dict[str, type[JobSpec]]:
    return {kind: importlib.import_module(module).Spec for kind, module in _MODULES.items()}


def load(path: str) -> JobDefinition:
    """Read and validate a job file of any known kind."""
    return load_job(path, spec_models())
