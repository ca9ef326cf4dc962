"""The emulator worlds tests start from, and the ``world`` fixture.

The keys are the demo world's, so a client made for one world works on the other; a test that
needs another world's keys names them.
"""

from __future__ import annotations

import pytest

from bulkops.emulator import (
    Project,
    World,
    build_demo_world,
    populate_experiments,
    populate_metrics,
    seed_directory,
)
from tests.support.clock import FakeClock
from tests.support.jobs import keys_env

SOURCE_KEY = "console-demo-source-key"
SOURCE_RO_KEY = "console-demo-source-readonly-key"
TARGET_KEY = "console-demo-target-key"
#: Every change in the same millisecond: version stamps must still grow.
FROZEN_WALL = 1_800_000_000.0


def metrics_world(clock: FakeClock | None = None) -> World:
    """Two tiny projects of metric sources and metrics: cheap to build for tests that mutate."""
    kwargs = {"clock": clock} if clock else {}
    world = World(
        [
            Project("source", SOURCE_KEY, read_only_keys=[SOURCE_RO_KEY]),
            Project("target", TARGET_KEY),
        ],
        **kwargs,
    )
    populate_metrics(world.project("source"), 2, 3, prefix="s")
    populate_metrics(world.project("target"), 1, 2, prefix="t")
    return world


def entities_world(*, frozen: bool = True) -> World:
    """Two small projects with tags, a team, id types, an app, metrics and 2 bench experiments."""
    source = Project("source", SOURCE_KEY, read_only_keys=[SOURCE_RO_KEY])
    target = Project("target", TARGET_KEY)
    for project in (source, target):
        seed_directory(
            project,
            units=("userID", "stableID"),
            tags=("★ Core", "growth"),
            teams=("Growth",),
            apps=("iOS App",),
        )
    populate_metrics(source, 1, 2, prefix="s")  # s_s1_m1::user_warehouse, s_s1_m2::...
    populate_experiments(source, 2)  # bench_0001_exp..., gates, segments, metrics
    kwargs = {"wall_clock": lambda: FROZEN_WALL} if frozen else {}
    return World([source, target], **kwargs)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    """The demo world, with its source and target keys in the variables the test jobs name.

    A test module that needs another world defines its own ``world`` fixture, which takes
    precedence over this one.
    """
    demo = build_demo_world()
    for name, value in keys_env(demo).items():
        monkeypatch.setenv(name, value)
    return demo


#: A gate create body the emulator tests share.
NEW_GATE = {
    "name": "New Checkout",
    "description": "a gate",
    "idType": "userID",
    "rules": [
        {
            "name": "Internal",
            "passPercentage": 100,
            "conditions": [
                {"type": "email", "operator": "str_contains_any", "targetValue": ["@example.com"]}
            ],
        }
    ],
}
