"""``export_project``: every configuration of a project, one file per entity, published atomically.

Task graph::

    project ─┐
    kind:gates ─────────┤  (each: every page, checked against totalItems, then its details)
    kind:experiments ───┼─► publish (check the staged files, sync them, withdraw the manifest,
    ...                 ┘             rename, prune, write the manifest)

A kind's task reads page 1 of its list, then every other page at once; the details of its
entities (overrides, id lists) are asked for as each page arrives. When the list does not add
up to ``totalItems``, repeats an id, differs from a second read (a list of several pages is read
twice, the second read, all pages at once, only after the first is whole: an entity added and
another deleted between two pages keep the count right but tear the list), or an entity vanishes
before its details are read, the list changed while being read and the kind is read again, up
to ``READ_ATTEMPTS`` times, before the task fails (``InconsistentListing``, exit 3; a re-run
reads it again). Each kind's rows and details are spooled to the state directory, so a run
killed after some kinds were read resumes with the others. The snapshot format is
``bulkops.output.snapshot``.

Files are staged as they become known, on worker threads, while other kinds are still read:
each changed file is written beside its final place under a name of its own (no fsync each).
Publishing checks the bytes of every file that this process did not stage itself (a crash may
have lost what an earlier process staged; what this one staged, and the hashes it took then,
are kept in ``_Staging``), makes them durable together (``make_durable``: one syncfs, or fsyncs
from a few threads), and only then withdraws the old manifest, renames them into place (a folder
per thread) and writes the new manifest; a file whose bytes did not change is left untouched
(bytes and mtime). Staged files go to disk early, while other kinds are still read
(``EarlyWriteBack``: a syncfs on a thread after each staged batch, one at a time), so the sync
that publishing waits for finds little left (0.25-0.65 s before, ~0.01 s after, for 9,000 files).

While kinds are read, each list read whole is moved out of the cyclic garbage collector's sight
(``bulkops.engine.collector``: ``gc.freeze``, undone by whoever owns the freeze, the command or the
last reader): a big project's rows are thousands of long-lived objects, and every full collection
over them stopped the event loop (and every request in flight) for up to 0.4 s. Rows hold no
reference cycles, so memory is still freed as they are dropped; only cyclic garbage made before a
freeze waits until the end.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import anyio
import orjson
from anyio.abc import TaskGroup
from pydantic import Field

from bulkops.api.client import PAGE_LIMIT, ConsoleClient, Page, api_path, pages_for
from bulkops.engine import collector
from bulkops.engine.background import in_background
from bulkops.engine.concurrency import gather, most_telling
from bulkops.engine.graph import Task
from bulkops.errors import AuthError, InconsistentListing, MalformedResponse, NotFound
from bulkops.human import count, plural
from bulkops.jobs.base import Count, RunContext
from bulkops.jobs.entity_kinds import (
    ALERT,
    ASSIGNMENT_SOURCE,
    AUTOTUNE,
    DYNAMIC_CONFIG,
    ENTITY_PROPERTY,
    EXPERIMENT,
    GATE,
    HOLDOUT,
    LAYER,
    METRIC_SOURCE,
    OPTIONAL,
    PARAM_STORE,
    PROMPT,
    QUALIFYING_EVENT,
    RELEASE_PIPELINE,
    ROLE,
    SEGMENT,
    SETTINGS_DOCUMENTS,
    TAG,
    TARGET_APP,
    TEAM,
    UNIT_ID_TYPE,
    EntityKind,
)
from bulkops.jobs.reading import ReadingFunctions
from bulkops.jobs.spec import (
    ExportSpec,
    Items,
    JobDefinition,
    Strict,
)
from bulkops.output.files import (
    EarlyWriteBack,
    make_durable,
    write_bytes_unsynced,
    write_json_atomic,
)
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
#: Detail files staged together, on a worker thread, as their details arrive.
DETAIL_FILES_AT_ONCE = 100
#: Threads renaming the staged files into place when publishing (one folder each at a time).
RENAME_THREADS = 2
#: A file of the snapshot: what it holds (kind, id, and detail or None for the entity itself),
#: its path relative to the output directory, and its JSON value.
FileKey = tuple[str, str, str | None]
Staged = tuple[FileKey, str, Any]


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
    #: Singleton documents at ``<list_path>/<document>``, each an entity keyed by its segment
    #: (settings); read by ``_read_documents``.
    documents: tuple[str, ...] = ()
    #: The field that names a row carrying no ``identity`` (target apps and teams: the spec's
    #: list examples give their rows no ``id``); None: such a row is an error.
    fallback: str | None = None


def _table() -> dict[str, Exported]:
    def listed(kind: EntityKind, **extra: Any) -> Exported:
        return Exported(kind.list_path(), kind.identity, kind, **extra)

    table = {
        "gates": listed(GATE, overrides=True),
        "dynamic_configs": listed(DYNAMIC_CONFIG),
        "experiments": listed(EXPERIMENT, overrides=True),
        "layers": listed(LAYER, overrides=True),
        "holdouts": listed(HOLDOUT, overrides=True),
        "segments": listed(SEGMENT),
        "tags": listed(TAG),
        "target_apps": listed(TARGET_APP, fallback="name"),
        "metric_sources": listed(METRIC_SOURCE),
        # Hidden metrics too; the list holds metrics with and without a source.
        "metrics": Exported(api_path("metrics", "list"), "id", query={"showHiddenMetrics": "true"}),
        "unit_id_types": listed(UNIT_ID_TYPE),
        "teams": listed(TEAM, fallback="name"),
        "environments": Exported(api_path("environments"), "name", document_key="environments"),
        "assignment_sources": listed(ASSIGNMENT_SOURCE),
        "entity_properties": listed(ENTITY_PROPERTY),
        "qualifying_events": listed(QUALIFYING_EVENT),
        "param_stores": listed(PARAM_STORE),
        "autotunes": listed(AUTOTUNE),
        "alerts": listed(ALERT),
        "release_pipelines": listed(RELEASE_PIPELINE),
        "roles": listed(ROLE),
        "prompts": listed(PROMPT),
        "settings": Exported(api_path("settings"), "id", documents=SETTINGS_DOCUMENTS),
    }
    assert tuple(table) == KINDS, "the export and the snapshot format name the same kinds"
    return table


EXPORTED = _table()
KindName = Literal[KINDS]  # type: ignore[valid-type]


class SelectSpec(Strict):
    kinds: Annotated[Items[KindName], Field(min_length=1)] = KINDS


class OptionsSpec(Strict):
    #: Also export the ids of id_list segments (a rate-limited endpoint, one request per page).
    segment_id_lists: bool = False


class Spec(ExportSpec):
    kind: ClassVar[str] = "export_project"

    job: Literal["export_project"]
    select: SelectSpec = Field(default_factory=SelectSpec)
    options: OptionsSpec = Field(default_factory=OptionsSpec)


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
        with collector.long_lived():
            for attempt in range(1, READ_ATTEMPTS + 1):
                try:
                    rows, details = await _read_kind(ctx, client, kind, how)
                    break
                except InconsistentListing:
                    if attempt == READ_ATTEMPTS:
                        raise
                except (NotFound, AuthError) as error:
                    return _unavailable(ctx, kind, error)
        keys = [_keyed(row, how)[0] for row in rows]
        _staging(ctx).read[kind] = (keys, [(key, detail) for key, detail, _ in details])
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


async def _read_kind(
    ctx: RunContext[Spec], client: ConsoleClient, kind: str, how: Exported
) -> tuple[list[dict[str, Any]], list[list[Any]]]:
    """One read of the kind: its list, and the details of its entities, whose reads start as
    each page of the list arrives (a list found changed discards them with it); its files are
    staged as soon as they are known (``_stage``), for publishing to rename."""
    stage = _staging(ctx).stage
    details = _Details(ctx, client, kind, how, stage)
    try:
        async with anyio.create_task_group() as group:
            rows = await _read_rows(client, kind, how, lambda page: details.start(group, page))
            collector.spare()  # long-lived from here on: out of the collector's sight
            # The entity files are staged while the details are still being read.
            group.start_soon(in_background, stage, _entity_files(kind, how, rows))
    except BaseExceptionGroup as error:
        raise most_telling(error) from None
    return rows, await details.collect(rows)


async def _read_rows(
    client: ConsoleClient, kind: str, how: Exported, on_page: Callable[[list[Any]], None]
) -> list[dict[str, Any]]:
    what = f"the {kind.replace('_', ' ')} of project {client.project!r}"
    rows: list[Any]
    if how.documents:
        rows = await _read_documents(client, how)
        on_page(rows)
    elif how.document_key is not None:
        body = await client.get(how.list_path)
        data = body.get("data")
        items = data.get(how.document_key) if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise _changed(what, f"GET {how.list_path} has no list in data.{how.document_key}")
        rows = items
        on_page(rows)
    else:
        rows, pages = await _read_pages(client, how, what, on_page)
        if pages > 1:  # a torn read can hide behind a right count (one added, one deleted)
            # Read again once the first read is whole (reads that overlap can be torn alike).
            again, _ = await _read_pages(client, how, what, known_pages=pages)
            if [_identity(r, how) for r in again] != [_identity(r, how) for r in rows]:
                raise _changed(what, "two reads in a row listed different items")
            rows = again
    ids = [_identity(row, how) for row in rows]
    if any(key is None for key in ids):
        # Not a list that changed (reading it again gives the same): an answer we cannot name.
        named = f"`{how.identity}`" + (f" (nor a `{how.fallback}`)" if how.fallback else "")
        raise MalformedResponse(
            f"{what}: an item of GET {how.list_path} has no {named}, so it cannot be given a "
            "file of the snapshot; the server's answer is not the list the API documents",
            project=client.project,
        )
    if len(set(ids)) != len(ids):
        raise _changed(what, "an item appeared twice")
    return rows


async def _read_pages(
    client: ConsoleClient,
    how: Exported,
    what: str,
    on_page: Callable[[list[Any]], None] | None = None,
    *,
    known_pages: int | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Every row of a paginated list, checked against its ``totalItems``; and how many pages.

    Page 1 gives the total, and the other pages are then read at once (with ``known_pages``,
    every page at once); a last page that says there is a next one (the list grew, or the
    server gave no total) is followed, page by page. Without a ``pagination`` block a full page
    says so (``parse_page``), and a page that repeats the one before ends the list: a server
    that does not page answers every row on every page. ``on_page`` sees each page's rows as
    they arrive."""
    got: dict[int, Page] = {}

    async def fetch(number: int) -> None:
        page = await client.get_page(how.list_path, number, limit=PAGE_LIMIT, query=how.query)
        got[number] = page
        if on_page is not None:
            on_page(page.data)

    if known_pages is None:
        await fetch(1)
        first = got[1]
        last = 1
        if first.data and first.total is not None:
            last = pages_for(first.total, first.items_per_page)
        await gather([partial(fetch, number) for number in range(2, last + 1)])
    else:
        await gather([partial(fetch, number) for number in range(1, known_pages + 1)])
    number = max(got)
    while got[number].data and got[number].has_next:
        number += 1
        await fetch(number)
        if _repeats(got[number].data, got[number - 1].data, how):
            del got[number]  # the server ignores `page`: the page before was the whole list
            number -= 1
            break
    rows = [row for index in sorted(got) for row in got[index].data]
    total = got[1].total
    if total is not None and len(rows) != total:
        raise _changed(what, f"read {len(rows)} rows but totalItems={total}")
    return rows, number


