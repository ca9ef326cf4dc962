"""Seeding a project from an ``export_project`` snapshot directory, faithfully.

A snapshot is ``<dir>/manifest.json``::

    {"complete": true, "kind": "export_project", "project": {"id", "name"},
     "entities": {kind: [{"id", "file", "sha256"}]},
     "details": {kind: [{"id", "detail", "file", "sha256"}]}}

with files relative to ``<dir>``. Each entity file holds exactly the object the API returned;
an ``overrides`` detail holds the data of the overrides GET; an ``id_list`` detail holds a
segment's ids. :func:`project_from_snapshot` stores every object as is (ids, versions,
``lastModifiedTime``, rule ids untouched), so reading the project back over HTTP answers the
files' objects, and the project keeps the manifest's id.

What the emulator then does with the project is what it does with any: a write bumps the version
and stamps a time later than every seeded one (the project's clock starts past the newest
``createdTime``/``lastModifiedTime`` it holds), and server-assigned ids start from a high
sequence so they cannot repeat a seeded id made by an emulator project of the same name.
A settings document (kind ``settings``) is stored under its manifest ``id``, the path segment
(``project``, ``reviews``, ``roles``, ``teams``); one whose file holds ``null`` (the server
answered ``data: null``) is answered ``data: null`` again. Kinds the manifest lists as
``unavailable`` (optional kinds the source project did not serve) are not served by the seeded
project either (404), so an export of it writes the same ``unavailable``. A target app or team exported
without an ``id`` (a server whose lists leave it out) is given the one this emulator derives
from its name. Experiment overrides are answered
exactly as read until the first write (their stored form names each gate or segment by id *and*
name, which a read answers by one of them).

A snapshot that is incomplete or damaged (no manifest, ``complete`` not true, a missing file,
a file that is not the JSON it should be, an entity whose id is not the one the manifest lists
it under) is refused with a ``ValueError`` that names the file and the problem. So, by default,
are a file that no longer matches its ``sha256`` and a kind or detail the emulator does not
serve; given a :class:`SeedNotes`, those are tolerated instead and noted in it: a hand-edited
file is seeded as it now is (a user may edit a snapshot to set up a rehearsal), and a kind or
detail of a newer bulkops is left out (no job of this one reads it).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ._config import OPTIONAL_KINDS
from ._ids import stable_id
from ._store import Project
from ._world import World
from .resources._entities import derive_id
from .resources.experiment_overrides import SEEDED_ANSWER
from .resources.settings import DOCUMENTS as SETTINGS_DOCUMENTS
from .resources.settings import seed_null_settings

__all__ = [
    "DOCUMENT_KINDS",
    "ENTITY_KINDS",
    "SEEDED_ANSWER",
    "SeedNotes",
    "project_from_snapshot",
    "snapshot_key",
    "world_from_snapshots",
]

#: Snapshot kind → the field its collection is keyed by (the collection has the kind's name).
ENTITY_KINDS: dict[str, str] = {
    "gates": "id",
    "dynamic_configs": "id",
    "experiments": "id",
    "layers": "id",
    "holdouts": "id",
    "segments": "id",
    "autotunes": "id",
    "tags": "id",
    "target_apps": "id",
    "teams": "id",
    "environments": "id",
    "metrics": "id",
    "metric_sources": "name",
    "unit_id_types": "name",
    "assignment_sources": "name",
    "entity_properties": "name",
    "qualifying_events": "name",
    "param_stores": "name",
    "alerts": "id",
    "release_pipelines": "id",
    "roles": "name",
    "prompts": "id",
}
#: Kinds whose list rows may carry no ``id`` (``EmulatorConfig.listed_ids``): a file without one
#: is stored under the id this emulator gives such an entity, derived from its name.
_ID_FROM_NAME: dict[str, Callable[[str, str], str]] = {
    "target_apps": lambda project, name: derive_id(name, strict=True),
    "teams": lambda project, name: stable_id("team", project, name),
}
#: Kinds whose manifest ``id`` is another field than the one they are stored by.
_LISTED_BY: dict[str, str] = {"environments": "name"}
#: Kinds of singleton documents: the manifest's ``id`` (the path segment) keys each one.
DOCUMENT_KINDS: dict[str, tuple[str, ...]] = {"settings": SETTINGS_DOCUMENTS}
#: Details: (kind, detail) → the side collection they are stored in.
_DETAILS: dict[tuple[str, str], str] = {
    ("gates", "overrides"): "gates_overrides",
    ("holdouts", "overrides"): "holdouts_overrides",
    ("layers", "overrides"): "layers_overrides",
    ("experiments", "overrides"): "experiments_overrides",
    ("segments", "id_list"): "segment_ids",
}
#: Server-assigned sequences of a seeded project start here (see the module docstring).
_SEQUENCE_FLOOR = 1_000_000
_TIME_FIELDS = ("createdTime", "lastModifiedTime")
_SLUG = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass
class SeedNotes:
    """What a lenient seeding tolerated (see the module docstring), for the caller to tell."""

    #: Files whose bytes no longer match their ``sha256``, seeded as they now are.
    edited: list[str] = field(default_factory=list)
    #: Kinds (``widgets``) and details (``gates history``) left out, with how many files each
    #: (a kind's count includes its details).
    skipped: dict[str, int] = field(default_factory=dict)


class _Snapshot:
    """One snapshot directory being read; every error names the snapshot and the file."""

    def __init__(self, directory: Path, notes: SeedNotes | None = None) -> None:
        self.dir = directory
        self.notes = notes

    def fail(self, what: str) -> ValueError:
        return ValueError(f"snapshot {self.dir} {what}")

    def damaged(self, what: str) -> ValueError:
        return self.fail(f"is damaged: {what}; export it again (or restore it from a copy)")

    def manifest(self) -> dict[str, Any]:
        path = self.dir / "manifest.json"
        if not self.dir.exists():
            raise self.fail("does not exist; give the folder an export_project job wrote")
        if not self.dir.is_dir():
            raise self.fail(
                "is a file, not a snapshot folder; give the folder an export_project job wrote "
                "(the one that holds manifest.json)"
            )
        if not path.is_file():
            raise self.fail(
                "has no manifest.json; it is not a finished export_project snapshot "
                "(run the export again, or give its output folder)"
            )
        manifest = self._json("manifest.json", path.read_bytes())
        if not isinstance(manifest, dict):
            raise self.damaged("manifest.json is not a JSON object")
        if manifest.get("complete") is not True:
            raise self.fail(
                'is not complete: its manifest.json does not say "complete": true; the export '
                "did not finish (run it again to completion)"
            )
        if manifest.get("kind") != "export_project":
            raise self.fail(
                f"is not a project snapshot: its manifest.json has kind "
                f'{_show(manifest.get("kind"))}, expected "export_project"; give the folder an '
                "export_project job wrote"
            )
        project = manifest.get("project")
        if not (
            isinstance(project, dict)
            and isinstance(project.get("id"), str)
            and project["id"]
            and (project.get("name") is None or isinstance(project["name"], str))
        ):
            raise self.damaged(
                'manifest.json needs "project": {"id": "...", "name": "..." or null}'
            )
        for section in ("entities", "details"):
            if not isinstance(manifest.get(section, {}), dict):
                raise self.damaged(f'manifest.json "{section}" must be an object of kind → list')
        unavailable = manifest.get("unavailable", {})
        # A kind unknown here is not served anyway; one every project serves cannot be missing.
        if not isinstance(unavailable, dict) or not all(
            (kind in OPTIONAL_KINDS or kind not in ENTITY_KINDS) and isinstance(why, str)
            for kind, why in unavailable.items()
        ):
            raise self.damaged(
                'manifest.json "unavailable" must be an object of kind → reason, the kinds among '
                f"{', '.join(OPTIONAL_KINDS)}"
            )
        return manifest

    def entries(
        self, manifest: dict[str, Any], section: str
    ) -> Iterable[tuple[str, dict[str, Any]]]:
        for kind, items in manifest.get(section, {}).items():
            if not isinstance(items, list):
                raise self.damaged(f'manifest.json "{section}.{kind}" must be a list')
            for index, item in enumerate(items):
                where = f'manifest.json "{section}.{kind}.{index}"'
                needed = ("id", "file", "sha256") + (("detail",) if section == "details" else ())
                if not isinstance(item, dict) or not all(
                    isinstance(item.get(k), str) for k in needed
                ):
                    raise self.damaged(f"{where} needs string fields {', '.join(needed)}")
                yield kind, item

    def load(self, entry: dict[str, Any]) -> Any:
        """The JSON in the entry's file, after checking it lies inside and matches its hash."""
        relative = Path(entry["file"])
        path = (self.dir / relative).resolve()
        if relative.is_absolute() or not path.is_relative_to(self.dir.resolve()):
            raise self.damaged(
                f"manifest.json lists file {_show(entry['file'])}, which lies outside the "
                "snapshot directory"
            )
        if not path.is_file():
            raise self.damaged(f"file {entry['file']} is listed in manifest.json but missing")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != entry["sha256"].lower():
            if self.notes is None:
                raise self.fail(
                    f"has a changed file: {entry['file']} does not match its sha256 in "
                    "manifest.json; it was edited or damaged after the export"
                )
            self.notes.edited.append(entry["file"])
        return self._json(entry["file"], data)

    def _json(self, name: str, data: bytes) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise self.damaged(f"{name} is not valid JSON ({exc})") from None

    def skip(self, what: str) -> bool:
        """Whether to leave out a kind or detail unknown here (noted), rather than refuse."""
        if self.notes is None:
            return False
        self.notes.skipped[what] = self.notes.skipped.get(what, 0) + 1
        return True


