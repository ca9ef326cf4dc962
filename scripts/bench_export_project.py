#!/usr/bin/env python3
"""export_project benchmark: ``bulkops run`` of a whole project vs the network ideal and a plain
sequential client, side by side in one run.

The project: 2,000 gates (half with overrides), 500 dynamic configs, 300 experiments, 300
segments, 50 layers, 5,000 metrics in 40 metric sources, and the demo project's small kinds
(tags, target apps, teams, unit id types, environments, holdouts, warehouse sources, parameter
stores, autotunes), served by the emulator at ``--latency-ms`` (default 50) per request. The real
CLI runs at ``--concurrency`` (default 16); next to it: requests, wall time, the network ideal
(``requests / concurrency x latency``), the CLI's start-up (``bulkops validate``), client CPU and
peak RSS (``wait4`` of that child alone), a re-run on the unchanged project (entity files'
mtimes must not move), and a sequential client (one aiohttp request at a time) doing the same
reads: every list page and every entity's overrides.

Processes, measurement and deadlines are those of ``scripts/bench_export.py`` (imported, not
copied): the emulator in its own child (``--serve``), each client in another.

    python scripts/bench_export_project.py              # 3 repetitions, medians; 1 sequential run
    python scripts/bench_export_project.py --quick      # a tenth of the sizes, 1 repetition
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_export as base

SIZES = {
    "gates": 2000,
    "dynamic_configs": 500,
    "experiments": 300,
    "segments": 300,
    "layers": 50,
}
SOURCES, PER_SOURCE = 40, 125  # 5,000 metrics
TARGET_RATIO = 1.3
TARGET_RSS_MB = 150.0


# -- child: the emulator ---------------------------------------------------------------------------
def build_world(scale: float) -> Any:
    """The demo project's small kinds, its big kinds replaced by ``SIZES`` copies of its own."""
    from bulkops.emulator import World, build_demo_world, populate_metrics

    demo = build_demo_world()
    project = demo.project("source")
    project.console_key = base.KEY
    for kind, size in SIZES.items():
        collection = project.collection(kind)
        templates = collection.values()
        for key in list(collection):
            collection.remove(key)
        side = project.collection(f"{kind}_overrides")
        template_overrides = next((side.get(t["id"]) for t in templates if side.get(t["id"])), None)
        for key in list(side):
            side.remove(key)
        for i in range(max(1, int(size * scale))):
            entity = copy.deepcopy(templates[i % len(templates)])
            entity["id"] = f"bench_{kind}_{i:05d}"
            entity["name"] = f"bench {kind} {i:05d}"
            collection.add(entity["id"], entity)
            if kind == "gates" and i % 2 == 0 and template_overrides is not None:
                side.put(entity["id"], copy.deepcopy(template_overrides))
    metrics, sources = project.collection("metrics"), project.collection("metric_sources")
    for collection in (metrics, sources):
        for key in list(collection):
            collection.remove(key)
    populate_metrics(project, max(1, int(SOURCES * scale)), PER_SOURCE)
    return World([project])


def serve(args: argparse.Namespace) -> int:
    from bulkops.emulator import EmulatorConfig

    world = build_world(args.scale)
    return base.serve_world(world, EmulatorConfig(latency_ms=args.latency_ms), args.max_seconds)


class ProjectEmulator(base.Emulator):
    """bench_export's emulator child, started with this script's ``--serve``."""

    def __init__(self, scale: float, latency_ms: float, max_seconds: float) -> None:
        self.argv = [
            sys.executable, __file__, "--serve", "--scale", str(scale),
            "--latency-ms", str(latency_ms), "--max-seconds", str(int(max_seconds)),
        ]  # fmt: skip
        self.proc = None
        self.url = ""


