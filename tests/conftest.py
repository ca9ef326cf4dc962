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


@pytest.fixture(autouse=True)
def _own_quota_ledger(tmp_path_factory, monkeypatch):
    """Each test has a quota ledger of its own (BULKOPS_HOME in a fresh folder), never the user's."""
    monkeypatch.setenv("BULKOPS_HOME", str(tmp_path_factory.mktemp("bulkops-home")))
    monkeypatch.delenv("BULKOPS_QUOTA_URL", raising=False)


@pytest.fixture
def redis_server(tmp_path_factory):
    """A real ``redis-server`` on a free loopback port, nothing persisted; yields its URL."""
    import shutil
    import socket
    import subprocess
    import time

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(
            "no redis-server binary on PATH (apt-get install redis-server); .ci/run installs it"
        )
    folder = tmp_path_factory.mktemp("redis")
    for _ in range(5):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "no", "--dir", str(folder), "--logfile", str(folder / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while server.poll() is None and time.monotonic() < deadline:
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.02)
        if server.poll() is None:
            break  # serving; else the port was taken between the probe and the start: again
    else:
        pytest.fail(f"redis-server did not start; see {folder / 'redis.log'}")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