async def _read_documents(client: ConsoleClient, how: Exported) -> list[Any]:
    """Each singleton document, as ``{"id": <segment>, "data": <the response's data>}``."""
    found: dict[str, Any] = {}

    async def read(name: str) -> None:
        found[name] = (await client.get(f"{how.list_path}/{name}")).get("data")

    await gather([partial(read, name) for name in how.documents])
    return [{"id": name, "data": found[name]} for name in how.documents]


def _unavailable(ctx: RunContext[Spec], kind: str, error: NotFound | AuthError) -> dict[str, Any]:
    """A kind's result when its list answered 404 or 403: an optional kind the project does not
    serve is left out (``unavailable`` in the manifest), unless ``[select] kinds`` asked for it
    or it is one of the kinds every project has; then the error stands."""
    if kind not in OPTIONAL or "kinds" in ctx.job.spec.select.model_fields_set:
        raise error
    body = error.body if isinstance(error.body, dict) else {}
    said = body.get("message")
    return {"count": 0, "unavailable": f"{error.status}: {said or 'no message'}"}


def _keyed(row: Any, how: Exported) -> tuple[str, Any]:
    """A row's key and the object its file holds (a document kind's row wraps its data)."""
    if how.documents:
        return str(row["id"]), row["data"]
    key = _identity(row, how)
    assert key is not None, "rows are checked for their identity when read"
    return key, row


