"""One project of a job over several (``[[sources]]``/``[[targets]]``), as its pipeline sees it.

A job over N projects runs N single-project commands at once, each the very same ``run``,
``plan``, ``apply`` or ``undo`` a one-project job runs (``bulkops.commands.fleet``). While one
runs, :func:`current` names its project, and the pipeline's few seams ask it what differs:

- ``session.connect`` hands over the connection the fleet opened (its own clients, so its own
  governor lane), instead of opening one and a log file of its own;
- ``run.execute`` gives its progress to the fleet's board instead of drawing it (``watched``);
- ``run.finish`` records the run, but the fleet prints one summary for all (``finished``);
- a plan's apply sends no mutation before every project's first mutation is ready to go or
  its command stopped (``ready_to_apply``), so that every project's first burst leaves at once;
- what the pipeline says for people (the plan) is kept under the project's name (``say``),
  and the next step it would suggest for a single job is left to the fleet (``hint``).

Outside a fleet :func:`current` is None and every seam does what a single-project job does.
"""

from __future__ import annotations

import functools
import time
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


#: How long the start line waits, once every project is ready to apply, for the first mutation
#: of a project that has none ready yet (its first operations conflict, or read slowly).
START_GRACE_S = 2.0


class StartLine:
    """Where the projects of a fleet wait for each other before their first mutation.

    A project is *ready* once it is ready to apply (planned, or resuming a saved plan). It is
    *at the line* once its first mutation is ready to go (its windows allow it, its ledger
    reservation is made) or would wait for the project's own windows or quota
    (``RateGovernor.hold_mutations`` says when), or once its command ended for any reason (a
    failed plan, a refusal, an interrupt, an apply with nothing to send). The line opens when
    every project is at the line, so every first mutation leaves at the same moment, with
    nothing left to do but send (a reservation made while the others still came up to the line
    no longer staggers their start); or ``grace`` seconds after every project was ready, so a
    project whose first mutation comes late holds the others up no longer than that. No
    project waits for another's quota, and one that will never apply holds no one up.
    """

    def __init__(self, names: Iterable[str], *, grace: float = START_GRACE_S) -> None:
        self._away = set(names)
        self._unready = set(self._away)
        self._grace = grace
        self._open = anyio.Event()
        self._all_ready = anyio.Event()
        self._ready_at = 0.0
        self._check()

    def ready(self, name: str) -> None:
        """``name`` is ready to apply: its first mutation will come up to the line soon."""
        self._unready.discard(name)
        self._check()

    def reach(self, name: str) -> None:
        """``name`` is at the line (its first mutation is ready), or will never apply (its
        command ended)."""
        self._away.discard(name)
        self._unready.discard(name)
        self._check()

    def _check(self) -> None:
        if not self._unready and not self._all_ready.is_set():
            self._ready_at = time.monotonic()
            self._all_ready.set()
        if not self._away:
            self._open.set()

    async def at_line(self, name: str) -> None:
        """``name``'s first mutation is at the line: return once the line opens."""
        self.reach(name)
        await self.opened()

    async def opened(self) -> None:
        """Return once every project is at the line, or ``grace`` after every one was ready."""
        if self._open.is_set():
            return
        await self._all_ready.wait()
        with anyio.move_on_after(self._ready_at + self._grace - time.monotonic()):
            await self._open.wait()
        self._open.set()


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
    """A plan's apply begins: alone, None (send at once); in a fleet, this project is ready
    (``StartLine``), and what its first mutation awaits once it is ready to go: the line."""
    member = current()
    if member is None or member.start is None:
        return None
    member.start.ready(member.name)
    return functools.partial(member.start.at_line, member.name)


def finished(run: dict[str, Any], exit_code: int) -> bool:
    """Note a finished run; True when the caller should print its summary (a single job)."""
    member = current()
    if member is None:
        return True
    member.run, member.exit_code = run, exit_code
    return False
