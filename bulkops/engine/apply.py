"""Applying a plan exactly once, without idempotency keys.

Every operation becomes a task that:
1. reads the entity (reads are cheap; mutations are the scarce resource), in its mutation turn:
   once the quota would let it go within a read's time, so the read is fresh when it is sent;
2. if it already matches the after-image, records ``done`` and sends nothing (a re-run, a resume, or
   a lost answer that was in fact applied);
3. if it still matches the precondition, appends ``intent`` to the journal, sends, appends ``outcome``;
4. otherwise someone else changed it since the plan: a conflict, reported, never overwritten
   (unless ``force``).
A mutation whose answer was lost (timeout, reset, 5xx) is reconciled the same way, by reading again;
so is one whose read grew too old while it waited to be sent (``StaleRead``: a 429 pause, another
process holding the quota): it is read and checked again, never sent on the old read.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import anyio
import structlog

from bulkops.api.client import ConsoleClient, read_entity
from bulkops.api.governor import StaleRead
from bulkops.engine.compare import PLAIN, Semantics, differences, precondition_holds
from bulkops.engine.graph import Task
from bulkops.engine.journal import Intent, Journal, Outcome, OutcomeStatus
from bulkops.engine.plan import Operation
from bulkops.errors import ApiError, Conflict

log = structlog.get_logger("bulkops.apply")

REVIEW_HEADER = "x-respect-review-settings"
#: Kinds whose DTO has no ``activeReview`` (``DynamicConfigDto``): a change held for review shows
#: only as an answer whose version did not move. Elsewhere an unmoved version proves nothing.
UNSHOWN_REVIEW = frozenset({"dynamic_config"})
_rng = random.Random()


@dataclass(frozen=True)
class ApplyOptions:
    #: What "the entity matches" means for the API written to.
    semantics: Semantics = PLAIN
    #: Overwrite entities that changed since the plan.
    force: bool = False
    #: Send the review header, so entities that require review get a pending review instead.
    respect_review: bool = False


def operation_task(
    op: Operation,
    clients: dict[str, ConsoleClient],
    journal: Journal,
    options: ApplyOptions,
) -> Task:
    async def body() -> dict[str, Any]:
        return await apply_operation(op, clients[op.role], journal, options)

    return Task(
        id=f"op:{op.id}",
        body=body,
        deps=tuple(f"op:{dep}" for dep in op.deps),
        label=f"{op.action} {op.kind} {op.entity_id}" + (f" ({op.group})" if op.group else ""),
    )


async def apply_operation(
    op: Operation, client: ConsoleClient, journal: Journal, options: ApplyOptions
) -> dict[str, Any]:
    async with client.governor.mutation_turn():
        return await _apply_in_turn(op, client, journal, options)


async def _apply_in_turn(
    op: Operation, client: ConsoleClient, journal: Journal, options: ApplyOptions
) -> dict[str, Any]:
    attempts = client.retry.max_attempts
    answer_lost = False  # a send of ours may have been applied although we saw no answer
    attempt = 1
    while attempt <= attempts:
        read_at = client.governor.now()
        current = await read_entity(client, op.read_path)
        if not differences(current, op.expected, options.semantics):
            if answer_lost:  # it was ours: count it as sent, and undo will restore it
                return await _outcome(journal, op, "applied", current, sent=True)
            log.info("bulkops.apply.already_applied", op=op.id, project=op.role)
            return await _outcome(journal, op, "already_applied", current, sent=False)
        if (
            not precondition_holds(current, op.precondition, options.semantics)
            and not options.force
        ):
            raise Conflict(_conflict_message(op, current))
        await journal.append_durable(Intent(op=op.id, at=time.time()))  # on disk before it is sent
        headers = {REVIEW_HEADER: "true"} if options.respect_review else None
        try:
            response = await client.request(
                op.method, op.path, json=op.body, extra_headers=headers, read_at=read_at
            )
        except StaleRead:  # not sent: it waited too long for quota to go on that read
            log.info("bulkops.apply.reading_again", op=op.id, project=op.role)
            await client.governor.wait_to_read()
            continue
        except ApiError as exc:
            if not exc.outcome_unknown:
                await journal.append_durable(Outcome(op=op.id, status="failed", error=str(exc)))
                raise
            log.warning("bulkops.apply.reconciling", op=op.id, error=str(exc), project=op.role)
            answer_lost = True
            attempt += 1
            if attempt <= attempts:  # back off as for any retry, then read again: applied, still
                await anyio.sleep(client.retry.delay(attempt - 1, _rng))  # as planned, or changed
            continue
        after = response.get("data") if isinstance(response.get("data"), dict) else None
        held = after is not None and (
            _review_pending(after)
            or (options.respect_review and op.kind in UNSHOWN_REVIEW and _unmoved(current, after))
        )
        status: OutcomeStatus = "pending_review" if held else "applied"
        return await _outcome(journal, op, status, after, sent=True)
    raise ApiError(
        f"{op.action} {op.kind} {op.entity_id!r}: no answer after {attempts} attempts, and "
        "the target does not show the change; re-run to reconcile again",
        project=op.role,
    )


def _review_pending(entity: dict[str, Any]) -> bool:
    review = entity.get("activeReview")
    return isinstance(review, dict) and bool(review.get("reviewID"))


def _unmoved(before: dict[str, Any] | None, after: dict[str, Any]) -> bool:
    """A write sent for review answered with the version read just before it: held, not applied
    (every applied change moves the version; ``DynamicConfigDto`` has no ``activeReview`` to say
    so, docs/api-assumptions.md #28)."""
    version = after.get("version")
    return before is not None and version is not None and version == before.get("version")


async def _outcome(
    journal: Journal,
    op: Operation,
    status: OutcomeStatus,
    after: dict[str, Any] | None,
    *,
    sent: bool,
) -> dict[str, Any]:
    guard = {k: after.get(k) for k in ("version", "lastModifiedTime")} if after else {}
    await journal.append_durable(Outcome(op=op.id, status=status, sent=sent, after=guard))
    return {"status": status, "sent": sent, "after": guard}


def _conflict_message(op: Operation, current: dict[str, Any] | None) -> str:
    if op.precondition == "absent":
        seen = "now exists"
    elif current is None:
        seen = "was deleted"
    else:
        pins = [
            f"{k} {current[k]}"
            for k in ("version", "lastModifiedTime")
            if current.get(k) is not None
        ]
        seen = "changed since the plan" + (f" ({', '.join(pins)})" if pins else "")
    return (
        f"conflict: {op.kind} {op.entity_id!r} in [{op.role}] {seen}; not overwritten. "
        "Plan again to include the change, or apply with --force to overwrite it."
    )
