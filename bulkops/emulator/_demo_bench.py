"""``populate_experiments``: N complete experiments for benchmarks (clone and batch-edit jobs)."""

from __future__ import annotations

from ._demo_kit import Tick, internal_rule, metric_ref, rng, rule, seed_directory
from ._store import Project
from ._validation import validate
from .resources import experiments, gates, segments
from .resources.metrics import create_metric

__all__ = ["populate_experiments"]


def populate_experiments(
    project: Project, n: int, seed: str = "bench", *, prefix: str = "bench"
) -> list[str]:
    """Add ``n`` experiments, each with its own targeting gate, segment, 2 metrics and overrides.

    For benchmarks: works on an empty project (creates the ``userID`` unit type and the
    ``prefix`` tag if missing). Entities are named ``<prefix>_0001_exp``, ``…_gate``,
    ``…_segment``, ``…_metric_1``/``_2``; call again with another ``prefix`` to add more.
    Returns the experiment ids.
    """
    draw = rng(seed, project.name, prefix, "experiments")
    now = [1_704_067_200_000 + draw.randint(0, 1000)]

    def tick() -> int:
        now[0] += draw.randint(1_000, 60_000)
        return now[0]

    seed_directory(project, units=("userID",), tags=(prefix,), teams=(), apps=())
    width = max(4, len(str(n)))
    made = []
    for i in range(1, n + 1):
        stem = f"{prefix}_{i:0{width}d}"
        made.append(_bench_experiment(project, stem, prefix, tick))
    return made


def _bench_experiment(project: Project, stem: str, tag: str, tick: Tick) -> str:
    segment = segments.create_segment(
        project,
        validate(
            segments.CREATE_SCHEMA,
            {
                "name": f"{stem}_segment",
                "type": "rule_based",
                "rules": [
                    rule(
                        "Listed",
                        100,
                        {"type": "user_id", "operator": "any", "targetValue": [f"{stem}_u"]},
                    )
                ],
            },
        ),
        tick(),
    )
    gate = gates.create_gate(
        project,
        validate(
            gates.CREATE_SCHEMA,
            {
                "name": f"{stem}_gate",
                "description": "benchmark targeting gate",
                "rules": [
                    internal_rule(),
                    rule("Segment", 50, {"type": "passes_segment", "targetValue": segment["id"]}),
                ],
            },
        ),
        tick(),
    )
    refs = []
    for m in (1, 2):
        metric = create_metric(
            project,
            {"name": f"{stem}_metric_{m}", "type": "sum", "description": "benchmark metric"},
            tick(),
        )
        refs.append(metric_ref(metric["id"]))
    exp = experiments.create_experiment(
        project,
        validate(
            experiments.CREATE_SCHEMA,
            {
                "name": f"{stem}_exp",
                "targetingGateID": gate["id"],
                "primaryMetrics": refs[:1],
                "secondaryMetrics": refs[1:],
                "tags": [tag],
                "hypothesis": "benchmark",
            },
        ),
        tick(),
    )
    project.collection("experiments_overrides").add(
        exp["id"],
        {
            "overrides": [
                {
                    "type": "gate",
                    "id": gate["id"],
                    "name": gate["id"],
                    "groupID": "Test",
                    "environment": None,
                }
            ],
            "userIDOverrides": [
                {
                    "groupID": "Control",
                    "ids": [f"{stem}_qa"],
                    "environment": None,
                    "unitType": "userID",
                }
            ],
        },
    )
    return str(exp["id"])
