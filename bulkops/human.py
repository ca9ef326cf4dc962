"""Text for people: durations, counts, lists and aligned tables, never a Python repr.

Everything a person reads on stdout or stderr goes through these helpers, so ``None``, ``[]`` and
``{'200': 39}`` have one readable spelling each (``none``, ``none``, ``39 × 200``).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

NONE = "none"


def say(line: str, *, err: bool = False) -> None:
    """Write one line for a person: results on stdout, messages about the run (``err``) on stderr.

    The one place bulkops prints plain text (ruff's T20 keeps ``print`` out of the rest); the
    stream is looked up at each call, so a redirected ``sys.stdout`` is honoured.
    """
    stream = sys.stderr if err else sys.stdout
    stream.write(line + "\n")
    stream.flush()


def count(n: int | float) -> str:
    """``2553`` → ``2,553``; floats keep one decimal (``12.5``)."""
    if isinstance(n, float) and not n.is_integer():
        return f"{n:,.1f}"
    return f"{int(n):,}"


def plural(n: int, singular: str, plural_form: str | None = None) -> str:
    """``1 mutation``, ``2,553 mutations``."""
    word = singular if n == 1 else (plural_form or singular + "s")
    return f"{count(n)} {word}"


def duration(seconds: float) -> str:
    """``0.3 s``, ``45 s``, ``2 min 5 s``, ``2 h 46 min``, ``3 d 4 h``; never raw large numbers."""
    if math.isnan(seconds) or seconds < 0:
        return "unknown"
    if math.isinf(seconds):
        return "forever"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def listing(items: Sequence[Any], *, limit: int = 10, empty: str = NONE) -> str:
    """``a, b, c`` (at most ``limit`` items, then ``and 12 more``)."""
    if not items:
        return empty
    shown = ", ".join(value(item) for item in items[:limit])
    if len(items) > limit:
        shown += f" and {count(len(items) - limit)} more"
    return shown


def tally(counts: Mapping[str, int], *, sep: str = " × ") -> str:
    """``{'200': 36, '404': 2}`` → ``36 × 200, 2 × 404``."""
    if not counts:
        return NONE
    return ", ".join(f"{count(n)}{sep}{key}" for key, n in counts.items())


def value(v: Any) -> str:
    """Any JSON-like value as plain text: ``none``, ``a, b``, ``key value, key value``."""
    if v is None:
        return NONE
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | float):
        return count(v)
    if isinstance(v, str):
        return v
    if isinstance(v, Mapping):
        if not v:
            return NONE
        return ", ".join(f"{key} {value(item)}" for key, item in v.items())
    if isinstance(v, Iterable):
        return listing(list(v))
    return str(v)


def path(p: str | Path) -> str:
    """A path relative to the current directory when it lies under it, else as given."""
    try:
        relative = os.path.relpath(p)
    except ValueError:  # another drive (Windows)
        return str(p)
    return str(p) if relative.startswith("..") else relative


def table(
    rows: Sequence[Sequence[Any]], *, indent: str = "  ", numeric: Iterable[int] = ()
) -> list[str]:
    """Aligned columns (the first row is the header); columns in ``numeric`` are right-aligned."""
    cells = [[value(c) for c in row] for row in rows]
    if not cells:
        return []
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(len(cells[0]))]
    right = set(numeric)
    lines = []
    for row in cells:
        parts = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append((indent + "  ".join(parts)).rstrip())
    return lines
