#!/usr/bin/env python3
"""Export benchmark: ``bulkops run`` (export_metrics) vs the ideal and a plain sequential client.

Everything is measured side by side in one run, against the emulator on 127.0.0.1:

* **throughput**: N sources x M metrics behind ``--latency-ms`` per request. The real CLI
  (``python -m bulkops.cli run ... --concurrency C``) is timed next to the ideal
  ``requests / C * latency``, next to a critical-path-aware lower bound, and next to a plain
  sequential client (one aiohttp session, one request at a time, pages written straight to files);
  runs alternate bulkops / sequential so drift hits both alike.
* **hot path** (``--hot-path`` for it alone): 40 sources x 2,500 metrics at 50 ms, concurrency 16
  (1,002 GETs with the project read): bulkops' wall and client CPU (user+sys) next to the network
  ideal, the start-up (``bulkops validate`` on the same job file, bytecode cached), a minimal
  streaming client (``--minimal``: aiohttp + orjson, C in flight, pages to disk as they come) and
  the sequential client.
* **memory**: exports of very different sizes at zero latency; the peak RSS of the bulkops process
  must stay flat (rows are streamed to disk, never held) and under the target.

Processes: the emulator runs in its own child process (``--serve``), the export in another (the
CLI), the sequential client in a third (``--sequential``), so each process's RSS and CPU are its own
and both clients pay the same interpreter start-up. Peak RSS is the kernel's high-water mark of
that one child, from ``os.wait4(pid)`` (``ru_maxrss``): exact, no sampling gap; a psutil sampler
(every 20 ms) runs alongside as a cross-check and as the watchdog that kills a child past its
deadline.

Every loop is bounded: children have deadlines, the emulator exits on SIGTERM, when its stdin
closes (the benchmark died) or after ``--max-seconds``. Exit status: 0 when every export succeeded
(targets missed are printed as MISSED, not failures), 1 when an export failed or was wrong.

    python scripts/bench_export.py                 # full run: 3 repetitions, medians
    python scripts/bench_export.py --quick         # smoke run, small sizes, 1 repetition
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

HOST = "127.0.0.1"
KEY = "console-bench-key"
KEY_ENV = "BULKOPS_BENCH_KEY"
PAGE = 100  # bulkops.api.client.PAGE_LIMIT and the emulator's default/max page size
LIST_PATH = "/console/v1/metrics/metric_source/list"

# Targets from the issue.
TARGET_RATIO_TO_IDEAL = 1.3
TARGET_SPEEDUP = 10.0
TARGET_RSS_MB = 150.0
TARGET_RSS_METRICS = 200_000  # the export size the memory target is about
#: "Flat": the largest export's peak RSS may exceed the smallest's by at most this factor.
TARGET_FLAT_RATIO = 1.25


class BenchError(Exception):
    """An export failed or produced the wrong data: the benchmark is void."""


# -- request arithmetic ----------------------------------------------------------------------------


def pages(items: int) -> int:
    return max(1, math.ceil(items / PAGE))


def count_requests(sources: int, per_source: int) -> int:
    """Source-list pages plus every source's metric pages."""
    return pages(sources) + sources * pages(per_source)


def ideal_seconds(requests: int, concurrency: int, latency_s: float) -> float:
    return requests / concurrency * latency_s


def critical_path_rounds(sources: int, per_source: int, concurrency: int) -> int:
    """A lower bound on latency rounds, given what must precede what, with ``concurrency`` slots.

    Page 1 of the source list comes alone (it reveals the total); its other pages follow. A source's
    page 1 needs the whole source list (to know the source) and its other pages need its page 1, so
    no metric page overlaps a list page, the first metric round can only hold page-1 requests (at
    most ``min(sources, concurrency)``), and each of the other metric requests needs a slot.
    """
    list_rounds = 1 + math.ceil((pages(sources) - 1) / concurrency)
    metric_pages = pages(per_source)
    total = sources * metric_pages
    if metric_pages == 1:
        return list_rounds + math.ceil(total / concurrency)
    first = min(sources, concurrency)
    return list_rounds + 1 + math.ceil((total - first) / concurrency)


# -- child: the emulator ---------------------------------------------------------------------------


def serve(args: argparse.Namespace) -> int:
    """``--serve``: an emulator with one project of ``--sources`` x ``--per-source`` metrics."""
    from bulkops.emulator import EmulatorConfig, Project, World, populate_metrics

    project = Project("bench", KEY)
    world = World([project])
    populate_metrics(project, args.sources, args.per_source)
    return serve_world(world, EmulatorConfig(latency_ms=args.latency_ms), args.max_seconds)


