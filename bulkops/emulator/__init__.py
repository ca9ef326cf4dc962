"""A local, faithful emulator of the Statsig Console API (``/console/v1``).

Users rehearse jobs on it (``bulkops run --sandbox``, ``bulkops emulator``) and every test and
benchmark stands on it. It follows the OpenAPI spec's shapes and status codes, pages like the real
API, enforces per-project mutation quotas, and injects seeded, reproducible faults.

It depends on nothing else in ``bulkops``. Layout: ``_config`` (settings), ``_world``/``_store``
(projects and data), ``_routing`` (raw-path router), ``_app`` (request pipeline), ``_faults``,
``_quota``, ``_requestlog``, ``_envelopes``/``_errors``/``_validation`` (shared API conventions),
``resources/`` (one module per API resource), ``_demo*`` (seed data), ``_snapshot`` (a
project seeded from an ``export_project`` snapshot), ``_server`` (ways to run).
"""

from __future__ import annotations

from ._app import create_app
from ._config import EmulatorConfig
from ._demo import build_demo_world, populate_experiments, populate_metrics, seed_directory
from ._server import EmulatorThread, running_emulator, serve_forever
from ._snapshot import SeedNotes, project_from_snapshot, snapshot_key, world_from_snapshots
from ._store import Project
from ._world import World
from .resources._entities import set_review_required

__all__ = [
    "EmulatorConfig",
    "EmulatorThread",
    "Project",
    "SeedNotes",
    "World",
    "build_demo_world",
    "create_app",
    "populate_experiments",
    "populate_metrics",
    "project_from_snapshot",
    "running_emulator",
    "seed_directory",
    "serve_forever",
    "set_review_required",
    "snapshot_key",
    "world_from_snapshots",
]
