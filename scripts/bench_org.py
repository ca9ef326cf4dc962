#!/usr/bin/env python3
"""Org benchmark: one ``bulkops run`` over many projects (``[[sources]]``, ``[[targets]]``).

Two scenarios, each measured side by side in one run, against an emulator serving every project
with a key of its own (a child process, ``--serve``, through ``bench_export.serve_world``):

* **org export**: ``--projects`` (50) projects × ``--sources`` (10) metric sources ×
  ``--per-source`` (200) metrics, i.e. 2,000 metrics per project, exported by ONE ``bulkops run``
  of an ``export_metrics`` job with one ``[[sources]]`` entry per project, at ``--latency-ms`` (50)
  per request and concurrency 8 per project. Next to it, in the same emulator: the single-project
  export of one project of the same size (``bench_export.run_bulkops``, same settings), one project
  holding the org's total (the same pages in one project, ``bench_export``'s own emulator child),
  an empty single-project export (the fixed cost of a ``bulkops run`` process: start-up, identity, exit),
  and a sequential client reading the same pages project after project
  (``bench_export.sequential`` in a loop). Reported: requests, wall, the busiest project's ideal
  (its own requests in dependency order at concurrency 8 × latency), the ratio, peak RSS, client
  CPU (user+sys) per page, with and without the fixed cost.
* **org mass edit**: ``batch_rule_update`` over ``--edit-projects`` (10) ``[[targets]]``, each with
  ``--gates`` (60) gates whose "Internal" rule changes, the emulator enforcing ``--windows``
  (20/4s) per project and the job configured with the same windows: 0 × 429 in total, and the
  makespan (first to last mutation, from the emulator's log) within 1.1 × the slowest project's
  minimum under its windows (``governor.least_seconds``), beside the same job on one project alone
  (``[target]``). A fresh world and a fresh quota ledger (``BULKOPS_HOME``) per repetition.

Processes, measurement and deadlines are ``bench_export``'s: each client is a child of its own,
peak RSS and CPU come from ``os.wait4`` on that child alone, every child has a deadline.
``--profile`` adds one cProfile'd org export (top functions by own time) to show where its CPU
goes. Exit status: 0 when every run was complete and right (a missed target prints MISSED), 1
otherwise.

    python scripts/bench_org.py              # full run: 3 repetitions, medians (about 5 minutes)
    python scripts/bench_org.py --quick      # smoke run: small sizes, 1 repetition
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import math
import os
import pstats
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bench_export as bx
from bench_batch_rules import minimum_seconds

from bulkops.emulator import EmulatorConfig, Project, World, populate_metrics

CONCURRENCY = 8
TARGET_WALL_RATIO = 1.3  # org export wall <= 1.3 x the busiest project's ideal
TARGET_RSS_MB = 200.0
TARGET_MAKESPAN_RATIO = 1.1
EMPTY_KEY = "console-bench-empty-key"
EMPTY_KEY_ENV = "BULKOPS_BENCH_EMPTY_KEY"


def project_name(number: int) -> str:
    return f"p{number:03d}"


def key_of(number: int) -> str:
    return f"console-org-bench-{number:03d}"


def key_env(number: int) -> str:
    return f"BULKOPS_ORG_KEY_{number:03d}"


# -- child: the emulator --------------------------------------------------------------------------


def build_export_world(projects: int, sources: int, per_source: int) -> World:
    """The org's projects, plus bench_export's single project of the same size and an empty one."""
    world = World()
    for number in range(1, projects + 1):
        project = world.add_project(Project(project_name(number), key_of(number)))
        populate_metrics(project, sources, per_source, prefix=project_name(number))
    populate_metrics(world.add_project(Project("bench", bx.KEY)), sources, per_source)
    world.add_project(Project("empty", EMPTY_KEY))
    return world


def build_edit_world(projects: int, gates: int) -> World:
    """Each project: ``gates`` gates with an "Internal" rule the job edits, and an "Everyone" one."""
    from bulkops.emulator.resources.gates import create_gate

    world = World()
    for number in range(1, projects + 1):
        project = world.add_project(Project(project_name(number), key_of(number)))
        for i in range(gates):
            rules = [
                {"name": "Internal", "passPercentage": 10,
                 "conditions": [{"type": "user_id", "operator": "any", "targetValue": ["u1"]}]},
                {"name": "Everyone", "passPercentage": 100, "conditions": [{"type": "public"}]},
            ]  # fmt: skip
            create_gate(project, {"id": f"gate_{i:04d}", "name": f"gate {i}", "rules": rules},
                        1_704_067_200_000 + i)  # fmt: skip
    return world


def mutation_log(world: World) -> dict[str, Any]:
    """Per project: the emulator's time and status of every mutation, and the gates changed."""
    out: dict[str, Any] = {}
    for name, project in world.projects.items():
        changed = sum(
            1 for gate in project.collection("gates").values()
            if gate["rules"][0]["passPercentage"] == 50 and len(gate["rules"][0]["conditions"]) == 2
        )  # fmt: skip
        out[name] = {
            "mutations": [
                (r.time, r.status) for r in world.requests(is_mutation=True, project=name)
            ],
            "reads": world.count(is_mutation=False, project=name),
            "changed": changed,
        }
    return out


