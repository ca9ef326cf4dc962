"""``export_metrics``: every metric of every metric source, complete, checked, published atomically.

Task graph::

    sources:p1 (+ pages) ─► sources:collect ─(children)─┬─► metrics:<name>:p1 (+ pages) ─► stage:<name>
                                                        └─► publish (after every stage)
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import orjson

from bulkops.jobs.entity_kinds import METRIC_SOURCE
from bulkops.jobs.reading import ReadingFunctions
from bulkops.jobs.spec import (
    ExportSpec,
    JobDefinition,
)
from bulkops.output.publish import (
    Publication,
    StagedFile,
    probe_writable,
    safe_file_stem,
    stage_file,
)

# The run's machinery (aiohttp, anyio, structlog) is imported where a run needs it, not here:
# ``bulkops validate`` imports this module for its ``Spec`` alone and must start fast.
if TYPE_CHECKING:
    from bulkops.engine.graph import Task
    from bulkops.jobs.base import Count, RunContext

SOURCES = "sources"
#: Sources staged at once: staging is disk-bound, and each holds a read buffer; two keep the disk
#: busy without letting memory grow with the number of sources.
STAGING_AT_ONCE = 2
PUBLISH = "publish"


class Spec(ExportSpec):
    kind: ClassVar[str] = "export_metrics"

    job: Literal["export_metrics"]


def check_output(job: JobDefinition[Spec]) -> None:
    """Before the first request: the output directory can be created and written (exit 2)."""
    probe_writable(job.resolve_path(job.spec.output.dir), f"output.dir of {job.path}")


def root_tasks(ctx: RunContext[Spec]) -> list[Task]:
    from bulkops.engine.graph import Task
    from bulkops.jobs.listing import listing_task

    sources = listing_task(
        ctx,
        role="source",
        prefix=SOURCES,
        path=METRIC_SOURCE.list_path(),
        label="metric sources",
    )
    collect = Task(
        id=f"{SOURCES}:collect",
        body=lambda: _collect_sources(ctx),
        deps=(sources.id,),
        expand=lambda result: _per_source_tasks(ctx, result["names"]),
        label="metric source names",
    )
    return [sources, collect]


async def _collect_sources(ctx: RunContext[Spec]) -> dict[str, Any]:
    from bulkops.jobs.listing import read_listing

    lines = read_listing(ctx, SOURCES, what="the metric source list")
    names = [orjson.loads(line)["name"] for line in lines]
    return {"names": names}


def _metrics_prefix(name: str) -> str:
    return f"metrics:{name}"


def _per_source_tasks(ctx: RunContext[Spec], names: list[str]) -> Iterator[Task]:
    from bulkops.engine.graph import Task
    from bulkops.jobs.listing import listing_task

    stages = []
    for name in names:
        path = METRIC_SOURCE.item_path(name, "metrics")
        first = listing_task(
            ctx, role="source", prefix=_metrics_prefix(name), path=path, label=f"source {name!r}"
        )
        yield first
        stage = _stage_task(ctx, name, first.id)
        stages.append(stage.id)
        yield stage
    yield Task(
        id=PUBLISH,
        body=lambda: _publish(ctx, names),
        deps=tuple(stages),  # a child of the collect task, so it cannot wait for it
        label="publish the export",
    )


def _stage_task(ctx: RunContext[Spec], name: str, listing_id: str) -> Task:
    """Stage a source's file as soon as its listing is read, so publishing only renames."""
    import anyio

    from bulkops.engine.graph import Task

    async def stage() -> dict[str, Any]:
        limiter = ctx.notes.setdefault("staging", anyio.CapacityLimiter(STAGING_AT_ONCE))
        item = await anyio.to_thread.run_sync(_stage_source, ctx, name, limiter=limiter)
        return {"count": item.count, "sha256": item.sha256, "staged": str(item.staged)}

    return Task(id=f"stage:{name}", body=stage, deps=(listing_id,), label=f"stage {name!r}")


