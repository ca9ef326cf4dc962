"""A careless new user's round, from the README: each misuse that misbehaved, pinned once fixed.

Every case runs what a user runs (``bulkops.cli.main``, or the part of it at fault) and checks the
exit code and the words a person needs, with no traceback and no Python repr.
"""

from __future__ import annotations

from bulkops.output.summary import summary_lines


def test_task_states_that_read_alike_are_counted_once() -> None:
    """Running and waiting tasks of a stopped run are both "cut short": one count, not two."""
    tasks = {"done": 15, "pending": 20, "running": 16, "waiting for children": 5}
    run = {"job": "x", "status": "aborted", "exit_code": 4, "summary": {"tasks": tasks}}
    line = next(line for line in summary_lines(run) if line.startswith("  tasks:"))
    assert line == "  tasks: 15 done, 20 not started, 21 cut short"
