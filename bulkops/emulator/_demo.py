"""Deterministic demo data: the ``source`` and ``target`` projects users rehearse jobs on.

Everything derives from the seed string (no wall clock, no global random state), so two builds
with the same seed are identical and a failing test can be replayed. The ``source`` project is
built to be awkward on purpose: ~24 metric sources whose names hold spaces, a slash, unicode, a
percent sign, dots, a bare ``..`` and a pair differing only by case, with uneven metric counts
including 0, exactly 100 (one full page) and 101 (one more than a page). ``target`` is small and
shares a few names with ``source`` so clone jobs meet "Name is already in use".
Config entities (tags, gates, experiments...) come from :mod:`._demo_entities`.

Entities are made by the same builders the create endpoints use, so demo data has exactly the
shape of API-created data.
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import Any

from ._demo_bench import populate_experiments
from ._demo_entities import add_source_entities, add_target_entities
from ._demo_kit import seed_directory
from ._store import Project
from ._world import World
from .resources._common import metrics as metrics_of
from .resources.metric_sources import create_source
from .resources.metrics import create_metric

__all__ = [
    "SOURCE_KEY",
    "SOURCE_READ_ONLY_KEY",
    "TARGET_KEY",
    "build_demo_world",
    "populate_experiments",
    "populate_metrics",
    "seed_directory",
]

SOURCE_KEY = "console-demo-source-key"
SOURCE_READ_ONLY_KEY = "console-demo-source-readonly-key"
TARGET_KEY = "console-demo-target-key"

_EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z: demo timestamps start here

# (source name, ascii stem for its metric names, fixed metric count or None for random)
_SOURCES: list[tuple[str, str, int | None]] = [
    ("Log Events", "log_events", None),
    ("Orders", "orders", 101),
    ("orders", "orders_legacy", None),
    ("Événements / EU", "evenements_eu", None),
    ("日本 sales", "japan_sales", None),
    ("100% organic traffic", "organic_traffic", None),
    ("events.v2.daily", "events_v2_daily", None),
    ("..", "dotdot", None),
    ("payments/refunds", "payments_refunds", None),
    ("Page Views", "page_views", 100),
    ("checkout_funnel", "checkout_funnel", None),
    ("Search Queries", "search_queries", None),
    ("mobile sessions", "mobile_sessions", None),
    ("ads.impressions", "ads_impressions", None),
    ("Subscriptions", "subscriptions", None),
    ("support tickets", "support_tickets", None),
    ("Inventory Snapshots", "inventory", None),
    ("email_campaigns", "email_campaigns", None),
    ("Feature Usage", "feature_usage", None),
    ("Latency (p99)", "latency_p99", None),
    ("user signups", "user_signups", None),
    ("Deprecated Source", "deprecated", 0),
    ("Catalog", "catalog", None),
    ("Experiment Exposures", "exposures", None),
]
_NOUNS = (
    "revenue", "conversions", "sessions", "clicks", "latency", "errors", "retention",
    "signups", "refunds", "page loads", "checkouts", "searches", "add to cart", "time spent",
    "views", "purchases", "cancellations", "renewals", "impressions", "opens",
)  # fmt: skip
_AGGREGATIONS = ("count", "sum", "mean", "daily_participation", "count_distinct", "ratio")
_TAGS = ("★ Core", "growth", "finance", "non_production", "mobile", "web", "north star")
_UNIT_IDS = (("userID", "user_id"), ("stableID", "stable_id"), ("companyID", "company_id"))
_TEAMS = (None, "Growth", "Payments", "Platform")


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _metric_name(seed: str, stem: str, index: int) -> str:
    """Depends only on (seed, stem, index), so both demo projects can share some names."""
    digest = hashlib.sha256(f"{seed}\x1f{stem}\x1f{index}".encode()).digest()
    noun = _NOUNS[digest[0] % len(_NOUNS)]
    style = index % 13
    if style == 5:
        return f"{stem} / {noun} ({index})"
    if style == 8:
        return f"{stem} {noun} % {index}"
    if style == 11:
        return f"{stem}: {noun} {index}"
    return f"{stem}_{noun.replace(' ', '_')}_{index}"


def _source_fields(name: str, stem: str, rng: random.Random) -> dict[str, Any]:
    units = _UNIT_IDS[: rng.randint(1, 3)]
    as_table = rng.random() < 0.4
    fields: dict[str, Any] = {
        "name": name,
        "description": f"Demo metric source {name}",
        "tags": sorted(rng.sample(_TAGS, rng.randint(0, 2))),
        "sql": f"SELECT * FROM analytics.{stem} "
        "WHERE ds BETWEEN {statsig_start_date} AND {statsig_end_date}",
        "timestampColumn": "ts",
        "timestampAsDay": rng.random() < 0.3,
        "idTypeMapping": [{"statsigUnitID": u, "column": c} for u, c in units],
        "sourceType": "table" if as_table else "query",
        "team": rng.choice(_TEAMS),
    }
    if as_table:
        fields["tableName"] = f"analytics.{stem}"
    return fields


def _metric_fields(
    seed: str, source: str, stem: str, index: int, units: list[str], rng: random.Random
) -> dict[str, Any]:
    aggregation = rng.choice(_AGGREGATIONS)
    whn: dict[str, Any] = {"aggregation": aggregation, "metricSourceName": source}
    if aggregation in ("sum", "mean", "count_distinct"):
        whn["valueColumn"] = rng.choice(("amount", "value", "duration_ms", "item_id"))
    if aggregation == "ratio":
        whn.update(
            numeratorAggregation="sum",
            valueColumn="amount",
            denominatorAggregation="count",
            denominatorMetricSourceName=source,
        )
    if rng.random() < 0.3:
        whn["criteria"] = [
            {"type": "metadata", "column": "platform", "condition": "in", "values": ["ios"]}
        ]
    return {
        "name": _metric_name(seed, stem, index),
        "type": "user_warehouse",
        "description": f"{aggregation} over {source}",
        "directionality": "decrease" if rng.random() < 0.2 else "increase",
        "tags": sorted(rng.sample(_TAGS, rng.randint(0, 2))),
        "isVerified": rng.random() < 0.25,
        "unitTypes": units,
        "team": rng.choice(_TEAMS),
        "warehouseNative": whn,
    }


def _uneven_counts(rng: random.Random, slots: int, total: int) -> list[int]:
    """``slots`` uneven positive counts summing to about ``total``, none equal to 0/100/101."""
    weights = [math.exp(rng.gauss(0.0, 0.9)) for _ in range(slots)]
    scale = total / sum(weights)
    counts = [max(1, round(w * scale)) for w in weights]
    return [c + 2 if c in (100, 101) else c for c in counts]


class _Clock:
    """Strictly increasing fake creation times, so lists page in creation order."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.now_ms = _EPOCH_MS

    def tick(self) -> int:
        self.now_ms += self._rng.randint(1_000, 3_600_000)
        return self.now_ms


