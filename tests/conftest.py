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
