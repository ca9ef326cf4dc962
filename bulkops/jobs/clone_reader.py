"""Reading what a clone needs: the selected experiments, their dependency closure, the target's copies.

The closure is walked breadth-first so each level's reads go out concurrently: experiments →
targeting gates, layers, metrics, override gates and segments → the gates and segments their rules
reference (recursively) → metric sources. Tags and target apps, referenced by name from every
entity, come from one list read per project; so do the assignment sources of warehouse-native
experiments (``assignmentSourceName``), which the API serves in a list only, read when a
selected experiment names one.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from bulkops.api.client import ConsoleClient, read_entity, with_group_names
from bulkops.api.urls import listed_item_path
from bulkops.engine.concurrency import gather
from bulkops.jobs.clone_bodies import ID_OVERRIDE_KEYS, condition_apps, referenced_ids
from bulkops.jobs.entity_kinds import (
    ASSIGNMENT_SOURCE,
    ENTITY_KINDS,
    EXPERIMENT,
    HOLDOUT,
    TAG,
    TARGET_APP,
    TEAM,
    UNIT_ID_TYPE,
)


def read_path(kind: str, entity_id: str) -> str:
    return ENTITY_KINDS[kind].read_path(entity_id)


@dataclass
class Entity:
    kind: str
    id: str
    source: dict[str, Any]
    target: dict[str, Any] | None
    read_path: str
    target_id: str | None = None  # tags and target apps: the target's own id for the same name
    group: str = ""


@dataclass
class Closure:
    experiments: list[dict[str, Any]]
    entities: dict[tuple[str, str], Entity] = field(default_factory=dict)
    deps_of_experiment: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    cannot_carry: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    target_overrides: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    holdouts: list[Entity] = field(default_factory=list)
    missing_teams: set[str] = field(default_factory=set)
    holdout_members: dict[str, list[str]] = field(default_factory=dict)
    #: (kind, id) of a gate or holdout the target lacks → the source's id overrides, when any.
    id_overrides: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def entity(self, kind: str, entity_id: str) -> Entity:
        return self.entities[(kind, entity_id)]

    def find(self, kind: str, entity_id: str | None) -> Entity | None:
        return self.entities.get((kind, entity_id or ""))

    def dependencies(self, exp_id: str) -> list[Entity]:
        return [self.entities[key] for key in self.deps_of_experiment.get(exp_id, [])]

    def references(self, entity: Entity) -> list[Entity]:
        """The entities this one points at directly (they must exist in the target first)."""
        src = entity.source
        refs: list[tuple[str, str]] = [("tag", t) for t in src.get("tags") or []]
        refs += [("target_app", a) for a in _as_list(src.get("targetApps"))]
        if entity.kind in ("gate", "segment"):
            gates, segments = referenced_ids(src.get("rules"))
            refs += [("gate", g) for g in sorted(gates)] + [
                ("segment", s) for s in sorted(segments)
            ]
        if entity.kind == "metric":
            source_name = (src.get("warehouseNative") or {}).get("metricSourceName")
            if source_name:
                refs.append(("metric_source", source_name))
        return [
            self.entities[r] for r in refs if r in self.entities and r != (entity.kind, entity.id)
        ]

    def dropped_fields(self, entity: Entity) -> set[str]:
        team = entity.source.get("team")
        return {"team"} if team and team in self.missing_teams else set()

    def target_app_id(self, value: str) -> str | None:
        """The target's id for the app a source entity names ``value`` (matched by name); None
        for an app the target does not have yet (its id is the target's to assign, #7)."""
        app = self.entities.get(("target_app", value))
        if app is None:  # not a listed app of the source: carried as it is
            return value
        return app.target_id if app.target is not None else None

    def holdouts_of(self, exp_id: str) -> list[Entity]:
        return [h for h in self.holdouts if exp_id in (h.source.get("experimentIDs") or [])]


async def read_closure(source: ConsoleClient, target: ConsoleClient, select: Any) -> Closure:
    experiments = _select(await source.list_all(EXPERIMENT.list_path()), select)
    closure = Closure(experiments=experiments)
    warehouse = any(e.get("assignmentSourceName") for e in experiments)
    lists = await _read_lists(source, target, warehouse=warehouse)
    reader = _Reader(source, target, closure, lists)
    await reader.walk()
    return closure


def _select(experiments: list[dict[str, Any]], select: Any) -> list[dict[str, Any]]:
    chosen = []
    for experiment in experiments:
        if select.ids and not any(fnmatchcase(experiment["id"], p) for p in select.ids):
            continue
        if select.status and experiment.get("status") not in select.status:
            continue
        if select.tags and not set(select.tags) & set(experiment.get("tags") or []):
            continue
        chosen.append(experiment)
    return chosen


async def _read_lists(
    source: ConsoleClient, target: ConsoleClient, *, warehouse: bool
) -> dict[str, Any]:
    paths = {
        "source_tags": (source, TAG.list_path()),
        "target_tags": (target, TAG.list_path()),
        "source_apps": (source, TARGET_APP.list_path()),
        "target_apps": (target, TARGET_APP.list_path()),
        "target_teams": (target, TEAM.list_path()),
        "target_id_types": (target, UNIT_ID_TYPE.list_path()),
        "source_holdouts": (source, HOLDOUT.list_path()),
        **{f"target_{kind}s": (target, ENTITY_KINDS[kind].list_path()) for kind in NAMED},
    }
    if warehouse:  # only a warehouse-native experiment needs them
        paths["source_assignment_sources"] = (source, ASSIGNMENT_SOURCE.list_path())
        paths["target_assignment_sources"] = (target, ASSIGNMENT_SOURCE.list_path())
    lists: dict[str, Any] = {}

    async def read(name: str, client: ConsoleClient, path: str) -> None:
        lists[name] = await client.list_all(path)

    await gather(
        functools.partial(read, name, client, path) for name, (client, path) in paths.items()
    )
    return lists


class _Reader:
    def __init__(
        self, source: ConsoleClient, target: ConsoleClient, closure: Closure, lists: dict[str, Any]
    ) -> None:
        self.source, self.target, self.closure, self.lists = source, target, closure, lists
        self.by_name = {
            "source_tags": {t["name"]: t for t in lists["source_tags"]},
            "target_tags": {t["name"]: t for t in lists["target_tags"]},
            "source_apps": _index_apps(lists["source_apps"]),
            "source_assignment_sources": {
                s["name"]: s for s in lists.get("source_assignment_sources", [])
            },
            "target_assignment_sources": {
                s["name"]: s for s in lists.get("target_assignment_sources", [])
            },
        }
        #: kind → the target's names and ids of that kind: a create meets them (#29).
        self.target_names = {k: _names_and_ids(lists[f"target_{k}s"]) for k in NAMED}
        self.teams = {t.get("name") for t in lists["target_teams"]}
        self.id_types = {t.get("name") for t in lists["target_id_types"]}

    async def walk(self) -> None:
        for experiment in self.closure.experiments:
            self._add("experiment", experiment["id"], experiment, target=None)
        await self._fetch_targets([("experiment", e["id"]) for e in self.closure.experiments])
        await self._read_overrides()
        frontier = [
            key for e in self.closure.experiments for key in self._direct_refs(e, "experiment")
        ]
        seen: set[tuple[str, str]] = set()
        while frontier:
            self._add_listed([k for k in frontier if k[0] == "assignment_source"])
            level = [k for k in dict.fromkeys(frontier) if k not in seen and k[0] not in _LISTED]
            seen.update(level)
            await self._fetch_sources(level)
            await self._fetch_targets(level)
            frontier = [
                ref
                for key in level
                if key in self.closure.entities
                for ref in self._direct_refs(self.closure.entities[key].source, key[0])
            ]
        await self._read_unlisted_apps()
        self._add_named_entities()
        self._holdouts()
        await self._fetch_targets([("holdout", h.id) for h in self.closure.holdouts])
        await self._read_id_overrides()
        for experiment in self.closure.experiments:
            self._experiment_deps(experiment)

    # -- reading ----------------------------------------------------------------------------
    async def _fetch_sources(self, keys: list[tuple[str, str]]) -> None:
        async def one(kind: str, entity_id: str) -> None:
            data = await read_entity(self.source, read_path(kind, entity_id))
            if data is not None:
                self._add(kind, entity_id, data, target=None)

        await _gather([(one, key) for key in keys])

    async def _fetch_targets(self, keys: list[tuple[str, str]]) -> None:
        async def one(kind: str, entity_id: str) -> None:
            if (kind, entity_id) in self.closure.entities:
                data = await read_entity(self.target, read_path(kind, entity_id))
                self.closure.entities[(kind, entity_id)].target = data

        await _gather([(one, key) for key in keys])

    async def _read_overrides(self) -> None:
        async def one(kind: str, exp_id: str) -> None:
            path = EXPERIMENT.item_path(exp_id, "overrides")
            source = await read_entity(self.source, path)
            if source:
                self.closure.overrides[exp_id] = _portable_overrides(
                    source, self.closure.entity("experiment", exp_id).source
                )
            target = await read_entity(self.target, path)
            if target is not None:  # a server may answer group ids where names were sent
                target = with_group_names(target, self.closure.entity("experiment", exp_id).target)
            self.closure.target_overrides[exp_id] = target

        await _gather([(one, ("experiment", e["id"])) for e in self.closure.experiments])

    async def _read_id_overrides(self) -> None:
        """The ids forced to pass or fail each gate and holdout the clone will create (§8.2);
        those the target has already keep the target's own."""

        async def one(kind: str, entity_id: str) -> None:
            path = ENTITY_KINDS[kind].item_path(entity_id, "overrides")
            overrides = await read_entity(self.source, path)
            if overrides and any(overrides.get(k) for k in ID_OVERRIDE_KEYS):
                self.closure.id_overrides[(kind, entity_id)] = overrides

        await _gather(
            [
                (one, key)
                for key, entity in self.closure.entities.items()
                if key[0] in ("gate", "holdout") and entity.target is None
            ]
        )

    # -- references -------------------------------------------------------------------------
    def _direct_refs(self, entity: dict[str, Any], kind: str) -> list[tuple[str, str]]:
        refs: list[tuple[str, str]] = []
        if kind == "experiment":
            if entity.get("targetingGateID"):
                refs.append(("gate", entity["targetingGateID"]))
            layer = entity.get("layerID")
            if layer and not str(layer).startswith("statsig::"):
                refs.append(("layer", layer))
            if entity.get("assignmentSourceName"):
                refs.append(("assignment_source", entity["assignmentSourceName"]))
            for field_name in ("primaryMetrics", "secondaryMetrics", "otherMetrics"):
                for metric in entity.get(field_name) or []:
                    refs.append(("metric", f"{metric['name']}::{metric['type']}"))
            for item in (self.closure.overrides.get(entity["id"]) or {}).get("overrides", []):
                kind_of = "gate" if item.get("type") == "gate" else "segment"
                refs.append((kind_of, item.get("id") or item.get("name")))
        if kind in ("gate", "segment"):
            gates, segments = referenced_ids(entity.get("rules"))
            refs += [("gate", g) for g in sorted(gates)] + [
                ("segment", s) for s in sorted(segments)
            ]
        if kind == "metric":
            name = (entity.get("warehouseNative") or {}).get("metricSourceName")
            if name:
                refs.append(("metric_source", name))
        return refs

    def _add_listed(self, keys: list[tuple[str, str]]) -> None:
        """Assignment sources: the source's and the target's rows of the lists read up front."""
        for kind, name in keys:
            source = self.by_name[f"source_{kind}s"].get(name)
            if source is not None:  # else: reported as referenced but missing
                self._add(kind, name, source, target=self.by_name[f"target_{kind}s"].get(name))

    async def _read_unlisted_apps(self) -> None:
        """Target apps a list gave without their ``id`` (optional in ``TargetAppDto``, #18):
        each value an entity references that no listed id or name matches is read by itself
        (``GET /target_app/{id}``). So a source's app is cloned under its name, not its source
        id, and the target's id of an app is known wherever a target entity references it."""
        sources = [e.source for e in self.closure.entities.values()]
        targets = [e.target for e in self.closure.entities.values() if e.target is not None]
        found: dict[str, dict[str, dict[str, Any]]] = {"source": {}, "target": {}}

        async def one(role: str, value: str) -> None:
            client = self.source if role == "source" else self.target
            row = await read_entity(client, TARGET_APP.item_path(value))
            if row is not None and isinstance(row.get("name"), str) and row["name"]:
                found[role][value] = {**row, "id": row.get("id") or value}

        calls = []
        for role, entities in (("source", sources), ("target", targets)):
            rows = self.lists[f"{role}_apps"]
            if all(isinstance(r, dict) and r.get("id") for r in rows):
                continue  # every row has its id: nothing the list cannot match
            known = _index_apps(rows) if role == "source" else {r.get("id") for r in rows}
            values = {v for e in entities for v in _app_values(e) if v not in known}
            calls += [functools.partial(one, role, v) for v in sorted(values)]
        await gather(calls)
        self.by_name["source_apps"].update(found["source"])
        by_name = {row["name"]: row for row in found["target"].values()}
        self.lists["target_apps"] = [
            by_name.pop(r.get("name"), r) if isinstance(r, dict) else r
            for r in self.lists["target_apps"]
        ] + list(by_name.values())

    def _add_named_entities(self) -> None:
        """Tags and target apps referenced anywhere, matched by name in the target."""
        tags: set[str] = set()
        apps: set[str] = set()
        for entity in list(self.closure.entities.values()):
            tags.update(entity.source.get("tags") or [])
            tags.update(entity.source.get("primaryMetricTags") or [])
            tags.update(entity.source.get("secondaryMetricTags") or [])
            apps.update(_app_values(entity.source))
        for name in sorted(tags):
            source = self.by_name["source_tags"].get(name) or {"name": name, "description": ""}
            target = self.by_name["target_tags"].get(name)
            self._add(
                "tag", name, source, target=target, target_id=target.get("id") if target else None
            )
        target_apps = {a.get("name"): a for a in self.lists["target_apps"]}
        for app in sorted(apps):
            # A source value is the source's id of the app (or its name); the target's app of
            # the same name has an id of the target's own, so it is read by name (#7).
            source = self.by_name["source_apps"].get(app) or {"name": app, "description": ""}
            source = {**source, "description": source.get("description") or ""}
            target = target_apps.get(source["name"])
            self._add(
                "target_app",
                app,
                source,
                target=target,
                target_id=(target.get("id") or target["name"]) if target else None,
                path=listed_item_path(TARGET_APP.list_path(), "name", source["name"]),
            )

    def _holdouts(self) -> None:
        selected = {e["id"] for e in self.closure.experiments}
        for holdout in self.lists["source_holdouts"]:
            if selected & set(holdout.get("experimentIDs") or []):
                self._add("holdout", holdout["id"], holdout, target=None)
                self.closure.holdouts.append(self.closure.entity("holdout", holdout["id"]))

    def _experiment_deps(self, experiment: dict[str, Any]) -> None:
        """Every entity an experiment needs, and what of it cannot be carried."""
        exp_id = experiment["id"]
        order: list[tuple[str, str]] = []
        problems: list[dict[str, Any]] = []
        stack = list(reversed(self._direct_refs(experiment, "experiment")))
        stack += [("tag", t) for t in experiment.get("tags") or []]
        stack += [
            ("tag", t)
            for t in (experiment.get("primaryMetricTags") or [])
            + (experiment.get("secondaryMetricTags") or [])
        ]
        stack += [("target_app", a) for a in _as_list(experiment.get("targetApps"))]
        seen: set[tuple[str, str]] = set()
        while stack:
            key = stack.pop()
            if key in seen:
                continue
            seen.add(key)
            entity = self.closure.entities.get(key)
            if entity is None:
                problems.append(
                    {
                        "fatal": True,
                        "message": f"{key[0]} {key[1]!r} is referenced but "
                        "does not exist in the source project",
                    }
                )
                continue
            order.append(key)
            stack.extend((ref.kind, ref.id) for ref in self.closure.references(entity))
        for kind, entity_id in [("experiment", exp_id), *order]:
            problems += self._carry_problems(self.closure.entities.get((kind, entity_id)))
        for holdout in self.closure.holdouts_of(exp_id):
            problems += self._carry_problems(holdout)
        layer = experiment.get("layerID")
        if layer and str(layer).startswith("statsig::"):
            problems.append(
                {
                    "fatal": False,
                    "message": f"implicit layer {layer!r} is not copied; "
                    "the target creates the experiment's own implicit layer",
                }
            )
        self.closure.deps_of_experiment[exp_id] = order
        self.closure.cannot_carry[exp_id] = problems

    def _carry_problems(self, entity: Entity | None) -> list[dict[str, Any]]:
        if entity is None:
            return []
        team = entity.source.get("team")
        if team and team not in self.teams:  # also for entities a clone already made
            self.closure.missing_teams.add(team)
        if entity.target is not None:
            return []
        problems = self._identity_problems(entity)
        if entity.kind in NAMED and not _named(entity.source):
            problems.append(
                {
                    "fatal": False,
                    "message": f"{entity.kind} {entity.id!r} has no name in the source (its "
                    f"answer leaves out `name`, which the spec does not require); created "
                    f"named {entity.id!r}, after its id",
                }
            )
        if team and team not in self.teams:
            problems.append(
                {
                    "fatal": False,
                    "message": f"team {team!r} of {entity.kind} "
                    f"{entity.id!r} does not exist in the target; created without a team",
                }
            )
        for app in sorted(condition_apps(entity.source.get("rules"))):
            if self.closure.target_app_id(app) is None:
                name = self.closure.entity("target_app", app).source["name"]
                problems.append(
                    {
                        "fatal": True,
                        "message": f"rules of {entity.kind} {entity.id!r} have a target_app "
                        f"condition on {name!r}, a target app the target does not have; its id "
                        "there is not known until it exists: create it in the target and re-run",
                    }
                )
        if entity.kind == "segment" and entity.source.get("type") != "rule_based":
            problems.append(
                {
                    "fatal": False,
                    "message": f"segment {entity.id!r} is a "
                    f"{entity.source.get('type')} segment: created empty, its ids are not "
                    "copied",
                }
            )
        id_types = [entity.source.get("idType")] + [
            m.get("statsigUnitID") for m in entity.source.get("idTypeMapping") or []
        ]  # idTypeMapping: warehouse sources map each unit id type to a column
        for id_type in dict.fromkeys(t for t in id_types if t):
            if self.id_types and id_type not in self.id_types:
                problems.append(
                    {
                        "fatal": True,
                        "message": f"unit id type {id_type!r} of "
                        f"{entity.kind} {entity.id!r} does not exist in the target; create "
                        "it there (Project Settings > Unit ID Types) and re-run",
                    }
                )
        return problems

    def _identity_problems(self, entity: Entity) -> list[dict[str, Any]]:
        """Why creating ``entity`` in the target would be refused, or land under another id:
        found at plan time, since a refused create still spends a mutation of the quota."""
        if entity.kind not in NAMED:
            return []
        name = create_name(entity)
        names, ids = self.target_names[entity.kind]
        holder = names.get(name) or (derive_id(name) if derive_id(name) in ids else None)
        what = f"{entity.kind} {entity.id!r}"
        if holder is not None and holder != entity.id:
            message = (
                f"{what} cannot be created in the target: its name {name!r} is taken there by "
                f'{entity.kind} {holder!r} (a create meets 400 "Name is already in use"); '
                "rename one of them and re-run"
            )
            return [{"fatal": True, "message": message}]
        if entity.kind in _ID_FROM_NAME and derive_id(name) != entity.id:
            # A name that folds to the id by another reading of the derivation (``Checkout-
            # Layer``, ``checkout_layer``) is refused too: the create's id is the server's.
            message = (
                f"{what} is named {name!r} in the source, and a {entity.kind} created from that "
                f"name gets its id from the name ({derive_id(name)!r}; its create takes no id), "
                f"not {entity.id!r}, the id the experiments use: create {what} in the target "
                f"first (named {entity.id!r}; rename it there after if you wish) and re-run"
            )
            return [{"fatal": True, "message": message}]
        return []

    def _add(
        self,
        kind: str,
        entity_id: str,
        source: dict[str, Any],
        *,
        target: dict[str, Any] | None,
        target_id: str | None = None,
        path: str | None = None,
    ) -> None:
        key = (kind, entity_id)
        if key not in self.closure.entities:
            self.closure.entities[key] = Entity(
                kind, entity_id, source, target, path or read_path(kind, entity_id), target_id
            )


#: Kinds read from lists up front, never one by one.
_LISTED = ("tag", "target_app", "assignment_source")
#: Kinds a clone creates under a name the target may already hold (docs/api-assumptions.md #29).
NAMED = ("gate", "segment", "experiment", "layer", "holdout")
#: Kinds whose create DTO has no ``id``: the target derives it from the name (#24).
_ID_FROM_NAME = ("layer", "holdout")
_SPACES = re.compile(r"\s+")


def derive_id(name: str) -> str:
    """The id a name derives to (§6's inference: lower-cased, whitespace runs to ``_``)."""
    return _SPACES.sub("_", name.strip().lower())


def create_name(entity: Entity) -> str:
    """The ``name`` a create of ``entity`` sends: the source's, or its id where the source's
    answer has none (``name`` is optional in every entity DTO, required by most creates)."""
    return entity.source["name"] if _named(entity.source) else entity.id


def _named(source: dict[str, Any]) -> bool:
    name = source.get("name")
    return isinstance(name, str) and bool(name)


def _names_and_ids(rows: list[dict[str, Any]]) -> tuple[dict[str, str], set[str]]:
    names = {r["name"]: r["id"] for r in rows if r.get("name") and r.get("id")}
    return names, {r["id"] for r in rows if r.get("id")}


def _portable_overrides(overrides: dict[str, Any], experiment: dict[str, Any]) -> dict[str, Any]:
    """Overrides with group ids rewritten to group names (group ids differ in the target)."""
    names = {g.get("id"): g.get("name") for g in experiment.get("groups") or [] if g.get("id")}

    def group(value: Any) -> Any:
        return names.get(value, value)

    return {
        "overrides": [
            {
                k: v
                for k, v in {
                    "type": o.get("type"),
                    "id": o.get("id") or o.get("name"),
                    "groupID": group(o.get("groupID")),
                    "environment": o.get("environment"),
                }.items()
                if v is not None
            }
            for o in overrides.get("overrides") or []
        ],
        "userIDOverrides": [
            {**{k: v for k, v in o.items() if v is not None}, "groupID": group(o.get("groupID"))}
            for o in overrides.get("userIDOverrides") or []
        ],
    }


def _index_apps(apps: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    index = {}
    for app in apps:
        for key in (app.get("id"), app.get("name")):
            if key:
                index[key] = app
    return index


def _app_values(entity: dict[str, Any]) -> set[str]:
    """The target-app values an entity references (``targetApps``, ``target_app`` conditions)."""
    return set(_as_list(entity.get("targetApps"))) | condition_apps(entity.get("rules"))


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


async def _gather(calls: list[tuple[Any, tuple[str, str]]]) -> None:
    await gather(
        functools.partial(function, kind, entity_id) for function, (kind, entity_id) in calls
    )
