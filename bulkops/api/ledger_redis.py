"""The quota ledger on a Redis server, for bulkops processes on several machines.

A reservation is one Lua script, so Redis runs it as one atomic step: it trims the project's
per-window sorted sets (one per window duration, each holding the reservations of the last
``seconds`` + margin), counts, checks the queue of waiters, and records the reservation in every
set or registers the waiter. Its "now" is the Redis server's clock (``TIME``): machines whose
clocks disagree still cannot double-book. A window seen for the first time is seeded from the
longest existing one, so it counts the reservations made before it appeared too. Every key
expires on its own, so nothing outlives its use. Keys of one project share a hash tag
(``bulkops:quota:{PROJECT}:...``); a standalone Redis (or a primary) is expected, not a Cluster.

A reservation with a token is a member of that name scored at the lease's end (now +
``LEASE_S``); its answer is ``ZADD XX`` of the member at the server's "now" in each of the
project's sets (``XX``: one that aged out meanwhile is not brought back), run at the start of
the caller's next reservation of that project, or in a script of its own (``SETTLE``) on flush.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from typing import Any

import orjson
import structlog

from bulkops.api.ledger import (
    LEARNED_TTL_S,
    LEASE_POLL_S,
    LEASE_S,
    LEDGER_MARGIN,
    LEDGER_MARGIN_RATIO,
    MIN_RETRY_S,
    PRIORITIES,
    WAITER_GRACE_S,
    WAITER_PURGE_S,
    WINDOW_TTL_S,
    LearnedLimit,
    ProjectQuota,
    Rule,
    Waiter,
    WaitingJob,
    WindowUse,
    rules_key,
    unavailable,
)
from bulkops.api.urls import redacted
from bulkops.errors import LedgerUnavailable

INDEX_KEY = "bulkops:quota:projects"
log = structlog.get_logger("bulkops.ledger")
_NAMES = {rank: name for name, rank in PRIORITIES.items()}

_COMMON = """
local prefix = KEYS[1]
local margin = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local windows_key = prefix .. ':windows'
local learned_key = prefix .. ':learned'
local waiters_key = prefix .. ':waiters'
local function fmt(x) return string.format('%.10g', x) end
local function set_key(seconds) return prefix .. ':w:' .. fmt(seconds) end
local ratio = tonumber(ARGV[#ARGV])  -- every script passes the margin's share of the window last
local function span(seconds) return seconds * (1 + ratio) + margin end
-- answers: {token, age} pairs, age measured by the caller just before the call, so the answer
-- was at most that long before this script's "now" (an elapsed time: no clock skew in it).
local function record_answers(answers, durations)
  for _, answer in ipairs(answers) do
    for _, seconds in pairs(durations) do
      redis.call('ZADD', set_key(seconds), 'XX', now - answer[2], answer[1])
    end
  end
end
"""

#: KEYS: project prefix, index. ARGV: margin, rules, waiter id, job, rank, publish ("" or JSON),
#: probe ("1"/"0"), grace, purge, learned ttl, window ttl, min retry, project, answered tokens
#: (JSON), token ("" for none), lease, lease poll, margin ratio.
RESERVE = (
    _COMMON
    + """
local rules = cjson.decode(ARGV[2])
local waiter, job, rank = ARGV[3], ARGV[4], tonumber(ARGV[5])
local publish, probe = ARGV[6], ARGV[7] == '1'
local grace, purge = tonumber(ARGV[8]), tonumber(ARGV[9])
local learned_ttl, window_ttl = tonumber(ARGV[10]), tonumber(ARGV[11])
local min_retry, project = tonumber(ARGV[12]), ARGV[13]
local answered, token = cjson.decode(ARGV[14]), ARGV[15]
local lease, poll = tonumber(ARGV[16]), tonumber(ARGV[17])

local durations = {}
for _, r in ipairs(rules) do
  redis.call('HSET', windows_key, fmt(r[1]) .. '/' .. fmt(r[2]), fmt(now))
end
local registered = redis.call('HGETALL', windows_key)
for i = 1, #registered, 2 do
  if tonumber(registered[i + 1]) < now - window_ttl then
    redis.call('HDEL', windows_key, registered[i])
  else
    local slash = string.find(registered[i], '/', 1, true)
    local seconds = tonumber(string.sub(registered[i], slash + 1))
    durations[fmt(seconds)] = seconds
  end
end

if publish ~= '' then
  local published = cjson.decode(publish)
  if #published == 0 then
    redis.call('HDEL', learned_key, waiter)
  else
    redis.call('HSET', learned_key, waiter,
      cjson.encode({rules = published, expires = now + learned_ttl}))
  end
end
local all_rules = {}
for _, r in ipairs(rules) do table.insert(all_rules, r) end
local entries = redis.call('HGETALL', learned_key)
for i = 1, #entries, 2 do
  local entry = cjson.decode(entries[i + 1])
  if entry.expires < now then
    redis.call('HDEL', learned_key, entries[i])
  else
    for _, r in ipairs(entry.rules) do
      durations[fmt(r[2])] = r[2]
      if not probe then table.insert(all_rules, r) end
    end
  end
end

record_answers(answered, durations)
local longest, longest_key = -1, nil
for _, seconds in pairs(durations) do
  local key = set_key(seconds)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - span(seconds))
  if seconds > longest and redis.call('EXISTS', key) == 1 then
    longest, longest_key = seconds, key
  end
end
if longest_key then
  for _, seconds in pairs(durations) do
    local key = set_key(seconds)
    if redis.call('EXISTS', key) == 0 then
      redis.call('ZUNIONSTORE', key, 1, longest_key)
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now - span(seconds))
    end
  end
