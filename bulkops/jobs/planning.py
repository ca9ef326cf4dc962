"""A planned (writing) job kind made of its module's functions.

Each writing kind's module declares ``KIND = PlannedFunctions(Spec, build_plan_=..., ...)``; the
registry holds it as a ``bulkops.jobs.base.PlannedKind``, so mypy checks the hooks there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from bulkops.jobs.spec import JobDefinition, JobSpec

if TYPE_CHECKING:
    from bulkops.api.client import ConsoleClient
    from bulkops.engine.plan import HeldReviews, Operation, Plan

SpecT = TypeVar("SpecT", bound=JobSpec)


def _no_check(job: JobDefinition[Any]) -> None:
    """Nothing beyond the schema."""


@dataclass(frozen=True)
class PlannedFunctions(Generic[SpecT]):
    """A ``PlannedKind``: plan, show, honour reviews, and (when ``undo_operation_`` is given) undo."""

    spec_model: type[SpecT]
    build_plan_: Callable[
        [JobDefinition[SpecT], dict[str, ConsoleClient], HeldReviews], Awaitable[Plan]
    ]
    render_plan_: Callable[[Plan], list[str]]
    respect_review_: Callable[[JobDefinition[SpecT]], bool]
    undo_operation_: Callable[[Operation, dict[str, Any]], Operation | None] | None = None
    check_: Callable[[JobDefinition[SpecT]], None] = _no_check
    sandbox_projects: Mapping[str, str] = field(default_factory=dict)

    @property
    def supports_undo(self) -> bool:
        return self.undo_operation_ is not None

    def check(self, job: JobDefinition[SpecT]) -> None:
        self.check_(job)

    async def build_plan(
        self, job: JobDefinition[SpecT], clients: dict[str, ConsoleClient], held: HeldReviews
    ) -> Plan:
        return await self.build_plan_(job, clients, held)

    def render_plan(self, plan: Plan) -> list[str]:
        return self.render_plan_(plan)

    def respect_review(self, job: JobDefinition[SpecT]) -> bool:
        return self.respect_review_(job)

    def undo_operation(self, op: Operation, after: dict[str, Any]) -> Operation | None:
        return None if self.undo_operation_ is None else self.undo_operation_(op, after)
