"""One project of a job over several (``[[sources]]``/``[[targets]]``), as its pipeline sees it.

A job over N projects runs N single-project commands at once, each the very same ``run``,
``plan``, ``apply`` or ``undo`` a one-project job runs (``bulkops.commands.fleet``). While one
runs, :func:`current` names its project, and the pipeline's few seams ask it what differs:

- ``session.connect`` hands over the connection the fleet opened (its own clients, so its own
  governor lane), instead of opening one and a log file of its own;
- ``run.execute`` gives its progress to the fleet's board instead of drawing it (``watched``);
- ``run.finish`` records the run, but the fleet prints one summary for all (``finished``);
- a plan's apply sends no mutation before every project has planned or stopped
  (``ready_to_apply``), so that every project's first burst of mutations leaves at once;
- what the pipeline says for people (the plan) is kept under the project's name (``say``),
  and the next step it would suggest for a single job is left to the fleet (``hint``).

Outside a fleet :func:`current` is None and every seam does what a single-project job does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from bulkops import human

if TYPE_CHECKING:
    from bulkops.commands.session import Connection


class Reporter(Protocol):
    """What runs beside a task graph to report its progress (``progress.Progress``)."""

    async def run(self) -> None: ...


class StartLine:
    """Where the projects of a fleet wait for each other before their first mutation.

    A project is *at the line* once it is ready to apply (planned, or resuming a saved plan) or
    once its command ended for any reason (a failed plan, a refusal, an interrupt): the line
    opens when every project is, so no project's first burst leaves while another still plans,
    and a project that will never apply cannot hold the others up.
    """

    def __init__(self, names: Iterable[str]) -> None:
        self._away = set(names)
        self._open = anyio.Event()
        if not self._away:
            self._open.set()

    def reach(self, name: str) -> None:
        """``name`` is ready to apply, or will never apply (its command ended)."""
        self._away.discard(name)
        if not self._away:
            self._open.set()

    async def opened(self) -> None:
        """Return once every project is at the line."""
        if not self._open.is_set():
            await self._open.wait()


@dataclass
class Member:
    """One project's part of a fleet run: what the fleet opened for it and what it left."""

    name: str
    connection: Connection
    #: What the pipeline said for people, in order: ``(text, to stderr?)``.
    lines: list[tuple[str, bool]] = field(default_factory=list)
    #: The progress of its task graph while one runs (``progress.Progress``).
    progress: Any = None
    #: Its run record once finished (``run.json``), and the exit code it ended with.
    run: dict[str, Any] | None = None
    exit_code: int | None = None
    #: Shared by the fleet's projects: where each waits for the others before applying.
    start: StartLine | None = None


_CURRENT: ContextVar[Member | None] = ContextVar("bulkops_member", default=None)


def current() -> Member | None:
    """The project of a fleet this task works for, or None in a single-project job."""
    return _CURRENT.get()


@contextmanager
def acting_as(member: Member) -> Iterator[Member]:
    token = _CURRENT.set(member)
    try:
        yield member
    finally:
        _CURRENT.reset(token)


def say(text: str, *, err: bool = False) -> None:
    """Say it now, or, for one project of a fleet, keep it for the fleet to show under its name."""
    member = current()
    if member is None:
        human.say(text, err=err)
    else:
        member.lines.append((text, err))


def hint(text: str, *, err: bool = False) -> None:
    """A next step for a single-project job; a fleet suggests its own (for all its projects)."""
    if current() is None:
        human.say(text, err=err)


class _Quiet:
    async def run(self) -> None:
        await anyio.sleep_forever()


def watched(progress: Reporter) -> Reporter:
    """The reporter to run beside a task graph: its own, or, in a fleet, none (the fleet's
    board shows every project's progress at once)."""
    member = current()
    if member is None:
        return progress
    member.progress = progress
    return _Quiet()


def ready_to_apply() -> Callable[[], Awaitable[None]] | None:
    """A plan's apply begins: alone, None (send at once); in a fleet, this project is at the
    start line (``StartLine``), and what its mutations await first: every project there."""
    member = current()
    if member is None or member.start is None:
        return None
    member.start.reach(member.name)
    return member.start.opened


def finished(run: dict[str, Any], exit_code: int) -> bool:
    """Note a finished run; True when the caller should print its summary (a single job)."""
    member = current()
    if member is None:
        return True
    member.run, member.exit_code = run, exit_code
    return False
