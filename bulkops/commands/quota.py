"""``bulkops quota``: what the shared quota ledger holds, per project.

The windows jobs used (in the last hour) and what is reserved in each now, the limits learned
from 429s and shared, and the jobs waiting for a slot (job, priority, since when).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

import aiohttp
import anyio
import orjson

from bulkops import human
from bulkops.api.client import ConsoleClient
from bulkops.api.governor import RateGovernor
from bulkops.api.ledger import (
    CONSOLE_BASE_URL,
    ProjectQuota,
    describe_rule,
    ledger_url,
    open_ledger,
    project_key,
)
from bulkops.api.urls import ledger_url_problem, redacted
from bulkops.commands.session import api_key, check_ledger_folder
from bulkops.errors import ApiError, UserError


async def show_quota(
    *,
    project_key_env: str | None,
    base_url: str | None,
    ledger: str | None,
    as_json: bool,
) -> int:
    """Print the ledger's projects (or the one whose key is in ``project_key_env``); exit 0."""
    if ledger is not None:
        problem = ledger_url_problem(ledger)
        if problem:
            raise UserError(f"--ledger {redacted(ledger)!r}: {problem}.")
        url = ledger
    else:
        url, _ = ledger_url(None)
    wanted: list[str] | None = None
    title: dict[str, str] = {}
    if project_key_env is not None:
        key, described = await _identify(project_key_env, base_url or CONSOLE_BASE_URL)
        wanted = [key]
        title[key] = described
    await anyio.to_thread.run_sync(lambda: check_ledger_folder(url, before=""))
    opened = open_ledger(url)
    try:
        projects = await opened.report(wanted)
    finally:
        await opened.aclose()
    if as_json:
        body = {"ledger": opened.url, "projects": [_as_json(p) for p in projects]}
        human.say(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
        return 0
    human.say(f"Quota ledger: {opened.url}")
    if wanted is not None and projects and _empty(projects[0]):
        human.say(
            f"{title[wanted[0]]}: nothing on the ledger (no job reserved a mutation for it in "
            "the last hour)."
        )
        return 0
    if not projects:
        human.say(f"No projects: {await _why_empty(opened.url)}.")
        return 0
    for quota in projects:
        for line in _lines(quota, title.get(quota.project)):
            human.say(line)
    return 0


async def _identify(variable: str, base_url: str) -> tuple[str, str]:
    """The ledger key and a description of the project whose key is in ``variable``."""
    from bulkops.api.urls import url_problem

    problem = url_problem(base_url)
    if problem:
        raise UserError(f"--base-url {base_url!r}: {problem}")
    key = api_key(variable, "--project-key-env", or_else="")
    async with aiohttp.ClientSession() as session:
        client = ConsoleClient(
            project=variable,
            base_url=base_url,
            api_key=key,
            session=session,
            governor=RateGovernor(variable, mutation_windows=()),
        )
        try:
            identity = await client.identify()
        except ApiError as exc:  # its words are for a job file's project; here there is none
            exc.args = (_for_quota(str(exc), variable, client.base_url),)
            raise
    ledger_key = project_key(identity.id, client.base_url)
    return ledger_key, f"Project {identity.describe()} (key in ${variable})"


def _for_quota(message: str, variable: str, base_url: str) -> str:
    """A client's message about the project named ``variable``, in the words of ``quota``'s own
    options (``--project-key-env``, ``--base-url``) instead of a job file's."""
    return (
        message.replace(
            f"Check the base_url of [{variable}] in the job file (or --base-url; now {base_url})",
            f"Check --base-url (now {base_url})",
        )
        .replace(
            f"Check the base_url of [{variable}] in the job file (or --base-url)",
            f"Check --base-url (now {base_url})",
        )
        .replace(f"the key of project {variable!r}", f"the key in ${variable}")
        .replace(f"project {variable!r}", f"the project of ${variable}")
        .replace("the environment variable named by its api_key_env", f"${variable}")
        .replace("then run the same command again", "then run `bulkops quota` again")
    )


def _empty(quota: ProjectQuota) -> bool:
    return not (quota.windows or quota.learned or quota.waiting)


def _lines(quota: ProjectQuota, title: str | None) -> list[str]:
    lines = ["", f"{title or 'Project ' + quota.project}:"]
    if quota.windows:
        lines.append("  windows jobs used in the last hour, and what is reserved in each now:")
        rows = [
            [describe_rule((w.limit, w.seconds)), f"{human.count(w.reserved)} reserved"]
            for w in quota.windows
        ]
        lines += human.table(rows, indent="    ", numeric=[1])
    else:
        lines.append("  windows: none used in the last hour")
    if quota.learned:
        lines.append("  limits learned from 429s (shared with every job on the project):")
        lines += human.table(
            [
                [describe_rule((w.limit, w.seconds)), f"for {human.duration(w.expires_in)} more"]
                for w in quota.learned
            ],
            indent="    ",
        )
    else:
        lines.append("  limits learned from 429s: none")
    if quota.waiting:
        lines.append("  jobs waiting for a slot (first in line first):")
        lines += human.table(
            [
                [
                    w.job,
                    f"{w.priority} priority",
                    f"waiting {human.duration(w.waiting)}",
                    f"since {_local(w.since)}",
                ]
                for w in quota.waiting
            ],
            indent="    ",
        )
    else:
        lines.append("  jobs waiting: none")
    return lines


def _local(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def _iso(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _as_json(quota: ProjectQuota) -> dict[str, object]:
    body = quota.as_dict()
    waiting: Sequence[dict[str, object]] = body["waiting"]  # type: ignore[assignment]
    for entry, job in zip(waiting, quota.waiting, strict=True):
        entry["waiting_since"] = _iso(job.since)
    return body


async def _why_empty(url: str) -> str:
    sqlite_file = url.removeprefix("sqlite://") if url.startswith("sqlite://") else None
    if sqlite_file is not None and not await anyio.Path(sqlite_file).exists():
        return "the ledger file does not exist yet (no job has written through it)"
    return "no job reserved a mutation on this ledger in the last hour"