def serve(args: argparse.Namespace) -> int:
    """``--serve export|edit``: the scenario's world; ``edit`` writes its log to ``--report``."""
    if args.serve == "export":
        world = build_export_world(args.projects, args.sources, args.per_source)
        config = EmulatorConfig(latency_ms=args.latency_ms)
    else:
        world = build_edit_world(args.projects, args.gates)
        config = EmulatorConfig(latency_ms=args.latency_ms, mutation_windows=tuple(args.windows))
    code = bx.serve_world(world, config, args.max_seconds)
    if args.report:
        Path(args.report).write_text(json.dumps(mutation_log(world)))
    return code


class Emulator(bx.Emulator):
    """bench_export's emulator child (start, URL, stop on stdin EOF), serving this script's worlds."""

    def __init__(self, argv: list[str], max_seconds: float) -> None:
        super().__init__(0, 0, 0.0, max_seconds)
        self.argv = [sys.executable, __file__, *argv, "--max-seconds", str(int(max_seconds))]


# -- child: the sequential client over every project ----------------------------------------------


def sequential(args: argparse.Namespace) -> int:
    """``--sequential URL``: bench_export's sequential client, project after project, one process."""
    requests = metrics = 0
    elapsed = 0.0
    for number in range(1, args.projects + 1):
        os.environ[bx.KEY_ENV] = key_of(number)
        captured = io.StringIO()
        each = argparse.Namespace(
            sequential=args.sequential, out=f"{args.out}/{project_name(number)}"
        )
        with contextlib.redirect_stdout(captured):
            bx.sequential(each)
        one = json.loads(captured.getvalue().strip().splitlines()[-1])
        requests += one["requests"]
        metrics += one["metrics"]
        elapsed += one["elapsed_s"]
    print(json.dumps({"requests": requests, "metrics": metrics, "elapsed_s": elapsed}))
    return 0


# -- the org export -------------------------------------------------------------------------------


def org_env(projects: int, **more: str) -> dict[str, str]:
    env = bx.child_env()
    env.update({key_env(n): key_of(n) for n in range(1, projects + 1)})
    env[EMPTY_KEY_ENV] = EMPTY_KEY
    env.update(more)
    return env


def cli_argv(job: Path, url: str, state: Path, *, profile: Path | None = None) -> list[str]:
    python = [sys.executable]
    if profile is not None:
        python += ["-m", "cProfile", "-o", str(profile)]
    return [
        *python, "-m", "bulkops.cli", "run", str(job), "--base-url", url, "--state", str(state),
        "--concurrency", str(CONCURRENCY), "--fresh",
    ]  # fmt: skip


def export_job(projects: int) -> str:
    entries = "".join(
        f'[[sources]]\nname = "{project_name(n)}"\napi_key_env = "{key_env(n)}"\n'
        for n in range(1, projects + 1)
    )
    return (
        'job = "export_metrics"\nname = "bench-org"\n'
        f'{entries}[output]\ndir = "out"\n[limits]\nconcurrency = {CONCURRENCY}\n'
    )


