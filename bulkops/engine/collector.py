"""The cyclic garbage collector during a command: start-up's objects set aside, young collections
rarer.

A command's task graphs keep many objects alive at once: in an org export 50 projects × 8 requests
in flight, each with its coroutines, futures, timers and response. At CPython's default thresholds
(700, 10, 10) a young collection ran every 700 new containers and a full one every hundred of
those, each traversing everything alive; in an org export that was 2.9 s of about 10 s of CPU,
against 1.0 s for the same pages in one project (8 in flight). So, while a command runs:

- ``gc.freeze()``: what start-up built (modules, classes, the job's spec: about 50,000 objects)
  moves to the permanent generation, which no collection traverses;
- the young generation's threshold is ``YOUNG_THRESHOLD``: most of a request's objects are freed
  by reference counting before a collection sees them, so far fewer survive into the older
  generations that full collections walk.

Reference cycles are still collected, in batches of up to ``YOUNG_THRESHOLD`` containers (a few
MB at most). Both are undone when the command ends, so a process that runs several commands (the
tests) is left as it was; a process that already froze objects or turned the collector off is
left alone.

Jobs that keep what they read (an ``export_project`` holds every list read whole until it
publishes) move it out of sight too, as it arrives: ``long_lived()`` around the reading,
``spare()`` after each list. Only the outermost owner of the freeze undoes it: the command at its
end, or, outside a command (a test calling a job directly), the last reader to finish.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

#: New container objects between young collections while a command runs (CPython's default: 700).
YOUNG_THRESHOLD = 10_000


class _Freeze:
    """Who froze the process's objects, and so undoes it: a command, the readers, or nobody."""

    owner: str | None = None
    readers = 0


@contextmanager
def collecting_for_a_command() -> Iterator[None]:
    """Freeze what exists and raise the young threshold for the block; restore both after."""
    if not gc.isenabled() or gc.get_freeze_count():
        yield
        return
    thresholds = gc.get_threshold()
    gc.freeze()
    _Freeze.owner = "command"
    gc.set_threshold(max(thresholds[0], YOUNG_THRESHOLD), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        _Freeze.owner = None
        gc.unfreeze()


@contextmanager
def long_lived() -> Iterator[None]:
    """While any such block runs, ``spare()`` freezes what exists; the last block to end thaws it,
    unless a command (or someone else) owns the freeze."""
    _Freeze.readers += 1
    try:
        yield
    finally:
        _Freeze.readers -= 1
        if _Freeze.readers == 0 and _Freeze.owner == "readers":
            _Freeze.owner = None
            gc.unfreeze()


def spare() -> None:
    """Inside ``long_lived()``: what exists now lives long; out of the collector's sight with it."""
    if _Freeze.readers == 0 or not gc.isenabled():
        return
    if _Freeze.owner is None:
        if gc.get_freeze_count():
            return  # frozen by someone else, who undoes it: leave theirs alone
        _Freeze.owner = "readers"
    gc.freeze()
