"""One module per Console API resource; each exposes ``register(router)``.

Adding a resource (gates, experiments, ...) means writing its module and listing it here.
"""

from __future__ import annotations

from .._routing import Router
from . import metric_sources, metrics

__all__ = ["register_all"]


def register_all(router: Router) -> None:
    """Register every implemented resource's routes."""
    metric_sources.register(router)
    metrics.register(router)
