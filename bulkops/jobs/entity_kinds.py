"""The Statsig entity kinds bulkops reads and writes: one table, shared by every job.

Each :class:`EntityKind` says where the kind lives in the Console API (its collection, its list,
its item path and the field whose value keys that path) and what bulkops may send of it: the
fields of a create, and the fields of the update it uses (``update_method`` on ``update_path``).
Field lists are whitelists taken from the request DTOs of the spec (reference Appendix B), so a
field the API adds later is left out rather than sent blindly. Across the table they follow the
same rules: an entity's team is sent by name (``team``), never by id (``teamID`` differs between
projects); creator and owner fields, and the ``dryRun`` flag of the Warehouse Native DTOs, are
never sent. A kind bulkops does not write yet has the lists the spec gives, or none where the
spec's shape does not fit one (environments are one document, not items).

The update a kind uses is its partial update (PATCH) where the API has one, else its full update
(POST), which is read as replacing the entity, so its body carries every listed field the source
has (docs/api-assumptions.md). Segments have neither: their rules are replaced through
``POST /segments/{id}/conditional``.

The newer kinds (alerts, release pipelines, roles, prompts, and the four settings documents) are
optional: a project or an API version may not serve them (``OPTIONAL``). A role's item path is
keyed by its name: ``RoleContractDto`` is only ``{name, permissions}``, so the name is the one
key a client has (docs/api-assumptions.md). Alerts have no item path in the spec, so their
``id`` names them.

What a project export never reads, though the spec lists it:

- ``keys``: they are credentials.
- ``users`` (and ``/users/{email}``): personal data.
- ``audit_logs``: a history of who did what, personal data, not configuration.
- ``events``: event data, not configuration.
- ``release_pipeline_triggers``: runs of release pipelines, not configuration.
- ``exposure_count``: measured counts, not configuration.
- ``ingestion*`` (and ``wh_connections``): runs and status of imports; the warehouse connection
  configuration may hold credentials.
- metric values (``/metrics/values``, pulse results): measured data, not configuration.
- ``reports``: generated results, not configuration.
- ``company``: organisation-wide, not a project's, and holds no project configuration.
- prompt versions: the spec has no read of them, and their DTO carries
  ``auth_workflow_headers`` (credentials).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from bulkops.api.urls import api_path, listed_item_path


@dataclass(frozen=True)
class EntityKind:
    """One kind of Statsig entity, as the Console API serves it."""

    #: The kind's name in plans, journals and messages (``gate``, ``metric_source``).
    name: str
    #: Path segments of the collection (under ``/console/v1/``): where a create is POSTed.
    collection: tuple[str, ...]
    #: Path segments of the item, before its key; None: the kind has no item path.
    item: tuple[str, ...] | None
    #: The field whose value is the item's key in its path.
    identity: str = "id"
    #: Path segments of the paginated list, where it is not the collection.
    listing: tuple[str, ...] | None = None
    #: What a create may carry.
    create_fields: tuple[str, ...] = ()
    #: What the update the clone uses may carry (see ``update_method``).
    update_fields: tuple[str, ...] = ()
    #: How that update is sent (None: the kind has no update of its items).
    update_method: Literal["PATCH", "POST"] | None = None
    #: Segments under the item path that the update goes to (``conditional`` for segments).
    update_suffix: tuple[str, ...] = ()
    #: Whether its entities carry targeting ``rules``.
    has_rules: bool = False
    #: Whether it has ``{item}/overrides``.
    has_overrides: bool = False
    #: Whether the item path answers a GET; if not, one item is read from the list.
    item_readable: bool = True

    def collection_path(self) -> str:
        return api_path(*self.collection)

    def list_path(self) -> str:
        return api_path(*(self.listing or self.collection))

    def item_path(self, key: str, *under: str) -> str:
        """The item keyed ``key`` (its ``identity``), or a path under it (``overrides``)."""
        if self.item is None:
            raise ValueError(f"{self.name} has no item path")
        return api_path(*self.item, key, *under)

    def read_path(self, key: str) -> str:
        """Where one item is read: its item path, or its row of the list (``listed_item_path``)."""
        if self.item_readable:
            return self.item_path(key)
        return listed_item_path(self.list_path(), self.identity, key)

    def update_path(self, key: str) -> str:
        return self.item_path(key, *self.update_suffix)


# -- what the clone and the batch edit write ---------------------------------------------------
TAG = EntityKind(
    name="tag",
    collection=("tags",),
    item=("tags",),
    create_fields=("name", "description", "isCore"),
    update_fields=("description", "isCore"),
    update_method="PATCH",
)
TARGET_APP = EntityKind(
    name="target_app",
    collection=("target_app",),
    item=("target_app",),
    create_fields=("name", "description"),
    update_fields=("description",),
    update_method="PATCH",
)
_METRIC_SOURCE_FIELDS = (
    "name",
    "description",
    "sql",
    "timestampColumn",
    "idTypeMapping",
    "tags",
    "timestampAsDay",
    "sourceType",
    "tableName",
    "datePartitionColumn",
    "customFieldMapping",
    "isReadOnly",
    "isVerified",
    "team",
)
METRIC_SOURCE = EntityKind(
    name="metric_source",
    collection=("metrics", "metric_source"),
    item=("metrics", "metric_source"),
    identity="name",
    listing=("metrics", "metric_source", "list"),
    create_fields=_METRIC_SOURCE_FIELDS,
    update_fields=_METRIC_SOURCE_FIELDS,  # no PATCH: the full update carries every field
    update_method="POST",
)
METRIC = EntityKind(
    name="metric",
    collection=("metrics",),
    item=("metrics",),  # the id is ``<name>::<type>``
    create_fields=(
        "name",
        "type",
        "description",
        "directionality",
        "tags",
        "isVerified",
        "isReadOnly",
        "isPermanent",
        "unitTypes",
        "metricEvents",
        "metricComponentMetrics",
        "rollupTimeWindow",
        "customRollUpStart",
        "customRollUpEnd",
        "funnelEventList",
        "funnelCountDistinct",
        "warehouseNative",
        "team",
    ),
    update_fields=(  # no PATCH: the full update's DTO, every field the source has
        "name",
        "description",
        "tags",
        "isVerified",
        "isReadOnly",
        "isPermanent",
        "warehouseNative",
        "unitTypes",
        "team",
        "directionality",
    ),
    update_method="POST",
)
SEGMENT = EntityKind(
    name="segment",
    collection=("segments",),
    item=("segments",),
    create_fields=("id", "name", "description", "type", "idType", "tags", "team", "rules"),
    update_fields=("rules",),
    update_method="POST",
    update_suffix=("conditional",),
    has_rules=True,
)
_GATE_FIELDS = (
    "id",
    "name",
    "description",
    "idType",
    "type",
    "isEnabled",
    "rules",
    "targetApps",
    "tags",
    "team",
    "measureMetricLifts",
    "monitoringMetrics",
)
GATE = EntityKind(
    name="gate",
    collection=("gates",),
    item=("gates",),
    create_fields=_GATE_FIELDS,
    update_fields=tuple(f for f in _GATE_FIELDS if f != "id"),
    update_method="PATCH",
    has_rules=True,
    has_overrides=True,
)
_DYNAMIC_CONFIG_FIELDS = (
    "name",
    "isEnabled",
    "description",
    "rules",
    "defaultValue",
    "defaultValueJson5",
    "idType",
    "tags",
    "schema",
    "schemaJson5",
    "targetApps",
    "team",
    "releasePipelineID",
)
DYNAMIC_CONFIG = EntityKind(
    name="dynamic_config",
    collection=("dynamic_configs",),
    item=("dynamic_configs",),
    create_fields=("id", *_DYNAMIC_CONFIG_FIELDS, "isTemplate"),
    update_fields=_DYNAMIC_CONFIG_FIELDS,
    update_method="PATCH",
    has_rules=True,
)
LAYER = EntityKind(
    name="layer",
    collection=("layers",),
    item=("layers",),
    create_fields=("name", "idType", "description", "targetApps", "team"),
    update_fields=("description", "parameters", "targetApps"),
    update_method="PATCH",
    has_overrides=True,
)
_EXPERIMENT_FIELDS = (
    "id",
    "name",
    "description",
    "idType",
    "hypothesis",
    "links",
    "tags",
    "groups",
    "allocation",
    "duration",
    "targetExposures",
    "targetingGateID",
    "layerID",
    "targetApps",
    "primaryMetricTags",
    "secondaryMetricTags",
    "primaryMetrics",
    "secondaryMetrics",
    "otherMetrics",
    "sequentialTesting",
    "bonferroniCorrection",
    "bonferroniCorrectionPerMetric",
    "benjaminiHochbergPerVariant",
    "benjaminiHochbergPerMetric",
    "benjaminiPrimaryMetricsOnly",
    "defaultConfidenceInterval",
    "manualQualityScores",
    "analyticsType",
    "team",
    "secondaryIDType",
    "assignmentSourceName",  # Warehouse Native: the assignment source must exist in the target
    "assignmentSourceExperimentName",
    "assignmentSourceFilters",
)
EXPERIMENT = EntityKind(
    name="experiment",
    collection=("experiments",),
    item=("experiments",),
    create_fields=_EXPERIMENT_FIELDS,
    update_fields=tuple(f for f in _EXPERIMENT_FIELDS if f not in ("id", "layerID")),
    update_method="PATCH",
    has_overrides=True,
)
HOLDOUT = EntityKind(
    name="holdout",
    collection=("holdouts",),
    item=("holdouts",),
    create_fields=("name", "description", "idType"),
    update_fields=("description",),
    update_method="PATCH",
    has_overrides=True,
)

# -- what a project export reads as well -------------------------------------------------------
UNIT_ID_TYPE = EntityKind(
    name="unit_id_type",
    collection=("unit_id_types",),
    item=("unit_id_types",),
    identity="name",
    create_fields=("name", "description"),
    update_fields=("description",),
    update_method="PATCH",
)
_TEAM_FIELDS = (
    "name",
    "description",
    "members",
    "admins",
    "defaultGateMetrics",
    "defaultExperimentPrimaryMetrics",
    "defaultExperimentSecondaryMetrics",
    "defaultHoldoutMetrics",
    "changeTeamConfigs",
    "reviewApproval",
    "defaultTargetApplications",
    "defaultHoldoutID",
    "requireReviews",
    "requireGateTemplates",
    "requireExperimentTemplates",
    "requireDynamicConfigTemplates",
)
TEAM = EntityKind(
    name="team",
    collection=("users", "teams"),
    item=("users", "teams"),
    create_fields=_TEAM_FIELDS,
    update_fields=_TEAM_FIELDS,  # "Ops: Replace": each list sent replaces the team's
    update_method="PATCH",
)
#: One document (``{environments: [...]}``), read and replaced whole at ``/environments``.
ENVIRONMENTS = EntityKind(name="environments", collection=("environments",), item=None)
_ASSIGNMENT_SOURCE_FIELDS = (
    "name",
    "description",
    "isVerified",
    "tags",
    "sql",
    "timestampColumn",
    "experimentIDColumn",
    "groupIDColumn",
    "idTypeMapping",
    "isReadOnly",
    "team",
)
ASSIGNMENT_SOURCE = EntityKind(
    name="assignment_source",
    collection=("experiments", "assignment_sources"),
    item=("experiments", "assignment_source"),
    identity="name",
    create_fields=_ASSIGNMENT_SOURCE_FIELDS,
    # The full update (POST): the PATCH DTO marks ``sql`` read-only, so it could not carry it.
    update_fields=_ASSIGNMENT_SOURCE_FIELDS,
    update_method="POST",
    item_readable=False,  # the spec has no GET of one assignment source
)
_ENTITY_PROPERTY_FIELDS = (
    "name",
    "description",
    "tags",
    "sql",
    "timestampColumn",
    "timestampAsDay",
    "idTypeMapping",
    "isReadOnly",
    "team",
)
ENTITY_PROPERTY = EntityKind(
    name="entity_property",
    collection=("experiments", "entity_properties"),
    item=("experiments", "entity_property"),
    identity="name",
    create_fields=_ENTITY_PROPERTY_FIELDS,
    update_fields=_ENTITY_PROPERTY_FIELDS,
    update_method="PATCH",
)
#: The spec gives a qualifying event exactly a metric source's fields (a warehouse table).
_QUALIFYING_EVENT_FIELDS = _METRIC_SOURCE_FIELDS
QUALIFYING_EVENT = EntityKind(
    name="qualifying_event",
    collection=("experiments", "qualifying_events"),
    item=("experiments", "qualifying_events"),
    identity="name",
    create_fields=_QUALIFYING_EVENT_FIELDS,
    update_fields=_QUALIFYING_EVENT_FIELDS,  # no PATCH: the full update carries every field
    update_method="POST",
)
PARAM_STORE = EntityKind(
    name="param_store",
    collection=("param_stores",),
    item=("param_stores",),
    identity="name",
    create_fields=("name", "description", "displayName", "targetAppIDs", "tags", "team"),
    update_fields=("description", "parameters"),  # no PATCH; ParamStoreUpdateDto
    update_method="POST",
)
_AUTOTUNE_FIELDS = (
    "description",
    "variants",
    "successEvent",
    "successEventValue",
    "explorationWindow",
    "attributionWindow",
    "attributionWindowUnit",
    "explorationWindowRate",
    "longtermExplorationAllocation",
    "winnerThreshold",
    "metadataField",
    "higherIsBetter",
    "isContextual",
    "metricSourceID",
    "linkedExperimentName",
    "goalRichText",
    "optimizationParameter",
    "valueColumn",
    "featureList",
)
AUTOTUNE = EntityKind(
    name="autotune",
    collection=("autotunes",),
    item=("autotunes",),
    create_fields=("name", "idType", *_AUTOTUNE_FIELDS),
    update_fields=_AUTOTUNE_FIELDS,
    update_method="PATCH",
)

# -- the newer, optional kinds a project export reads ------------------------------------------
ALERT = EntityKind(name="alert", collection=("alerts",), item=None)  # the spec has only the list
_PIPELINE_FIELDS = ("name", "phases")
RELEASE_PIPELINE = EntityKind(
    name="release_pipeline",
    collection=("release_pipelines",),
    item=("release_pipelines",),
    create_fields=_PIPELINE_FIELDS,
    update_fields=_PIPELINE_FIELDS,  # no PATCH: the full update carries every field
    update_method="POST",
)
ROLE = EntityKind(
    name="role",
    collection=("roles",),
    item=("roles",),  # keyed by name: the DTO has no id
    identity="name",
    create_fields=("name", "permissions"),
    update_fields=("permissions",),  # a name cannot change
    update_method="PATCH",
)
PROMPT = EntityKind(
    name="prompt",
    collection=("prompts",),
    item=("prompts",),
    create_fields=("name", "displayName", "description", "targetApps", "team", "tags"),
    update_fields=("description", "targetApps", "team"),
    update_method="PATCH",
)
#: The settings documents, each a singleton at ``/settings/<document>`` (GET, full update POST).
SETTINGS_DOCUMENTS = ("project", "reviews", "roles", "teams")
#: The snapshot kinds that are newer, optional endpoints (a project may not serve them).
OPTIONAL = ("alerts", "release_pipelines", "roles", "prompts", "settings")


def settings_path(document: str) -> str:
    return api_path("settings", document)


#: Every kind, by name.
ENTITY_KINDS: Mapping[str, EntityKind] = {
    kind.name: kind
    for kind in (
        TAG,
        TARGET_APP,
        METRIC_SOURCE,
        METRIC,
        SEGMENT,
        GATE,
        DYNAMIC_CONFIG,
        LAYER,
        EXPERIMENT,
        HOLDOUT,
        UNIT_ID_TYPE,
        TEAM,
        ENVIRONMENTS,
        ASSIGNMENT_SOURCE,
        ENTITY_PROPERTY,
        QUALIFYING_EVENT,
        PARAM_STORE,
        AUTOTUNE,
        ALERT,
        RELEASE_PIPELINE,
        ROLE,
        PROMPT,
    )
}