def _add_source_with_metrics(
    project: Project, seed: str, source: tuple[str, str, int], rng: random.Random, clock: _Clock
) -> None:
    name, stem, count = source
    fields = _source_fields(name, stem, rng)
    create_source(project, fields)
    units = [m["statsigUnitID"] for m in fields["idTypeMapping"]]
    coll = metrics_of(project)
    for index in range(1, count + 1):
        fields_m = _metric_fields(seed, name, stem, index, units, rng)
        metric = create_metric(project, fields_m, clock.tick())
        if rng.random() < 0.02:
            coll.replace(metric["id"], {**metric, "isHidden": True})


def _add_event_metrics(project: Project, clock: _Clock) -> None:
    """A few non-warehouse metrics, including one name under two types."""
    specs = [
        ("Purchases", "sum", ["purchase"]),
        ("Purchases", "event_count_custom", ["purchase"]),
        ("Daily Active Users", "event_user", ["session_start"]),
        ("Add to Cart Rate", "ratio", ["add_to_cart", "page_view"]),
        ("Average Order Value", "mean", ["purchase"]),
        ("Checkout Funnel", "funnel", ["cart", "checkout", "purchase"]),
        ("Engagement (composite)", "composite", []),
    ]
    for name, metric_type, events in specs:
        fields: dict[str, Any] = {
            "name": name,
            "type": metric_type,
            "description": f"Event-based demo metric {name}",
            "metricEvents": [{"name": e, "type": "count", "criteria": []} for e in events],
        }
        if metric_type == "composite":
            fields["metricComponentMetrics"] = [
                {"name": "Purchases", "type": "sum"},
                {"name": "Daily Active Users", "type": "event_user"},
            ]
        create_metric(project, fields, clock.tick())


