"""Metric sources (warehouse native): ``/console/v1/metrics/metric_source...``.

A metric source is identified by its ``name`` (``MetricSourceContractDto``: "serving as its
primary identifier"); names are case-sensitive and may hold any character, so clients must
percent-encode them in paths. Update is a POST that must carry ``sql``, ``timestampColumn`` and
``idTypeMapping``; the name cannot change. It is a full update: with the default replace reading
(``EmulatorConfig.full_update``) optional fields it leaves out go back to their create defaults
(``owner`` excepted, which is the server's); with ``"merge"`` they keep their value.
"""

from __future__ import annotations

from typing import Any

from .._context import Call, Reply
from .._envelopes import message_only, paged, single
from .._errors import ApiError, name_in_use
from .._routing import Router
from .._store import Entity, Project
from .._validation import AnyValue, Bool, Enum, ListOf, Obj, Str, validate
from ._common import BY_SOURCE, OWNER_INPUT, console_owner, get_or_404, metric_sources, metrics

__all__ = ["CREATE_SCHEMA", "UPDATE_SCHEMA", "create_source", "register"]

BASE = "/console/v1/metrics/metric_source"

_ID_TYPE_MAPPING = ListOf(
    Obj(
        fields={"statsigUnitID": Str(), "column": Str()},
        required=("statsigUnitID", "column"),
    )
)
_CUSTOM_FIELD_MAPPING = ListOf(
    Obj(fields={"key": Str(), "formula": Str()}, required=("key", "formula"))
)
_FIELDS = {
    "description": Str(),
    "tags": ListOf(Str()),
    "sql": Str(),
    "timestampColumn": Str(),
    "timestampAsDay": Bool(),
    "idTypeMapping": _ID_TYPE_MAPPING,
    "sourceType": Enum(values=("table", "query")),
    "tableName": Str(),
    "datePartitionColumn": Str(),
    "customFieldMapping": _CUSTOM_FIELD_MAPPING,
    "isReadOnly": Bool(),
    "isVerified": Bool(),
    "owner": OWNER_INPUT,
    "team": Str(nullable=True),
    "teamID": Str(nullable=True),
    "dryRun": Bool(),
}
_REQUIRED = ("sql", "timestampColumn", "idTypeMapping")

CREATE_SCHEMA = Obj(fields={"name": Str(min_len=1), **_FIELDS}, required=("name", *_REQUIRED))
UPDATE_SCHEMA = Obj(fields={"name": AnyValue(), **_FIELDS}, required=_REQUIRED)

_OPTIONAL_PASSTHROUGH = ("tableName", "datePartitionColumn")


def build_source(project: Project, fields: dict[str, Any]) -> Entity:
    """A full ``MetricSourceContractDto`` from validated create fields."""
    source: Entity = {
        "name": fields["name"],
        "description": fields.get("description", ""),
        "tags": list(fields.get("tags", [])),
        "sql": fields["sql"],
        "timestampColumn": fields["timestampColumn"],
        "timestampAsDay": fields.get("timestampAsDay", False),
        "idTypeMapping": fields["idTypeMapping"],
        "sourceType": fields.get("sourceType", "table" if fields.get("tableName") else "query"),
        "customFieldMapping": fields.get("customFieldMapping", []),
        "isReadOnly": fields.get("isReadOnly", False),
        "isVerified": fields.get("isVerified", False),
        "owner": fields.get("owner") or console_owner(project),
        "team": fields.get("team"),
        "teamID": fields.get("teamID"),
    }
    for name in _OPTIONAL_PASSTHROUGH:
        if name in fields:
            source[name] = fields[name]
    return source


def create_source(project: Project, fields: dict[str, Any], *, persist: bool = True) -> Entity:
    """Create a source from validated fields (used by the handler and the demo seeder)."""
    coll = metric_sources(project)
    if fields["name"] in coll:
        raise name_in_use()
    source = build_source(project, fields)
    if persist:
        coll.add(source["name"], source)
    return source


def _get(project: Project, name: str) -> Entity:
    return get_or_404(metric_sources(project), name)


async def list_sources(call: Call) -> Reply:
    return paged(call, "Metric sources listed successfully.", metric_sources(call.project).values())


async def create(call: Call) -> Reply:
    fields = validate(CREATE_SCHEMA, call.json_body())
    source = create_source(call.project, fields, persist=not fields.get("dryRun", False))
    return single(
        "Metric source created successfully.", source, status=call.config.create_code(201)
    )


async def read(call: Call) -> Reply:
    return single("Metric source read successfully.", _get(call.project, call.params["name"]))


async def update(call: Call) -> Reply:
    name = call.params["name"]
    old = _get(call.project, name)
    fields = validate(UPDATE_SCHEMA, call.json_body())
    changes = {k: v for k, v in fields.items() if k not in ("name", "dryRun")}
    if call.config.replaces_on_full_update:
        new = {**build_source(call.project, {**changes, "name": name}), "owner": old["owner"]}
        if fields.get("owner"):
            new["owner"] = fields["owner"]
    else:
        new = {**old, **changes}
        if fields.get("owner") is None and "owner" in fields:
            new["owner"] = old["owner"]
    if not fields.get("dryRun", False):
        metric_sources(call.project).replace(name, new)
    return single("Metric source updated successfully.", new)


async def delete(call: Call) -> Reply:
    name = call.params["name"]
    _get(call.project, name)
    in_use = metrics(call.project).count_where(BY_SOURCE, name)
    if in_use:
        raise ApiError(
            400,
            f"Invalid request. Metric source {name!r} is used by {in_use} metric(s); "
            "delete those metrics first.",
        )
    metric_sources(call.project).remove(name)
    return message_only("Metric source deleted successfully.")


async def list_source_metrics(call: Call) -> Reply:
    name = call.params["name"]
    _get(call.project, name)
    return paged(call, "Metrics listed successfully.", metrics(call.project).where(BY_SOURCE, name))


def register(router: Router) -> None:
    router.add("GET", f"{BASE}/list", list_sources)
    router.add("POST", BASE, create)
    router.add("GET", f"{BASE}/{{name}}", read)
    router.add("POST", f"{BASE}/{{name}}", update)
    router.add("DELETE", f"{BASE}/{{name}}", delete)
    router.add("GET", f"{BASE}/{{name}}/metrics", list_source_metrics)
