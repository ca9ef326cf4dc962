"""What every job kind plugs into: the run context it gets, and the contract it implements.

A job kind is one object (``KIND`` in its module) whose class implements one of two Protocols:

- :class:`ReadingKind`: a job that only reads (``export_metrics``): ``bulkops run`` runs its task
  graph (``root_tasks``) and reports its ``summary`` and ``progress``.
- :class:`PlannedKind`: a job that writes (``clone_experiments``, ``batch_rule_update``): ``plan``
  builds a :class:`~bulkops.engine.plan.Plan` and shows it, ``apply`` applies it, ``undo`` turns
  what apply wrote back into a plan of its own.

The registry in ``bulkops.jobs`` holds each kind as the Protocol it implements, so mypy checks
every hook's name and signature there: a misnamed hook fails the type check, not a user's run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from bulkops.api.client import ConsoleClient
from bulkops.engine.graph import Scheduler, Task
from bulkops.engine.journal import Journal
from bulkops.engine.spool import Spool
from bulkops.engine.state import StateDir
from bulkops.jobs.spec import JobDefinition, JobSpec, SpecT_co

if TYPE_CHECKING:  # only the writing kinds need plans; a reading job never imports them
    from bulkops.engine.plan import HeldReviews, Operation, Plan

#: A kind's spec model, in its contract (invariant: a kind takes and gives jobs of its own model).
SpecT = TypeVar("SpecT", bound=JobSpec)


@dataclass
class RunContext(Generic[SpecT_co]):
    """Everything a job's tasks may touch during one run."""

    job: JobDefinition[SpecT_co]
    run_id: str
    state: StateDir
    journal: Journal
    scheduler: Scheduler
    spool: Spool
    #: One client per role of the job file ("source", "target").
    clients: dict[str, ConsoleClient]
    started_at: float
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Count:
    """``done`` of ``total`` ``unit`` (``total`` None: not known yet).

    ``at_least_seconds`` is a floor on the time still needed (the mutation quota), ``note`` a short
    remark for people (``18 of 24 sources announced``).
    """

    done: int
    total: int | None
    unit: str
    at_least_seconds: float = 0.0
    note: str = ""


class _Kind(Protocol[SpecT]):
    """What every job kind has, reading or writing."""

    @property
    def spec_model(self) -> type[SpecT]:
        """The job file's model (the ``Spec`` class of the kind's module)."""
        ...

    @property
    def sandbox_projects(self) -> Mapping[str, str]:
        """``--sandbox``: the demo project each role opens, where it is not the role's name."""
        ...

    def check(self, job: JobDefinition[SpecT]) -> None:
        """What the schema cannot see, checked by ``validate`` and every command (JobFileError)."""
        ...


class ReadingKind(_Kind[SpecT], Protocol[SpecT]):
    """A job that only reads: ``bulkops run`` runs its task graph."""

    def preflight(self, job: JobDefinition[SpecT]) -> None:
        """Checks before the first request (e.g. the output directory is writable); exit 2."""
        ...

    def root_tasks(self, ctx: RunContext[SpecT]) -> list[Task]:
        """The graph's first tasks; their children expand the rest."""
        ...

    def summary(self, ctx: RunContext[SpecT]) -> dict[str, Any]:
        """The kind's part of the run summary (``summary.job``)."""
        ...

    def progress(self, ctx: RunContext[SpecT]) -> Count | None:
        """Progress in the kind's own units; None: count the graph's settled tasks."""
        ...


class PlannedKind(_Kind[SpecT], Protocol[SpecT]):
    """A job that writes: read, plan, apply, verify (and perhaps undo)."""

    async def build_plan(
        self, job: JobDefinition[SpecT], clients: dict[str, ConsoleClient], held: HeldReviews
    ) -> Plan:
        """Read the projects and plan every mutation; sends none. ``held``: what earlier runs'
        changes are held for review on (a job honouring reviews leaves those alone)."""
        ...

    def render_plan(self, plan: Plan) -> list[str]:
        """The plan, for people (printed by ``plan`` and ``run``)."""
        ...

    def respect_review(self, job: JobDefinition[SpecT]) -> bool:
        """Whether apply leaves alone an entity whose review is pending."""
        ...

    @property
    def supports_undo(self) -> bool:
        """Whether ``bulkops undo`` can restore what apply wrote."""
        ...

    def undo_operation(self, op: Operation, after: dict[str, Any]) -> Operation | None:
        """The operation that restores what ``op`` wrote (``after``: the entity it left)."""
        ...
