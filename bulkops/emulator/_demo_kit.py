"""Small building blocks shared by the demo seeders: seeded randomness, rule bodies, directories.

Everything here is deterministic: randomness comes from :func:`rng` seeded by strings, and times
from a ``tick`` callable the caller owns.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import Any

from ._store import Project
from .resources.directory import create_team, create_unit_id_type, unit_id_types
from .resources.tags import create_tag, tag_by_name
from .resources.target_apps import create_target_app

__all__ = ["PCTS", "Tick", "internal_rule", "metric_ref", "rng", "rule", "seed_directory"]

Tick = Callable[[], int]

# Multiples of 0.5 divide exactly by 0.01, so the spec's ``multipleOf: 0.01`` holds under any
# JSON-schema validator (33.33 / 0.01 is 3332.9999... in floating point).
PCTS = (0, 5, 10, 12.5, 25, 50, 75, 100, 100, 100)


def rng(*parts: object) -> random.Random:
    """A ``random.Random`` seeded by ``parts`` only (no global state)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def rule(name: str, pct: float, *conditions: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A ``RuleDto`` body."""
    return {"name": name, "passPercentage": pct, "conditions": list(conditions), **extra}


def internal_rule() -> dict[str, Any]:
    """The "Internal" rule: staff by e-mail domain, 100%."""
    return rule(
        "Internal",
        100,
        {"type": "email", "operator": "str_contains_any", "targetValue": ["@example.com"]},
    )


def seed_directory(
    project: Project,
    *,
    units: tuple[str, ...],
    tags: tuple[str, ...],
    teams: tuple[str, ...],
    apps: tuple[str, ...],
) -> None:
    """Unit id types, tags, teams and target apps (skipping any that already exist)."""
    for unit in units:
        if unit not in unit_id_types(project):
            create_unit_id_type(project, {"name": unit, "description": f"{unit} unit"})
    for tag in tags:
        if tag_by_name(project, tag) is None:
            create_tag(
                project, {"name": tag, "description": f"Demo tag {tag}", "isCore": tag == "★ Core"}
            )
    for team in teams:
        create_team(project, team, f"The {team} team")
    for app in apps:
        create_target_app(project, {"name": app, "description": f"{app} app"})


def metric_ref(metric_id: str) -> dict[str, str]:
    """``{name, type}`` from a metric id ``name::type``."""
    name, _, kind = metric_id.rpartition("::")
    return {"name": name, "type": kind}