def _identity(row: Any, how: Exported) -> str | None:
    """The row's ``identity``, or else its ``fallback`` field, if a non-empty string."""
    if not isinstance(row, dict):
        return None
    for field in (how.identity, how.fallback):
        key = row.get(field) if field else None
        if isinstance(key, str) and key:
            return key
    return None


class _Details:
    """The details of one read of a kind's entities: queued as rows arrive and read by a few
    worker tasks (``width``, not one task per entity), staged as files in batches as they
    arrive, collected in list order once the list is known whole."""

    def __init__(
        self,
        ctx: RunContext[Spec],
        client: ConsoleClient,
        kind: str,
        how: Exported,
        stage: Callable[[Iterable[Staged]], None],
    ) -> None:
        self.client, self.kind, self.how, self.stage = client, kind, how, stage
        self.group: TaskGroup | None = None
        self.unstaged: list[list[Any]] = []
        self.id_lists = kind == "segments" and ctx.job.spec.options.segment_id_lists
        self.found: dict[tuple[str, str], Any] = {}
        self.started: set[tuple[str, str]] = set()
        self.queued: deque[tuple[str, str]] = deque()
        self.workers = 0
        # One kind may fill every slot the governor has (it still paces and shares them).
        self.width = max(DETAILS_AT_ONCE, client.governor.max_concurrency)

    def wanted(self, row: Any) -> list[tuple[str, str]]:
        """The details ``row``'s entity has: none for a kind without an item path."""
        key = _identity(row, self.how)
        if key is None or self.how.entity is None:
            return []
        wanted = [(key, "overrides")] if self.how.overrides else []
        if self.id_lists and row.get("type") == "id_list":
            wanted.append((key, "id_list"))
        return wanted

    def start(self, group: TaskGroup, rows: list[Any]) -> None:
        self.group = group
        for row in rows:
            for item in self.wanted(row):
                if item not in self.started:
                    self.started.add(item)
                    self.queued.append(item)
        self._hire(group)

    def _hire(self, group: TaskGroup) -> None:
        """Enough workers for what is queued, at most ``width`` at once."""
        while self.workers < min(self.width, len(self.queued)):
            self.workers += 1
            group.start_soon(self._work)

    async def _work(self) -> None:
        try:
            while self.queued:
                await self.read(*self.queued.popleft())
        finally:
            self.workers -= 1

    async def read(self, key: str, detail: str) -> None:
        entity = self.how.entity
        assert entity is not None
        try:
            if detail == "overrides":
                body = await self.client.get(entity.item_path(key, "overrides"))
                self.found[key, detail] = body.get("data")
            else:
                self.found[key, detail] = await _read_id_list(self.client, entity, key)
            if not _empty(self.found[key, detail]):
                self.unstaged.append([key, detail, self.found[key, detail]])
            if len(self.unstaged) >= DETAIL_FILES_AT_ONCE and self.group is not None:
                batch, self.unstaged = self.unstaged, []
                self.group.start_soon(in_background, self.stage, _detail_files(self.kind, batch))
        except NotFound:
            if not await self._exists(key):
                raise _changed(
                    f"the {self.kind.replace('_', ' ')} of project {self.client.project!r}",
                    f"{key!r} was deleted before its {detail} were read",
                ) from None
            self.found[key, detail] = None  # a 404 for "none" (the spec documents one)

    async def _exists(self, key: str) -> bool:
        """Whether the entity is still there, after its detail answered 404: the spec documents
        a 404 on the overrides reads, which a server may answer for an entity with none."""
        assert self.how.entity is not None
        try:
            await self.client.get(self.how.entity.read_path(key))
        except NotFound:
            return False
        return True

    async def collect(self, rows: list[dict[str, Any]]) -> list[list[Any]]:
        """``[id, detail, data]`` for every non-empty detail of ``rows``, in list order."""
        self.group = None  # closed: the rest is staged here
        wanted = [item for row in rows for item in self.wanted(row)]
        self.queued.extend(item for item in wanted if item not in self.found)
        if self.queued:
            try:
                async with anyio.create_task_group() as group:
                    self._hire(group)
            except BaseExceptionGroup as error:
                raise most_telling(error) from None
        await in_background(self.stage, _detail_files(self.kind, self.unstaged))
        return [
            [key, detail, self.found[key, detail]]
            for key, detail in wanted
            if not _empty(self.found[key, detail])
        ]