def _show(value: object) -> str:
    return "nothing" if value is None else orjson.dumps(value).decode()


def snapshot_key(name: str, project_id: str) -> str:
    """The console key a seeded project is served with: deterministic, ASCII, distinct per
    (name, project id), e.g. ``console-snapshot-source-3kT9...``."""
    slug = _SLUG.sub("-", name).strip("-")[:40] or "project"
    return f"console-snapshot-{slug}-{stable_id('snapshot-key', name, project_id)[:16]}"


def _seed_experiment_overrides(answer: dict[str, Any]) -> dict[str, Any]:
    """The stored form of experiment overrides read from a snapshot, keeping the answer."""
    items = [
        {
            "type": o.get("type"),
            "id": o.get("id") or o.get("name"),
            "name": o.get("name") or o.get("id"),
            "groupID": o.get("groupID"),
            "environment": o.get("environment"),
        }
        for o in answer.get("overrides") or []
        if isinstance(o, dict)
    ]
    users = [
        {
            **u,
            "ids": list(u.get("ids") or [])[::-1],
            "environment": u.get("environment"),
            "unitType": u.get("unitType"),
        }
        for u in answer.get("userIDOverrides") or []
        if isinstance(u, dict)
    ]
    # Answers list these in reverse by default (EmulatorConfig.list_order): store them so.
    return {
        "overrides": items[::-1],
        "userIDOverrides": users[::-1],
        SEEDED_ANSWER: answer,
    }


