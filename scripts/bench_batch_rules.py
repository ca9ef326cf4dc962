#!/usr/bin/env python3
"""batch_rule_update benchmark: how well ``apply`` uses the mutation quota.

Two scenarios, each on a fresh emulator world of N gates whose "Internal" rule the job changes
(so N mutations), with the emulator enforcing ``--server-windows``:

* **known quota**: the job's ``mutation_rate`` equals the server's windows. Targets: zero 429s, and
  the wall time of ``bulkops apply`` within 1.1x of the minimum the windows allow for N mutations
  (from an idle start, every window at once: each send as early as all windows allow).
* **unknown quota**: the job's windows are set higher than the server's (``--higher-windows``), so
  the governor must learn the real limit from 429s. Targets: under 5% of mutation attempts rejected,
  and the job still completes (exit 0, every gate changed).
* **wrong guesses** (``--guess-gates`` gates, ``--repeat`` runs each): the job keeps the default
  windows (100/10s + 900/15min) while the server's differ in count, duration and number: a short
  burst window only (20/2s), two short windows (30/5s + 100/30s), and a long window tighter than
  configured (100/10s + 150/1min; one minute stands in for 15 so the run stays short). Targets,
  in every run: at most 3% of attempts rejected, and apply within 1.5x the minimum the real
  windows allow. No ``Retry-After`` unless ``--retry-after`` (Statsig documents none).

The emulator runs in-process (aiohttp on 127.0.0.1), the job through the same functions the CLI
calls (``plan`` is not timed; ``apply`` is, including its read-before-write and final verify).

    python scripts/bench_batch_rules.py            # all scenarios, 3 runs of each guess (~9 min)
    python scripts/bench_batch_rules.py --quick    # 120 gates, 40/4s, one run of each (~3 min)
    python scripts/bench_batch_rules.py --json     # machine-readable result on stdout

Exit status 0 when both jobs completed correctly (a missed target prints MISSED), 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from bulkops.api.governor import least_seconds
from bulkops.commands import planned
from bulkops.commands.session import RunOptions
from bulkops.emulator import EmulatorConfig, Project, World, running_emulator
from bulkops.jobs import load
from bulkops.jobs.spec import RateWindow

KEY = "console-bench-rules-key"
KEY_ENV = "BULKOPS_BENCH_RULES_KEY"
TARGET_RATIO = 1.1
TARGET_REJECTED = 0.05
GUESS_RATIO = 1.5
GUESS_REJECTED = 0.03
#: name -> the server's real windows; the job states none, so it keeps the defaults
#: (``bulkops.jobs.spec.DEFAULT_MUTATION_RATE``, 100/10s + 900/15min).
WRONG_GUESSES = {
    "burst_window_only": ["20/2s"],
    "two_short_windows": ["30/5s", "100/30s"],
    "long_window_tighter": ["100/10s", "150/1min"],
}

JOB = """\
job = "batch_rule_update"
name = "bench-rules"
[target]
api_key_env = "{key_env}"
[select]
entity = "gates"
rule_name = "Internal"
[[edits]]
op = "add_condition"
condition = {{ type = "email", operator = "str_contains_any", targetValue = ["@example.com"] }}
[[edits]]
op = "set_pass_percentage"
value = 50
[limits]
concurrency = {concurrency}
{windows}"""


def build_world(gates: int) -> World:
    from bulkops.emulator.resources.gates import create_gate

    project = Project("target", KEY)
    for i in range(gates):
        rules = [
            {"name": "Internal", "passPercentage": 10,
             "conditions": [{"type": "user_id", "operator": "any", "targetValue": ["u1"]}]},
            {"name": "Everyone", "passPercentage": 100, "conditions": [{"type": "public"}]},
        ]  # fmt: skip
        create_gate(project, {"id": f"bench_gate_{i:04d}", "name": f"bench gate {i}",
                              "rules": rules}, 1_704_067_200_000 + i)  # fmt: skip
    return World([project])


def minimum_seconds(count: int, windows: list[str]) -> float:
    """The least time ``count`` mutations take under all ``windows`` at once, from idle."""
    return least_seconds(count, [(w.limit, w.seconds) for w in map(RateWindow.parse, windows)])


def naive_minimum(count: int, windows: list[str]) -> float:
    """The slowest window alone (what earlier reports compared against): a lower bound only."""
    parsed = [RateWindow.parse(text) for text in windows]
    return max((max(0, math.ceil(count / w.limit) - 1) * w.seconds for w in parsed), default=0.0)


async def scenario(
    name: str,
    gates: int,
    server: list[str],
    job_windows: list[str] | None,
    concurrency: int,
    root: Path,
    retry_after: bool = False,
) -> dict[str, Any]:
    os.environ[KEY_ENV] = KEY
    world = build_world(gates)
    folder = root / name
    folder.mkdir(parents=True)
    job_path = folder / "job.toml"
    # None: the job states no windows and keeps the defaults (a guess, never trusted).
    windows = "" if job_windows is None else f"mutation_rate = {json.dumps(job_windows)}\n"
    job_path.write_text(JOB.format(key_env=KEY_ENV, concurrency=concurrency, windows=windows))
    state = folder / "state"
    captured = io.StringIO()
    config = EmulatorConfig(mutation_windows=tuple(server), retry_after=retry_after)
    async with running_emulator(world, config) as url:
        options = {"state_dir": state, "base_url": url, "progress": False}
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            job = load(str(job_path))
            plan_code = await planned.plan_command(job, RunOptions(command="plan", **options))
            started = time.monotonic()
            apply_code = await planned.apply_command(RunOptions(command="apply", **options))
            wall = time.monotonic() - started
    project = world.project("target")
    changed = sum(
        1 for gate in project.collection("gates").values()
        if gate["rules"][0]["passPercentage"] == 50 and len(gate["rules"][0]["conditions"]) == 2
    )  # fmt: skip
    attempts = world.count(is_mutation=True, project="target")
    rejected = world.count(is_mutation=True, project="target", status=429)
    minimum = minimum_seconds(gates, server)
    return {
        "scenario": name,
        "gates": gates,
        "server_windows": server,
        "job_windows": job_windows,
        "exit_codes": {"plan": plan_code, "apply": apply_code},
        "changed": changed,
        "mutation_attempts": attempts,
        "rejected_429": rejected,
        "rejected_fraction": round(rejected / attempts, 4) if attempts else 0.0,
        "wall_s": round(wall, 3),
        "minimum_s": minimum,
        "slowest_window_alone_s": naive_minimum(gates, server),
        "ratio_to_minimum": round(wall / minimum, 3) if minimum else None,
        "ok": plan_code == 0 and apply_code == 0 and changed == gates,
        "output_tail": captured.getvalue().splitlines()[-8:],
    }


def scaled(windows: list[str], factor: float) -> list[str]:
    out = []
    for text in windows:
        window = RateWindow.parse(text)
        out.append(f"{math.ceil(window.limit * factor)}/{window.seconds:g}s")
    return out


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    higher = args.higher_windows or scaled(args.server_windows, 2.5)
    with tempfile.TemporaryDirectory(prefix="bench-rules-") as tmp:
        root = Path(tmp)
        known = await scenario("known_quota", args.gates, args.server_windows,
                               args.server_windows, args.concurrency, root)  # fmt: skip
        unknown = await scenario("unknown_quota", args.gates, args.server_windows, higher,
                                 args.concurrency, root)  # fmt: skip
        results = [known, unknown]
        for run in range(args.repeat):
            for name, server in WRONG_GUESSES.items():
                result = await scenario(name, args.guess_gates, server, None,
                                        args.concurrency, root / f"run{run}",
                                        retry_after=args.retry_after)  # fmt: skip
                result["run"] = run
                results.append(result)
    return results


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def guess_report(results: list[dict[str, Any]]) -> list[str]:
    lines = []
    for name in WRONG_GUESSES:
        runs = [r for r in results if r["scenario"] == name]
        if not runs:
            continue
        walls = [r["wall_s"] for r in runs]
        ratios = [r["ratio_to_minimum"] or 0.0 for r in runs]
        rejected = [r["rejected_fraction"] for r in runs]
        lines.append(
            f"{name}: {runs[0]['gates']} gates, server {runs[0]['server_windows']}, job "
            f"{runs[0]['job_windows']}, {len(runs)} runs: wall median {median(walls):.2f}s "
            f"(max {max(walls):.2f}s), minimum {runs[0]['minimum_s']:.2f}s (slowest window alone "
            f"{runs[0]['slowest_window_alone_s']:.2f}s), ratio median "
            f"{median(ratios):.2f} (max {max(ratios):.2f}), rejected median "
            f"{100 * median(rejected):.2f}% (max {100 * max(rejected):.2f}%), attempts "
            f"{[r['mutation_attempts'] for r in runs]}"
        )
        ok = all(r["ok"] for r in runs)
        lines.append(f"  {'met   ' if ok else 'MISSED'} {name}: every run completed")
        met = max(rejected) <= GUESS_REJECTED
        lines.append(f"  {'met   ' if met else 'MISSED'} {name}: at most "
                     f"{GUESS_REJECTED:.0%} rejected in every run")  # fmt: skip
        met = max(ratios) <= GUESS_RATIO
        lines.append(f"  {'met   ' if met else 'MISSED'} {name}: within {GUESS_RATIO}x of "
                     "the minimum in every run")  # fmt: skip
    return lines


def report(results: list[dict[str, Any]]) -> list[str]:
    known, unknown = results[:2]
    lines = []
    for r in results[:2]:
        lines.append(
            f"{r['scenario']}: {r['gates']} gates, server {r['server_windows']}, job "
            f"{r['job_windows']}: exit {r['exit_codes']}, changed {r['changed']}, "
            f"{r['mutation_attempts']} attempts, {r['rejected_429']} rejected "
            f"({100 * r['rejected_fraction']:.2f}%), wall {r['wall_s']:.2f}s, minimum "
            f"{r['minimum_s']:.2f}s, ratio {r['ratio_to_minimum']}"
        )
    ratio = known["ratio_to_minimum"]
    checks = [
        ("known quota: zero 429s", known["rejected_429"] == 0),
        (f"known quota: wall within {TARGET_RATIO}x of the minimum",
         ratio is not None and ratio <= TARGET_RATIO),
        (f"unknown quota: under {TARGET_REJECTED:.0%} of attempts rejected",
         unknown["rejected_fraction"] < TARGET_REJECTED),
        ("unknown quota: the job completed", unknown["ok"]),
    ]  # fmt: skip
    lines.extend(f"  {'met   ' if ok else 'MISSED'} {what}" for what, ok in checks)
    return lines + guess_report(results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gates", type=int, default=300)
    parser.add_argument("--server-windows", nargs="+", default=["100/10s", "900/15min"])
    parser.add_argument(
        "--higher-windows",
        nargs="+",
        default=None,
        help="the job's windows when the quota is unknown (default: 2.5x the server's)",
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--guess-gates", type=int, default=200,
                        help="gates of each wrong-guess scenario")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3, help="runs of each wrong-guess scenario")
    parser.add_argument("--retry-after", action="store_true",
                        help="the emulator sends Retry-After in the wrong-guess scenarios")  # fmt: skip
    parser.add_argument("--quick", action="store_true",
                        help="120 gates under 40/4s, one run of each wrong guess")  # fmt: skip
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.gates, args.server_windows, args.repeat = 120, ["40/4s"], 1
    from bulkops import logs

    logs.configure()
    results = anyio.run(main_async, args)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print("\n".join(report(results)))
    failed = [r for r in results if not r["ok"]]
    for r in failed:
        print(f"{r['scenario']} FAILED:\n  " + "\n  ".join(r["output_tail"]), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
