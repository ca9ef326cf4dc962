"""A paginated list read as tasks: page 1 first, then every other page at once, each spooled to disk.

Page 1 reveals ``totalItems`` and the page size the server really used (it may cap ``limit``), so the
remaining pages become child tasks that run concurrently. Any page whose ``nextPage`` is set adds the
next page too, so a list that grew, or a server that sends no ``totalItems``, is still read to the end;
a short page never ends the list on its own. ``read_listing`` then streams the rows back in order and
checks them against ``totalItems``; when they disagree the list changed under us, and the pages are
invalidated so that a re-run reads them again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bulkops.api.client import PAGE_LIMIT, check_total, pages_for
from bulkops.engine.graph import Task
from bulkops.engine.journal import TaskInvalidated
from bulkops.errors import ApiError
from bulkops.jobs.base import RunContext
from bulkops.jobs.spec import JobSpec


def listing_task(
    ctx: RunContext[JobSpec], *, role: str, prefix: str, path: str, label: str = ""
) -> Task:
    """The task that reads page 1 of ``path`` and, through its children, every other page."""
    return _page_task(ctx, role=role, prefix=prefix, path=path, page=1, label=label or path)


def _page_task(
    ctx: RunContext[JobSpec], *, role: str, prefix: str, path: str, page: int, label: str
) -> Task:
    task_id = page_id(prefix, page)
    client = ctx.clients[role]

    async def fetch() -> dict[str, Any]:
        result = await client.get_page(path, page, limit=PAGE_LIMIT)
        done = {
            "spool": "",
            "count": len(result.data),
            "total": result.total,
            "per_page": result.items_per_page,
            "next": result.has_next,
        }
        spooling = ctx.spool.write_async(task_id, result.data)
        del result  # the rows are freed once encoded, not held while the page's file is fsync'ed
        done["spool"] = await spooling
        return done

    def expand(result: dict[str, Any]) -> Iterator[Task]:
        following = []
        if page == 1 and result["total"] is not None:
            following = list(range(2, pages_for(result["total"], result["per_page"]) + 1))
        if result["next"] and result["count"] > 0:
            following.append(page + 1)
        for number in following:
            yield _page_task(ctx, role=role, prefix=prefix, path=path, page=number, label=label)

    return Task(id=task_id, body=fetch, expand=expand, label=f"{label} page {page}")


def page_id(prefix: str, page: int) -> str:
    return f"{prefix}:p{page}"


def listing_pages(ctx: RunContext[JobSpec], prefix: str) -> list[dict[str, Any]]:
    """The results of a fully read listing's pages, in page order."""
    pages = []
    number = 1
    while ctx.scheduler.is_done(page_id(prefix, number)):
        pages.append(ctx.scheduler.result(page_id(prefix, number)))
        number += 1
    return pages


def read_listing(
    ctx: RunContext[JobSpec], prefix: str, *, what: str, chunked: bool = False
) -> Iterator[bytes]:
    """Every row of a listing as raw JSON lines (or, ``chunked``, as large runs of whole lines),
    after checking the count against ``totalItems``."""
    pages = listing_pages(ctx, prefix)
    try:
        check_total(
            rows_read=sum(page["count"] for page in pages),
            total=pages[0]["total"] if pages else None,
            what=what,
        )
    except ApiError:
        # Not fsync'ed: if a crash loses it, the next run finds the same mismatch and says it again.
        invalidate = tuple(page_id(prefix, n) for n in range(1, len(pages) + 1))
        ctx.journal.append(TaskInvalidated(tasks=invalidate))
        raise
    read = ctx.spool.chunks if chunked else ctx.spool.lines
    return (piece for page in pages for piece in read(page["spool"]))
