"""The ``list_change`` fault: a list that changes between two of its pages.

Another user of the project adds or deletes an entity while a client pages through a list. The
emulator does it for real, in the store, so every later answer (the next page, ``totalItems``, a
GET of the entity) agrees with it: the entity the page's rows came from is found by identity
(list handlers answer the stored dicts), and one entity of that collection is added or removed.

* ``add``: a copy of the page's first row under a new key (``<key>~changed-<n>``); an ``id`` or
  ``name`` equal to the key takes the new key, and a distinct ``name`` gets the same suffix, so
  names stay unique.
* ``delete``: the entity the seed picks among the collection's.

A list whose rows are not stored entities (built per answer) is left as it is.
"""

from __future__ import annotations

import copy
from typing import Any

from ._store import Collection, Project

__all__ = ["change_list"]


def _holding(project: Project, row: Any) -> tuple[Collection, str] | None:
    """The collection and key of the stored entity ``row`` is (the same object)."""
    if not isinstance(row, dict):
        return None
    keys = [k for k in (row.get("id"), row.get("name")) if isinstance(k, str)]
    for collection in project.collections():
        for key in keys:
            if collection.get(key) is row:
                return collection, key
    return None


def change_list(project: Project, rows: list[Any], kind: str, pick: float, serial: int) -> bool:
    """Add or delete one entity of the collection ``rows`` came from; False if none was found."""
    found = _holding(project, rows[0]) if rows else None
    if found is None:
        return False
    collection, key = found
    if kind == "delete":
        keys = list(collection)
        collection.remove(keys[int(pick * len(keys))])
        return True
    suffix = f"~changed-{serial}"
    entity: dict[str, Any] = copy.deepcopy(rows[0])
    for field in ("id", "name"):
        value = entity.get(field)
        if isinstance(value, str):
            entity[field] = key + suffix if value == key else value + suffix
    collection.add(key + suffix, entity)
    return True