def run_org_export(
    url: str, args: argparse.Namespace, timeout_s: float, profile: Path | None = None
) -> bx.Measured:
    """ONE ``bulkops run`` over every project; checks each project's export is complete and right."""
    with tempfile.TemporaryDirectory(prefix="bulkops-bench-org-") as tmp:
        work = Path(tmp)
        job = work / "org.toml"
        job.write_text(export_job(args.projects))
        argv = cli_argv(job, url, work / "state", profile=profile)
        result = bx.measure(argv, cwd=work, env=org_env(args.projects), timeout_s=timeout_s)
        if result.exit_code != 0:
            raise bx.BenchError(
                f"bulkops (org export) exited {result.exit_code}:\n{result.extra['stderr'][-3000:]}"
            )
        index = json.loads((work / "out" / "manifest.json").read_bytes())
        if not index["complete"] or len(index["projects"]) != args.projects:
            raise bx.BenchError(f"the org index manifest is incomplete: {index}")
        want = {"metric_sources": args.sources, "metrics": args.sources * args.per_source}
        for entry in index["projects"]:
            manifest = json.loads((work / "out" / entry["dir"] / "manifest.json").read_bytes())
            if manifest["totals"] != want:
                raise bx.BenchError(f"{entry['name']}: exported {manifest['totals']}, want {want}")
        summary = json.loads((work / "state" / "run.json").read_bytes())["summary"]
        per_project = {
            name: int(s["requests"]["source"]["requests"])
            for name, s in summary["projects"].items()
        }
        result.extra = {
            "elapsed_s": float(summary["elapsed_s"]),
            "requests": sum(per_project.values()),
            "per_project": per_project,
            "retries": sum(
                int(s["requests"]["source"]["retries"]) for s in summary["projects"].values()
            ),
        }
        return result


def run_empty_export(url: str, timeout_s: float) -> bx.Measured:
    """A single-project export of a project with nothing in it: a run's fixed cost."""
    with tempfile.TemporaryDirectory(prefix="bulkops-bench-empty-") as tmp:
        work = Path(tmp)
        job = work / "empty.toml"
        job.write_text(
            'job = "export_metrics"\nname = "bench-empty"\n'
            f'[source]\napi_key_env = "{EMPTY_KEY_ENV}"\n[output]\ndir = "out"\n'
            f"[limits]\nconcurrency = {CONCURRENCY}\n"
        )
        argv = cli_argv(job, url, work / "state")
        result = bx.measure(argv, cwd=work, env=org_env(0), timeout_s=timeout_s)
        if result.exit_code != 0:
            raise bx.BenchError(f"bulkops (empty export) exited {result.exit_code}")
        summary = json.loads((work / "state" / "run.json").read_bytes())["summary"]
        result.extra = {"requests": int(summary["requests"]["source"]["requests"])}
        return result


def run_org_sequential(url: str, args: argparse.Namespace, timeout_s: float) -> bx.Measured:
    with tempfile.TemporaryDirectory(prefix="bulkops-bench-org-seq-") as tmp:
        work = Path(tmp)
        argv = [
            sys.executable, __file__, "--sequential", url, "--out", str(work / "out"),
            "--projects", str(args.projects),
        ]  # fmt: skip
        result = bx.measure(argv, cwd=work, env=org_env(args.projects), timeout_s=timeout_s)
        if result.exit_code != 0:
            raise bx.BenchError(
                f"the sequential client exited {result.exit_code}:\n{result.extra['stderr'][-3000:]}"
            )
        report = json.loads(result.extra["stdout"].strip().splitlines()[-1])
        if report["metrics"] != args.projects * args.sources * args.per_source:
            raise bx.BenchError(f"the sequential client read {report}")
        result.extra = {"requests": report["requests"], "elapsed_s": float(report["elapsed_s"])}
        return result


@dataclass
class ExportResults:
    org: list[bx.Measured] = field(default_factory=list)
    single: list[bx.Measured] = field(default_factory=list)
    total: list[bx.Measured] = field(default_factory=list)
    empty: list[bx.Measured] = field(default_factory=list)
    seq: list[bx.Measured] = field(default_factory=list)
    profile: str = ""


def busiest_ideal(args: argparse.Namespace) -> tuple[int, int, float]:
    """(requests, rounds, seconds) of one project: identity read, then its listings in order."""
    requests = 1 + bx.count_requests(args.sources, args.per_source)
    rounds = 1 + bx.critical_path_rounds(args.sources, args.per_source, CONCURRENCY)
    return requests, rounds, rounds * args.latency_ms / 1000


