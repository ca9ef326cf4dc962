"""The World: every project, the key lookup, the request log and the quota state.

A World is plain data plus bookkeeping and outlives any one server: tests build a world, run an
emulator over it, then inspect both the data (``world.project("target")``) and what was asked
(``world.requests(...)``). Time is injected (``clock`` for quota windows and the log, ``wall_clock``
for ``createdTime``-style epoch fields) so quota tests advance a fake clock instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

from ._config import QuotaWindow
from ._quota import SlidingWindowQuota
from ._requestlog import ANY, FaultKind, RequestLog, RequestRecord
from ._store import Project

__all__ = ["KeyScope", "World"]

KeyScope = Literal["read_write", "read_only"]


class World:
    """Projects keyed by name, with a key→project lookup, request log and quota state."""

    def __init__(
        self,
        projects: Iterable[Project] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock
        self.wall_clock = wall_clock
        self.projects: dict[str, Project] = {}
        self._keys: dict[str, tuple[Project, KeyScope]] = {}
        self._log = RequestLog()
        self._quotas: dict[tuple[str, str], SlidingWindowQuota] = {}
        self._in_flight: dict[str, int] = {}
        self._max_in_flight: dict[str, int] = {}
        self._lock = threading.Lock()
        for project in projects:
            self.add_project(project)

    # -- projects and keys -------------------------------------------------------------------

    def add_project(self, project: Project) -> Project:
        """Register a project and its keys; names and keys must be unique across the world."""
        if project.name in self.projects:
            raise ValueError(f"World already has a project named {project.name!r}")
        for key in project.keys:
            if key in self._keys:
                raise ValueError(
                    f"Key {key!r} of project {project.name!r} already belongs to project "
                    f"{self._keys[key][0].name!r}; each key must name one project"
                )
        self.projects[project.name] = project
        self._keys[project.console_key] = (project, "read_write")
        for key in project.read_only_keys:
            self._keys[key] = (project, "read_only")
        return project

    def project(self, name: str) -> Project:
        """The project called ``name``; the KeyError lists the names that exist."""
        try:
            return self.projects[name]
        except KeyError:
            raise KeyError(
                f"No project {name!r} in this world; it has {sorted(self.projects)}"
            ) from None

    def authenticate(self, key: str | None) -> tuple[Project, KeyScope] | None:
        """The project and scope a key grants, or None for a missing/unknown key."""
        if key is None:
            return None
        return self._keys.get(key)

    # -- request log -------------------------------------------------------------------------

    @property
    def request_log(self) -> list[RequestRecord]:
        """A snapshot of every request recorded so far, oldest first."""
        return self._log.snapshot()

    def record(self, record: RequestRecord) -> None:
        self._log.append(record)

    def requests(
        self,
        *,
        project: str | None | object = ANY,
        method: str | None = None,
        path_prefix: str | None = None,
        status: int | None | object = ANY,
        is_mutation: bool | None = None,
        fault: FaultKind | None | object = ANY,
    ) -> list[RequestRecord]:
        """Recorded requests matching all given filters (``project=None``: unauthenticated)."""
        return self._log.select(
            project=project,
            method=method,
            path_prefix=path_prefix,
            status=status,
            is_mutation=is_mutation,
            fault=fault,
        )

    def count(self, **filters: Any) -> int:
        """``len(world.requests(**filters))``."""
        return len(self.requests(**filters))

    def clear_log(self) -> None:
        """Forget recorded requests (quota state is kept)."""
        self._log.clear()

    # -- quotas ------------------------------------------------------------------------------

    def quota(
        self, project: str, bucket: str, windows: tuple[QuotaWindow, ...]
    ) -> SlidingWindowQuota:
        """The sliding-window state of one project's bucket, created on first use."""
        key = (project, bucket)
        found = self._quotas.get(key)
        if found is None or found.windows != windows:
            found = self._quotas[key] = SlidingWindowQuota(windows)
        return found

    def reset_quotas(self) -> None:
        """Forget every recorded mutation attempt."""
        self._quotas.clear()

    # -- concurrency observation -------------------------------------------------------------

    def enter_request(self, project: str) -> None:
        with self._lock:
            now = self._in_flight.get(project, 0) + 1
            self._in_flight[project] = now
            if now > self._max_in_flight.get(project, 0):
                self._max_in_flight[project] = now

    def leave_request(self, project: str) -> None:
        with self._lock:
            self._in_flight[project] -= 1

    def max_in_flight(self, project: str) -> int:
        """The most requests this project ever had in flight at once (reads and mutations)."""
        with self._lock:
            return self._max_in_flight.get(project, 0)

    def __repr__(self) -> str:
        return f"World(projects={list(self.projects)}, requests={len(self._log)})"