def serve_world(world: Any, config: Any, max_seconds: float) -> int:
    """Serve ``world`` on 127.0.0.1, print ``URL <url>``, stop on SIGTERM, stdin EOF or timeout.

    The body of every benchmark's ``--serve`` child (``bench_org.py`` serves worlds of its own).
    """
    from bulkops.emulator import running_emulator

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def watch_stdin() -> None:  # the parent holds our stdin open; EOF means stop
            try:  # raw reads: a daemon thread must not hold a buffered stream's lock at exit
                while os.read(0, 4096):
                    pass
            except OSError:
                pass
            loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=watch_stdin, daemon=True).start()
        async with running_emulator(world, config, HOST, 0) as url:
            print(f"URL {url}", flush=True)
            try:
                await asyncio.wait_for(stop.wait(), timeout=max_seconds)
            except TimeoutError:
                print("emulator: --max-seconds reached, stopping", file=sys.stderr, flush=True)

    asyncio.run(main())
    return 0


class Emulator:
    """The ``--serve`` child, started and stopped by the benchmark."""

    def __init__(
        self, sources: int, per_source: int, latency_ms: float, max_seconds: float
    ) -> None:
        self.argv = [
            sys.executable, __file__, "--serve",
            "--sources", str(sources), "--per-source", str(per_source),
            "--latency-ms", str(latency_ms), "--max-seconds", str(int(max_seconds)),
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> Emulator:
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 300
        while (left := deadline - time.monotonic()) > 0:  # bounded: a line, EOF, or the deadline
            if not select.select([self.proc.stdout], [], [], left)[0]:
                break
            line = self.proc.stdout.readline().decode()
            if line.startswith("URL "):
                self.url = line.split()[1]
                return self
            if not line and self.proc.poll() is not None:
                break
        self.__exit__(None, None, None)
        raise BenchError(f"the emulator did not start: {' '.join(self.argv)}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # EOF on its stdin: the emulator stops
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


# -- child: the plain sequential client ------------------------------------------------------------


def sequential(args: argparse.Namespace) -> int:
    """``--sequential URL --out DIR``: what a user would write by hand, one request at a time."""
    import aiohttp
    from yarl import URL

    out = Path(args.out)
    (out / "metric_sources").mkdir(parents=True, exist_ok=True)
    headers = {"STATSIG-API-KEY": os.environ[KEY_ENV], "STATSIG-API-VERSION": "20240601"}
    requests = rows = 0

    async def main() -> None:
        nonlocal requests, rows
        async with aiohttp.ClientSession(headers=headers) as session:

            async def each_page(path: str):  # type: ignore[no-untyped-def]
                nonlocal requests
                page = 1
                while page <= 1_000_000:  # bounded; ends when the server sends no nextPage
                    url = URL(f"{args.sequential}{path}?page={page}&limit={PAGE}", encoded=True)
                    async with session.get(url) as response:
                        response.raise_for_status()
                        body = json.loads(await response.read())
                    requests += 1
                    yield body["data"]
                    if not body["pagination"]["nextPage"]:
                        return
                    page += 1

            names = []
            with (out / "metric_sources.jsonl").open("w") as handle:
                async for data in each_page(LIST_PATH):
                    for source in data:
                        handle.write(json.dumps(source) + "\n")
                        names.append(source["name"])
            for number, name in enumerate(names):
                path = f"/console/v1/metrics/metric_source/{quote(name, safe='')}/metrics"
                with (out / "metric_sources" / f"{number:05d}.jsonl").open("w") as handle:
                    async for data in each_page(path):
                        for metric in data:
                            handle.write(json.dumps(metric) + "\n")
                            rows += 1

    started = time.perf_counter()
    asyncio.run(main())
    elapsed = time.perf_counter() - started
    print(json.dumps({"requests": requests, "metrics": rows, "elapsed_s": elapsed}))
    return 0


# -- child: the minimal streaming client ----------------------------------------------------------


def minimal(args: argparse.Namespace) -> int:
    """``--minimal URL --out DIR --concurrency C``: the least a concurrent exporter must do.

    aiohttp + orjson, ``C`` requests in flight (a semaphore), the same requests as bulkops (the
    project, the source list, then each source's page 1 and, once it tells the total, its other
    pages at once); every page's rows are written to disk as JSON lines the moment it arrives. No
    retries, no journal, no checks: the floor of client CPU for these requests.
    """
    import aiohttp
    import orjson
    from yarl import URL

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    headers = {"STATSIG-API-KEY": os.environ[KEY_ENV], "STATSIG-API-VERSION": "20240601"}
    requests = rows = 0

    async def main() -> None:
        nonlocal requests, rows
        slots = asyncio.Semaphore(args.concurrency)
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        async with aiohttp.ClientSession(headers=headers, connector=connector) as session:

            async def get(path: str, page: int | None = None) -> dict[str, Any]:
                nonlocal requests
                query = "" if page is None else f"?page={page}&limit={PAGE}"
                async with (
                    slots,
                    session.get(URL(f"{args.minimal}{path}{query}", encoded=True)) as r,
                ):
                    r.raise_for_status()
                    body = orjson.loads(await r.read())
                requests += 1
                return body  # type: ignore[no-any-return]

            def write(name: str, data: list[Any]) -> None:
                nonlocal rows
                with (out / name).open("wb") as handle:
                    handle.write(b"".join(orjson.dumps(row) + b"\n" for row in data))
                rows += len(data)

            async def listing(path: str, stem: str, keep: bool = False) -> list[Any]:
                first = await get(path, 1)
                write(f"{stem}.p1.jsonl", first["data"])
                total = first["pagination"].get("totalItems") or 0
                per_page = first["pagination"].get("itemsPerPage") or PAGE
                rest = range(2, max(1, math.ceil(total / per_page)) + 1)

                async def one(page: int) -> list[Any]:
                    body = await get(path, page)
                    write(f"{stem}.p{page}.jsonl", body["data"])
                    return body["data"] if keep else []  # type: ignore[no-any-return]

                later = await asyncio.gather(*(one(n) for n in rest))
                return [*first["data"], *(row for data in later for row in data)] if keep else []

            await get("/console/v1/project")
            sources = await listing(LIST_PATH, "sources", keep=True)
            metric_rows = rows
            await asyncio.gather(
                *(
                    listing(
                        f"/console/v1/metrics/metric_source/{quote(s['name'], safe='')}/metrics",
                        f"m{number:05d}",
                    )
                    for number, s in enumerate(sources)
                )
            )
            rows -= metric_rows  # count metrics only

    started = time.perf_counter()
    asyncio.run(main())
    elapsed = time.perf_counter() - started
    print(json.dumps({"requests": requests, "metrics": rows, "elapsed_s": elapsed}))
    return 0


# -- measuring one child ---------------------------------------------------------------------------


@dataclass
class Measured:
    wall_s: float
    peak_rss_mb: float  # MiB; kernel high-water mark (wait4 ru_maxrss)
    sampled_rss_mb: float  # psutil, every 20 ms (cross-check; may miss short peaks)
    cpu_s: float
    exit_code: int
    extra: dict[str, Any] = field(default_factory=dict)


def measure(argv: list[str], *, cwd: Path, env: dict[str, str], timeout_s: float) -> Measured:
    """Run one child; wall time, exact peak RSS and CPU from ``wait4`` on that child alone."""
    import psutil

    stdout, stderr = cwd / "child.stdout", cwd / "child.stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
    sampled = 0
    done = threading.Event()
    timed_out = False

    def sampler() -> None:  # RSS cross-check and the watchdog
        nonlocal sampled, timed_out
        try:
            handle = psutil.Process(proc.pid)
        except psutil.Error:
            return
        deadline = time.monotonic() + timeout_s
        while not done.wait(0.02):
            try:
                sampled = max(sampled, handle.memory_info().rss)
            except psutil.Error:
                return
            if time.monotonic() > deadline:
                timed_out = True
                proc.kill()
                return

    watcher = threading.Thread(target=sampler, daemon=True)
    watcher.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    done.set()
    watcher.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if timed_out:
        raise BenchError(f"{' '.join(argv)} ran past its {timeout_s:.0f}s deadline and was killed")
    return Measured(
        wall_s=wall,
        peak_rss_mb=usage.ru_maxrss / 1024,  # Linux: KiB
        sampled_rss_mb=sampled / 2**20,
        cpu_s=usage.ru_utime + usage.ru_stime,
        exit_code=proc.returncode,
        extra={
            "stdout": stdout.read_text(errors="replace"),
            "stderr": stderr.read_text(errors="replace"),
        },
    )


def child_env() -> dict[str, str]:
    """A client child's environment, as on a user's machine: bytecode cached (under
    PYTHONDONTWRITEBYTECODE each run would compile bulkops anew, ~0.2 s of CPU), no tracing."""
    env = {**os.environ, KEY_ENV: KEY}
    for name in ("PYTHONTRACEMALLOC", "PYTHONDONTWRITEBYTECODE"):
        env.pop(name, None)
    return env


def run_bulkops(
    url: str, sources: int, per_source: int, concurrency: int, timeout_s: float
) -> Measured:
    """The real CLI, fresh state, a generated job file; checks the export is complete and right."""
    with tempfile.TemporaryDirectory(prefix="bulkops-bench-") as tmp:
        work = Path(tmp)
        job = work / "bench.toml"
        job.write_text(
            'job = "export_metrics"\nname = "bench-export"\n'
            f'[source]\napi_key_env = "{KEY_ENV}"\n[output]\ndir = "out"\n'
            f"[limits]\nconcurrency = {concurrency}\n"
        )
        argv = [
            sys.executable,
            "-m",
            "bulkops.cli",
            "run",
            str(job),
            "--base-url",
            url,
            "--state",
            str(work / "state"),
            "--concurrency",
            str(concurrency),
            "--fresh",
        ]
        result = measure(argv, cwd=work, env=child_env(), timeout_s=timeout_s)
        if result.exit_code != 0:
            raise BenchError(
                f"bulkops exited {result.exit_code}:\n{result.extra['stderr'][-3000:]}"
            )
        manifest = json.loads((work / "out" / "manifest.json").read_bytes())
        run = json.loads((work / "state" / "run.json").read_bytes())
        summary = run["summary"]
        want = {"metric_sources": sources, "metrics": sources * per_source}
        if manifest["totals"] != want:
            raise BenchError(f"bulkops exported {manifest['totals']}, expected {want}")
        result.extra = {
            "elapsed_s": float(summary["elapsed_s"]),
            "requests": int(summary["requests"]["source"]["requests"]),
            "retries": int(summary["requests"]["source"]["retries"]),
        }
        return result


def run_sequential(url: str, sources: int, per_source: int, timeout_s: float) -> Measured:
    with tempfile.TemporaryDirectory(prefix="bulkops-bench-seq-") as tmp:
        work = Path(tmp)
        argv = [sys.executable, __file__, "--sequential", url, "--out", str(work / "out")]
        result = measure(argv, cwd=work, env=child_env(), timeout_s=timeout_s)
        if result.exit_code != 0:
            raise BenchError(
                f"the sequential client exited {result.exit_code}:\n"
                f"{result.extra['stderr'][-3000:]}"
            )
        report = json.loads(result.extra["stdout"].strip().splitlines()[-1])
        if report["metrics"] != sources * per_source:
            raise BenchError(
                f"the sequential client read {report}, expected {sources * per_source} metrics"
            )
        result.extra = {"requests": report["requests"], "elapsed_s": float(report["elapsed_s"])}
        return result


def run_minimal(
    url: str, sources: int, per_source: int, concurrency: int, timeout_s: float
) -> Measured:
    with tempfile.TemporaryDirectory(prefix="bulkops-bench-min-") as tmp:
        work = Path(tmp)
        argv = [
            sys.executable, __file__, "--minimal", url, "--out", str(work / "out"),
            "--concurrency", str(concurrency),
        ]  # fmt: skip
        result = measure(argv, cwd=work, env=child_env(), timeout_s=timeout_s)
        if result.exit_code != 0:
            raise BenchError(
                f"the minimal client exited {result.exit_code}:\n{result.extra['stderr'][-3000:]}"
            )
        report = json.loads(result.extra["stdout"].strip().splitlines()[-1])
        if report["metrics"] != sources * per_source:
            raise BenchError(
                f"the minimal client read {report}, expected {sources * per_source} metrics"
            )
        result.extra = {"requests": report["requests"], "elapsed_s": float(report["elapsed_s"])}
        return result


def run_validate(url: str, concurrency: int) -> Measured:
    """``bulkops validate`` on the same job file: the CLI's start-up (imports, job file, checks)."""
    with tempfile.TemporaryDirectory(prefix="bulkops-bench-val-") as tmp:
        work = Path(tmp)
        job = work / "bench.toml"
        job.write_text(
            'job = "export_metrics"\nname = "bench-export"\n'
            f'[source]\napi_key_env = "{KEY_ENV}"\nbase_url = "{url}"\n[output]\ndir = "out"\n'
            f"[limits]\nconcurrency = {concurrency}\n"
        )
        argv = [sys.executable, "-m", "bulkops.cli", "validate", str(job)]
        result = measure(argv, cwd=work, env=child_env(), timeout_s=60)
        if result.exit_code != 0:
            raise BenchError(
                f"bulkops validate exited {result.exit_code}:\n{result.extra['stderr'][-3000:]}"
            )
        return result


# -- scenarios -------------------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    sources: int
    per_source: int
    latency_ms: float
    sequential: bool = True

    @property
    def metrics(self) -> int:
        return self.sources * self.per_source

    @property
    def requests(self) -> int:
        return count_requests(self.sources, self.per_source)


@dataclass
class Outcome:
    scenario: Scenario
    concurrency: int
    bulkops: list[Measured]
    seq: list[Measured]

    def med(self, values: list[float]) -> float:
        return statistics.median(values) if values else math.nan

    @property
    def wall(self) -> float:
        return self.med([m.wall_s for m in self.bulkops])

    @property
    def in_run(self) -> float:
        return self.med([m.extra["elapsed_s"] for m in self.bulkops])

    @property
    def cpu(self) -> float:
        return self.med([m.cpu_s for m in self.bulkops])

    @property
    def rss(self) -> float:
        return self.med([m.peak_rss_mb for m in self.bulkops])

    @property
    def rss_max(self) -> float:
        return max(m.peak_rss_mb for m in self.bulkops)

    @property
    def seq_wall(self) -> float:
        return self.med([m.wall_s for m in self.seq])

    @property
    def seq_in_run(self) -> float:
        return self.med([m.extra["elapsed_s"] for m in self.seq])

    @property
    def seq_rss(self) -> float:
        return self.med([m.peak_rss_mb for m in self.seq])

    @property
    def ideal(self) -> float:
        s = self.scenario
        return ideal_seconds(s.requests, self.concurrency, s.latency_ms / 1000)

    @property
    def bound(self) -> float:
        s = self.scenario
        return critical_path_rounds(s.sources, s.per_source, self.concurrency) * s.latency_ms / 1000


def run_scenario(scenario: Scenario, concurrency: int, repeat: int) -> Outcome:
    s = scenario
    expected = count_requests(s.sources, s.per_source) * s.latency_ms / 1000
    timeout = 120 + 3 * expected + s.metrics / 1000  # generous, but it ends
    log(
        f"== {s.name}: {s.sources} sources x {s.per_source} metrics, {s.requests} requests, "
        f"latency {s.latency_ms:g} ms; starting the emulator"
    )
    outcome = Outcome(s, concurrency, [], [])
    with Emulator(s.sources, s.per_source, s.latency_ms, max_seconds=3600 + 10 * timeout) as emu:
        for rep in range(1, repeat + 1):
            b = run_bulkops(emu.url, s.sources, s.per_source, concurrency, timeout)
            if b.extra["requests"] != s.requests:
                log(
                    f"   note: bulkops sent {b.extra['requests']} requests, expected {s.requests} "
                    f"({b.extra['retries']} retries)"
                )
            outcome.bulkops.append(b)
            log(
                f"   rep {rep}: bulkops wall {b.wall_s:.3f}s (in-run {b.extra['elapsed_s']:.3f}s, "
                f"cpu {b.cpu_s:.2f}s, peak RSS {b.peak_rss_mb:.1f} MiB, sampled "
                f"{b.sampled_rss_mb:.1f} MiB, {b.extra['requests']} requests)"
            )
            if s.sequential:
                q = run_sequential(emu.url, s.sources, s.per_source, timeout + 3 * expected)
                outcome.seq.append(q)
                log(
                    f"   rep {rep}: sequential wall {q.wall_s:.3f}s "
                    f"(in-run {q.extra['elapsed_s']:.3f}s, cpu {q.cpu_s:.2f}s, "
                    f"peak RSS {q.peak_rss_mb:.1f} MiB, {q.extra['requests']} requests)"
                )
    return outcome


# -- the hot-path scenario (issue 8): client CPU next to a minimal streaming client ---------------

HOT_SOURCES, HOT_PER_SOURCE, HOT_LATENCY_MS = 40, 2500, 50.0
TARGET_CPU_RATIO = 1.3  # bulkops client CPU <= 1.3x the minimal client's
TARGET_CPU_S = 1.5  # ... and <= 1.5 s where the machine allows
TARGET_WALL_RATIO = 1.15  # wall <= 1.15x (max(ideal, minimal wall) + start-up)
TARGET_VALIDATE_S = 0.25


@dataclass
class HotPath:
    requests: int
    concurrency: int
    latency_ms: float
    bulkops: list[Measured]
    minimal: list[Measured]
    seq: list[Measured]
    validate: list[Measured]

    @property
    def ideal(self) -> float:
        return math.ceil(self.requests / self.concurrency) * self.latency_ms / 1000


def run_hot_path(args: argparse.Namespace) -> HotPath:
    sources, per_source, latency = HOT_SOURCES, HOT_PER_SOURCE, args.latency_ms
    c = args.concurrency
    requests = 1 + count_requests(sources, per_source)  # + GET /console/v1/project
    timeout = 120 + 3 * requests * latency / 1000
    log(
        f"== hot path: {sources} sources x {per_source} metrics, {requests} requests, latency "
        f"{latency:g} ms, concurrency {c}; starting the emulator"
    )
    out = HotPath(requests, c, latency, [], [], [], [])
    with Emulator(sources, per_source, latency, max_seconds=3600 + 10 * timeout) as emu:
        run_validate(emu.url, c)  # warm-up: bytecode cached, as the target asks
        for rep in range(1, args.repeat + 1):
            v = run_validate(emu.url, c)
            out.validate.append(v)
            b = run_bulkops(emu.url, sources, per_source, c, timeout)
            out.bulkops.append(b)
            m = run_minimal(emu.url, sources, per_source, c, timeout)
            out.minimal.append(m)
            log(
                f"   rep {rep}: bulkops wall {b.wall_s:.3f}s cpu {b.cpu_s:.2f}s "
                f"RSS {b.peak_rss_mb:.1f} MiB ({b.extra['requests']} requests); minimal wall "
                f"{m.wall_s:.3f}s cpu {m.cpu_s:.2f}s RSS {m.peak_rss_mb:.1f} MiB "
                f"({m.extra['requests']} requests); validate {v.wall_s:.3f}s"
            )
        for rep in range(1, args.hot_sequential + 1):  # 50 s each: fewer repetitions by default
            q = run_sequential(emu.url, sources, per_source, timeout + requests * latency / 1000)
            out.seq.append(q)
            log(f"   sequential {rep}: wall {q.wall_s:.3f}s cpu {q.cpu_s:.2f}s")
    return out


def hot_report(h: HotPath) -> str:
    def med(values: list[float]) -> float:
        return statistics.median(values) if values else math.nan

    rows = [("bulkops run", h.bulkops), ("minimal streaming client", h.minimal)]
    rows += [("sequential client", h.seq), ("bulkops validate (start-up)", h.validate)]
    lines = [
        "",
        f"Hot path: {HOT_SOURCES} sources × {HOT_PER_SOURCE:,} metrics, {h.latency_ms:g} ms, "
        f"page size {PAGE}, concurrency {h.concurrency}, {h.requests:,} GETs; network ideal "
        f"⌈{h.requests}/{h.concurrency}⌉ × {h.latency_ms:g} ms = {h.ideal:.3f} s. Medians of "
        f"the repetitions (sequential: {len(h.seq)} run(s)); CPU = user+sys of that process.",
        "",
        "| process | runs | wall s | CPU s | CPU ms per GET | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, ms in rows:
        if not ms:
            continue
        wall, cpu = med([m.wall_s for m in ms]), med([m.cpu_s for m in ms])
        per_get = cpu / h.requests * 1000 if "validate" not in name else math.nan
        lines.append(
            f"| {name} | {len(ms)} | {wall:.3f} | {cpu:.2f} | {fmt(per_get, '.2f')} "
            f"| {med([m.peak_rss_mb for m in ms]):.1f} |"
        )
    b_wall, b_cpu = med([m.wall_s for m in h.bulkops]), med([m.cpu_s for m in h.bulkops])
    m_wall, m_cpu = med([m.wall_s for m in h.minimal]), med([m.cpu_s for m in h.minimal])
    v_wall = med([m.wall_s for m in h.validate])
    wall_target = TARGET_WALL_RATIO * (max(h.ideal, m_wall) + v_wall)
    cpu_ratio = b_cpu / m_cpu
    lines += [
        "",
        "Targets:",
        f"- client CPU ≤ {TARGET_CPU_RATIO:g}× the minimal client's ({m_cpu:.2f} s): "
        f"{b_cpu:.2f} s = {cpu_ratio:.2f}× {verdict(cpu_ratio <= TARGET_CPU_RATIO)}; "
        f"≤ {TARGET_CPU_S:g} s {verdict(b_cpu <= TARGET_CPU_S)}",
        f"- wall ≤ {TARGET_WALL_RATIO:g}× (max(ideal {h.ideal:.3f}, minimal {m_wall:.3f}) + "
        f"start-up {v_wall:.3f}) = {wall_target:.3f} s: {b_wall:.3f} s "
        f"{verdict(b_wall <= wall_target)}",
        f"- bulkops validate ≤ {TARGET_VALIDATE_S:g} s: {v_wall:.3f} s "
        f"{verdict(v_wall <= TARGET_VALIDATE_S)}",
    ]
    return "\n".join(lines)


# -- report ----------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fmt(value: float, spec: str = ".3f", unit: str = "") -> str:
    return "—" if math.isnan(value) else f"{value:{spec}}{unit}"


def process_cpu_s(pid: int) -> float:
    """User+sys CPU seconds a live process has used so far (Linux ``/proc``; NaN elsewhere):
    what the emulator child spent serving a run, read before and after it."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISSED"


def machine() -> str:
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = platform.processor() or "?"
    import aiohttp

    import bulkops

    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
        f"aiohttp {aiohttp.__version__}, {platform.system()} {platform.release()}, "
        f"temp dir {tempfile.gettempdir()}; bulkops from {Path(bulkops.__file__).parent} "
        f"at {git_revision(Path(bulkops.__file__).parent)}"
    )


def git_revision(folder: Path) -> str:
    """``<sha> (clean|N changed files)`` of the checkout holding ``folder``; read-only git."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "no git checkout"
    changed = len(dirty.splitlines())
    return f"git {sha} ({'clean' if not changed else f'{changed} changed/untracked files'})"


def report(throughput: list[Outcome], memory: list[Outcome], args: argparse.Namespace) -> str:
    c = args.concurrency
    nan = math.nan
    lines = [
        f"Machine: {machine()}",
        f"Command: {' '.join(['python', *sys.argv])}",
        f"Repetitions: {args.repeat}, medians shown; concurrency {c}; page size {PAGE}; "
        "ideal = requests / concurrency * latency",
        "",
        "| scenario | requests | median wall s | ideal s | ratio to ideal | sequential median s "
        "| speed-up vs sequential | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for o in throughput + memory:
        s = o.scenario
        ideal = o.ideal or nan
        speedup = o.seq_wall / o.wall if o.seq else nan
        lines.append(
            f"| {s.name} | {s.requests:,} | {fmt(o.wall)} | {fmt(ideal)} "
            f"| {fmt(o.wall / ideal, '.2f', '×')} | {fmt(o.seq_wall)} "
            f"| {fmt(speedup, '.1f', '×')} | {fmt(o.rss, '.1f')} |"
        )
    lines += [
        "",
        "Where the time goes (medians). *wall*: the whole `bulkops run` process, as a user waits "
        "for it. *in-run*: the run's own `elapsed_s` (task graph start to published manifest), "
        "i.e. without interpreter start-up, imports, state set-up and exit. *bound*: the "
        "critical-path-aware lower bound (page 1 of a listing must precede its other pages). "
        "The sequential client's in-run is likewise timed inside it, after its imports.",
        "",
        "| scenario | wall s | in-run s | start-up + exit s | bound s | in-run / ideal "
        "| in-run / bound | sequential in-run s | in-run speed-up | bulkops CPU s "
        "| in-run ms per request |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for o in throughput + memory:
        ideal, bound = o.ideal or nan, o.bound or nan
        lines.append(
            f"| {o.scenario.name} | {fmt(o.wall)} | {fmt(o.in_run)} | {fmt(o.wall - o.in_run)} "
            f"| {fmt(bound)} | {fmt(o.in_run / ideal, '.2f', '×')} "
            f"| {fmt(o.in_run / bound, '.2f', '×')} "
            f"| {fmt(o.seq_in_run if o.seq else nan)} "
            f"| {fmt(o.seq_in_run / o.in_run if o.seq else nan, '.1f', '×')} | {fmt(o.cpu, '.2f')} "
            f"| {fmt(o.in_run / o.scenario.requests * 1000, '.2f')} |"
        )
    lines += [
        "",
        "Memory. *peak RSS*: the kernel's high-water mark of the `bulkops run` process "
        "(`wait4` ru_maxrss), median and max over repetitions; *sampled*: psutil every 20 ms "
        "(cross-check, max over repetitions).",
        "",
        "| scenario | metrics | peak RSS MiB (median) | peak RSS MiB (max) | sampled MiB (max) "
        "| vs smallest export | sequential client peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    base = min(memory, key=lambda o: o.scenario.metrics).rss if memory else nan
    for o in throughput + memory:
        lines.append(
            f"| {o.scenario.name} | {o.scenario.metrics:,} | {fmt(o.rss, '.1f')} "
            f"| {fmt(o.rss_max, '.1f')} "
            f"| {fmt(max(m.sampled_rss_mb for m in o.bulkops), '.1f')} "
            f"| {fmt(o.rss / base, '.2f', '×')} | {fmt(o.seq_rss if o.seq else nan, '.1f')} |"
        )
    lines += ["", "Targets:"]
    for o in throughput:
        ratio, in_run_ratio = o.wall / o.ideal, o.in_run / o.ideal
        speedup, in_run_speedup = o.seq_wall / o.wall, o.seq_in_run / o.in_run
        lines.append(
            f"- {o.scenario.name}: within {TARGET_RATIO_TO_IDEAL:g}× of ideal "
            f"({TARGET_RATIO_TO_IDEAL * o.ideal:.3f}s): wall {ratio:.2f}× "
            f"{verdict(ratio <= TARGET_RATIO_TO_IDEAL)}; in-run only {in_run_ratio:.2f}× "
            f"{verdict(in_run_ratio <= TARGET_RATIO_TO_IDEAL)}"
        )
        lines.append(
            f"- {o.scenario.name}: at least {TARGET_SPEEDUP:g}× faster than sequential: wall "
            f"{speedup:.1f}× {verdict(speedup >= TARGET_SPEEDUP)}; "
            f"in-run only {in_run_speedup:.1f}× "
            f"{verdict(in_run_speedup >= TARGET_SPEEDUP)}"
        )
    if memory:
        small = min(memory, key=lambda o: o.scenario.metrics)
        # The memory target is about the 200,000-metric export; --scaling adds a larger
        # one that is reported, not judged.
        big = next(
            (o for o in memory if o.scenario.metrics == TARGET_RSS_METRICS),
            max(memory, key=lambda o: o.scenario.metrics),
        )
        lines.append(
            f"- {big.scenario.name}: peak RSS under {TARGET_RSS_MB:g} MB "
            f"({TARGET_RSS_MB * 1e6 / 2**20:.1f} MiB): "
            f"max {big.rss_max:.1f} MiB {verdict(big.rss_max * 2**20 < TARGET_RSS_MB * 1e6)}"
        )
        flat = big.rss / small.rss
        lines.append(
            f"- flat memory: {big.scenario.metrics / small.scenario.metrics:g}× the metrics, "
            f"{flat:.2f}× the peak RSS (at most {TARGET_FLAT_RATIO:g}×) "
            f"{verdict(flat <= TARGET_FLAT_RATIO)}"
        )
        for o in memory:
            if o.scenario.metrics > big.scenario.metrics:
                lines.append(
                    f"- (not judged) {o.scenario.name}: peak RSS max {o.rss_max:.1f} MiB, "
                    f"{o.rss / small.rss:.2f}× the smallest export's"
                )
    return "\n".join(lines)


def scenarios(args: argparse.Namespace) -> tuple[list[Scenario], list[Scenario]]:
    if args.quick:
        throughput = [
            Scenario(
                "4 × 500, 50 ms" if args.latency_ms == 50 else f"4 × 500, {args.latency_ms:g} ms",
                4,
                500,
                args.latency_ms,
            )
        ]
        memory = [
            Scenario("2,000 metrics, 0 ms", 2, 1000, 0.0),
            Scenario("20,000 metrics, 0 ms", 20, 1000, 0.0),
        ]
    else:
        throughput = [Scenario(f"20 × 1,000, {args.latency_ms:g} ms", 20, 1000, args.latency_ms)]
        memory = [
            Scenario("2,000 metrics (2 × 1,000), 0 ms", 2, 1000, 0.0),
            Scenario("20,000 metrics (20 × 1,000), 0 ms", 20, 1000, 0.0),
            Scenario("200,000 metrics (200 × 1,000), 0 ms", 200, 1000, 0.0),
        ]
    if args.scaling and not args.quick:
        memory.append(Scenario("500,000 metrics (500 × 1,000), 0 ms", 500, 1000, 0.0))
    if args.no_memory:
        memory = []
    return throughput, memory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeat", type=int, default=None, help="repetitions (default 3; 1 with --quick)"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--no-memory", action="store_true", help="skip the memory scenarios")
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="add a 500,000-metric export (how cost per page and RSS scale)",
    )
    parser.add_argument(
        "--no-sequential-memory",
        action="store_true",
        help="skip the sequential client in the memory scenarios",
    )
    # Internal: the child processes.
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sources", type=int, default=20, help=argparse.SUPPRESS)
    parser.add_argument("--per-source", type=int, default=1000, help=argparse.SUPPRESS)
    parser.add_argument("--max-seconds", type=float, default=3600, help=argparse.SUPPRESS)
    parser.add_argument(
        "--hot-path",
        action="store_true",
        help=f"only the hot-path scenario ({HOT_SOURCES} x {HOT_PER_SOURCE:,}: client CPU)",
    )
    parser.add_argument("--no-hot-path", action="store_true", help="skip the hot-path scenario")
    parser.add_argument(
        "--hot-sequential",
        type=int,
        default=1,
        help="sequential-client runs in the hot-path scenario (about 50 s each; default 1)",
    )
    parser.add_argument("--sequential", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--minimal", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args)
    if args.sequential:
        return sequential(args)
    if args.minimal:
        return minimal(args)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1 or args.concurrency < 1 or args.latency_ms <= 0:
        parser.error("--repeat and --concurrency must be >= 1, --latency-ms > 0")

    throughput_s, memory_s = scenarios(args)
    if args.no_sequential_memory:
        for s in memory_s:
            s.sequential = False
    if args.hot_path:
        throughput_s, memory_s = [], []
    try:
        throughput = [run_scenario(s, args.concurrency, args.repeat) for s in throughput_s]
        memory = [run_scenario(s, args.concurrency, args.repeat) for s in memory_s]
        hot = None if args.no_hot_path or args.quick else run_hot_path(args)
    except BenchError as exc:
        log(f"bench_export: FAILED: {exc}")
        return 1
    if throughput or memory:
        print(report(throughput, memory, args))
    else:
        print(f"Machine: {machine()}\nCommand: {' '.join(['python', *sys.argv])}")
    if hot is not None:
        print(hot_report(hot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
