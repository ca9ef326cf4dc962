"""What the client sends conforms to the spec: documented operations, declared query parameters."""

from __future__ import annotations

from bulkops.emulator import EmulatorConfig, build_demo_world, running_emulator
from tests.support.commands import run_export
from tests.support.jobs import KEY_ENV, export_job
from tests.support.openapi_spec import spec_or_skip


async def test_every_export_request_is_a_documented_operation(tmp_path, monkeypatch) -> None:
    """Every request an export sends is a spec operation, with only documented query parameters."""
    spec = spec_or_skip()
    world = build_demo_world()
    monkeypatch.setenv(KEY_ENV, world.project("source").console_key)
    async with running_emulator(world, EmulatorConfig()) as url:
        assert await run_export(export_job(tmp_path), url, tmp_path / "state") == 0
    requests = world.requests()
    assert requests
    for request in requests:
        operation = spec.operation(request.method, request.raw_path)
        declared = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"}
        assert set(request.query) <= declared, (request.path, request.query)
        assert request.status == 200
