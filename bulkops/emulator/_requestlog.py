"""What the emulator saw: one frozen record per request, and filters over them.

Tests assert on behaviour through this log ("the job made exactly 24 mutations on target", "no
request hit the source project after the export finished") instead of patching the client. The
log is written from the emulator's event loop and read from test code, possibly on another
thread (:class:`EmulatorThread`), hence the lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["ANY", "FaultKind", "RequestLog", "RequestRecord"]

FaultKind = Literal["server_error", "drop", "truncate", "lost_answer", "list_change"]

ANY: object = object()
"""Filter sentinel: "no constraint" (None is a real value for ``project`` and ``fault``)."""


@dataclass(frozen=True)
class RequestRecord:
    """One request as the emulator handled it.

    ``path`` is percent-decoded (``/console/v1/metrics/metric_source/a/b``); ``raw_path`` is as
    sent. ``status`` is the status the emulator produced, or None when no handler ran (dropped
    connection). For ``lost_answer`` it is the status the applied mutation would have returned.
    ``time`` is the world's monotonic clock when the emulator finished with the request, so
    the log is in time order.
    """

    project: str | None
    method: str
    path: str
    query: dict[str, str]
    status: int | None
    is_mutation: bool
    fault: FaultKind | None
    time: float
    raw_path: str = field(default="", compare=False)


class RequestLog:
    """Append-only, thread-safe list of :class:`RequestRecord`."""

    def __init__(self) -> None:
        self._records: list[RequestRecord] = []
        self._lock = threading.Lock()

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def __repr__(self) -> str:
        return f"RequestLog(records={len(self)})"

    def select(
        self,
        *,
        project: str | None | object = ANY,
        method: str | None = None,
        path_prefix: str | None = None,
        status: int | None | object = ANY,
        is_mutation: bool | None = None,
        fault: FaultKind | None | object = ANY,
    ) -> list[RequestRecord]:
        """Records matching every filter given (``project=None`` means unauthenticated)."""
        wanted_method = method.upper() if method else None
        out = []
        for r in self.snapshot():
            if project is not ANY and r.project != project:
                continue
            if wanted_method is not None and r.method != wanted_method:
                continue
            if path_prefix is not None and not r.path.startswith(path_prefix):
                continue
            if status is not ANY and r.status != status:
                continue
            if is_mutation is not None and r.is_mutation != is_mutation:
                continue
            if fault is not ANY and r.fault != fault:
                continue
            out.append(r)
        return out
