"""``export_project``: every configuration of a project, one file per entity, published atomically.

Task graph::

    project ─┐
    kind:gates ─────────┤  (each: every page, checked against totalItems, then its details)
    kind:experiments ───┼─► publish (stage changed files, withdraw the manifest, rename, prune,
    ...                 ┘             write the manifest)

A kind's task reads its whole list and then the details of its entities (overrides, id lists);
when the list does not add up to ``totalItems``, repeats an id, differs from a second read (a
list of several pages is read twice: an entity added and another deleted between two pages
keep the count right but tear the list), or an entity vanishes before its details are read, the
list changed while being read and the kind is read again, up to
``READ_ATTEMPTS`` times, before the task fails (``InconsistentListing``, exit 3; a re-run reads
it again). Each kind's rows and details are spooled to the state directory, so a run killed
after some kinds were read resumes with the others. The snapshot format is
``bulkops.output.snapshot``; publishing leaves a file whose bytes did not change untouched.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import anyio
import orjson
from pydantic import Field

from bulkops.api.client import PAGE_LIMIT, ConsoleClient, api_path, pages_for
from bulkops.engine.graph import Task
from bulkops.errors import InconsistentListing, NotFound, writing
from bulkops.human import count, plural
from bulkops.jobs.base import Count, RunContext
from bulkops.jobs.entity_kinds import (
    ASSIGNMENT_SOURCE,
    AUTOTUNE,
    DYNAMIC_CONFIG,
    ENTITY_PROPERTY,
    EXPERIMENT,
    GATE,
    HOLDOUT,
    LAYER,
    METRIC_SOURCE,
    PARAM_STORE,
    QUALIFYING_EVENT,
    SEGMENT,
    TAG,
    TARGET_APP,
    TEAM,
    UNIT_ID_TYPE,
    EntityKind,
)
from bulkops.jobs.reading import ReadingFunctions
from bulkops.jobs.spec import (
    Items,
    JobDefinition,
    JobSpec,
    NamedProjects,
    ProjectSpec,
    Strict,
    expect,
    member_dir,
)
from bulkops.output.files import write_json_atomic
from bulkops.output.publish import MANIFEST, probe_writable, safe_file_stem
from bulkops.output.snapshot import KIND as SNAPSHOT_KIND
from bulkops.output.snapshot import KINDS, dumps, sha256

PROJECT = "project"
PUBLISH = "publish"
#: Reads of one kind's list (and details) before a list that keeps changing fails the run.
READ_ATTEMPTS = 3
#: Detail requests of one kind in flight at once, at least (or the client's concurrency, if
#: higher: the governor still paces them and shares its slots among the kinds).
DETAILS_AT_ONCE = 8


@dataclass(frozen=True)
class Exported:
    """How one snapshot kind is read: its list, the field that names an entity, its details."""

    list_path: str
    identity: str
    #: The item path, for details; None: the kind has none.
    entity: EntityKind | None = None
    query: Mapping[str, str] | None = None
    overrides: bool = False
    #: A single document ``{key: [...]}`` instead of a paginated list (environments).
    document_key: str | None = None


def _table() -> dict[str, Exported]:
    def listed(kind: EntityKind, **extra: Any) -> Exported:
        return Exported(kind.list_path(), kind.identity, kind, **extra)

    table = {
        "gates": listed(GATE, overrides=True),
        "dynamic_configs": listed(DYNAMIC_CONFIG),
        "experiments": listed(EXPERIMENT, overrides=True),
        "layers": listed(LAYER, overrides=True),
        "holdouts": listed(HOLDOUT),
        "segments": listed(SEGMENT),
        "tags": listed(TAG),
        "target_apps": listed(TARGET_APP),
        "metric_sources": listed(METRIC_SOURCE),
        # Hidden metrics too; the list holds metrics with and without a source.
        "metrics": Exported(api_path("metrics", "list"), "id", query={"showHiddenMetrics": "true"}),
        "unit_id_types": listed(UNIT_ID_TYPE),
        "teams": listed(TEAM),
        "environments": Exported(api_path("environments"), "name", document_key="environments"),
        "assignment_sources": listed(ASSIGNMENT_SOURCE),
        "entity_properties": listed(ENTITY_PROPERTY),
        "qualifying_events": listed(QUALIFYING_EVENT),
        "param_stores": listed(PARAM_STORE),
        "autotunes": listed(AUTOTUNE),
    }
    assert tuple(table) == KINDS, "the export and the snapshot format name the same kinds"
    return table


EXPORTED = _table()
KindName = Literal[KINDS]  # type: ignore[valid-type]


class OutputSpec(Strict):
    dir: Annotated[
        str,
        Field(min_length=1, pattern=r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"),
        expect("a directory path (not blank, no control characters)"),
    ]


class SelectSpec(Strict):
    kinds: Annotated[Items[KindName], Field(min_length=1)] = KINDS


class OptionsSpec(Strict):
    #: Also export the ids of id_list segments (a rate-limited endpoint, one request per page).
    segment_id_lists: bool = False


class Spec(JobSpec):
    kind: ClassVar[str] = "export_project"
    roles: ClassVar[tuple[str, ...]] = ("source",)

    many_role: ClassVar[str | None] = "source"

    job: Literal["export_project"]
    source: ProjectSpec | None
    sources: NamedProjects | None = None
    output: OutputSpec
    select: SelectSpec = Field(default_factory=SelectSpec)
    options: OptionsSpec = Field(default_factory=OptionsSpec)

    def member_fields(self, name: str) -> dict[str, Any]:
        """One project of ``[[sources]]`` exports to ``<dir>/<name>/``."""
        return {"output": self.output.model_copy(update={"dir": member_dir(self.output.dir, name)})}


def check_output(job: JobDefinition[Spec]) -> None:
    """Before the first request: the output directory can be created and written (exit 2)."""
    probe_writable(job.resolve_path(job.spec.output.dir), f"output.dir of {job.path}")


def selected_kinds(spec: Spec) -> list[str]:
    """The kinds to export, in the snapshot's order, each once."""
    wanted = set(spec.select.kinds)
    return [kind for kind in KINDS if kind in wanted]