async def _read_id_list(client: ConsoleClient, segment: EntityKind, key: str) -> list[str]:
    """Every id of an id_list segment, all pages, in the API's order.

    A page is followed by the next while its ``pagination`` says ``nextPage`` or, without a
    ``pagination`` block (as the spec's example), while it is full; a page that repeats the one
    before (a server that does not page) or an empty one ends the list. ``data`` may be the
    ``IDListDto`` the example shows, that object in a list, or the ids themselves
    (``_ids_of``); ``count`` is never checked, since the example's ``["1, 2, 3"]`` with
    ``count: 3`` leaves open what an item of ``ids`` is."""
    path = segment.item_path(key, "id_list")
    ids: list[str] = []
    number = 1
    total: int | None = None
    before: list[str] | None = None
    while True:
        body = await client.get(path, {"page": number, "limit": PAGE_LIMIT})
        page = _ids_of(
            body.get("data"), f"GET {path} on project {client.project!r}", client.project
        )
        if page == before:
            break
        ids.extend(page)
        pagination = body.get("pagination") or {}
        if not isinstance(pagination, dict):
            pagination = {}
        if number == 1 and isinstance(pagination.get("totalItems"), int):
            total = pagination["totalItems"]
        # Without a pagination block (as the spec's example) a full page may not be the last.
        full = len(page) >= PAGE_LIMIT
        more = bool(pagination.get("nextPage")) if "pagination" in body else full
        if not page or not more:
            break
        number, before = number + 1, page
    if total is not None and len(ids) != total:
        raise InconsistentListing(
            f"the ids of segment {key!r}: read {len(ids)} but totalItems={total}; the list "
            "changed while it was being read."
        )
    return ids