end

local since = now
local queued = redis.call('HGETALL', waiters_key)
for i = 1, #queued, 2 do
  if queued[i] == waiter then since = cjson.decode(queued[i + 1]).since end
end
local ahead = 0
for i = 1, #queued, 2 do
  local w = cjson.decode(queued[i + 1])
  if w.alive_until < now - purge then
    redis.call('HDEL', waiters_key, queued[i])
  elseif queued[i] ~= waiter and w.alive_until >= now
      and (w.rank > rank or (w.rank == rank and w.since < since)) then
    ahead = ahead + 1
  end
end

local worst, blocked = 0, false
for _, r in ipairs(all_rules) do
  local key = set_key(r[2])
  local count = redis.call('ZCARD', key)
  local index = count - r[1] + ahead
  if index >= 0 then
    blocked = true
    if count > 0 then
      if index > count - 1 then index = count - 1 end
      local at = tonumber(redis.call('ZRANGE', key, index, index, 'WITHSCORES')[2])
      local wait = at + span(r[2]) - now
      if at > now then wait = poll end  -- a lease: its answer may free it any moment
      if wait > worst then worst = wait end
    end
  end
end

local keep = math.ceil(math.max(window_ttl, learned_ttl, purge) * 1000)
if blocked then
  if worst < min_retry then worst = min_retry end
  redis.call('HSET', waiters_key, waiter, cjson.encode(
    {job = job, rank = rank, since = since, alive_until = now + worst + grace}))
  redis.call('PEXPIRE', waiters_key, keep)
  return fmt(worst)
end
local member, at = token, now + lease
if token == '' then member, at = fmt(now) .. ':' .. redis.call('INCR', prefix .. ':seq'), now end
for _, seconds in pairs(durations) do
  local key = set_key(seconds)
  redis.call('ZADD', key, at, member)
  redis.call('PEXPIRE', key, math.ceil((at - now + span(seconds)) * 1000) + 1000)
end
redis.call('HDEL', waiters_key, waiter)
for _, key in ipairs({windows_key, learned_key, waiters_key, prefix .. ':seq'}) do
  redis.call('PEXPIRE', key, keep)
end
redis.call('ZADD', KEYS[2], now, project)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window_ttl)
return '0'
"""
)

#: KEYS: project prefix. ARGV: margin, answered tokens (JSON), margin ratio. Moves each answered
#: reservation to now in every set of the project (those registered, expired or not).
SETTLE = (
    _COMMON
    + """
