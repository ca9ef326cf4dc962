"""One module per Console API resource; each exposes ``register(router)``.

Adding a resource means writing its module and listing it here. Modules starting with ``_`` are
shared machinery: ``_common`` (audit fields, lookups, metric collections), ``_entities`` (ids,
versions, reviews, overrides storage), ``_handlers`` (the list, create, read, update and action
handlers entity kinds share), ``_refs`` (reference checks), ``_rules`` (rule ids and matching),
``_id_overrides`` (gate and holdout overrides), ``_optional`` (routes of the newer kinds a
project may not serve).
"""

from __future__ import annotations

from .._routing import Router
from . import (
    alerts,
    autotunes,
    directory,
    dynamic_configs,
    environments,
    experiment_actions,
    experiment_overrides,
    experiments,
    gates,
    holdouts,
    layer_overrides,
    layers,
    metric_sources,
    metrics,
    param_stores,
    project,
    prompts,
    release_pipelines,
    reviews,
    roles,
    rule_endpoints,
    segments,
    settings,
    tags,
    target_apps,
    warehouse_sources,
)

__all__ = ["register_all"]

_MODULES = (
    metric_sources, metrics, tags, target_apps, directory, segments, gates, dynamic_configs,
    rule_endpoints, layers, layer_overrides, experiments, experiment_actions,
    experiment_overrides, holdouts, reviews, project, environments, warehouse_sources,
    param_stores, autotunes, alerts, release_pipelines, roles, prompts, settings,
)  # fmt: skip


def register_all(router: Router) -> None:
    """Register every implemented resource's routes."""
    for module in _MODULES:
        module.register(router)
