"""Metric and metric-source bodies for the emulator tests, and the metrics a world stores."""

from __future__ import annotations

from typing import Any

from bulkops.emulator import World
from tests.support.http import V1

SOURCES = f"{V1}/metrics/metric_source"


def new_metric(name: str = "brand new metric", source: str | None = None) -> dict[str, Any]:
    """A metric create body; with ``source``, a warehouse-native metric counting that source."""
    body: dict[str, Any] = {"name": name, "type": "sum", "description": "made by a test"}
    if source is not None:
        body["type"] = "user_warehouse"
        body["warehouseNative"] = {"aggregation": "count", "metricSourceName": source}
    return body


def new_source(name: str) -> dict[str, Any]:
    """A metric-source create body."""
    return {
        "name": name,
        "sql": "SELECT * FROM t",
        "timestampColumn": "ts",
        "idTypeMapping": [{"statsigUnitID": "userID", "column": "user_id"}],
    }


def stored_metrics(world: World, project: str = "source") -> dict[str, Any]:
    """The metrics ``project`` holds, by id."""
    coll = world.project(project).collection("metrics")
    return {m["id"]: m for m in coll.values()}