local durations = {}
local registered = redis.call('HGETALL', windows_key)
for i = 1, #registered, 2 do
  local slash = string.find(registered[i], '/', 1, true)
  local seconds = tonumber(string.sub(registered[i], slash + 1))
  durations[fmt(seconds)] = seconds
end
local entries = redis.call('HGETALL', learned_key)
for i = 1, #entries, 2 do
  for _, r in ipairs(cjson.decode(entries[i + 1]).rules) do durations[fmt(r[2])] = r[2] end
end
record_answers(cjson.decode(ARGV[2]), durations)
return 'ok'
"""
)

#: KEYS: project prefix. ARGV: margin, window ttl, margin ratio. What ``bulkops quota`` shows.
REPORT = (
    _COMMON
    + """
local window_ttl = tonumber(ARGV[2])
local out = {now = now, windows = {}, learned = {}, waiting = {}}
local registered = redis.call('HGETALL', windows_key)
for i = 1, #registered, 2 do
  if tonumber(registered[i + 1]) >= now - window_ttl then
    local slash = string.find(registered[i], '/', 1, true)
    local limit = tonumber(string.sub(registered[i], 1, slash - 1))
    local seconds = tonumber(string.sub(registered[i], slash + 1))
    local reserved = redis.call('ZCOUNT', set_key(seconds), '(' .. fmt(now - span(seconds)), '+inf')
    table.insert(out.windows, {limit, seconds, reserved})
  end
end
local entries = redis.call('HGETALL', learned_key)
for i = 1, #entries, 2 do
  local entry = cjson.decode(entries[i + 1])
  if entry.expires >= now then
    for _, r in ipairs(entry.rules) do table.insert(out.learned, {r[1], r[2], entry.expires - now}) end
  end
end
local queued = redis.call('HGETALL', waiters_key)
for i = 1, #queued, 2 do
  local w = cjson.decode(queued[i + 1])
  if w.alive_until >= now then table.insert(out.waiting, {w.job, w.rank, w.since, now - w.since}) end