# -- child: the sequential client ------------------------------------------------------------------
def sequential(args: argparse.Namespace) -> int:
    """``--sequential URL --out DIR``: every list page, then every entity's overrides, in turn."""
    import aiohttp
    from yarl import URL

    from bulkops.jobs.export_project import EXPORTED

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    headers = {"STATSIG-API-KEY": os.environ[base.KEY_ENV], "STATSIG-API-VERSION": "20240601"}
    requests = rows = 0

    async def main() -> None:
        nonlocal requests, rows
        async with aiohttp.ClientSession(headers=headers) as session:

            async def get(path: str, query: str = "") -> dict[str, Any]:
                nonlocal requests
                async with session.get(URL(f"{args.sequential}{path}{query}", encoded=True)) as r:
                    r.raise_for_status()
                    requests += 1
                    return json.loads(await r.read())  # type: ignore[no-any-return]

            await get("/console/v1/project")
            for kind, how in EXPORTED.items():
                items: list[Any] = []
                if how.documents:  # singleton documents (settings), one GET each
                    items = [(await get(f"{how.list_path}/{d}"))["data"] for d in how.documents]
                elif how.document_key:
                    items = (await get(how.list_path))["data"][how.document_key]
                else:
                    extra = "".join(f"&{k}={v}" for k, v in (how.query or {}).items())
                    for page in range(1, 1_000_000):  # bounded; ends with no nextPage
                        body = await get(how.list_path, f"?page={page}&limit={base.PAGE}{extra}")
                        items += body["data"]
                        if not body["pagination"]["nextPage"]:
                            break
                rows += len(items)
                with (out / f"{kind}.jsonl").open("w") as handle:
                    for item in items:
                        handle.write(json.dumps(item, sort_keys=True) + "\n")
                if how.overrides and how.entity is not None:
                    with (out / f"{kind}.overrides.jsonl").open("w") as handle:
                        for item in items:
                            path = how.entity.item_path(item["id"], "overrides")
                            handle.write(json.dumps((await get(path))["data"]) + "\n")

    started = time.perf_counter()
    asyncio.run(main())
    elapsed = time.perf_counter() - started
    print(json.dumps({"requests": requests, "rows": rows, "elapsed_s": elapsed}))
    return 0


# -- the parent ------------------------------------------------------------------------------------
def job_file(work: Path, concurrency: int) -> Path:
    job = work / "project.toml"
    job.write_text(
        'job = "export_project"\nname = "bench-project"\n'
        f'[source]\napi_key_env = "{base.KEY_ENV}"\n[output]\ndir = "out"\n'
        f"[limits]\nconcurrency = {concurrency}\n"
    )
    return job


def run_bulkops(url: str, work: Path, concurrency: int, timeout_s: float) -> base.Measured:
    argv = [
        sys.executable, "-m", "bulkops.cli", "run", str(job_file(work, concurrency)),
        "--base-url", url, "--state", str(work / "state"), "--concurrency", str(concurrency),
    ]  # fmt: skip
    result = base.measure(argv, cwd=work, env=base.child_env(), timeout_s=timeout_s)
    if result.exit_code != 0:
        raise base.BenchError(
            f"bulkops exited {result.exit_code}:\n{result.extra['stderr'][-3000:]}"
        )
    summary = json.loads((work / "state" / "run.json").read_bytes())["summary"]
    manifest = json.loads((work / "out" / "manifest.json").read_bytes())
    result.extra = {
        "requests": int(summary["requests"]["source"]["requests"]),
        "retries": int(summary["requests"]["source"]["retries"]),
        "totals": manifest["totals"],
    }
    return result


def entity_mtimes(out: Path) -> dict[str, int]:
    return {
        str(p.relative_to(out)): p.stat().st_mtime_ns
        for p in out.rglob("*.json")
        if p.name != "manifest.json"
    }


def run_sequential(url: str, timeout_s: float) -> base.Measured:
    with tempfile.TemporaryDirectory(prefix="bulkops-bench-seq-") as tmp:
        work = Path(tmp)
        argv = [sys.executable, __file__, "--sequential", url, "--out", str(work / "out")]
        result = base.measure(argv, cwd=work, env=base.child_env(), timeout_s=timeout_s)
        if result.exit_code != 0:
            raise base.BenchError(
                f"sequential client exited {result.exit_code}:\n{result.extra['stderr'][-3000:]}"
            )
        result.extra = json.loads(result.extra["stdout"].strip().splitlines()[-1])
        return result


@dataclass
class Results:
    runs: list[base.Measured]
    rerun: base.Measured
    rewritten: int
    startup: list[base.Measured]
    seq: base.Measured | None
    creation_ms: float