def _newest_time(value: Any) -> int:
    if not isinstance(value, dict):
        return 0
    times = [value.get(f) for f in _TIME_FIELDS]
    return max((int(t) for t in times if isinstance(t, int | float)), default=0)


def _with_id(project: str, kind: str, entity: Any) -> Any:
    """``entity``, given the id the emulator derives from its name if its kind may come
    without one (``_ID_FROM_NAME``) and it has none."""
    derive = _ID_FROM_NAME.get(kind)
    if derive is None or not isinstance(entity, dict) or entity.get("id"):
        return entity
    name = entity.get("name")
    return {**entity, "id": derive(project, name)} if isinstance(name, str) and name else entity


def _document_key(snap: _Snapshot, kind: str, entry: dict[str, Any], document: Any) -> str:
    """The key of a singleton document: its manifest ``id``, one of the kind's documents."""
    documents = DOCUMENT_KINDS[kind]
    if entry["id"] not in documents:
        raise snap.damaged(
            f"manifest.json lists {kind} {_show(entry['id'])} (file {entry['file']}); the "
            f"{kind} documents are {', '.join(documents)}"
        )
    if document is not None and not isinstance(document, dict):
        raise snap.damaged(
            f"file {entry['file']} should hold the {kind}/{entry['id']} object (or null, as "
            "the server may answer it)"
        )
    return str(entry["id"])