# -- reading -----------------------------------------------------------------------------------
def root_tasks(ctx: RunContext[Spec]) -> list[Task]:
    kinds = selected_kinds(ctx.job.spec)
    tasks = [Task(id=PROJECT, body=lambda: _project(ctx), label="the project's identity")]
    for kind in kinds:
        tasks.append(
            Task(id=f"kind:{kind}", body=_reader(ctx, kind), label=f"read {kind.replace('_', ' ')}")
        )
    tasks.append(
        Task(
            id=PUBLISH,
            body=lambda: _publish(ctx, kinds),
            deps=tuple(task.id for task in tasks),
            label="publish the snapshot",
        )
    )
    return tasks


async def _project(ctx: RunContext[Spec]) -> dict[str, Any]:
    identity = await ctx.clients["source"].identify()
    return {"id": identity.id, "name": identity.name}


def _reader(ctx: RunContext[Spec], kind: str) -> Any:
    async def read() -> dict[str, Any]:
        client = ctx.clients["source"]
        how = EXPORTED[kind]
        for attempt in range(1, READ_ATTEMPTS + 1):
            try:
                rows = await _read_rows(client, kind, how)
                details = await _read_details(ctx, client, kind, how, rows)
                break
            except InconsistentListing:
                if attempt == READ_ATTEMPTS:
                    raise
        rows_spool = await ctx.spool.write_async(f"kind:{kind}", rows)
        details_spool = await ctx.spool.write_async(f"details:{kind}", details)
        return {
            "count": len(rows),
            "spool": rows_spool,
            "details": len(details),
            "details_spool": details_spool,
        }

    return read


def _changed(what: str, detail: str) -> InconsistentListing:
    return InconsistentListing(
        f"{what}: {detail}; the list changed while it was being read, and kept changing over "
        f"{READ_ATTEMPTS} reads. Re-run to read it again."
    )


async def _read_rows(client: ConsoleClient, kind: str, how: Exported) -> list[dict[str, Any]]:
    what = f"the {kind.replace('_', ' ')} of project {client.project!r}"
    if how.document_key is not None:
        body = await client.get(how.list_path)
        data = body.get("data")
        items = data.get(how.document_key) if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise _changed(what, f"GET {how.list_path} has no list in data.{how.document_key}")
        rows: list[Any] = items
    else:
        rows, pages = await _read_pages(client, how, what)
        if pages > 1:  # a torn read can hide behind a right count (one added, one deleted)
            again, _ = await _read_pages(client, how, what)
            if [_identity(r, how) for r in again] != [_identity(r, how) for r in rows]:
                raise _changed(what, "two reads in a row listed different items")
            rows = again
    ids = [_identity(row, how) for row in rows]
    if any(key is None for key in ids):
        raise _changed(what, f"an item has no {how.identity!r}")
    if len(set(ids)) != len(ids):
        raise _changed(what, "an item appeared twice")
    return rows