def _ids_of(data: Any, where: str, project: str) -> list[str]:
    """The ids of one id_list page: ``data`` as ``{ids}``, ``[{ids}, ...]`` or ``[id, ...]``;
    None (no ids) is none."""
    if data is None:
        return []
    if isinstance(data, dict):
        data = [data]
    if isinstance(data, list):
        if all(isinstance(item, dict) for item in data):
            lists = [item.get("ids") for item in data]
            if all(isinstance(found, list) for found in lists):
                return [str(i) for found in lists if isinstance(found, list) for i in found]
        elif all(isinstance(item, str | int) for item in data):
            return [str(item) for item in data]
    raise MalformedResponse(
        f"{where}: expected the segment's ids in `data` (an object with `ids`, or a list)",
        project=project,
    )


def _repeats(page: list[Any], before: list[Any], how: Exported) -> bool:
    """Whether ``page`` lists the same rows as the page before it (non-empty)."""
    return bool(page) and [_identity(r, how) for r in page] == [_identity(r, how) for r in before]


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
    """Check every file is staged (the kinds' readers staged them, without an fsync each), make
    them durable together, then withdraw the old manifest, rename them into place, prune, and
    write the new manifest last.

    A reader trusting the manifest never sees a file it names missing or torn, even after a
    crash or a power loss: the new manifest is renamed into place only after every file it names
    (the unchanged ones too, in case a killed run renamed them unsynced) and every rename is on
    stable storage."""
    staging = _staging(ctx)
    root = staging.root
    suffix = staging.suffix
    unavailable = {k: results[k]["unavailable"] for k in kinds if "unavailable" in results[k]}
    kinds = [kind for kind in kinds if kind not in unavailable]
    staged: list[tuple[str, str]] = []  # (temporary, final)
    unchanged: list[str] = []
    keep: set[str] = set()
    entities: dict[str, list[dict[str, str]]] = {}
    details: dict[str, list[dict[str, str]]] = {}
    join = os.path.join

    def place(key: FileKey, value: Any) -> tuple[str, str]:
        """The file's path relative to ``root`` and its sha256; it is staged or unchanged."""
        known = staging.done.get(key)
        if known is not None:  # staged (or found unchanged) by this process, from this value
            relative, digest, changed = known
            final = join(root, relative)
        else:
            assert value is not None, f"{key} was read by this process but never staged"
            # A kind read by an earlier process, which may have crashed since: nothing it staged
            # is trusted (a staged file is not durable yet); its bytes are checked here.
            kind, name, detail = key
            relative = (
                entity_file(kind, name) if detail is None else detail_file(kind, name, detail)
            )
            final = join(root, relative)
            data = dumps(value)
            digest = sha256(data)
            changed = not _same_bytes(final, data)
            if changed and not _same_bytes(_staged_name(final, suffix), data):
                write_bytes_unsynced(_staged_name(final, suffix), data)
        if final in keep:
            raise ValueError(f"two outputs map to the same file {final}")
        keep.add(final)
        if changed:
            staged.append((_staged_name(final, suffix), final))
        else:
            unchanged.append(final)
        return relative, digest

    folders = [join(root, kind) for kind in kinds]
    for kind, folder in zip(kinds, folders, strict=True):
        os.makedirs(folder, exist_ok=True)
        listed = entities[kind] = []
        for (_, key, detail), value in _files_of(ctx, staging, kind, results[kind]):
            relative, digest = place((kind, key, detail), value)
            if detail is None:
                listed.append({"id": key, "file": relative, "sha256": digest})
            else:
                details.setdefault(kind, []).append(
                    {"id": key, "detail": detail, "file": relative, "sha256": digest}
                )

    # Everything the manifest will name, durable before the first rename; then withdraw the old
    # manifest, rename the changed files into place, prune, and make the renames durable.
    staging.write_back.finish()
    make_durable([temporary for temporary, _ in staged] + unchanged, [root, *folders])
    with contextlib.suppress(FileNotFoundError):
        os.unlink(join(root, MANIFEST))
    make_durable([], [root], whole_fs=False)
    _rename_all(staged)
    _prune(root, keep)
    make_durable([], sorted({os.path.dirname(final) for _, final in staged}))
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
    if unavailable:
        manifest["unavailable"] = unavailable
    write_json_atomic(Path(root) / MANIFEST, manifest)
    return {
        "dir": root,
        "entities": sum(totals.values()),
        "details": sum(len(items) for items in details.values()),
        "files_written": len(staged),
        "unavailable": unavailable,
    }