def _listed_as(kind: str, key_field: str, entity: dict[str, Any]) -> Any:
    """The id the manifest should list ``entity`` under: its identity field, or its name for
    a kind whose rows may come without an id (``_ID_FROM_NAME``)."""
    listed = entity.get(_LISTED_BY.get(kind, key_field))
    if not listed and kind in _ID_FROM_NAME:
        return entity.get("name")
    return listed


def _entity_key(snap: _Snapshot, project: Project, kind: str, entry: dict[str, Any]) -> Any:
    """The entity in the entry's file and the key it is stored under, after checking it is the
    one the manifest lists; None when the entry is of a kind left out (``SeedNotes``)."""
    key_field = ENTITY_KINDS.get(kind)
    if key_field is None and kind not in DOCUMENT_KINDS:
        if snap.skip(kind):
            return None
        served = sorted([*ENTITY_KINDS, *DOCUMENT_KINDS])
        raise snap.fail(
            f"lists entities of kind {_show(kind)} (a newer bulkops?), which the emulator does "
            f"not serve; it serves {', '.join(served)}"
        )
    entity = snap.load(entry)
    if key_field is None:
        return _document_key(snap, kind, entry, entity), entity
    if not isinstance(entity, dict) or not isinstance(entity.get(key_field) or "", str):
        raise snap.damaged(
            f"file {entry['file']} should hold one {kind} object with a string "
            f'"{key_field}", as the API returns it'
        )
    listed = _listed_as(kind, key_field, entity)
    # An environment listed by its id (not by name, as the export does) is as unambiguous.
    if entry["id"] not in (listed, entity.get(key_field)):
        raise snap.fail(
            f"does not agree with itself: file {entry['file']} holds {kind} {_show(listed)}, "
            f"but manifest.json lists it as {_show(entry['id'])}; make the two the same (or "
            "export again)"
        )
    entity = _with_id(project.name, kind, entity)
    key = entity.get(key_field)
    if not isinstance(key, str) or not key:
        raise snap.damaged(
            f"file {entry['file']} should hold one {kind} object with a string "
            f'"{key_field}", as the API returns it'
        )
    return key, entity


def _settings_name(snap: _Snapshot, manifest: dict[str, Any]) -> str | None:
    """The project's name as its ``settings/project`` document gives it, if the snapshot holds
    one (the manifest names no project: the API tells an export none). Read quietly: a damaged
    file is reported when it is seeded."""
    listed = manifest.get("entities", {}).get("settings")
    for entry in listed if isinstance(listed, list) else []:
        if isinstance(entry, dict) and entry.get("id") == "project":
            try:
                document = orjson.loads((snap.dir / str(entry.get("file"))).read_bytes())
            except (OSError, orjson.JSONDecodeError):
                return None
            found = document.get("name") if isinstance(document, dict) else None
            return found if isinstance(found, str) and found.strip() else None
    return None


