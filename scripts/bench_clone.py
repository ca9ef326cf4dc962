#!/usr/bin/env python3
"""Clone benchmark: a 50-experiment ``clone_experiments`` run against the emulator's real quota.

The clone is bound by the mutation quota, so the figures that matter are: mutations sent vs the
mutations the plan needed (no wasted call), 429s (zero when our windows equal the server's), and
wall time vs the least time the quota windows allow for that many mutations. The emulator runs in
this process's own thread with the server's default windows (100/10s and 900/15min); bulkops runs as
a real CLI subprocess with the same windows in its job file. Repetitions use fresh emulator worlds
(and fresh quota), and the table reports medians.

    python scripts/bench_clone.py                  # 50 experiments, 3 repetitions
    python scripts/bench_clone.py --quick          # 10 experiments, 1 repetition
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bulkops.emulator import EmulatorConfig, EmulatorThread, Project, World, populate_experiments

WINDOWS = ("100/10s", "900/15min")
SOURCE_KEY, TARGET_KEY = "console-bench-source", "console-bench-target"


def minimum_seconds(mutations: int, windows: tuple[str, ...] = WINDOWS) -> float:
    """The least time N mutations take when every window must hold (same rule as the governor)."""
    from bulkops.jobs.spec import RateWindow

    return max(
        (math.ceil(mutations / w.limit) - 1) * w.seconds
        for w in (RateWindow.parse(text) for text in windows)
    )


def make_world(experiments: int) -> World:
    source, target = Project("source", SOURCE_KEY), Project("target", TARGET_KEY)
    populate_experiments(source, experiments, seed="bench-clone")
    populate_experiments(target, 0, seed="bench-clone")  # only the unit id type and the tag
    return World([source, target])


def one_run(experiments: int, folder: Path) -> dict[str, float]:
    world = make_world(experiments)
    job = folder / "clone.toml"
    job.write_text(
        'job = "clone_experiments"\n[source]\napi_key_env = "BENCH_SOURCE"\n'
        '[target]\napi_key_env = "BENCH_TARGET"\n[limits]\nconcurrency = 16\n'
        f"mutation_rate = {json.dumps(list(WINDOWS))}\n"
    )
    env = {**os.environ, "BENCH_SOURCE": SOURCE_KEY, "BENCH_TARGET": TARGET_KEY}
    with EmulatorThread(world, EmulatorConfig(mutation_windows=WINDOWS)) as emulator:
        started = time.monotonic()
        process = subprocess.run(
            [
                sys.executable,
                "-m",
                "bulkops.cli",
                "run",
                str(job),
                "--base-url",
                emulator.base_url,
                "--state",
                str(folder / "state"),
                "--fresh",
            ],
            env=env,
            capture_output=True,
            timeout=1800,
        )
        wall = time.monotonic() - started
    if process.returncode != 0:
        sys.stderr.write(process.stderr.decode()[-3000:])
        raise SystemExit(f"the clone failed with exit {process.returncode}")
    plan = json.loads((folder / "state" / "plan.json").read_text())
    sent = world.requests(project="target", is_mutation=True)
    return {
        "planned": len(plan["operations"]),
        "sent": len(sent),
        "rejected_429": sum(1 for r in sent if r.status == 429),
        "wall": wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="10 experiments, 1 repetition")
    args = parser.parse_args()
    if args.quick:
        args.experiments, args.repeat = 10, 1
    runs = []
    for index in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="bench-clone-") as tmp:
            runs.append(one_run(args.experiments, Path(tmp)))
        print(f"run {index + 1}: {runs[-1]}", file=sys.stderr)
    planned = runs[0]["planned"]
    wall = statistics.median(r["wall"] for r in runs)
    floor = minimum_seconds(planned)
    print(
        f"| experiments | mutations planned | mutations sent (median) | 429s (max) "
        f"| wall s (median of {args.repeat}) | quota minimum s | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {args.experiments} | {planned} | {statistics.median(r['sent'] for r in runs):.0f} "
        f"| {max(r['rejected_429'] for r in runs)} | {wall:.1f} | {floor:.1f} "
        f"| {wall / floor if floor else float('nan'):.2f} |"
    )
    wasted = any(r["sent"] != r["planned"] for r in runs)
    print(
        f"\nno wasted mutation: {'met' if not wasted else 'MISSED'}; "
        f"zero 429s: {'met' if all(r['rejected_429'] == 0 for r in runs) else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
