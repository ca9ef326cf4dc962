"""Per-project mutation quotas as sliding windows of attempt timestamps.

The Console API limits mutations per project (~100 per 10 s and ~900 per 15 min) and counts
attempts the limiter rejects toward the quota (reference §4), so a client that retries 429s at
once digs itself deeper. A sliding log reproduces that exactly: every attempt is recorded, then the
attempt is refused if any window now holds more than its limit.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

from ._config import QuotaWindow

__all__ = ["SlidingWindowQuota", "retry_after_header"]


class SlidingWindowQuota:
    """Attempts per sliding window; :meth:`attempt` records one and says if it is allowed."""

    def __init__(self, windows: Sequence[QuotaWindow]) -> None:
        self.windows = tuple(windows)
        self._stamps: list[deque[float]] = [deque() for _ in self.windows]

    def attempt(self, now: float) -> float | None:
        """Record an attempt at ``now``; None if allowed, else seconds until one would be."""
        retry_after: float | None = None
        for window, stamps in zip(self.windows, self._stamps, strict=True):
            while stamps and stamps[0] <= now - window.seconds:
                stamps.popleft()
            stamps.append(now)
            if len(stamps) > window.limit:
                # The next attempt fits once all but limit-1 of the recorded ones have aged out.
                oldest_blocking = stamps[len(stamps) - window.limit]
                wait = oldest_blocking + window.seconds - now
                retry_after = wait if retry_after is None else max(retry_after, wait)
        return retry_after

    def minimum_seconds(self, attempts: int) -> float:
        """The least time ``attempts`` accepted attempts take under these windows, from idle."""
        return max(
            (max(0, math.ceil(attempts / w.limit) - 1) * w.seconds for w in self.windows),
            default=0.0,
        )

    def counts(self, now: float) -> tuple[int, ...]:
        """Attempts currently inside each window (for tests and ``repr``)."""
        return tuple(
            sum(1 for t in stamps if t > now - window.seconds)
            for window, stamps in zip(self.windows, self._stamps, strict=True)
        )

    def __repr__(self) -> str:
        pairs = zip(self.windows, self._stamps, strict=True)
        spans = ", ".join(f"{w.text}: {len(s)} recorded" for w, s in pairs)
        return f"SlidingWindowQuota({spans})"


def retry_after_header(seconds: float) -> str:
    """Whole seconds, at least 1, as ``Retry-After`` wants."""
    return str(max(1, math.ceil(seconds)))