async def _read_pages(
    client: ConsoleClient, how: Exported, what: str
) -> tuple[list[dict[str, Any]], int]:
    """Every row of a paginated list, checked against its ``totalItems``; and how many pages."""
    rows: list[Any] = []
    number, last, total = 1, 1, None
    while True:
        page = await client.get_page(how.list_path, number, limit=PAGE_LIMIT, query=how.query)
        rows.extend(page.data)
        if number == 1 and page.total is not None:
            total = page.total
            last = pages_for(page.total, page.items_per_page)
        if not page.data or (number >= last and not page.has_next):
            break
        number += 1
    if total is not None and len(rows) != total:
        raise _changed(what, f"read {len(rows)} rows but totalItems={total}")
    return rows, number


def _identity(row: Any, how: Exported) -> str | None:
    key = row.get(how.identity) if isinstance(row, dict) else None
    return key if isinstance(key, str) and key else None


async def _read_details(
    ctx: RunContext[Spec],
    client: ConsoleClient,
    kind: str,
    how: Exported,
    rows: list[dict[str, Any]],
) -> list[list[Any]]:
    """``[id, detail, data]`` for every non-empty detail of the kind's entities, in list order."""
    wanted: list[tuple[str, str]] = []
    for row in rows:
        key = str(row[how.identity])
        if how.overrides:
            wanted.append((key, "overrides"))
        id_lists = kind == "segments" and ctx.job.spec.options.segment_id_lists
        if id_lists and row.get("type") == "id_list":
            wanted.append((key, "id_list"))
    if not wanted or how.entity is None:
        return []
    entity = how.entity
    found: dict[int, Any] = {}
    # One kind may fill every slot the governor has (it still paces and shares them).
    limiter = anyio.CapacityLimiter(max(DETAILS_AT_ONCE, client.governor.max_concurrency))

    async def one(index: int, key: str, detail: str) -> None:
        async with limiter:
            try:
                if detail == "overrides":
                    body = await client.get(entity.item_path(key, "overrides"))
                    found[index] = body.get("data")
                else:
                    found[index] = await _read_id_list(client, entity, key)
            except NotFound:
                raise _changed(
                    f"the {kind.replace('_', ' ')} of project {client.project!r}",
                    f"{key!r} was deleted before its {detail} were read",
                ) from None

    async with anyio.create_task_group() as group:
        for index, (key, detail) in enumerate(wanted):
            group.start_soon(one, index, key, detail)
    return [
        [key, detail, found[index]]
        for index, (key, detail) in enumerate(wanted)
        if not _empty(found[index])
    ]


async def _read_id_list(client: ConsoleClient, segment: EntityKind, key: str) -> list[str]:
    """Every id of an id_list segment, all pages, in the API's order."""
    path = segment.item_path(key, "id_list")
    ids: list[str] = []
    number, total = 1, None
    while True:
        body = await client.get(path, {"page": number, "limit": PAGE_LIMIT})
        data = body.get("data")
        page = data.get("ids") if isinstance(data, dict) else None
        if not isinstance(page, list):
            page = []
        ids.extend(str(item) for item in page)
        pagination = body.get("pagination") or {}
        if number == 1 and isinstance(pagination.get("totalItems"), int):
            total = pagination["totalItems"]
        if not page or not pagination.get("nextPage"):
            break
        number += 1
    if total is not None and len(ids) != total:
        raise InconsistentListing(
            f"the ids of segment {key!r}: read {len(ids)} but totalItems={total}; the list "
            "changed while it was being read."
        )
    return ids


def _empty(value: Any) -> bool:
    """No detail to keep: nothing, or only empty lists, objects and nulls."""
    if value is None:
        return True
    if isinstance(value, dict):
        return all(_empty(item) for item in value.values())
    if isinstance(value, list):
        return not value
    return False


# -- publishing --------------------------------------------------------------------------------
def entity_file(kind: str, key: str) -> str:
    """``<kind>/<stem>.json``: every stem ends in ``-<hash>``, so a detail's file
    (``<stem>.overrides.json``) never collides with another entity's."""
    return f"{kind}/{safe_file_stem(key)}.json"


def detail_file(kind: str, key: str, detail: str) -> str:
    return f"{kind}/{safe_file_stem(key)}.{detail}.json"


async def _publish(ctx: RunContext[Spec], kinds: list[str]) -> dict[str, Any]:
    project = ctx.scheduler.result(PROJECT)
    results = {kind: ctx.scheduler.result(f"kind:{kind}") for kind in kinds}
    return await anyio.to_thread.run_sync(_publish_files, ctx, kinds, project, results)


