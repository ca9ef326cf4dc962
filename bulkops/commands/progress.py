"""Progress in the job's own units: a live line on a terminal, periodic ``bulkops.progress`` events
elsewhere.

What counts as done comes from a *units hook*, a callable returning a :class:`Count`:

- a reading kind's ``progress(ctx)`` (``export_metrics``: metrics read of the total the server
  announced), when it returns one;
- the graph of a writing job (apply, undo) is one task per mutation, so it counts mutations and
  adds the time the mutation windows still need for the rest (``mutation_units``);
- otherwise, settled tasks of the graph (``task_units``).

An ETA is shown only when it means something: some work done, the total known, and a few seconds
of history to extrapolate from.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import anyio
import structlog

from bulkops import logs
from bulkops.api.client import ConsoleClient
from bulkops.engine.graph import Scheduler, eta_seconds
from bulkops.human import count, duration
from bulkops.jobs.base import Count

log = structlog.get_logger("bulkops.progress")

#: Below this much elapsed time a rate-based ETA is noise; it is not shown.
ETA_AFTER_SECONDS = 3.0


UnitsHook = Callable[[], Count]


def task_units(scheduler: Scheduler) -> Count:
    return Count(scheduler.settled(), scheduler.total, "tasks")


def mutation_units(scheduler: Scheduler, clients: Iterable[ConsoleClient]) -> Count:
    """For a graph of one task per planned mutation: mutations settled, sent, and quota still needed."""
    clients = list(clients)
    done, total = scheduler.settled(), scheduler.total
    sent = sum(c.stats.mutations for c in clients)
    quota = max((c.governor.minimum_seconds(total - done) for c in clients), default=0.0)
    return Count(done, total, "mutations", at_least_seconds=quota, note=f"{count(sent)} sent")


class Progress:
    def __init__(
        self,
        scheduler: Scheduler,
        clients: Iterable[ConsoleClient],
        *,
        units: UnitsHook | None = None,
        live: bool | None = None,
        interval: float | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.clients = list({id(c): c for c in clients}.values())
        self.units = units or (lambda: task_units(scheduler))
        self.live = sys.stderr.isatty() if live is None else live
        self.interval = interval if interval is not None else (0.5 if self.live else 10.0)
        self.started = time.monotonic()

    def eta(self, units: Count, elapsed: float) -> float | None:
        """Seconds still needed, or None when no estimate would mean anything."""
        if units.total is None or units.done >= units.total:
            return None
        rate_based = None
        if units.done > 0 and elapsed >= ETA_AFTER_SECONDS:
            rate_based = eta_seconds(units.done, units.total, elapsed)
        if rate_based is None and not units.at_least_seconds:
            return None
        return max(rate_based or 0.0, units.at_least_seconds)

    def snapshot(self) -> dict[str, Any]:
        units = self.units()
        elapsed = time.monotonic() - self.started
        eta = self.eta(units, elapsed)
        return {
            "unit": units.unit,
            "done": units.done,
            "total": units.total,
            "requests": sum(c.stats.requests for c in self.clients),
            "retries": sum(c.stats.retries for c in self.clients),
            "rate_limited": sum(c.stats.rate_limited for c in self.clients),
            "elapsed_s": round(elapsed, 1),
            "eta_s": None if eta is None else round(eta, 1),
            "text": self._text(units, elapsed, eta),
        }

    def line(self) -> str:
        return str(self.snapshot()["text"])

    def _text(self, units: Count, elapsed: float, eta: float | None) -> str:
        total = "" if units.total is None else f" of {count(units.total)}"
        note = f" ({units.note})" if units.note else ""
        parts = [f"{units.unit} {count(units.done)}{total}{note}"]
        parts.append(f"{count(sum(c.stats.requests for c in self.clients))} requests")
        retries = sum(c.stats.retries for c in self.clients)
        limited = sum(c.stats.rate_limited for c in self.clients)
        if retries or limited:
            parts.append(f"{count(retries)} retries, {count(limited)} rate-limited")
        parts.append(f"{duration(elapsed)} elapsed")
        if eta is not None:
            quota_bound = units.at_least_seconds and eta <= units.at_least_seconds
            parts.append(
                f"{'quota needs at least' if quota_bound else 'about'} {duration(eta)} more"
            )
        return ", ".join(parts)

    async def run(self) -> None:
        """Report until cancelled."""
        if not self.live:
            while True:
                await anyio.sleep(self.interval)
                log.info("bulkops.progress", **self.snapshot())
        await show_live(self.line, self.interval)


async def show_live(line: Callable[[], str], interval: float) -> None:
    """Keep ``line()`` on the terminal's live line, refreshed every ``interval``, until cancelled."""
    logs.live_line.active = True
    try:
        while True:
            logs.live_line.show(line())
            await anyio.sleep(interval)
    finally:
        logs.live_line.clear()
        logs.live_line.active = False


class Board:
    """The progress of a job over several projects: one entry per project, in one live line on
    a terminal, or one periodic ``bulkops.progress`` event with every project elsewhere.

    ``members`` maps each project's name to its ``member.Member``, whose ``progress`` (the
    :class:`Progress` of its task graph) appears once the graph starts.
    """

    def __init__(
        self, members: Mapping[str, Any], *, live: bool | None = None, interval: float | None = None
    ) -> None:
        self.members = members
        self.live = sys.stderr.isatty() if live is None else live
        self.interval = interval if interval is not None else (0.5 if self.live else 10.0)
        self.started = time.monotonic()

    def projects(self) -> dict[str, dict[str, Any]]:
        """Each project's progress now: its own snapshot, or the phase it is in."""
        found: dict[str, dict[str, Any]] = {}
        for name, one in self.members.items():
            if one.exit_code is not None:
                found[name] = {
                    "text": f"finished (exit {one.exit_code})",
                    "exit_code": one.exit_code,
                }
            elif one.progress is not None:
                found[name] = one.progress.snapshot()
            else:
                found[name] = {"text": "reading and planning"}
        return found

    def line(self) -> str:
        projects = self.projects()
        done = sum(1 for one in self.members.values() if one.exit_code is not None)
        parts = [f"{name}: {entry['text']}" for name, entry in projects.items()]
        head = f"{done} of {count(len(projects))} projects finished"
        return " | ".join([head, *parts])

    async def run(self) -> None:
        """Report until cancelled."""
        if not self.live:
            while True:
                await anyio.sleep(self.interval)
                elapsed = round(time.monotonic() - self.started, 1)
                log.info("bulkops.progress", elapsed_s=elapsed, projects=self.projects())
        await show_live(self.line, self.interval)
