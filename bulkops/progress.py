"""Progress: a live status line on a terminal, periodic ``bulkops.progress`` events elsewhere."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import Any

import anyio
import structlog

from bulkops import logs
from bulkops.api.client import ConsoleClient
from bulkops.engine.graph import Scheduler, eta_seconds

log = structlog.get_logger("bulkops.progress")


class Progress:
    def __init__(
        self,
        scheduler: Scheduler,
        clients: Iterable[ConsoleClient],
        *,
        live: bool | None = None,
        interval: float | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.clients = list({id(c): c for c in clients}.values())
        self.live = sys.stderr.isatty() if live is None else live
        self.interval = interval if interval is not None else (0.5 if self.live else 10.0)
        self.started = time.monotonic()

    def snapshot(self) -> dict[str, Any]:
        done = self.scheduler.settled()
        total = self.scheduler.total
        elapsed = time.monotonic() - self.started
        return {
            "done": done,
            "total": total,
            "requests": sum(c.stats.requests for c in self.clients),
            "retries": sum(c.stats.retries for c in self.clients),
            "rate_limited": sum(c.stats.rate_limited for c in self.clients),
            "elapsed_s": round(elapsed, 1),
            "eta_s": round(min(eta_seconds(done, total, elapsed), 1e9), 1),
        }

    def line(self) -> str:
        s = self.snapshot()
        eta = "?" if s["eta_s"] >= 1e9 else f"{s['eta_s']:.0f}s"
        return (
            f"tasks {s['done']}/{s['total']}  requests {s['requests']}  retries {s['retries']}  "
            f"429s {s['rate_limited']}  elapsed {s['elapsed_s']:.0f}s  eta {eta}"
        )

    async def run(self) -> None:
        """Report until cancelled."""
        if not self.live:
            while True:
                await anyio.sleep(self.interval)
                log.info("bulkops.progress", **self.snapshot())
        logs.live_line.active = True
        try:
            while True:
                logs.live_line.show(self.line())
                await anyio.sleep(self.interval)
        finally:
            logs.live_line.clear()
            logs.live_line.active = False
