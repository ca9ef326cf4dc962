"""Project snapshots on disk: the format ``export_project`` writes and ``bulkops diff`` reads.

A project snapshot is a directory::

    <dir>/manifest.json              written last; {"complete": true, "kind": "export_project", ...}
    <dir>/<kind>/<file>.json         one file per entity: the object the API returned
    <dir>/<kind>/<file>.overrides.json   the overrides of a gate, experiment or layer (``data``)
    <dir>/<kind>/<file>.id_list.json     the ids of an id_list segment (a JSON list)

Every file is serialised by ``dumps`` (sorted keys, 2-space indent, UTF-8 as UTF-8, a trailing
newline), so equal content has equal bytes and equal ``sha256``. The manifest lists each file:
``"entities": {kind: [{"id", "file", "sha256"}]}``, ``"details": {kind: [{"id", "detail", "file",
"sha256"}]}``, where ``id`` is the value the API's item path uses for that kind and ``file`` is
relative to ``<dir>``. Kinds are the API's collection names; any kind name is read generically.

An org snapshot (several projects) has ``{"projects": [{"name", "dir", "complete"}], ...}`` as its
manifest and each project's snapshot in ``<dir>/<dir of the project>/``.

Reading trusts nothing: a missing or unparseable manifest, ``complete`` other than ``true``, a
listed file that is missing, escapes the directory, or does not hash to its ``sha256`` are each a
``SnapshotError`` (exit 2) naming the file. Only the manifest is held in memory; entity files are
read one at a time (``ProjectSnapshot.read``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import orjson

from bulkops.errors import UserError

MANIFEST = "manifest.json"
KIND = "export_project"
#: The API's collections in the order people read them (what is evaluated first, then what feeds
#: it, then the project's furniture). Kinds not listed follow, alphabetically.
KINDS = (
    "gates",
    "dynamic_configs",
    "experiments",
    "layers",
    "holdouts",
    "segments",
    "tags",
    "target_apps",
    "metric_sources",
    "metrics",
    "unit_id_types",
    "teams",
    "environments",
    "assignment_sources",
    "entity_properties",
    "qualifying_events",
    "param_stores",
    "autotunes",
    "alerts",
    "release_pipelines",
    "roles",
    "prompts",
    "settings",
)
_SHA256 = re.compile(r"[0-9a-f]{64}")


class SnapshotError(UserError):
    """A directory is not a complete, intact snapshot: not one at all, unfinished, or damaged."""


def dumps(value: Any) -> bytes:
    """The one serialisation of snapshot files: sorted keys, 2-space indent, UTF-8, newline."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def kind_order(kinds: Iterable[str]) -> list[str]:
    """Known kinds in ``KINDS`` order, then any others sorted."""
    known = {kind: index for index, kind in enumerate(KINDS)}
    return sorted(set(kinds), key=lambda kind: (known.get(kind, len(known)), kind))


@dataclass(frozen=True, slots=True)
class Entry:
    """One file of a snapshot, as its manifest lists it."""

    kind: str
    id: str
    file: str
    sha256: str
    #: ``None`` for the entity itself, else the detail's name (``overrides``, ``id_list``).
    detail: str | None = None


@dataclass
class ProjectSnapshot:
    """One project's snapshot: its manifest, parsed and checked; files are read on demand."""

    root: Path
    #: How errors name this snapshot: ``OLD snapshot exports/a``.
    label: str
    manifest: dict[str, Any]
    #: kind → id → the entity's file.
    entities: dict[str, dict[str, Entry]] = field(default_factory=dict)
    #: kind → (id, detail) → the detail's file.
    details: dict[str, dict[tuple[str, str], Entry]] = field(default_factory=dict)

    @property
    def project(self) -> dict[str, Any]:
        project = self.manifest.get("project")
        return project if isinstance(project, dict) else {}

    def count(self) -> int:
        return sum(len(ids) for ids in self.entities.values())

    def damaged(self, what: str) -> SnapshotError:
        return SnapshotError(
            f"{self.label} is damaged: {what}. Export it again (or restore it from a copy)."
        )

    def check_files(self) -> None:
        """Fail unless every file the manifest lists exists (a stat each; none is opened)."""
        entries = [e for listing in self.entities.values() for e in listing.values()]
        entries += [e for listing in self.details.values() for e in listing.values()]
        for entry in entries:
            if not (self.root / entry.file).is_file():
                raise self.damaged(f"{entry.file} is listed in {MANIFEST} but missing")

    def read(self, entry: Entry) -> Any:
        """The entry's JSON, after checking its bytes hash to the manifest's ``sha256``."""
        path = self.root / entry.file
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise self.damaged(f"{entry.file} is listed in {MANIFEST} but missing") from None
        except OSError as exc:
            raise SnapshotError(
                f"{self.label}: cannot read {entry.file}: {exc.strerror or exc}"
            ) from None
        if sha256(data) != entry.sha256:
            raise self.damaged(
                f"{entry.file} does not match its sha256 in {MANIFEST} (it changed after the "
                "export wrote it)"
            )
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise self.damaged(f"{entry.file} is not valid JSON ({exc})") from None