def project_from_snapshot(
    directory: str | Path,
    *,
    name: str | None = None,
    console_key: str | None = None,
    notes: SeedNotes | None = None,
) -> Project:
    """A project holding exactly the snapshot in ``directory`` (see the module docstring).

    ``name`` defaults to the snapshot's project name, else the ``name`` of its
    ``settings/project`` document; ``console_key`` to :func:`snapshot_key`.
    Raises ``ValueError`` for a snapshot that is incomplete or damaged. With ``notes``, a file
    that no longer matches its sha256 is seeded as it is, and kinds and details unknown here are
    left out; both are noted in ``notes``.
    """
    snap = _Snapshot(Path(directory), notes)
    manifest = snap.manifest()
    meta = manifest["project"]
    served = name or meta.get("name") or _settings_name(snap, manifest)
    if not served:  # the API gives no name for a project, so an export may have none
        raise snap.fail(
            "names no project (the API gives an export none, and it holds no settings/project "
            f"with a name); serve it under a name of your choice: NAME={snap.dir}"
        )
    project = Project(
        served, console_key or snapshot_key(served, meta["id"]), project_id=meta["id"]
    )
    project.sequence_floor = _SEQUENCE_FLOOR
    newest = 0
    project.unserved.update(manifest.get("unavailable", {}))
    for kind, entry in snap.entries(manifest, "entities"):
        found = _entity_key(snap, project, kind, entry)
        if found is None:
            continue
        key, entity = found
        coll = project.collection(kind)
        if key in coll:
            raise snap.damaged(f"{kind} {_show(key)} appears twice (file {entry['file']})")
        if entity is None:  # a settings document the server answered as null
            seed_null_settings(project, key)
            continue
        coll.add(key, entity)
        newest = max(newest, _newest_time(entity))
    for kind, entry in snap.entries(manifest, "details"):
        target = _DETAILS.get((kind, entry["detail"]))
        if target is None:
            # A detail of a kind left out is left out with it; else the detail alone.
            known_kind = kind in ENTITY_KINDS or kind in DOCUMENT_KINDS
            if snap.skip(f"{kind} {entry['detail']}" if known_kind else kind):
                continue
            known = ", ".join(f"{k} {d}" for k, d in _DETAILS)
            raise snap.fail(
                f"lists a {_show(entry['detail'])} detail of {kind} (a newer bulkops?), which "
                f"the emulator does not serve; it serves {known}"
            )
        if entry["id"] not in project.collection(kind):
            raise snap.damaged(
                f"file {entry['file']} holds the {entry['detail']} of {kind} "
                f"{_show(entry['id'])}, which the snapshot's entities do not include"
            )
        data = snap.load(entry)
        if entry["detail"] == "id_list":
            if not isinstance(data, list) or not all(isinstance(i, str) for i in data):
                raise snap.damaged(f"file {entry['file']} should hold a list of id strings")
            project.collection(target).put(entry["id"], {"ids": data})
        else:
            if not isinstance(data, dict):
                raise snap.damaged(f"file {entry['file']} should hold the overrides object")
            stored = _seed_experiment_overrides(data) if kind == "experiments" else data
            project.collection(target).put(entry["id"], stored)
    if newest:
        project.stamp(newest)
    return project


def world_from_snapshots(
    sources: Iterable[tuple[str | None, str | Path]],
    *,
    notes: dict[str, SeedNotes] | None = None,
    **world_options: Any,
) -> World:
    """A world serving each ``(name or None, snapshot directory)`` as one project.

    Two snapshots served under one name are refused (``ValueError``): name one ``NAME=SNAP``.
    With ``notes``, each project is seeded leniently (see :func:`project_from_snapshot`) and
    its notes are kept under its name.
    """
    world = World(**world_options)
    for name, directory in sources:
        noted = SeedNotes() if notes is not None else None
        project = project_from_snapshot(directory, name=name, notes=noted)
        if project.name in world.projects:
            raise ValueError(
                f"two snapshots would both be served as project {_show(project.name)}; "
                f"give one another name with NAME={directory}"
            )
        world.add_project(project)
        if notes is not None and noted is not None:
            notes[project.name] = noted
    return world