def run_export(args: argparse.Namespace) -> ExportResults:
    per_project = busiest_ideal(args)[0]
    total = args.projects * per_project
    timeout = 120 + 3 * total * args.latency_ms / 1000 / CONCURRENCY
    seq_timeout = 120 + 3 * total * args.latency_ms / 1000
    bx.log(
        f"== org export: {args.projects} projects x {args.sources} sources x {args.per_source} "
        f"metrics, {total:,} requests, {args.latency_ms:g} ms, concurrency {CONCURRENCY} per "
        "project; starting the emulator"
    )
    out = ExportResults()
    serve_argv = [
        "--serve", "export", "--projects", str(args.projects), "--sources", str(args.sources),
        "--per-source", str(args.per_source), "--latency-ms", str(args.latency_ms),
    ]  # fmt: skip
    all_sources = args.projects * args.sources
    with (
        Emulator(serve_argv, max_seconds=3600 + 10 * timeout) as emu,
        bx.Emulator(all_sources, args.per_source, args.latency_ms, 3600 + 10 * timeout) as big,
    ):
        run_empty_export(emu.url, timeout)  # warm-up: bytecode cached, disk caches warm
        for rep in range(1, args.repeat + 1):
            assert emu.proc is not None
            served_before = bx.process_cpu_s(emu.proc.pid)
            o = run_org_export(emu.url, args, timeout)
            o.extra["emulator_cpu_s"] = bx.process_cpu_s(emu.proc.pid) - served_before
            out.org.append(o)
            t = bx.run_bulkops(big.url, all_sources, args.per_source, CONCURRENCY, timeout)
            out.total.append(t)
            s = bx.run_bulkops(emu.url, args.sources, args.per_source, CONCURRENCY, timeout)
            out.single.append(s)
            e = run_empty_export(emu.url, timeout)
            out.empty.append(e)
            bx.log(
                f"   rep {rep}: org wall {o.wall_s:.3f}s (in-run {o.extra['elapsed_s']:.3f}s) "
                f"cpu {o.cpu_s:.2f}s (emulator {o.extra['emulator_cpu_s']:.2f}s) RSS "
                f"{o.peak_rss_mb:.1f} MiB {o.extra['requests']} requests; "
                f"one big project wall {t.wall_s:.3f}s cpu {t.cpu_s:.2f}s RSS "
                f"{t.peak_rss_mb:.1f} MiB; single wall {s.wall_s:.3f}s cpu {s.cpu_s:.2f}s; "
                f"empty wall {e.wall_s:.3f}s cpu {e.cpu_s:.2f}s"
            )
        for rep in range(1, args.sequential_runs + 1):
            q = run_org_sequential(emu.url, args, seq_timeout)
            out.seq.append(q)
            bx.log(f"   sequential {rep}: wall {q.wall_s:.3f}s cpu {q.cpu_s:.2f}s")
        if args.profile:
            with tempfile.TemporaryDirectory(prefix="bulkops-bench-prof-") as tmp:
                file = Path(tmp) / "org.prof"
                p = run_org_export(emu.url, args, timeout * 3, profile=file)
                bx.log(f"   profiled: wall {p.wall_s:.3f}s cpu {p.cpu_s:.2f}s")
                out.profile = profile_text(file, p)
    return out


def profile_text(file: Path, measured: bx.Measured) -> str:
    text = io.StringIO()
    stats = pstats.Stats(str(file), stream=text)
    stats.strip_dirs().sort_stats("tottime").print_stats(30)
    lines = text.getvalue().strip().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    head = (
        f"cProfile of one org export (wall {measured.wall_s:.3f} s, CPU {measured.cpu_s:.2f} s "
        "under the profiler), top 30 by own time:"
    )
    return "\n".join([head, "", "```", *lines[start:], "```"])


def ratio(value: float, minimum: float) -> float:
    """``value / minimum``; nan for windows that ask for no wait at all (``--windows 100000/4s``)."""
    return value / minimum if minimum else math.nan