def file_creation_ms(folder: Path, files: int = 2000) -> float:
    """What one empty file costs to create in ``folder`` (kept: deleting them would slow the
    runs that follow, see ``main``): the floor under a fresh export's staging."""
    folder.mkdir()
    started = time.perf_counter()
    for i in range(files):
        os.close(os.open(folder / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    return (time.perf_counter() - started) / files * 1000


def report(r: Results, args: argparse.Namespace) -> str:
    med = statistics.median
    requests = r.runs[0].extra["requests"]
    latency_s = args.latency_ms / 1000
    ideal = requests / args.concurrency * latency_s
    wall = med(m.wall_s for m in r.runs)
    startup = med(m.wall_s for m in r.startup)
    cpu = med(m.cpu_s for m in r.runs)
    rss = max(m.peak_rss_mb for m in r.runs)
    target = TARGET_RATIO * (ideal + startup)
    lines = [
        f"Machine: {base.machine()}",
        f"Command: {' '.join(['python', *sys.argv])}",
        f"Project: {json.dumps(r.runs[0].extra['totals'], sort_keys=True)}",
        f"Latency {args.latency_ms:g} ms, concurrency {args.concurrency}; {len(r.runs)} run(s), "
        "medians (peak RSS: the highest)",
        f"Creating an empty file in the runs' directory: {r.creation_ms:.3f} ms (2,000 made before "
        f"the runs; a fresh run makes {sum(r.runs[0].extra['totals'].values()):,} entity files and "
        "their detail files)",
        "",
        "| client | requests | wall s | network ideal s | start-up s | client CPU s | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| bulkops run (concurrency {args.concurrency}) | {requests} | {wall:.2f} | {ideal:.2f} | "
        f"{startup:.2f} | {cpu:.2f} | {rss:.1f} |",
        f"| bulkops re-run, unchanged project | {r.rerun.extra['requests']} | {r.rerun.wall_s:.2f} "
        f"| {r.rerun.extra['requests'] / args.concurrency * latency_s:.2f} | | {r.rerun.cpu_s:.2f} "
        f"| {r.rerun.peak_rss_mb:.1f} |",
    ]
    if r.seq is not None:
        s = r.seq
        lines.append(
            f"| sequential client (1 request at a time) | {s.extra['requests']} | {s.wall_s:.2f} | "
            f"{s.extra['requests'] * latency_s:.2f} | | {s.cpu_s:.2f} | {s.peak_rss_mb:.1f} |"
        )
    served = med(m.extra["emulator_cpu_s"] for m in r.runs)
    lines += [
        "",
        f"- The emulator spent {served:.2f} s of CPU serving each run, on the 2 cores the client "
        "uses too; each answer leaves it one latency after its request came in.",
        f"- wall ≤ {TARGET_RATIO:g} × (ideal {ideal:.2f} + start-up {startup:.2f}) = {target:.2f} s: "
        f"{wall:.2f} s = {wall / (ideal + startup):.2f}× {base.verdict(wall <= target)} (the runs: "
        f"{', '.join(f'{m.wall_s:.2f}' for m in r.runs)} s; worst "
        f"{max(m.wall_s for m in r.runs) / (ideal + startup):.2f}×)",
        f"- peak RSS < {TARGET_RSS_MB:g} MB: {rss:.1f} MB {base.verdict(rss < TARGET_RSS_MB)}",
        f"- re-run on the unchanged project rewrites no entity file: {r.rewritten} rewritten "
        f"{base.verdict(r.rewritten == 0)}",
    ]
    if r.seq is not None:
        lines.append(f"- speed-up over the sequential client: {r.seq.wall_s / wall:.1f}×")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sequential", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--max-seconds", type=float, default=1800, help=argparse.SUPPRESS)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-sequential", action="store_true", help="skip the sequential client")
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes, 1 repetition")
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args)
    if args.sequential:
        return sequential(args)
    if args.quick:
        args.scale, args.repeat = 0.1, 1
    try:
        with ProjectEmulator(args.scale, args.latency_ms, args.max_seconds) as emulator:
            url = emulator.url
            startup = [base.run_validate(url, args.concurrency) for _ in range(args.repeat)]
            runs = []
            # Every repetition's snapshot is kept until the end: on a journal-less ext4 (this
            # machine's), deleting thousands of files makes the next inodes made in that block
            # group scan past them for minutes (``recently_deleted`` in the kernel's
            # ``find_inode_bit``), so a run made right after the last one's clean-up would pay
            # for it, which no nightly export does.
            with tempfile.TemporaryDirectory(prefix="bulkops-bench-proj-") as tmp:
                creation_ms = file_creation_ms(Path(tmp) / "calibration")
                for i in range(args.repeat):
                    work = Path(tmp) / f"run{i + 1}"
                    work.mkdir()
                    base.log(f"bulkops run {i + 1}/{args.repeat} ...")
                    assert emulator.proc is not None
                    served_before = base.process_cpu_s(emulator.proc.pid)
                    runs.append(run_bulkops(url, work, args.concurrency, 900))
                    served = base.process_cpu_s(emulator.proc.pid) - served_before
                    runs[-1].extra["emulator_cpu_s"] = served
                    if i == 0:  # the re-run on the unchanged project, into the same directory
                        for file in (mtimes := entity_mtimes(work / "out")):
                            os.utime(work / "out" / file, ns=(1_000_000_000, 1_000_000_000))
                        mtimes = entity_mtimes(work / "out")
                        base.log("bulkops re-run on the unchanged project ...")
                        rerun = run_bulkops(url, work, args.concurrency, 900)
                        after = entity_mtimes(work / "out")
                        rewritten = sum(1 for f, t in after.items() if mtimes.get(f) != t)
            seq = None
            if not args.no_sequential:
                base.log("sequential client ...")
                seq = run_sequential(url, 3600)
    except base.BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(report(Results(runs, rerun, rewritten, startup, seq, creation_ms), args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
