from __future__ import annotations

import pytest

#: The shared fixtures (``world``) live beside the helpers in tests/support.
pytest_plugins = ["tests.support.worlds"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _quiet_logs():
    """Configure structlog as the CLI does (info and up on stderr), not structlog's defaults."""
    from bulkops import logs

    logs.configure()
    yield
    logs.close_log_file()


@pytest.fixture(autouse=True)
def _no_registered_secrets():
    """Each test starts with no secret registered: one test's keys cannot mask another's output."""
    from bulkops import redact

    redact.forget_all()
    yield
    redact.forget_all()


#: Where bulkops may block while an event loop runs, and why. Any other blocking call (file I/O,
#: fsync, time.sleep, a contended lock) made from bulkops code inside a running loop fails the test.
_MAY_BLOCK: dict[str, set[str]] = {
    # Imports read .py/.pyc files once; bulkops imports heavy modules lazily, inside commands.
    "<frozen importlib._bootstrap>": {"_find_and_load"},
    # A traceback (a crashed task, a python edit that raised) reads its source lines once.
    "linecache.py": {"updatecache", "checkcache"},
    # anyio hands work to its worker threads through a queue whose lock it may meet held for
    # the microsecond the worker takes to pick the item up: that handoff is the cure, not a stall.
    "anyio/_backends/_asyncio.py": {"run_sync_in_worker_thread"},
    # A command's start-up and wind-down, before its task graph starts or after it ended, when
    # nothing else runs on the loop: argument parsing, the job file and python edit modules, the
    # state directory's lock and run.json, plan.json and the journal read to decide what to do,
    # the governor's send times (read once when it is made), the output directory's write probe,
    # and the summary's relative paths.
    "bulkops/cli.py": {"build_parser"},
    "bulkops/jobs/__init__.py": {"load"},
    "bulkops/jobs/batch_rule_update.py": {"load_functions"},
    "bulkops/jobs/export_metrics.py": {"check_output"},
    "bulkops/jobs/export_project.py": {"check_output"},
    "bulkops/commands/session.py": {"resolve_state_dir"},
    "bulkops/commands/status.py": {"find_state_dir"},
    "bulkops/commands/planned.py": {
        "_saved_run",
        "_refuse_replanning_over_an_apply",
        "_refuse_repeating",
        "_undo_plan",
    },
    "bulkops/commands/run.py": {"print_summary"},
    "bulkops/engine/state.py": {"exclusive", "begin", "read_run", "default_state_dir"},
    "bulkops/engine/plan.py": {"load"},
    "bulkops/api/governor.py": {"_restore"},
}


@pytest.fixture(autouse=True)
def _no_blocking_in_the_loop():
    """Fail any test in which bulkops blocks inside a running event loop (see ``_MAY_BLOCK``).

    Only code in the package counts: the tests' own reads and writes do not. The emulator is
    left out too: it stands for the remote server, and its thread serves subprocess tests.
    Outside a running loop (sync tests, worker threads, the writer thread) nothing is checked.
    """
    from blockbuster import blockbuster_ctx

    with blockbuster_ctx(["bulkops"], excluded_modules=["bulkops.emulator"]) as blockbuster:
        for function in blockbuster.functions.values():
            for filename, names in _MAY_BLOCK.items():
                function.can_block_in(filename, names)
        yield blockbuster