def _build_source_project(seed: str, scale: int, target_app_ids: str) -> Project:
    project = Project(
        "source", SOURCE_KEY, read_only_keys=[SOURCE_READ_ONLY_KEY], target_app_ids=target_app_ids
    )
    rng = _rng(seed, "source")
    clock = _Clock(rng)
    random_slots = [i for i, (_, _, fixed) in enumerate(_SOURCES) if fixed is None]
    target_total = rng.randint(2200, 2800) - 201
    counts = iter(_uneven_counts(rng, len(random_slots), target_total))
    for name, stem, fixed in _SOURCES:
        count = fixed if fixed is not None else next(counts) * scale
        if fixed is None and count in (100, 101):
            count += 2
        _add_source_with_metrics(project, seed, (name, stem, count), rng, clock)
    _add_event_metrics(project, clock)
    add_source_entities(project, seed, clock.tick)
    return project


def _build_target_project(seed: str, target_app_ids: str) -> Project:
    project = Project("target", TARGET_KEY, target_app_ids=target_app_ids)
    rng = _rng(seed, "target")
    clock = _Clock(rng)
    # Metric names depend on (seed, stem, index) only, so "Orders" and "Log Events" share their
    # first metric ids with `source`: a clone meets "Name is already in use".
    shared = [("Orders", "orders", 3), ("Log Events", "log_events", 4)]
    for source in [*shared, ("Warehouse Only", "warehouse_only", 5)]:
        _add_source_with_metrics(project, seed, source, rng, clock)
    _add_event_metrics(project, clock)
    add_target_entities(project, seed, clock.tick)
    return project


def build_demo_world(
    seed: str = "demo", scale: int = 1, *, target_app_ids: str = "assigned"
) -> World:
    """Projects ``source`` (large, awkward) and ``target`` (small); deterministic from ``seed``.

    ``scale`` multiplies the metric count of every source except the fixed boundary cases
    (0, 100 and 101 metrics). ``target_app_ids`` is how both projects' target apps get their
    ids (``Project.target_app_ids``: each project's own by default, or derived from names).
    """
    if scale < 1:
        raise ValueError(f"build_demo_world: scale must be >= 1, got {scale}")
    return World(
        [
            _build_source_project(seed, scale, target_app_ids),
            _build_target_project(seed, target_app_ids),
        ]
    )


def populate_metrics(
    project: Project,
    n_sources: int,
    metrics_per_source: int,
    seed: str = "bench",
    *,
    prefix: str = "bench",
) -> list[str]:
    """Add ``n_sources`` metric sources with ``metrics_per_source`` metrics each (benchmarks).

    Names are ``"<prefix> source 0001"`` and ``"<prefix>_s1_m1"``; returns the source names.
    """
    rng = _rng(seed, project.name, prefix)
    clock = _Clock(rng)
    names = []
    width = max(4, len(str(n_sources)))
    for s in range(1, n_sources + 1):
        name = f"{prefix} source {s:0{width}d}"
        create_source(project, _source_fields(name, f"{prefix}_s{s}", rng))
        for m in range(1, metrics_per_source + 1):
            fields = {
                "name": f"{prefix}_s{s}_m{m}",
                "type": "user_warehouse",
                "description": f"benchmark metric {m} of {name}",
                "unitTypes": ["userID"],
                "warehouseNative": {"aggregation": "count", "metricSourceName": name},
            }
            create_metric(project, fields, clock.tick())
        names.append(name)
    return names
