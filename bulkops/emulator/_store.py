"""Projects and their per-entity-kind collections: the emulator's whole data model.

A :class:`Project` owns one :class:`Collection` per entity kind (``"metrics"``,
``"metric_sources"``, later ``"gates"``, ``"experiments"``...). A collection is an
insertion-ordered map from id to a JSON-ready ``dict``, so list endpoints page in creation order
and responses serialise the stored dict directly. Entities are replaced, never mutated in place,
so a dict handed to a response can't change under it.

Secondary indexes (for example metrics by metric-source name) are declared by the resource module
that needs them, with :meth:`Collection.ensure_index`; the store knows nothing about any resource.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ._ids import stable_id

__all__ = ["Collection", "Entity", "Project"]

Entity = dict[str, Any]
IndexKey = Callable[[Entity], str | None]


class Collection:
    """Entities of one kind in one project, keyed by id, in creation order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Entity] = {}
        self._index_keys: dict[str, IndexKey] = {}
        self._indexes: dict[str, dict[str, dict[str, None]]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, entity_id: object) -> bool:
        return entity_id in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __repr__(self) -> str:
        return (
            f"Collection(kind={self.kind!r}, size={len(self._items)}, "
            f"indexes={list(self._indexes)})"
        )

    def get(self, entity_id: str) -> Entity | None:
        """The entity with this exact (case-sensitive) id, or None."""
        return self._items.get(entity_id)

    def values(self) -> list[Entity]:
        """A snapshot list of all entities in creation order."""
        return list(self._items.values())

    def add(self, entity_id: str, entity: Entity) -> None:
        """Insert a new entity; the caller has already checked the id is free."""
        if entity_id in self._items:
            raise KeyError(f"{self.kind} {entity_id!r} already exists")
        self._items[entity_id] = entity
        self._index_add(entity_id, entity)

    def replace(self, entity_id: str, entity: Entity) -> None:
        """Swap in a new version of an existing entity, keeping its position in the order."""
        old = self._items[entity_id]
        self._index_remove(entity_id, old)
        self._items[entity_id] = entity
        self._index_add(entity_id, entity)

    def remove(self, entity_id: str) -> Entity:
        """Delete and return an entity."""
        old = self._items.pop(entity_id)
        self._index_remove(entity_id, old)
        return old

    def put(self, entity_id: str, entity: Entity) -> None:
        """Add or replace: for side records (overrides, id lists) that exist only once written."""
        if entity_id in self._items:
            self.replace(entity_id, entity)
        else:
            self.add(entity_id, entity)

    def discard(self, entity_id: str) -> None:
        """Remove if present: a deleted entity's side records may never have been written."""
        if entity_id in self._items:
            self.remove(entity_id)

    def ensure_index(self, name: str, key: IndexKey) -> None:
        """Declare a secondary index (idempotent); builds it from existing entities once."""
        if name in self._indexes:
            return
        self._index_keys[name] = key
        self._indexes[name] = {}
        for entity_id, entity in self._items.items():
            self._index_one(name, entity_id, entity)

    def where(self, index: str, value: str) -> list[Entity]:
        """Entities whose ``index`` key equals ``value``, in creation order."""
        ids = self._indexes[index].get(value, {})
        return [self._items[i] for i in ids]

    def count_where(self, index: str, value: str) -> int:
        """How many entities have ``index`` key ``value``."""
        return len(self._indexes[index].get(value, {}))

    def _index_one(self, name: str, entity_id: str, entity: Entity) -> None:
        value = self._index_keys[name](entity)
        if value is not None:
            self._indexes[name].setdefault(value, {})[entity_id] = None

    def _index_add(self, entity_id: str, entity: Entity) -> None:
        for name in self._indexes:
            self._index_one(name, entity_id, entity)

    def _index_remove(self, entity_id: str, entity: Entity) -> None:
        for name, index in self._indexes.items():
            value = self._index_keys[name](entity)
            if value is not None and value in index:
                index[value].pop(entity_id, None)
                if not index[value]:
                    del index[value]


#: The readings of a target app's id (``Project.target_app_ids``).
TARGET_APP_IDS = ("assigned", "derived")


class Project:
    """One Statsig project: a name, its console key(s) and a collection per entity kind.

    ``read_only_keys`` authenticate like the console key but get 403 "Forbidden resource" on
    mutations (a key scoped ``omni_read_only``). ``api_user_id`` is the id the API reports as
    creator / last modifier for changes made with this project's console key.
    """

    def __init__(
        self,
        name: str,
        console_key: str,
        *,
        read_only_keys: Iterable[str] = (),
        project_id: str | None = None,
        target_app_ids: str = "assigned",
    ) -> None:
        if target_app_ids not in TARGET_APP_IDS:
            raise ValueError(
                f"Project.target_app_ids must be one of {TARGET_APP_IDS}, got {target_app_ids!r}"
            )
        self.name = name
        self.console_key = console_key
        #: What ``GET /console/v1/project`` answers; distinct per key, so two worlds' projects
        #: of one name are told apart, while a rebuilt demo world keeps its ids.
        self.id = project_id or stable_id("project", name, console_key)
        self.read_only_keys = frozenset(read_only_keys)
        self.api_user_id = stable_id("console-api-user", name)
        self._collections: dict[str, Collection] = {}
        self._last_stamp_ms = 0
        self._sequences: dict[str, int] = {}
        #: Where every sequence starts (a project seeded from a snapshot starts high, so the
        #: ids it assigns cannot repeat seeded ones made by a project of the same name).
        self.sequence_floor = 0
        #: Optional kinds (``EmulatorConfig.OPTIONAL_KINDS``) this project does not serve: a
        #: snapshot's ``unavailable`` ones, so a project seeded from it answers as its source did.
        self.unserved: set[str] = set()
        #: How target apps created here get their ids (docs/api-assumptions.md #7): "assigned"
        #: (a server id of this project's own, so one app name has another id in each project)
        #: or "derived" (from the name, the same in every project).
        self.target_app_ids = target_app_ids

    def stamp(self, now_ms: int) -> int:
        """A change time for "now": ``now_ms``, or one past the last one handed out.

        ``lastModifiedTime`` must strictly increase on every change even when two land in the
        same millisecond (or the wall clock steps back), or optimistic-concurrency guards that
        compare it could miss a change.
        """
        self._last_stamp_ms = max(now_ms, self._last_stamp_ms + 1)
        return self._last_stamp_ms

    def next_seq(self, kind: str) -> int:
        """1, 2, 3... per ``kind``: feeds deterministic server-assigned ids (rules, groups)."""
        value = self._sequences.get(kind, self.sequence_floor) + 1
        self._sequences[kind] = value
        return value

    def collection(self, kind: str) -> Collection:
        """The collection for ``kind``, created empty on first use."""
        found = self._collections.get(kind)
        if found is None:
            found = self._collections[kind] = Collection(kind)
        return found

    def collections(self) -> list[Collection]:
        """Every collection made so far."""
        return list(self._collections.values())

    @property
    def keys(self) -> frozenset[str]:
        """Every key that authenticates as this project."""
        return self.read_only_keys | {self.console_key}

    def __repr__(self) -> str:
        sizes = {kind: len(c) for kind, c in self._collections.items()}
        return f"Project(name={self.name!r}, collections={sizes})"