def med(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def export_report(r: ExportResults, args: argparse.Namespace) -> str:
    per_project, rounds, ideal = busiest_ideal(args)
    org_requests = r.org[0].extra["requests"]
    busiest = max(max(m.extra["per_project"].values()) for m in r.org)
    single_requests = r.single[0].extra["requests"]  # the summaries count the identity read
    empty_requests = r.empty[0].extra["requests"]
    empty_cpu, empty_wall = med([m.cpu_s for m in r.empty]), med([m.wall_s for m in r.empty])
    total_requests = r.total[0].extra["requests"]
    t_cpu = med([m.cpu_s for m in r.total])
    total_pp = t_cpu / total_requests * 1000
    total_marginal = (t_cpu - empty_cpu) / (total_requests - empty_requests) * 1000
    wall, cpu = med([m.wall_s for m in r.org]), med([m.cpu_s for m in r.org])
    in_run = med([m.extra["elapsed_s"] for m in r.org])
    s_cpu = med([m.cpu_s for m in r.single])
    rss = max(m.peak_rss_mb for m in r.org)
    org_pp = cpu / org_requests * 1000
    single_pp = s_cpu / single_requests * 1000
    org_marginal = (cpu - empty_cpu) / (org_requests - empty_requests) * 1000
    rows = [
        (f"org export: 1 process, {args.projects} projects", r.org, org_requests),
        ("single-project export (one project of the same size)", r.single, single_requests),
        (f"single-project export of the org's total ({args.projects * args.sources} sources)",
         r.total, total_requests),
        ("empty single-project export (fixed cost of a run)", r.empty, empty_requests),
        (f"sequential client, {args.projects} projects in turn", r.seq,
         r.seq[0].extra["requests"] if r.seq else 0),
    ]  # fmt: skip
    lines = [
        "",
        f"Org export: {args.projects} projects × {args.sources} metric sources × "
        f"{args.per_source:,} metrics ({args.sources * args.per_source:,} metrics per project; "
        f"{args.projects * args.sources * args.per_source:,} in all), "
        f"{args.latency_ms:g} ms per request, concurrency {CONCURRENCY} per project, page size "
        f"{bx.PAGE}. Medians of {len(r.org)} repetition(s) (sequential: {len(r.seq)} run(s)); "
        "CPU = user+sys of that process (wait4); bulkops' requests include each project's "
        "identity read (the sequential client makes none).",
        "",
        "| process | runs | requests | wall s | CPU s | CPU ms per page | peak RSS MiB (max) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, ms, requests in rows:
        if not ms:
            continue
        c = med([m.cpu_s for m in ms])
        lines.append(
            f"| {name} | {len(ms)} | {requests:,} | {med([m.wall_s for m in ms]):.3f} "
            f"| {c:.2f} | {c / requests * 1000:.2f} | {max(m.peak_rss_mb for m in ms):.1f} |"
        )
    cpu_floor = cpu / wall if wall else math.nan
    served = med([m.extra["emulator_cpu_s"] for m in r.org])
    lines += [
        "",
        f"- Busiest project: {busiest} requests (expected {per_project}); its ideal at "
        f"concurrency {CONCURRENCY}: identity read, source list, then its metric pages in "
        f"dependency order = {rounds} rounds × {args.latency_ms:g} ms = {ideal:.3f} s.",
        f"- Org export in-run (task graphs start to the index manifest): {in_run:.3f} s; "
        f"start-up and exit {wall - in_run:.3f} s; the empty export's whole process "
        f"{empty_wall:.3f} s.",
        f"- Client CPU per page beyond a run's fixed cost (the empty export's {empty_cpu:.2f} s, "
        f"{empty_requests} requests): org {org_marginal:.2f} ms, one project of the org's total "
        f"size {total_marginal:.2f} ms (for one project of {single_requests} requests the fixed "
        "cost is all there is: its difference from the empty export is within noise).",
        f"- The org client was on a CPU {cpu_floor:.0%} of its wall time ({cpu:.2f} s of "
        f"{wall:.3f} s; 2 cores shared with the emulator): it is CPU-bound, not network-bound.",
        f"- The emulator (one process, one event loop) spent {served:.2f} s of CPU serving each org "
        f"export: a client using no CPU at all could not finish in less, "
        f"{served / (TARGET_WALL_RATIO * ideal):.1f}× the wall target. On this machine the target "
        "is out of reach for any client.",
        "",
        "Targets:",
        f"- wall ≤ {TARGET_WALL_RATIO:g} × the busiest project's ideal "
        f"({TARGET_WALL_RATIO * ideal:.3f} s): {wall:.3f} s = {wall / ideal:.1f}× "
        f"{bx.verdict(wall <= TARGET_WALL_RATIO * ideal)}; in-run {in_run / ideal:.1f}× "
        f"{bx.verdict(in_run <= TARGET_WALL_RATIO * ideal)}",
        f"- peak RSS < {TARGET_RSS_MB:g} MB ({TARGET_RSS_MB * 1e6 / 2**20:.1f} MiB): {rss:.1f} MiB "
        f"{bx.verdict(rss * 2**20 < TARGET_RSS_MB * 1e6)}",
        f"- client CPU per page no worse than the single-project export's: {org_pp:.2f} ms vs "
        f"{single_pp:.2f} ms {bx.verdict(org_pp <= single_pp)} (the single run's fixed cost "
        f"spread over {single_requests} requests); against one project of the org's total size "
        f"(the same pages in one process): {org_pp:.2f} ms vs {total_pp:.2f} ms "
        f"{bx.verdict(org_pp <= total_pp)}, beyond the fixed cost {org_marginal:.2f} ms vs "
        f"{total_marginal:.2f} ms {bx.verdict(org_marginal <= total_marginal)}",
    ]
    if r.seq:
        q = med([m.wall_s for m in r.seq])
        lines.append(f"- (reported) speed-up over the sequential client: {q / wall:.1f}×")
    if r.profile:
        lines += ["", r.profile]
    return "\n".join(lines)


# -- the org mass edit ----------------------------------------------------------------------------


def edit_job(projects: int, windows: list[str]) -> str:
    """``[[targets]]`` over ``projects`` projects; ``projects == 0``: ``[target]``, project 1."""
    entries = (
        "".join(
            f'[[targets]]\nname = "{project_name(n)}"\napi_key_env = "{key_env(n)}"\n'
            for n in range(1, projects + 1)
        )
        or f'[target]\napi_key_env = "{key_env(1)}"\n'
    )
    return (
        'job = "batch_rule_update"\nname = "bench-org-edit"\n'
        f'{entries}[select]\nentity = "gates"\nrule_name = "Internal"\n'
        '[[edits]]\nop = "add_condition"\ncondition = { type = "email", operator = '
        '"str_contains_any", targetValue = ["@example.com"] }\n'
        '[[edits]]\nop = "set_pass_percentage"\nvalue = 50\n'
        f"[limits]\nconcurrency = {CONCURRENCY}\nmutation_rate = {json.dumps(windows)}\n"
    )


@dataclass
class EditRun:
    measured: bx.Measured
    log: dict[str, Any]
    load: float = math.nan  # the machine's load average (1 min) when the run began

    def times(self, name: str | None = None) -> list[float]:
        names = [name] if name else list(self.log)
        return sorted(t for n in names for t, _ in self.log[n]["mutations"])

    def makespan(self, name: str | None = None) -> float:
        times = self.times(name)
        return times[-1] - times[0] if times else 0.0

    @property
    def rejected(self) -> int:
        return sum(1 for p in self.log.values() for _, status in p["mutations"] if status == 429)


def run_edit_once(args: argparse.Namespace, timeout_s: float, projects: int) -> EditRun:
    """One fresh world and ledger; ``projects == 0``: the single-project job on one project."""
    with tempfile.TemporaryDirectory(prefix="bulkops-bench-edit-") as tmp:
        work = Path(tmp)
        report = work / "emulator-log.json"
        serve_argv = [
            "--serve", "edit", "--projects", str(max(1, projects)), "--gates", str(args.gates),
            "--latency-ms", str(args.latency_ms), "--report", str(report),
            "--windows", *args.windows,
        ]  # fmt: skip
        with Emulator(serve_argv, max_seconds=3600 + 10 * timeout_s) as emu:
            job = work / "edit.toml"
            job.write_text(edit_job(projects, args.windows))
            env = org_env(max(1, projects), BULKOPS_HOME=str(work / "home"))
            env.pop("BULKOPS_QUOTA_URL", None)  # the default ledger: SQLite under BULKOPS_HOME
            argv = cli_argv(job, emu.url, work / "state")
            measured = bx.measure(argv, cwd=work, env=env, timeout_s=timeout_s)
        if measured.exit_code != 0:
            raise bx.BenchError(
                f"bulkops (org mass edit) exited {measured.exit_code}:\n"
                f"{measured.extra['stderr'][-3000:]}"
            )
        log = json.loads(report.read_text())
        for name, p in log.items():
            if p["changed"] != args.gates:
                raise bx.BenchError(f"{name}: {p['changed']} of {args.gates} gates changed")
        return EditRun(measured, log)


def run_edit(args: argparse.Namespace) -> tuple[list[EditRun], list[EditRun]]:
    minimum = minimum_seconds(args.gates, args.windows)
    timeout = 120 + 5 * minimum
    bx.log(
        f"== org mass edit: {args.edit_projects} projects x {args.gates} gates under "
        f"{', '.join(args.windows)} each, {args.latency_ms:g} ms; minimum {minimum:.2f}s"
    )
    runs: list[EditRun] = []
    alone: list[EditRun] = []
    for rep in range(1, args.repeat + 1):
        for what, projects, into in (("org", args.edit_projects, runs), ("alone", 0, alone)):
            load = os.getloadavg()[0]
            run = run_edit_once(args, timeout, projects)
            run.load = load
            into.append(run)
            bx.log(
                f"   rep {rep} {what}: wall {run.measured.wall_s:.2f}s makespan "
                f"{run.makespan():.2f}s ({ratio(run.makespan(), minimum):.3f}x) 429s {run.rejected} "
                f"cpu {run.measured.cpu_s:.2f}s load {load:.2f}"
            )
    return runs, alone


def edit_report(runs: list[EditRun], alone: list[EditRun], args: argparse.Namespace) -> str:
    minimum = minimum_seconds(args.gates, args.windows)
    names = list(runs[0].log)
    makespans = [r.makespan() for r in runs]
    span = med(makespans)
    rejected = sum(r.rejected for r in runs)
    cpu = med([r.measured.cpu_s for r in runs])
    requests = med([
        sum(len(p["mutations"]) + p["reads"] for p in r.log.values()) for r in runs
    ])  # fmt: skip
    lines = [
        "",
        f"Org mass edit: batch_rule_update over {args.edit_projects} [[targets]], {args.gates} "
        f"gates each (one mutation per gate), the emulator enforcing {', '.join(args.windows)} "
        f"per project and the job configured with the same windows, {args.latency_ms:g} ms per "
        f"request, concurrency {CONCURRENCY}; one `bulkops run` (plan, apply, verify); fresh "
        f"world and SQLite ledger per repetition. Medians of {len(runs)} repetition(s); times "
        "from the emulator's log (when it finished each mutation).",
        "",
        "| project | mutations | minimum s | makespan s (median) | ratio | 429s (all runs) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        ms = med([r.makespan(name) for r in runs])
        count = len(runs[0].log[name]["mutations"])
        bad = sum(1 for r in runs for _, s in r.log[name]["mutations"] if s == 429)
        lines.append(
            f"| {name} | {count} | {minimum:.2f} | {ms:.2f} | {ratio(ms, minimum):.3f}× | {bad} |"
        )
    wall = med([r.measured.wall_s for r in runs])
    alone_span = med([r.makespan() for r in alone])
    lines += [
        f"| **all, first to last mutation** | {sum(len(p['mutations']) for p in runs[0].log.values())} "
        f"| {minimum:.2f} | {span:.2f} | {ratio(span, minimum):.3f}× | {rejected} |",
        f"| one project alone (`[target]`, its own run) | {args.gates} | {minimum:.2f} "
        f"| {alone_span:.2f} | {ratio(alone_span, minimum):.3f}× "
        f"| {sum(r.rejected for r in alone)} |",
        "",
        f"- Load average (1 min) at each run's start: org "
        f"{', '.join(f'{r.load:.2f}' for r in runs)}; alone {', '.join(f'{r.load:.2f}' for r in alone)}.",
        f"- Whole process: wall {wall:.2f} s, client CPU {cpu:.2f} s ({requests:,.0f} requests, "
        f"{cpu / requests * 1000:.2f} ms each), peak RSS {max(r.measured.peak_rss_mb for r in runs):.1f}"
        f" MiB; makespans of the runs: {', '.join(f'{m:.2f}' for m in makespans)} s.",
        *where_the_time_goes(runs, alone, args),
        "",
        "Targets:",
        f"- 0 × 429 in total: {rejected} {bx.verdict(rejected == 0)}",
        f"- makespan ≤ {TARGET_MAKESPAN_RATIO:g} × the slowest project's minimum "
        f"({TARGET_MAKESPAN_RATIO * minimum:.2f} s): {span:.2f} s = {ratio(span, minimum):.3f}× "
        f"{bx.verdict(span <= TARGET_MAKESPAN_RATIO * minimum)} (worst run "
        f"{ratio(max(makespans), minimum):.3f}×)",
    ]
    return "\n".join(lines)


def where_the_time_goes(
    runs: list[EditRun], alone: list[EditRun], args: argparse.Namespace
) -> list[str]:
    """The makespan taken apart: the projects' staggered start, and per project the gaps
    between its bursts (one per window's limit) and each burst's own spread (medians)."""
    limit = int(args.windows[0].split("/")[0])

    def bursts(run: EditRun, name: str | None) -> tuple[list[float], list[float]]:
        times = run.times(name)
        starts = [times[i] for i in range(0, len(times), limit)]
        spreads = [
            times[min(i + limit, len(times)) - 1] - times[i] for i in range(0, len(times), limit)
        ]
        return [b - a for a, b in itertools.pairwise(starts)], spreads

    def describe(values: list[list[float]]) -> str:
        return ", ".join(f"{med(list(column)):.2f}" for column in zip(*values, strict=False))

    stagger = med([max(min(r.times(n)) for n in r.log) - min(r.times()) for r in runs])
    org = [bursts(r, n) for r in runs for n in r.log]
    one = [bursts(r, None) for r in alone]
    return [
        f"- Staggered start: the last project's first mutation {stagger:.2f} s after the first "
        "project's (median).",
        f"- Per project in the org run: gaps between burst starts {describe([g for g, _ in org])} s, "
        f"each burst's spread {describe([s for _, s in org])} s (medians over projects and runs); "
        f"one project alone: gaps {describe([g for g, _ in one])} s, spreads "
        f"{describe([s for _, s in one])} s.",
    ]


# -- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=None, help="default 3; 1 with --quick")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--projects", type=int, default=50, help="projects of the org export")
    parser.add_argument("--sources", type=int, default=10, help="metric sources per project")
    parser.add_argument("--per-source", type=int, default=200, help="metrics per source")
    parser.add_argument("--sequential-runs", type=int, default=1,
                        help="runs of the sequential client (about 60 s each)")  # fmt: skip
    parser.add_argument("--edit-projects", type=int, default=10)
    parser.add_argument("--gates", type=int, default=60, help="gates per project (mass edit)")
    parser.add_argument("--windows", nargs="+", default=["20/4s"],
                        help="the server's and the job's mutation windows (mass edit)")  # fmt: skip
    parser.add_argument("--profile", action="store_true",
                        help="add one cProfile'd org export and print where its time goes")  # fmt: skip
    parser.add_argument("--no-export", action="store_true", help="skip the org export")
    parser.add_argument("--no-edit", action="store_true", help="skip the org mass edit")
    # Internal: the child processes.
    parser.add_argument("--serve", choices=["export", "edit"], help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    parser.add_argument("--max-seconds", type=float, default=3600, help=argparse.SUPPRESS)
    parser.add_argument("--sequential", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args)
    if args.sequential:
        return sequential(args)
    if args.quick:
        args.projects, args.sources, args.per_source = 3, 2, 200
        args.edit_projects, args.gates, args.windows = 2, 10, ["5/1s"]
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if min(args.repeat, args.projects, args.sources, args.per_source, args.gates) < 1:
        parser.error("--repeat, --projects, --sources, --per-source and --gates must be >= 1")
    try:
        export = None if args.no_export else run_export(args)
        edit = None if args.no_edit else run_edit(args)
    except bx.BenchError as exc:
        bx.log(f"bench_org: FAILED: {exc}")
        return 1
    print(f"Machine: {bx.machine()}\nCommand: {' '.join(['python', *sys.argv])}")
    if export is not None:
        print(export_report(export, args))
    if edit is not None:
        print(edit_report(*edit, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
