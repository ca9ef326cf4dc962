"""What every job kind plugs into: the run context it gets, and the protocol it implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from bulkops.api.client import ConsoleClient
from bulkops.engine.graph import Scheduler, Task
from bulkops.engine.journal import Journal
from bulkops.engine.spool import Spool
from bulkops.engine.state import StateDir
from bulkops.jobs.spec import JobDefinition, JobSpec


@dataclass
class RunContext:
    """Everything a job's tasks may touch during one run."""

    job: JobDefinition
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


class JobKind(Protocol):
    """A module in ``bulkops.jobs`` that implements one kind of job."""

    Spec: type[JobSpec]

    def root_tasks(self, ctx: RunContext) -> list[Task]: ...

    def summary(self, ctx: RunContext) -> dict[str, Any]: ...