@dataclass
class OrgSnapshot:
    """Several projects' snapshots under one directory, by project name."""

    root: Path
    label: str
    manifest: dict[str, Any]
    projects: dict[str, ProjectSnapshot]


def open_snapshot(root: Path, label: str) -> ProjectSnapshot | OrgSnapshot:
    """Read and check the manifest of the snapshot at ``root``; ``label`` names it in errors."""
    named = f"{label} {root}"
    if not root.exists():
        raise SnapshotError(
            f"{named} does not exist; give a directory an export_project job wrote."
        )
    if not root.is_dir():
        raise SnapshotError(
            f"{named} is a file, not a snapshot directory; give the directory that holds "
            f"{MANIFEST} (the [output] dir of an export_project job)."
        )
    manifest = _read_manifest(root, named)
    if isinstance(manifest.get("projects"), list):
        return _open_org(root, named, manifest)
    return _open_project(root, named, manifest)


def _read_manifest(root: Path, named: str) -> dict[str, Any]:
    path = root / MANIFEST
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SnapshotError(
            f"{named} has no {MANIFEST}, so it is not a snapshot (or its export never finished "
            "publishing): give a directory an export_project job wrote."
        ) from None
    except OSError as exc:
        raise SnapshotError(f"{named}: cannot read {MANIFEST}: {exc.strerror or exc}") from None
    try:
        manifest = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise SnapshotError(f"{named} is damaged: {MANIFEST} is not valid JSON ({exc}).") from None
    if not isinstance(manifest, dict):
        raise SnapshotError(f"{named} is damaged: {MANIFEST} is not a JSON object.")
    return manifest


def _require_complete(manifest: dict[str, Any], named: str, *, required: bool) -> None:
    complete = manifest.get("complete", None if required else True)
    if complete is not True:
        said = (
            'has no "complete" field' if complete is None else f"says complete: {_json(complete)}"
        )
        raise SnapshotError(
            f"{named} is not a complete snapshot: its {MANIFEST} {said}. The export that wrote "
            "it did not finish; run it again, then use the finished snapshot."
        )


def _open_org(root: Path, named: str, manifest: dict[str, Any]) -> OrgSnapshot:
    unfinished = [
        item["name"]
        for item in manifest["projects"]
        if isinstance(item, dict)
        and _is_name(item.get("name"))
        and item.get("complete", True) is not True
    ]
    if unfinished:  # say which, before the index's own "complete": false says only that
        raise SnapshotError(
            f"{named} is not a complete snapshot: the export did not finish project "
            f"{', '.join(map(_json, unfinished))} (its {MANIFEST} says complete: false for "
            f"{'it' if len(unfinished) == 1 else 'them'}); run it again, then use the finished "
            "snapshot."
        )
    _require_complete(manifest, named, required=False)
    projects: dict[str, ProjectSnapshot] = {}
    for index, item in enumerate(manifest["projects"]):
        where = f"{MANIFEST} projects.{index}"
        if not isinstance(item, dict) or not _is_name(item.get("name")):
            raise SnapshotError(f"{named} is damaged: {where} has no project name.")
        name = item["name"]
        if name in projects:
            raise SnapshotError(f"{named} is damaged: {where} repeats project {_json(name)}.")
        folder = item.get("dir", name)
        if not isinstance(folder, str) or not _safe_relative(folder):
            raise SnapshotError(
                f"{named} is damaged: {where}.dir {_json(folder)} is not a folder inside the "
                "snapshot."
            )
        if item.get("complete", True) is not True:
            raise SnapshotError(
                f"{named} is not a complete snapshot: project {_json(name)} says complete: "
                f"{_json(item.get('complete'))}. The export did not finish it; run it again, then "
                "use the finished snapshot."
            )
        project_root = root / folder
        label = f"{named}, project {name}"
        if not project_root.is_dir():
            raise SnapshotError(f"{label} is damaged: its folder {folder} is missing.")
        projects[name] = _open_project(project_root, label, _read_manifest(project_root, label))
    return OrgSnapshot(root=root, label=named, manifest=manifest, projects=projects)