def _publish_files(
    ctx: RunContext[Spec],
    kinds: list[str],
    project: dict[str, Any],
    results: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    root = ctx.job.resolve_path(ctx.job.spec.output.dir)
    staged: list[tuple[Path, Path]] = []  # (temporary, final)
    keep: set[Path] = set()
    entities: dict[str, list[dict[str, str]]] = {}
    details: dict[str, list[dict[str, str]]] = {}

    def place(relative: str, data: bytes) -> str:
        final = root / relative
        if final in keep:
            raise ValueError(f"two outputs map to the same file {final}")
        keep.add(final)
        if not _same_bytes(final, data):
            temporary = final.with_name(f".{final.name}.tmp-{ctx.run_id}")
            _write_durably(temporary, data)
            staged.append((temporary, final))
        return sha256(data)

    for kind in kinds:
        how = EXPORTED[kind]
        (root / kind).mkdir(parents=True, exist_ok=True)
        listed = entities[kind] = []
        for line in ctx.spool.lines(results[kind]["spool"]):
            row = orjson.loads(line)
            key = str(row[how.identity])
            relative = entity_file(kind, key)
            listed.append({"id": key, "file": relative, "sha256": place(relative, dumps(row))})
        for line in ctx.spool.lines(results[kind]["details_spool"]):
            key, detail, data = orjson.loads(line)
            relative = detail_file(kind, key, detail)
            details.setdefault(kind, []).append(
                {
                    "id": key,
                    "detail": detail,
                    "file": relative,
                    "sha256": place(relative, dumps(data)),
                }
            )

    # Withdraw the old manifest, rename the changed files into place, prune, write the manifest.
    (root / MANIFEST).unlink(missing_ok=True)
    _fsync_dir(root)
    for temporary, final in staged:
        temporary.replace(final)
    _prune(root, keep)
    for folder in {final.parent for _, final in staged}:
        _fsync_dir(folder)
    totals = {kind: int(results[kind]["count"]) for kind in kinds}
    manifest: dict[str, Any] = {
        "complete": True,
        "kind": SNAPSHOT_KIND,
        "job": ctx.job.name,
        "run_id": ctx.run_id,
        "started_at": _iso(ctx.started_at),
        "published_at": _iso(time.time()),
        "project": {"id": project["id"], "name": project["name"]},
        "totals": totals,
        "entities": entities,
        "details": details,
    }
    write_json_atomic(root / MANIFEST, manifest)
    return {
        "dir": str(root),
        "entities": sum(totals.values()),
        "details": sum(len(items) for items in details.values()),
        "files_written": len(staged),
    }


def _same_bytes(path: Path, data: bytes) -> bool:
    try:
        if path.stat().st_size != len(data):
            return False
        return path.read_bytes() == data
    except FileNotFoundError:
        return False


def _write_durably(path: Path, data: bytes) -> None:
    with writing(path), path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _prune(root: Path, keep: set[Path]) -> None:
    """Remove what this snapshot no longer has: a deleted entity's file, a detail that became
    empty, a kind no longer selected, and files staged by runs that never published."""
    for kind in KINDS:
        folder = root / kind
        if not folder.is_dir():
            continue
        for path in folder.glob("*.json"):
            if path not in keep:
                path.unlink()
        for stale in folder.glob(".*.tmp-*"):
            stale.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


# -- reporting ---------------------------------------------------------------------------------
def summary(ctx: RunContext[Spec]) -> dict[str, Any]:
    """Plain text under keys of its own (the summary prints them as they are)."""
    kinds = selected_kinds(ctx.job.spec)
    where = ctx.job.spec.output.dir
    if not ctx.scheduler.is_done(PUBLISH):
        read = sum(1 for kind in kinds if ctx.scheduler.is_done(f"kind:{kind}"))
        return {
            "snapshot": f"not published: {read} of {plural(len(kinds), 'kind')} read, "
            f"{where} left as it was"
        }
    done = ctx.scheduler.result(PUBLISH)
    return {
        "snapshot": f"{where}/{MANIFEST}",
        "exported": f"{plural(done['entities'], 'entity', 'entities')} of "
        f"{plural(len(kinds), 'kind')}, {plural(done['details'], 'detail')}",
        "files_written": f"{count(done['files_written'])} (unchanged files are kept as they are)",
    }


def progress(ctx: RunContext[Spec]) -> Count:
    """Progress in kinds: each one read whole (list and details) of the kinds selected."""
    kinds = selected_kinds(ctx.job.spec)
    done = sum(1 for kind in kinds if ctx.scheduler.is_done(f"kind:{kind}"))
    return Count(done, len(kinds), "kinds")


#: The kind, as ``bulkops.jobs.base.ReadingKind`` (checked where the registry returns it).
KIND = ReadingFunctions(
    Spec,
    preflight_=check_output,
    root_tasks_=root_tasks,
    summary_=summary,
    progress_=progress,
)
