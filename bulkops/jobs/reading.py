"""A reading job kind made of its module's functions, importing nothing heavy.

``bulkops validate`` imports a job module for its ``Spec`` alone, so the module's ``KIND`` must not
pull in the run's machinery (aiohttp, anyio, structlog): the names below are for mypy only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from bulkops.jobs.spec import JobDefinition, JobSpec

if TYPE_CHECKING:
    from bulkops.engine.graph import Task
    from bulkops.jobs.base import Count, RunContext

SpecT = TypeVar("SpecT", bound=JobSpec)


@dataclass(frozen=True)
class ReadingFunctions(Generic[SpecT]):
    """A ``bulkops.jobs.base.ReadingKind`` made of a job module's functions, declared as
    ``KIND = ReadingFunctions(Spec, preflight_=..., root_tasks_=..., summary_=..., progress_=...)``."""

    spec_model: type[SpecT]
    preflight_: Callable[[JobDefinition[SpecT]], None]
    root_tasks_: Callable[[RunContext[SpecT]], list[Task]]
    summary_: Callable[[RunContext[SpecT]], dict[str, Any]]
    progress_: Callable[[RunContext[SpecT]], Count | None]
    sandbox_projects: Mapping[str, str] = field(default_factory=dict)

    def check(self, job: JobDefinition[SpecT]) -> None:
        """Nothing beyond the schema."""

    def preflight(self, job: JobDefinition[SpecT]) -> None:
        self.preflight_(job)

    def root_tasks(self, ctx: RunContext[SpecT]) -> list[Task]:
        return self.root_tasks_(ctx)

    def summary(self, ctx: RunContext[SpecT]) -> dict[str, Any]:
        return self.summary_(ctx)

    def progress(self, ctx: RunContext[SpecT]) -> Count | None:
        return self.progress_(ctx)
