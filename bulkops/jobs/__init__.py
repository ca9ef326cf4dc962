"""The job kinds bulkops knows, by the name used in a job file's ``job = "..."`` key."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import cast

from bulkops.errors import JobFileError
from bulkops.jobs.spec import JobDefinition, JobSpec, load_job

_MODULES = {
    "export_metrics": "bulkops.jobs.export_metrics",
    "batch_rule_update": "bulkops.jobs.batch_rule_update",
    "clone_experiments": "bulkops.jobs.clone_experiments",
}


def kind_module(kind: str):  # -> JobKind; imported lazily so the CLI starts fast
    from bulkops.jobs.base import JobKind

    return cast(JobKind, importlib.import_module(_MODULES[kind]))


class _SpecModels(Mapping[str, type[JobSpec]]):
    """Job kind -> its Spec model, importing only the kind a job file asks for."""

    def __getitem__(self, kind: str) -> type[JobSpec]:
        if kind not in _MODULES:
            raise KeyError(kind)
        return importlib.import_module(_MODULES[kind]).Spec

    def __iter__(self) -> Iterator[str]:
        return iter(_MODULES)

    def __len__(self) -> int:
        return len(_MODULES)


def spec_models() -> Mapping[str, type[JobSpec]]:
    return _SpecModels()


def load(path: str) -> JobDefinition:
    """Read and validate a job file of any known kind, with the kind's own checks if it has any
    (so `validate` and every command catch the same mistakes before anything starts)."""
    job = load_job(path, spec_models())
    _refuse_one_key_for_two_projects(job)
    check = getattr(kind_module(job.kind), "check", None)
    if check is not None:
        check(job)
    return job


def _refuse_one_key_for_two_projects(job: JobDefinition) -> None:
    """A job that reads a source and writes a target needs two projects, so two key variables."""
    projects = job.spec.projects()
    if not {"source", "target"} <= projects.keys():
        return
    variable = projects["source"].api_key_env
    if projects["target"].api_key_env == variable:
        raise JobFileError(
            f"{job.path}: [source] and [target] both take their key from ${variable}, so they "
            "are the same project; set target.api_key_env to the variable holding the key of "
            "the project to copy into."
        )
