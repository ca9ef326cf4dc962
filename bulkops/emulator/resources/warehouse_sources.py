"""Warehouse-native experiment sources: assignment sources, entity property sources and
qualifying events, all under ``/console/v1/experiments/...``.

* ``/experiments/assignment_sources`` (GET list, POST create) and
  ``/experiments/assignment_source/{name}`` (POST full update, PATCH, DELETE; the spec has no
  GET of one);
* ``/experiments/entity_properties`` (GET, POST) and ``/experiments/entity_property/{name}``
  (GET, POST, PATCH, DELETE);
* ``/experiments/qualifying_events`` (GET, POST) and ``/experiments/qualifying_events/{name}``
  (GET, POST, DELETE), whose bodies and answers are the metric-source DTOs.

Like metric sources, each is identified by its case-sensitive ``name`` (reference §6), kept in
its own collection. Creates answer **201** and refuse a taken name (400 "Name is already in
use"); ``dryRun: true`` validates and answers without storing. The full update (POST) must carry
the fields the spec marks required; it cannot rename (the body's ``name`` is ignored, as for
metric sources, so the path stays the identifier) and, under the default
``EmulatorConfig.full_update`` reading, resets what it leaves out. PATCH merges the given
fields; ``sql`` is read-only there (the spec marks it ``readOnly``) and dropped. An assignment
source's tags, team and mapped unit id types must exist in the project (``._refs``), as for
every entity that names them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._context import Call, Reply
from .._envelopes import message_only, paged, single
from .._errors import name_in_use
from .._routing import Handler, Router
from .._store import Collection, Entity, Project
from .._validation import AnyValue, Bool, ListOf, Node, Obj, Str, validate
from ._common import OWNER_INPUT, console_owner, get_or_404
from ._refs import check_references
from .metric_sources import CREATE_SCHEMA as METRIC_SOURCE_CREATE
from .metric_sources import UPDATE_SCHEMA as METRIC_SOURCE_UPDATE
from .metric_sources import build_source

__all__ = [
    "ASSIGNMENT_SOURCES",
    "ENTITY_PROPERTIES",
    "QUALIFYING_EVENTS",
    "SourceKind",
    "create_named_source",
    "register",
]

V1 = "/console/v1/experiments"

_ID_TYPE_MAPPING = ListOf(
    Obj(fields={"statsigUnitID": Str(), "column": Str()}, required=("statsigUnitID", "column"))
)
_COMMON: dict[str, Node] = {
    "description": Str(),
    "tags": ListOf(Str()),
    "sql": Str(),
    "idTypeMapping": _ID_TYPE_MAPPING,
    "isReadOnly": Bool(),
    "team": Str(nullable=True),
    "teamID": Str(nullable=True),
    "dryRun": Bool(),
}
_ASSIGNMENT_FIELDS: dict[str, Node] = {
    **_COMMON,
    "isVerified": Bool(),
    "timestampColumn": Str(),
    "experimentIDColumn": Str(),
    "groupIDColumn": Str(),
    "owner": OWNER_INPUT,
}
_ENTITY_PROPERTY_FIELDS: dict[str, Node] = {
    **_COMMON,
    "timestampColumn": Str(),
    "timestampAsDay": Bool(),
}


def _assignment(project: Project, fields: dict[str, Any]) -> Entity:
    return {
        "name": fields["name"],
        "description": fields.get("description", ""),
        "isVerified": fields.get("isVerified", False),
        "tags": list(fields.get("tags", [])),
        "sql": fields["sql"],
        "timestampColumn": fields["timestampColumn"],
        "experimentIDColumn": fields["experimentIDColumn"],
        "groupIDColumn": fields["groupIDColumn"],
        "idTypeMapping": fields["idTypeMapping"],
        "isReadOnly": fields.get("isReadOnly", False),
        "owner": fields.get("owner") or console_owner(project),
        "team": fields.get("team"),
        "teamID": fields.get("teamID"),
    }


def _entity_property(project: Project, fields: dict[str, Any]) -> Entity:
    out: Entity = {
        "name": fields["name"],
        "description": fields.get("description", ""),
        "tags": list(fields.get("tags", [])),
        "sql": fields["sql"],
        "timestampAsDay": fields.get("timestampAsDay", False),
        "idTypeMapping": fields["idTypeMapping"],
        "isReadOnly": fields.get("isReadOnly", False),
        "owner": console_owner(project),
        "team": fields.get("team"),
        "teamID": fields.get("teamID"),
    }
    if "timestampColumn" in fields:
        out["timestampColumn"] = fields["timestampColumn"]
    return out


@dataclass(frozen=True)
class SourceKind:
    """One kind of named warehouse source: its collection, paths, schemas and builder."""

    collection: str
    label: str  # "Assignment Source": messages
    list_path: str
    one_path: str
    create_schema: Obj
    full_schema: Obj
    partial_schema: Obj | None
    build: Callable[[Project, dict[str, Any]], Entity]
    readable: bool = True
    checks_references: bool = False

    def coll(self, project: Project) -> Collection:
        return project.collection(self.collection)


def _schemas(
    fields: dict[str, Node], create_required: tuple[str, ...], full_required: tuple[str, ...]
) -> tuple[Obj, Obj, Obj]:
    create = Obj(fields={"name": Str(min_len=1), **fields}, required=create_required)
    full = Obj(fields={"name": AnyValue(), **fields}, required=full_required)
    partial = Obj(fields={k: v for k, v in fields.items() if k != "sql"})
    return create, full, partial


_A_REQUIRED = ("sql", "timestampColumn", "experimentIDColumn", "groupIDColumn", "idTypeMapping")
_A_CREATE, _A_FULL, _A_PARTIAL = _schemas(_ASSIGNMENT_FIELDS, ("name", *_A_REQUIRED), _A_REQUIRED)
_E_CREATE, _E_FULL, _E_PARTIAL = _schemas(
    _ENTITY_PROPERTY_FIELDS, ("name", "sql", "idTypeMapping"), ("sql", "idTypeMapping")
)

ASSIGNMENT_SOURCES = SourceKind(
    "assignment_sources",
    "Assignment Source",
    f"{V1}/assignment_sources",
    f"{V1}/assignment_source/{{name}}",
    _A_CREATE,
    _A_FULL,
    _A_PARTIAL,
    _assignment,
    readable=False,
    checks_references=True,
)
ENTITY_PROPERTIES = SourceKind(
    "entity_properties",
    "Entity Property Source",
    f"{V1}/entity_properties",
    f"{V1}/entity_property/{{name}}",
    _E_CREATE,
    _E_FULL,
    _E_PARTIAL,
    _entity_property,
)
QUALIFYING_EVENTS = SourceKind(
    "qualifying_events",
    "Qualifying event",
    f"{V1}/qualifying_events",
    f"{V1}/qualifying_events/{{name}}",
    METRIC_SOURCE_CREATE,
    METRIC_SOURCE_UPDATE,
    None,
    build_source,
)
_KINDS = (ASSIGNMENT_SOURCES, ENTITY_PROPERTIES, QUALIFYING_EVENTS)


def create_named_source(
    project: Project, kind: SourceKind, fields: dict[str, Any], *, persist: bool = True
) -> Entity:
    """Create a source of ``kind`` from validated fields (the handler and the demo seeder)."""
    coll = kind.coll(project)
    if fields["name"] in coll:
        raise name_in_use()
    source = kind.build(project, fields)
    if persist:
        coll.add(source["name"], source)
    return source


def _handlers(kind: SourceKind) -> dict[tuple[str, str], Handler]:
    plural = f"{kind.label}s"

    async def list_all(call: Call) -> Reply:
        return paged(call, f"{plural} listed successfully.", kind.coll(call.project).values())

    async def create(call: Call) -> Reply:
        fields = validate(kind.create_schema, call.json_body())
        if kind.checks_references:
            check_references(call.project, fields)
        source = create_named_source(
            call.project, kind, fields, persist=not fields.get("dryRun", False)
        )
        return single(f"{kind.label} created successfully.", source, call.config.create_code(201))

    async def read(call: Call) -> Reply:
        found = get_or_404(kind.coll(call.project), call.params["name"])
        return single(f"{kind.label} read successfully.", found)

    async def full_update(call: Call) -> Reply:
        name = call.params["name"]
        old = get_or_404(kind.coll(call.project), name)
        fields = validate(kind.full_schema, call.json_body())
        if kind.checks_references:
            check_references(call.project, fields)
        changes = {k: v for k, v in fields.items() if k not in ("name", "dryRun")}
        if call.config.replaces_on_full_update:
            new = {**kind.build(call.project, {**changes, "name": name}), "owner": old["owner"]}
            if changes.get("owner"):
                new["owner"] = changes["owner"]
        else:
            new = {**old, **{k: v for k, v in changes.items() if k != "owner" or v}}
        if not fields.get("dryRun", False):
            kind.coll(call.project).replace(name, new)
        return single(f"{kind.label} updated successfully.", new)

    async def partial_update(call: Call) -> Reply:
        name = call.params["name"]
        old = get_or_404(kind.coll(call.project), name)
        assert kind.partial_schema is not None
        fields = validate(kind.partial_schema, call.json_body())
        if kind.checks_references:
            check_references(call.project, fields)
        changes = {k: v for k, v in fields.items() if k not in ("name", "dryRun")}
        new = {**old, **{k: v for k, v in changes.items() if k != "owner" or v}}
        if not fields.get("dryRun", False):
            kind.coll(call.project).replace(name, new)
        return single(f"{kind.label} updated successfully.", new)

    async def delete(call: Call) -> Reply:
        name = call.params["name"]
        get_or_404(kind.coll(call.project), name)
        kind.coll(call.project).remove(name)
        return message_only(f"{kind.label} deleted successfully.")

    routes: dict[tuple[str, str], Handler] = {
        ("GET", kind.list_path): list_all,
        ("POST", kind.list_path): create,
        ("POST", kind.one_path): full_update,
        ("DELETE", kind.one_path): delete,
    }
    if kind.readable:
        routes["GET", kind.one_path] = read
    if kind.partial_schema is not None:
        routes["PATCH", kind.one_path] = partial_update
    return routes


def register(router: Router) -> None:
    for kind in _KINDS:
        for (method, path), handler in _handlers(kind).items():
            router.add(method, path, handler)
