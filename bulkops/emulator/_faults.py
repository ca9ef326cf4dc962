"""Seeded fault injection that does not depend on how requests interleave.

Each request is keyed by (project, method, decoded path, sorted query) and by how many times that
exact request was seen before. A hash of (seed, key, occurrence) gives the latency jitter and one
uniform draw that picks at most one fault. So a job that sends the same requests, in any order and
at any concurrency, meets the same faults: a failing test can be replayed with its seed.

Fault kinds:

* ``server_error``: a 500, 502 or 503 instead of the answer; a mutation is not applied.
* ``drop``: the connection closes without a response; a mutation is not applied.
* ``truncate``: headers announce the full ``Content-Length`` but only part of the body is written
  before the connection closes; a mutation is not applied.
* ``lost_answer`` (mutations only): the mutation is applied, then the connection is dropped, so
  the client cannot know it succeeded; this is what reconciliation after a timeout must handle.
* ``list_change`` (a page of a list, before its last): the page is answered as it is, then the
  list's collection gains or loses one entity before the next page is read
  (:mod:`._list_changes`); drawn apart from the others, at most ``list_change_limit`` times.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from ._config import EmulatorConfig
from ._ids import unit_float
from ._requestlog import FaultKind

__all__ = ["FaultDecision", "FaultPlanner"]

_SERVER_ERROR_STATUSES = (500, 502, 503)


@dataclass(frozen=True)
class FaultDecision:
    """What to do to one request: extra latency, and at most one fault."""

    latency_s: float
    fault: FaultKind | None
    error_status: int = 500
    truncate_fraction: float = 0.5
    #: Whether the list this page belongs to changes once the page is answered.
    list_change: bool = False
    #: Seeded picks for that change: which kind (add or delete), which entity.
    list_change_kind: str = "add"
    list_change_pick: float = 0.0


class FaultPlanner:
    """Decides faults per request; holds the per-request occurrence counters."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self._seen: Counter[tuple[str, str, str, str]] = Counter()
        #: List changes made so far (``list_change_limit`` caps them).
        self.list_changes = 0

    def decide(
        self,
        project: str,
        method: str,
        path: str,
        query: Iterable[tuple[str, str]],
        *,
        is_mutation: bool,
    ) -> FaultDecision:
        """Count this request and return its (reproducible) fate."""
        cfg = self.config
        query_text = "&".join(f"{k}={v}" for k, v in sorted(query))
        key = (project, method, path, query_text)
        occurrence = self._seen[key]
        self._seen[key] += 1
        base = (cfg.fault_seed, *key, occurrence)

        latency = cfg.latency_ms
        if cfg.latency_jitter_ms:
            latency += cfg.latency_jitter_ms * unit_float(*base, "jitter")
        # Each draw is its own hash of the request's key, so a draw nobody needs is skipped (a
        # rate of 0 can pick nothing) without changing any other: the same seed, the same fates.
        in_scope = not cfg.fault_paths or path.startswith(cfg.fault_paths)
        choices: list[tuple[float, FaultKind]] = [
            (cfg.drop_rate, "drop"),
            (cfg.truncate_rate, "truncate"),
            (cfg.fail_rate, "server_error"),
        ]
        if is_mutation:
            choices.append((cfg.lost_answer_rate, "lost_answer"))
        fault: FaultKind | None = None
        if in_scope and any(rate > 0 for rate, _ in choices):
            draw = unit_float(*base, "fault")
            threshold = 0.0
            for rate, kind in choices:
                threshold += rate
                if draw < threshold:
                    fault = kind
                    break
        list_change = (
            in_scope
            and method == "GET"
            and fault is None
            and cfg.list_change_rate > 0
            and unit_float(*base, "list_change") < cfg.list_change_rate
        )
        if fault is None and not list_change:
            return FaultDecision(latency_s=latency / 1000.0, fault=None)
        pick = unit_float(*base, "detail")
        change_kinds = cfg.list_change_kinds
        return FaultDecision(
            latency_s=latency / 1000.0,
            fault=fault,
            error_status=_SERVER_ERROR_STATUSES[int(pick * len(_SERVER_ERROR_STATUSES))],
            truncate_fraction=0.1 + 0.8 * pick,
            list_change=list_change,
            list_change_kind=change_kinds[int(pick * len(change_kinds))],
            list_change_pick=unit_float(*base, "list_change_pick") if list_change else 0.0,
        )

    def take_list_change(self) -> bool:
        """Count one list change if the limit allows another."""
        limit = self.config.list_change_limit
        if limit is not None and self.list_changes >= limit:
            return False
        self.list_changes += 1
        return True

    def __repr__(self) -> str:
        return f"FaultPlanner(seed={self.config.fault_seed}, distinct_requests={len(self._seen)})"
