"""Two versions of Sportello on the system benchmark, run in turns: is a change a gain?

This machine's CPU per ticket moves by up to a quarter from one minute to the next (see
docs/performance.md, sessions 19 and 20), several times what one cut can move. Two runs
made at different times compare the hours, not the code. This script checks out
``--base`` in a temporary git worktree and runs ``bench/system_bench.py`` for the base
and for this working tree in turns (base, now; then now, base; ...) so that both see the
same minutes, and reports every run and the medians of each.

The base runs its own benchmark and services: its folders go first on ``PYTHONPATH``
for the benchmark and every process it starts. Extra arguments go to system_bench:

    .venv/bin/python bench/compare.py --base 71038f8 [--pairs 3] [-- --no-gateway]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import ROOT, report, write_report

FIGURES = {
    "python_loop_s": ("python_loop_s",),
    "burst_assigned_per_s": ("sustained", "assigned_per_s"),
    "burst_cpu_ms_per_ticket": ("sustained", "cpu_ms_per_ticket", "total"),
    "p99_ms_at_rate": ("latency_at_rate", "p99_ms"),
    "cpu_ms_per_ticket_at_rate": ("latency_at_rate", "cpu_ms_per_ticket", "total"),
    "mongo_commands_per_ticket_at_rate": ("latency_at_rate", "mongo_commands_per_ticket",
                                          "total"),
    "wakeups_per_ticket_at_rate": ("latency_at_rate", "wakeups_per_ticket", "total"),
    "broker_wakeups_per_ticket_at_rate": ("latency_at_rate", "wakeups_per_ticket", "rabbitmq"),
    "idle_cpu_ms_per_s": ("idle", "cpu_ms_per_s", "total"),
    "lost": ("checks", "lost"),
}
"""What each run is summed up by: a name, and where system_bench's report holds it."""


def figure(found: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(found, dict) or key not in found:
            return None
        found = found[key]
    return found


def code_path(tree: Path) -> str:
    """The tree's packages ahead of the installed (editable) ones of this checkout."""
    folders = [tree / "tests"]
    for group in ("libs", "services", "tools"):
        folders += sorted(p for p in (tree / group).iterdir() if p.is_dir())
    return os.pathsep.join(str(f) for f in folders)


def run_once(tree: Path, bench_args: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": code_path(tree)}
    where = subprocess.run([sys.executable, "-c", "import sportello_intake; "
                            "print(sportello_intake.__file__)"], env=env, check=True,
                           capture_output=True, text=True).stdout.strip()
    if not Path(where).is_relative_to(tree):
        raise SystemExit(f"{tree}'s services would not run: intake comes from {where}")
    done = subprocess.run([sys.executable, str(tree / "bench" / "system_bench.py"), *bench_args],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"system_bench failed in {tree}:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout[done.stdout.index("{"):])
    return {name: figure(result, path) for name, path in FIGURES.items()}


def medians(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name in FIGURES:
        values = [r[name] for r in runs if isinstance(r[name], (int, float))]
        out[name] = round(statistics.median(values), 2) if values else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="the git revision to compare against")
    parser.add_argument("--pairs", type=int, default=3, help="runs of each version")
    parser.add_argument("bench_args", nargs="*", help="passed to system_bench.py (after --)")
    args = parser.parse_args()
    base_rev = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
    head_rev = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                              check=True, capture_output=True, text=True).stdout.strip()
    runs: dict[str, list[dict[str, Any]]] = {"base": [], "now": []}
    with tempfile.TemporaryDirectory(prefix="sportello-base-") as folder:
        base_tree = Path(folder) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(base_tree),
                        base_rev], cwd=ROOT, check=True)
        try:
            for pair in range(args.pairs):
                order = [("base", base_tree), ("now", ROOT)]
                for name, tree in order if pair % 2 == 0 else reversed(order):
                    figures = run_once(tree, args.bench_args)
                    runs[name].append(figures)
                    print(f"{name}: {figures}", file=sys.stderr, flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT,
                           check=False)
    write_report("compare", report(
        "compare.py", base=base_rev, now=head_rev, system_bench_args=args.bench_args,
        medians={name: medians(found) for name, found in runs.items()}, runs=runs))


if __name__ == "__main__":
    main()
