"""The job kinds bulkops knows, by the name used in a job file's ``job = "..."`` key.

Two registries, one per contract (``bulkops.jobs.base``): each entry imports its module only
when asked (so ``bulkops validate`` imports the one kind it needs) and returns the module's
``KIND`` as the Protocol it implements, which is where mypy checks every hook of every kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from bulkops.errors import JobFileError
from bulkops.jobs.spec import JobDefinition, JobSpec, load_job

if TYPE_CHECKING:
    from bulkops.jobs.base import PlannedKind, ReadingKind


def _export_metrics() -> ReadingKind[Any]:
    from bulkops.jobs.export_metrics import KIND

    return KIND


def _export_project() -> ReadingKind[Any]:
    from bulkops.jobs.export_project import KIND

    return KIND


def _batch_rule_update() -> PlannedKind[Any]:
    from bulkops.jobs.batch_rule_update import KIND

    return KIND


def _clone_experiments() -> PlannedKind[Any]:
    from bulkops.jobs.clone_experiments import KIND

    return KIND


#: Jobs that only read: ``bulkops run`` runs their task graph.
READING: dict[str, Callable[[], ReadingKind[Any]]] = {
    "export_metrics": _export_metrics,
    "export_project": _export_project,
}
#: Jobs that write: plan, apply, verify, undo.
PLANNED: dict[str, Callable[[], PlannedKind[Any]]] = {
    "batch_rule_update": _batch_rule_update,
    "clone_experiments": _clone_experiments,
}


def is_planned(kind: str) -> bool:
    """Whether jobs of ``kind`` write (so have a plan); imports nothing."""
    return kind in PLANNED


def reading_kind(kind: str) -> ReadingKind[Any]:
    """The contract of a kind that only reads (KeyError for any other)."""
    return READING[kind]()


def planned_kind(kind: str) -> PlannedKind[Any]:
    """The contract of a kind that writes (KeyError for any other)."""
    return PLANNED[kind]()


def kind_of(kind: str) -> ReadingKind[Any] | PlannedKind[Any]:
    """The contract of any known kind (KeyError for an unknown one)."""
    return planned_kind(kind) if is_planned(kind) else reading_kind(kind)


class _SpecModels(Mapping[str, type[JobSpec]]):
    """Job kind -> its Spec model, importing only the kind a job file asks for."""

    def __getitem__(self, kind: str) -> type[JobSpec]:
        return kind_of(kind).spec_model

    def __iter__(self) -> Iterator[str]:
        return iter([*READING, *PLANNED])

    def __len__(self) -> int:
        return len(READING) + len(PLANNED)


def spec_models() -> Mapping[str, type[JobSpec]]:
    return _SpecModels()


def load_spec(path: str) -> JobDefinition[JobSpec]:
    """A job file read and validated against its schema only (no kind checks, no python edits
    imported): enough to know its name and where its state lives."""
    return load_job(path, spec_models())


def load(path: str) -> JobDefinition[JobSpec]:
    """Read and validate a job file of any known kind, with the kind's own checks
    (so `validate` and every command catch the same mistakes before anything starts)."""
    job = load_job(path, spec_models())
    members = job.members() or {"": job}
    for member, single in members.items():
        _refuse_one_key_for_two_projects(single, member)
    kind_of(job.kind).check(next(iter(members.values())))  # the same checks for every member
    return job


def _refuse_one_key_for_two_projects(job: JobDefinition[JobSpec], member: str = "") -> None:
    """A job that reads a source and writes a target needs two projects, so two key variables.

    ``member``: the target's name, when it is one of ``[[targets]]``."""
    projects = job.spec.projects()
    if not {"source", "target"} <= projects.keys():
        return
    variable = projects["source"].api_key_env
    if projects["target"].api_key_env == variable:
        target = f"target {member!r} of [[targets]]" if member else "[target]"
        field = "its api_key_env" if member else "target.api_key_env"
        raise JobFileError(
            f"{job.path}: [source] and {target} both take their key from ${variable}, so they "
            f"are the same project; set {field} to the variable holding the key of "
            "the project to copy into."
        )