end
return cjson.encode(out)
"""
)


def _prefix(project: str) -> str:
    return f"bulkops:quota:{{{project}}}"


class RedisLedger:
    def __init__(self, url: str) -> None:
        import redis
        import redis.asyncio

        self.url = redacted(url)
        self._raw_url = url
        # The client's version is given, so it does not read the package metadata (file I/O)
        # on the event loop each time it connects.
        driver: dict[str, Any]
        try:
            from redis.driver_info import DriverInfo

            driver = {"driver_info": DriverInfo(lib_version=redis.__version__)}
        except ImportError:  # redis < 7.1
            driver = {"lib_name": "redis-py", "lib_version": redis.__version__}
        self._redis = redis.asyncio.Redis.from_url(
            url, socket_connect_timeout=5, socket_timeout=10, health_check_interval=30, **driver
        )
        self._reserve = self._redis.register_script(RESERVE)
        self._settle = self._redis.register_script(SETTLE)
        self._report = self._redis.register_script(REPORT)
        #: Answers queued on the event loop, per project: (token, time.monotonic() at the answer).
        self._answers: dict[str, list[tuple[str, float]]] = {}

    def _unavailable(self, exc: BaseException) -> LedgerUnavailable:
        return unavailable(
            self._raw_url,
            _reason(str(exc).replace(self._raw_url, self.url)) or type(exc).__name__,
            "Start Redis there (or check the host, port, password and network), or point "
            "BULKOPS_QUOTA_URL / [limits] ledger at a Redis that answers (or unset both to use "
            "the local SQLite ledger, for processes on this machine only).",
        )

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        from redis.exceptions import RedisError

        try:
            return await script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc

    async def check(self) -> None:
        from redis.exceptions import RedisError

        try:
            await self._redis.ping()
            await self._redis.script_load(RESERVE)
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc

    async def reserve(
        self,
        project: str,
        rules: Sequence[Rule],
        waiter: Waiter,
        *,
        publish: Sequence[Rule] | None = None,
        probe: bool = False,
        token: str | None = None,
    ) -> float:
        answered = _aged(self._answers.pop(project, []))
        args = [
            LEDGER_MARGIN,
            orjson.dumps(rules_key(rules)),
            waiter.id,
            waiter.job,
            waiter.rank,
            b"" if publish is None else orjson.dumps(rules_key(publish)),
            "1" if probe else "0",
            WAITER_GRACE_S,
            WAITER_PURGE_S,
            LEARNED_TTL_S,
            WINDOW_TTL_S,
            MIN_RETRY_S,
            project,
            answered,
            token or "",
            LEASE_S,
            LEASE_POLL_S,
            LEDGER_MARGIN_RATIO,
        ]
        answer = await self._run(self._reserve, [_prefix(project), INDEX_KEY], args)
        return float(answer)

    def answered(self, project: str, token: str) -> None:
        self._answers.setdefault(project, []).append((token, time.monotonic()))

    async def flush(self) -> None:
        while self._answers:
            project, answers = self._answers.popitem()
            args = [LEDGER_MARGIN, _aged(answers), LEDGER_MARGIN_RATIO]
            try:
                await self._run(self._settle, [_prefix(project)], args)
            except LedgerUnavailable as exc:  # their leases stand; the next reservation fails
                log.warning("bulkops.ledger.answers_not_recorded", ledger=self.url, error=str(exc))

    async def leave(self, project: str, waiter_id: str) -> None:
        from redis.exceptions import RedisError

        await self.flush()
        try:
            await self._redis.hdel(f"{_prefix(project)}:waiters", waiter_id)
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc

    async def report(self, projects: Sequence[str] | None = None) -> list[ProjectQuota]:
        from redis.exceptions import RedisError

        if projects is None:
            try:
                names = sorted(_text(n) for n in await self._redis.zrange(INDEX_KEY, 0, -1))
            except (RedisError, OSError) as exc:
                raise self._unavailable(exc) from exc
        else:
            names = list(projects)
        found = []
        for name in names:
            raw = await self._run(
                self._report, [_prefix(name)], [LEDGER_MARGIN, WINDOW_TTL_S, LEDGER_MARGIN_RATIO]
            )
            body = orjson.loads(raw)
            windows = [WindowUse(int(a), float(b), int(c)) for a, b, c in _rows(body, "windows")]
            learned = {
                (int(a), float(b)): LearnedLimit(int(a), float(b), float(c))
                for a, b, c in _rows(body, "learned")
            }
            waiting = [
                WaitingJob(str(job), _NAMES.get(int(rank), "normal"), float(since), float(spent))
                for job, rank, since, spent in _rows(body, "waiting")
            ]
            quota = ProjectQuota(
                name,
                sorted(windows, key=lambda w: (w.seconds, w.limit)),
                sorted(learned.values(), key=lambda w: (w.seconds, w.limit)),
                sorted(waiting, key=lambda w: (-PRIORITIES[w.priority], w.since)),
            )
            if quota.windows or quota.learned or quota.waiting or projects is not None:
                found.append(quota)
        return found

    async def aclose(self) -> None:
        await self.flush()
        await self._redis.aclose()


def _aged(answers: list[tuple[str, float]]) -> bytes:
    """``[[token, seconds since its answer], ...]`` as JSON, the ages taken now."""
    now = time.monotonic()
    return orjson.dumps([[token, round(max(0.0, now - at), 6)] for token, at in answers])


def _rows(body: dict[str, Any], name: str) -> list[Any]:
    rows = body.get(name)
    return rows if isinstance(rows, list) else []  # cjson encodes an empty list as {}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _reason(text: str) -> str:
    """redis-py's words for people: ``Error 111 connecting to h:1. Connect call failed ('h', 1).``
    reads ``connecting to h:1 failed: connection refused``."""
    failed = re.match(r"Error (-?\d+) connecting to (\S+?)\.(?:\s+|$)(.*)", text)
    if failed:
        errno, where, detail = int(failed[1]), failed[2], failed[3].rstrip(".")
        if not detail or detail.startswith("Connect call failed"):
            detail = os.strerror(errno) if errno > 0 else "no answer"
        return f"connecting to {where} failed: {detail[:1].lower()}{detail[1:]}"
    return text.rstrip(".")
