"""Rate windows: at most COUNT events in any DURATION-long span (``"100/10s"``, ``"900/15min"``).

The governor paces by them; job files write them as text, parsed here with messages that say
which part is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

_WINDOW = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?|\.\d+)?\s*(s|sec|min|m|h)\s*$")
_UNIT_SECONDS = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0}
_WINDOW_FORM = 'COUNT/DURATION with a unit of s, min or h, e.g. "100/10s" or "900/15min"'
MIN_WINDOW_SECONDS = 1.0
MAX_WINDOW_SECONDS = 24 * 3600.0


def quoted(text: str) -> str:
    """A string as a job file writes it: ``"100/10s"``."""
    return orjson.dumps(text).decode()


@dataclass(frozen=True)
class RateWindow:
    """At most ``limit`` events in any ``seconds``-long span."""

    limit: int
    seconds: float

    @classmethod
    def parse(cls, text: str) -> RateWindow:
        """``"100/10s"`` -> 100 per 10 s; ValueError saying which part is wrong otherwise."""
        match = _WINDOW.match(text)
        if not match:
            raise ValueError(
                f"expected a rate window written as {_WINDOW_FORM}, got {quoted(text)} (a string)"
            )
        count, amount, unit = match.groups()
        seconds = (float(amount) if amount else 1.0) * _UNIT_SECONDS[unit]
        if int(count) < 1:
            raise ValueError(
                f"the count of {quoted(text)} is {int(count)}; a window (COUNT/DURATION) needs a "
                "count of at least 1"
            )
        if not MIN_WINDOW_SECONDS <= seconds <= MAX_WINDOW_SECONDS:
            raise ValueError(
                f"the duration of {quoted(text)} is {_duration(seconds)}; a window "
                "(COUNT/DURATION) needs a duration from 1s to 24h"
            )
        return cls(int(count), seconds)

    def __str__(self) -> str:
        return f"{self.limit}/{_duration(self.seconds)}"


def _duration(seconds: float) -> str:
    for unit, size in (("h", 3600.0), ("min", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