def _stage_source(ctx: RunContext[Spec], name: str) -> StagedFile:
    from bulkops.jobs.listing import read_listing

    chunks = read_listing(
        ctx, _metrics_prefix(name), what=f"the metrics of source {name!r}", chunked=True
    )
    return stage_file(_output_root(ctx), _relative_file(name), ctx.run_id, chunks)


def _relative_file(name: str) -> str:
    return f"metric_sources/{safe_file_stem(name)}.jsonl"


def _output_root(ctx: RunContext[Spec]) -> Path:
    return ctx.job.resolve_path(ctx.job.spec.output.dir)


async def _publish(ctx: RunContext[Spec], names: list[str]) -> dict[str, Any]:
    import anyio

    from bulkops.jobs.listing import read_listing

    root = await anyio.to_thread.run_sync(_output_root, ctx)
    publication = Publication(root, ctx.run_id)
    entries: list[dict[str, Any]] = []
    for name in names:
        result = ctx.scheduler.result(f"stage:{name}")
        item = StagedFile(
            root / _relative_file(name), Path(result["staged"]), result["count"], result["sha256"]
        )
        # Staged by an earlier attempt, then removed: stage again.
        if not await anyio.to_thread.run_sync(item.staged.exists):
            item = await anyio.to_thread.run_sync(_stage_source, ctx, name)
        publication.add(item)
        entries.append(
            {"name": name, "file": _relative_file(name), "count": item.count, "sha256": item.sha256}
        )
    sources = read_listing(ctx, SOURCES, what="the metric source list", chunked=True)
    sources_file = await anyio.to_thread.run_sync(
        publication.stage, "metric_sources.jsonl", sources
    )
    totals = {"metric_sources": len(entries), "metrics": sum(int(e["count"]) for e in entries)}
    manifest: dict[str, Any] = {
        "complete": True,
        "job": ctx.job.name,
        "kind": Spec.kind,
        "run_id": ctx.run_id,
        "started_at": _iso(ctx.started_at),
        "published_at": _iso(time.time()),
        "metric_sources_file": {
            "file": "metric_sources.jsonl",
            "count": sources_file.count,
            "sha256": sources_file.sha256,
        },
        "metric_sources": entries,
        "totals": totals,
    }
    await anyio.to_thread.run_sync(
        functools.partial(publication.commit, manifest, prune=root / "metric_sources")
    )
    return {"dir": str(root), **totals}


def summary(ctx: RunContext[Spec]) -> dict[str, Any]:
    from bulkops.jobs.listing import listing_pages

    if ctx.scheduler.is_done(PUBLISH):
        return {"published": ctx.scheduler.result(PUBLISH)}
    sources = len(listing_pages(ctx, SOURCES))
    return {"published": None, "source_pages_read": sources}


def progress(ctx: RunContext[Spec]) -> Count:
    """Progress in metrics: rows read of the totals the server announced on each page 1."""
    from bulkops.jobs.base import Count

    pages = ctx.scheduler.results_under("metrics:")
    read = sum(int(page["count"]) for page in pages.values())
    firsts = [page for task_id, page in pages.items() if task_id.endswith(":p1")]
    collected = ctx.scheduler.results_under(f"{SOURCES}:collect")
    sources = len(next(iter(collected.values()))["names"]) if collected else None
    if sources is None:
        return Count(read, None, "metrics", note="listing the metric sources")
    if len(firsts) < sources or any(page["total"] is None for page in firsts):
        return Count(read, None, "metrics", note=f"{len(firsts)} of {sources} sources announced")
    return Count(read, sum(int(page["total"]) for page in firsts), "metrics")


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


#: The kind, as ``bulkops.jobs.base.ReadingKind`` (checked where the registry returns it).
KIND = ReadingFunctions(
    Spec,
    preflight_=check_output,
    root_tasks_=root_tasks,
    summary_=summary,
    progress_=progress,
)
