"""Publishing an export atomically: staged files, renamed into place, the manifest written last.

While files are swapped the old manifest is gone, so a reader that trusts ``manifest.json`` never
sees a complete manifest over a mix of old and new files.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bulkops.errors import UserError, writing
from bulkops.output.files import write_json_atomic

MANIFEST = "manifest.json"


def safe_file_stem(name: str) -> str:
    """A file name for an arbitrary entity name: readable, safe, and distinct per name.

    The readable part keeps letters, digits, ``.``, ``_`` and ``-`` (no separators, no control
    characters, no leading dot so never ``..``); a hash of the exact name keeps distinct names
    distinct, even ones that differ only in case on a case-insensitive file system.
    """
    readable = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", readable).strip("._-")[:80] or "source"
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:10]
    return f"{readable}-{digest}"


def probe_writable(folder: Path, field: str) -> None:
    """Create ``folder`` (and its parents) and write a probe file in it, before any request: an
    output directory that cannot be written is a usage error (exit 2), not a failure at the end."""
    probe = folder / f".bulkops-write-test-{os.getpid()}"
    try:
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(20, "it is a file, not a directory", str(folder))
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        where = exc.filename or folder
        raise UserError(
            f"{field}: cannot write to the output directory {folder} ({where}: "
            f"{exc.strerror or exc}); pick a directory you can write, or fix its permissions."
        ) from None


@dataclass
class StagedFile:
    final: Path
    staged: Path
    count: int
    sha256: str


def stage_file(root: Path, relative: str, run_id: str, chunks: Iterable[bytes]) -> StagedFile:
    """Write a JSON-lines file under a temporary name beside its final place; count and hash it.

    ``chunks`` are runs of whole, newline-terminated lines.
    """
    final = root / relative
    final.parent.mkdir(parents=True, exist_ok=True)
    staged = final.with_name(f".{final.name}.tmp-{run_id}")
    digest = hashlib.sha256()
    count = 0
    with writing(staged), staged.open("wb") as handle:
        for chunk in chunks:
            handle.write(chunk)
            digest.update(chunk)
            count += chunk.count(b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    return StagedFile(final, staged, count, digest.hexdigest())


class Publication:
    """Files staged under temporary names in the output folder, published together."""

    def __init__(self, root: Path, run_id: str) -> None:
        self.root = root
        self.run_id = run_id
        self.staged: list[StagedFile] = []

    def add(self, item: StagedFile) -> StagedFile:
        if any(other.final == item.final for other in self.staged):
            raise ValueError(f"two outputs map to the same file {item.final}")
        self.staged.append(item)
        return item

    def stage(self, relative: str, chunks: Iterable[bytes]) -> StagedFile:
        return self.add(stage_file(self.root, relative, self.run_id, chunks))

    def commit(self, manifest: dict[str, Any], *, prune: Path | None = None) -> Path:
        """Withdraw the old manifest, rename every staged file into place, write the manifest."""
        (self.root / MANIFEST).unlink(missing_ok=True)
        _fsync_dir(self.root)
        for item in self.staged:
            item.staged.replace(item.final)
        if prune is not None:
            self._prune(prune)
        for folder in {item.final.parent for item in self.staged}:
            _fsync_dir(folder)
        write_json_atomic(self.root / MANIFEST, manifest)
        return self.root / MANIFEST

    def _prune(self, folder: Path) -> None:
        """Remove files of a previous export that this one no longer has (a deleted source)."""
        keep = {item.final for item in self.staged}
        for path in folder.glob("*.jsonl"):
            if path not in keep:
                path.unlink()
        for stale in (*folder.glob(".*.tmp-*"), *self.root.glob(".*.tmp-*")):
            stale.unlink(missing_ok=True)  # staged files of runs that never published


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_org_manifest(
    root: Path,
    projects: list[dict[str, Any]],
    *,
    job: str,
    kind: str,
    run_id: str,
    started_at: float,
) -> Path:
    """``<root>/manifest.json`` of an export over several projects, each in ``<root>/<dir>/``
    with a manifest of its own; written atomically, after every project's own publishing.

    ``complete`` (the whole export's, and each project's) is true only for what this run
    published: a project that failed keeps its folder as it was, marked not complete.
    """
    for entry in projects:
        own = _read_json(root / entry["dir"] / MANIFEST)
        entry["published_at"] = own.get("published_at") if own.get("complete") is True else None
        if own.get("run_id") != entry.get("run_id"):
            entry["complete"] = False  # what the folder holds is not this run's
    manifest = {
        "complete": all(entry["complete"] for entry in projects),
        "kind": kind,
        "job": job,
        "run_id": run_id,
        "started_at": _iso(started_at),
        "published_at": _iso(time.time()),
        "projects": projects,
        "failed": [entry["name"] for entry in projects if not entry["complete"]],
    }
    root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(root / MANIFEST, manifest)
    return root / MANIFEST


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