def _open_project(root: Path, named: str, manifest: dict[str, Any]) -> ProjectSnapshot:
    kind = manifest.get("kind")
    if kind != KIND:
        what = f"of an {kind} job" if isinstance(kind, str) else 'without a "kind"'
        raise SnapshotError(
            f"{named} is not a project snapshot: its {MANIFEST} is a manifest {what}, not of "
            f"an {KIND} job. Give a directory an {KIND} job wrote."
        )
    _require_complete(manifest, named, required=True)
    snapshot = ProjectSnapshot(root=root, label=named, manifest=manifest)
    for entry in _entries(manifest, "entities", named):
        ids = snapshot.entities.setdefault(entry.kind, {})
        if entry.id in ids:
            raise snapshot.damaged(f"{MANIFEST} lists {entry.kind} {_json(entry.id)} twice")
        ids[entry.id] = entry
    for entry in _entries(manifest, "details", named):
        assert entry.detail is not None
        details = snapshot.details.setdefault(entry.kind, {})
        key = (entry.id, entry.detail)
        if key in details:
            raise snapshot.damaged(
                f"{MANIFEST} lists the {entry.detail} of {entry.kind} {_json(entry.id)} twice"
            )
        details[key] = entry
    # Only the listings are kept; the rest of the manifest is the header people read.
    manifest.pop("entities", None)
    manifest.pop("details", None)
    return snapshot


def _entries(manifest: dict[str, Any], section: str, named: str) -> Iterable[Entry]:
    listing = manifest.get(section, {})
    if not isinstance(listing, dict):
        raise SnapshotError(
            f"{named} is damaged: {MANIFEST} {section} is not an object of kind → list of files."
        )
    for kind, items in listing.items():
        if not isinstance(items, list):
            raise SnapshotError(f"{named} is damaged: {MANIFEST} {section}.{kind} is not a list.")
        for index, item in enumerate(items):
            yield _entry(item, kind, detail=section == "details", where=(named, section, index))


def _entry(item: Any, kind: str, *, detail: bool, where: tuple[str, str, int]) -> Entry:
    named, section, index = where

    def bad(field_name: str, expected: str) -> SnapshotError:
        got = item.get(field_name) if isinstance(item, dict) else item
        return SnapshotError(
            f"{named} is damaged: {MANIFEST} {section}.{kind}.{index}.{field_name}: expected "
            f"{expected}, got {_json(got)}."
        )

    if not isinstance(item, dict):
        raise bad("id", "an object with id, file and sha256")
    if not _is_name(item.get("id")):
        raise bad("id", "a non-empty string")
    file = item.get("file")
    if not isinstance(file, str) or not _safe_relative(file):
        raise bad("file", "a path relative to the snapshot, inside it")
    digest = item.get("sha256")
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        raise bad("sha256", "64 lowercase hex digits")
    name = item.get("detail") if detail else None
    if detail and not _is_name(name):
        raise bad("detail", 'a detail name such as "overrides" or "id_list"')
    return Entry(kind=kind, id=item["id"], file=file, sha256=digest, detail=name)


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _safe_relative(path: str) -> bool:
    """A relative path that stays inside its root: no absolute path, no ``..``, no backslash."""
    if not path or "\\" in path or "\x00" in path:
        return False
    pure = PurePosixPath(path)
    return not pure.is_absolute() and ".." not in pure.parts and pure.parts not in ((), (".",))


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)