def _files_of(
    ctx: RunContext[Spec], staging: _Staging, kind: str, result: dict[str, Any]
) -> Iterator[tuple[FileKey, Any]]:
    """The kind's files in the manifest's order, each with its value: None for a kind this
    process read (what it staged is on record; its spool need not be read back), else the
    spooled value (read by an earlier process: ``place`` checks its bytes)."""
    read = staging.read.get(kind)
    if read is not None:
        entity_keys, detail_keys = read
        for key in entity_keys:
            yield (kind, key, None), None
        for key, detail in detail_keys:
            yield (kind, key, detail), None
        return
    how = EXPORTED[kind]
    for line in ctx.spool.lines(result["spool"]):
        key, data = _keyed(orjson.loads(line), how)
        yield (kind, key, None), data
    for line in ctx.spool.lines(result["details_spool"]):
        key, detail, data = orjson.loads(line)
        yield (kind, key, detail), data


def _rename_all(staged: list[tuple[str, str]]) -> None:
    """Each staged file renamed into place, a folder per thread: renames in one folder wait for
    each other in the kernel, renames in two do not."""
    by_folder: dict[str, list[tuple[str, str]]] = {}
    for temporary, final in staged:
        by_folder.setdefault(os.path.dirname(final), []).append((temporary, final))

    def rename(pairs: list[tuple[str, str]]) -> None:
        for temporary, final in pairs:
            os.replace(temporary, final)

    with ThreadPoolExecutor(RENAME_THREADS, thread_name_prefix="bulkops rename") as pool:
        for _ in pool.map(rename, by_folder.values()):
            pass


def _suffix(ctx: RunContext[Spec]) -> str:
    return f".tmp-{ctx.run_id}"


def _staged_name(final: str, suffix: str) -> str:
    folder, name = os.path.split(final)
    return os.path.join(folder, f".{name}{suffix}")


def _entity_files(kind: str, how: Exported, rows: list[dict[str, Any]]) -> Iterator[Staged]:
    for row in rows:
        key, data = _keyed(row, how)
        yield (kind, key, None), entity_file(kind, key), data


def _detail_files(kind: str, details: list[list[Any]]) -> Iterator[Staged]:
    for key, detail, data in details:
        yield (kind, key, detail), detail_file(kind, key, detail), data


