"""The reference suite's wall time, serial and with ``-n 2``, and the per-run overhead.

    .venv/bin/python bench/matrix.py [PATHS...] [--workers 2] [--fault GLOB] [--strategy S]

Runs ``deploy-chaos run`` twice on the same scenarios (local backend, same seed): once
serially, once with pytest-xdist. For each it prints the wall time and, from results.json,
per run: wall time inside the engine (``duration_s``), time spent inside deliberate fault
durations (``fault_seconds``), their difference (the overhead: stack start, the deployment
steps and recovery themselves, invariants), and what the plugin adds around the engine (item
wall time minus ``duration_s``: judging, reporting, teardown).

The overhead is then split, from each run's timeline, into the time inside the system under
test's own deployment commands (plan and recovery steps: its migrations and instance
rollouts) and the harness's share: the item's wall time outside both the fault durations and
those steps (stack start, workload start and stop, end state, invariants, judging, reports,
teardown). The run's phases (warm-up, the bakes after the steps, the soak after recovery)
are part of that share and printed on their own, with their share of the engine time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.report.terminal import entries_from_results, render_scorecard  # noqa: E402

CLI = [sys.executable, "-m", "harness.cli"]


def _run(paths: list[str], report: Path, workers: int, extra: list[str]) -> tuple[float, int]:
    argv = [*CLI, "run", *paths, "--backend", "local", "--report", str(report), "--seed", "7"]
    if workers > 1:
        argv += ["-n", str(workers)]
    argv += extra
    started = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if done.returncode not in (0, 1):
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"deploy-chaos run exited {done.returncode}")
    return wall, done.returncode


def _stats(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return (
        f"mean {statistics.mean(values):5.2f}s  median {statistics.median(values):5.2f}s  "
        f"p90 {p90:5.2f}s  max {max(values):5.2f}s"
    )


_STEP_START = {"step_start", "recovery_step_start"}
_STEP_END = {"step_end", "step_failed", "recovery_step_end", "recovery_step_failed"}


Span = tuple[float, float]


def _intervals(outcome: dict[str, Any]) -> tuple[list[Span], list[Span]]:
    """(deployment step intervals, fault intervals) of one run's timeline."""
    events = outcome["events"]
    end = outcome["duration_s"]
    steps: list[Span] = []
    faults: list[Span] = []
    open_steps: dict[str, float] = {}
    open_faults: list[float] = []
    for event in events:
        kind, t = event["kind"], event["t"]
        if kind in _STEP_START:
            open_steps[event["subject"]] = t
        elif kind in _STEP_END and event["subject"] in open_steps:
            steps.append((open_steps.pop(event["subject"]), t))
        elif kind == "fault_inject":
            open_faults.append(t)
        elif kind in ("fault_heal", "fault_heal_failed") and open_faults:
            faults.append((open_faults.pop(0), t))
    faults += [(t, end) for t in open_faults]
    return steps, faults


def _covered(intervals: list[Span]) -> float:
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def _report(label: str, wall: float, code: int, results: Path) -> dict[str, str]:
    runs = json.loads(results.read_text())["runs"]
    outcomes = [r["outcome"] for r in runs if r.get("outcome")]
    engine = [o["duration_s"] for o in outcomes]
    faults = [o["fault_seconds"] for o in outcomes]
    overhead = [o["duration_s"] - o["fault_seconds"] for o in outcomes]
    plugin = [r["wall_s"] - r["outcome"]["duration_s"] for r in runs if r.get("outcome")]
    cells: dict[str, int] = {}
    for run in runs:
        cell = run["judgement"]["cell"]
        cells[cell] = cells.get(cell, 0) + 1
    print(f"{label}: {len(runs)} runs in {wall:6.1f}s wall (exit {code}); cells {cells}")
    print(f"  engine time per run          {_stats(engine)}")
    print(f"  inside fault durations       {_stats(faults)}")
    print(f"  overhead (engine - faults)   {_stats(overhead)}")
    print(f"  plugin around the engine     {_stats(plugin)}")
    inside_steps: list[float] = []
    harness: list[float] = []
    for run in runs:
        if not run.get("outcome"):
            continue
        steps, fault_spans = _intervals(run["outcome"])
        inside_steps.append(_covered(steps))
        harness.append(run["wall_s"] - _covered(steps + fault_spans))
    print(f"  inside the deployment steps  {_stats(inside_steps)}  (the app's own commands)")
    print(f"  harness share                {_stats(harness)}")
    total_engine = sum(engine) or 1.0
    for label, prefix in (("warm-up", "warmup"), ("bakes", "bake:"), ("soak", "soak")):
        spent = [
            sum(p["seconds"] for p in o.get("phases", ()) if p["name"].startswith(prefix))
            for o in outcomes
        ]
        print(
            f"  phase {label:<22} {_stats(spent)}  ({sum(spent) / total_engine:5.1%} of the "
            "engine time)"
        )
    short = sum(1 for o in outcomes for p in o.get("phases", ()) if not p.get("complete"))
    print(f"  phases that ended short      {short}")
    return {r["key"]: r["judgement"]["cell"] for r in runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=["scenarios/"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fault", default=None)
    parser.add_argument("--strategy", action="append", default=[])
    args = parser.parse_args()
    extra = ["--fault", args.fault] if args.fault else []
    for strategy in args.strategy:
        extra += ["--strategy", strategy]
    # Kept (not a temporary directory): the evidence of any unexpected run stays readable.
    tmp = tempfile.mkdtemp(prefix="bench-matrix-")
    print(f"reports under {tmp}/serial and {tmp}/parallel")
    serial_wall, serial_code = _run(args.paths, Path(tmp) / "serial", 1, extra)
    serial = _report("serial", serial_wall, serial_code, Path(tmp) / "serial/results.json")
    par_wall, par_code = _run(args.paths, Path(tmp) / "parallel", args.workers, extra)
    parallel = _report(
        f"-n {args.workers}", par_wall, par_code, Path(tmp) / "parallel/results.json"
    )
    document = json.loads((Path(tmp) / "parallel/results.json").read_text())
    print(f"scorecard of the -n {args.workers} run:")
    for line in render_scorecard(entries_from_results(document)):
        print("  " + line)
    same = sum(1 for k, v in serial.items() if parallel.get(k) == v)
    print(
        f"speed-up {serial_wall / par_wall:4.2f}x; target: under 180 s with -n 2 "
        f"({'met' if par_wall < 180 else 'NOT met'})"
    )
    print(f"scorecard cells equal in both runs: {same}/{len(serial)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