class _Staging:
    """The files this process staged (or found unchanged) for one run, with what publishing
    needs of each: its path, its sha256, and whether it changed. Held in the run's context, so a
    resumed run (a new process) trusts nothing an earlier one staged.

    A later staging of the same file (a kind read again) replaces the earlier record; the value
    recorded is the one spooled, since a kind's rows and details are spooled as they were staged.
    """

    def __init__(self, job: JobDefinition[Spec], suffix: str) -> None:
        self.job, self.suffix = job, suffix
        self.done: dict[FileKey, tuple[str, str, bool]] = {}
        #: Per kind read whole by this process (every file staged): its entities' keys and its
        #: details' (key, detail), in list order, as spooled.
        self.read: dict[str, tuple[list[str], list[tuple[str, str]]]] = {}
        self._folders: set[str] = set()
        self._root: str | None = None
        #: What is staged goes to disk while the reads go on; publishing's sync finds little left.
        self.write_back = EarlyWriteBack(lambda: self.root)

    @property
    def root(self) -> str:
        """The output directory (resolved on first use, on a worker thread: it asks the OS)."""
        if self._root is None:
            self._root = str(self.job.resolve_path(self.job.spec.output.dir))
        return self._root

    def stage(self, files: Iterable[Staged]) -> None:
        """Each file whose bytes would change, written beside it under its staged name (not yet
        durable: publishing syncs and renames it). On a worker thread."""
        root = self.root
        wrote = False
        for key, relative, value in files:
            final = os.path.join(root, relative)
            folder = os.path.dirname(final)
            if folder not in self._folders:
                os.makedirs(folder, exist_ok=True)
                self._folders.add(folder)
            data = dumps(value)
            changed = not _same_bytes(final, data)
            if changed:
                write_bytes_unsynced(_staged_name(final, self.suffix), data)
                wrote = True
            self.done[key] = (relative, sha256(data), changed)
        if wrote:
            self.write_back.request()


def _staging(ctx: RunContext[Spec]) -> _Staging:
    """This process's record of the run's staged files (one per run context)."""
    staging = ctx.notes.get("export_project.staging")
    if not isinstance(staging, _Staging):
        staging = ctx.notes["export_project.staging"] = _Staging(ctx.job, _suffix(ctx))
    return staging


def _same_bytes(path: str, data: bytes) -> bool:
    try:
        if os.stat(path).st_size != len(data):
            return False
        with open(path, "rb") as handle:
            return handle.read() == data
    except FileNotFoundError:
        return False


def _prune(root: str, keep: set[str]) -> None:
    """Remove what this snapshot no longer has: a deleted entity's file, a detail that became
    empty, a kind no longer selected, and files staged by runs that never published."""
    for kind in KINDS:
        try:
            found = list(os.scandir(os.path.join(root, kind)))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in found:
            name = entry.name
            stale = name.startswith(".") and ".tmp-" in name
            if stale or (name.endswith(".json") and entry.path not in keep):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


# -- reporting ---------------------------------------------------------------------------------
def summary(ctx: RunContext[Spec]) -> dict[str, Any]:
    """Plain text under keys of its own (the summary prints them as they are)."""
    kinds = selected_kinds(ctx.job.spec)
    if not ctx.scheduler.is_done(PUBLISH):
        read = sum(1 for kind in kinds if ctx.scheduler.is_done(f"kind:{kind}"))
        return {
            "snapshot": f"not published: {read} of {plural(len(kinds), 'kind')} read, "
            "the output directory left as it was"
        }
    done = ctx.scheduler.result(PUBLISH)
    unavailable = done.get("unavailable") or {}
    lines = {
        # Absolute; the summary shows it from where the command runs.
        "snapshot_manifest": os.path.join(done["dir"], MANIFEST),
        "exported": f"{plural(done['entities'], 'entity', 'entities')} of "
        f"{plural(len(kinds) - len(unavailable), 'kind')}, {plural(done['details'], 'detail')}",
        "files_written": f"{count(done['files_written'])} (unchanged files are kept as they are)",
    }
    if unavailable:
        reasons: dict[str, list[str]] = {}
        for kind, why in unavailable.items():
            reasons.setdefault(why, []).append(kind)
        said = "; ".join(f"{', '.join(names)} ({why})" for why, names in reasons.items())
        lines["not_served"] = (
            f"{said}: left out of the snapshot, as the project does not serve them"
        )
    return lines


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
