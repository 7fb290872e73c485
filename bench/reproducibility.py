"""How often the reference suite agrees with itself, and how often a replay reproduces a run.

    .venv/bin/python bench/reproducibility.py [PATHS...] [--runs 5] [--seed 7] [--workers 2]
                                              [--replays 10] [--other-seeds]

1. Runs ``deploy-chaos run`` ``--runs`` times with one seed (local backend, ``-n
   --workers``) and prints the share of cells whose judgement (the cell and the verdicts it
   found invalid) was identical in every run, and each cell that was not, with its variants.
   With ``--other-seeds`` it also runs the suite as many times with a different seed each
   time, the baseline: how much agreement the seed itself buys.
2. Takes up to ``--replays`` recorded runs of the first session whose judgement failed, or,
   when none did, that found a violation (a known hazard), and runs each one's own replay
   command (the one its report prints: same seed, same repetition, ``--replay-of``); prints
   how many reached the recorded verdicts, and the main job's exit code in each session.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "harness.cli"]

Signature = tuple[str, tuple[str, ...]]


def _session(paths: list[str], report: Path, seed: int, workers: int) -> tuple[float, int]:
    argv = [*CLI, "run", *paths, "--backend", "local", "--report", str(report)]
    argv += ["--seed", str(seed), "-n", str(workers)]
    started = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if done.returncode not in (0, 1):
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"deploy-chaos run exited {done.returncode}")
    return wall, done.returncode


def _signatures(results: Path) -> dict[str, Signature]:
    runs = json.loads(results.read_text())["runs"]
    return {
        r["rep_key"]: (r["judgement"]["cell"], tuple(sorted(r["judgement"]["violated"])))
        for r in runs
    }


def _agreement(label: str, sessions: list[dict[str, Signature]]) -> float:
    keys = sorted(set().union(*sessions))
    varying = {}
    for key in keys:
        seen = collections.Counter(s.get(key, ("missing", ())) for s in sessions)
        if len(seen) > 1:
            varying[key] = seen
    share = 1 - len(varying) / len(keys) if keys else 0.0
    print(
        f"{label}: {len(keys) - len(varying)} of {len(keys)} cells identical in all "
        f"{len(sessions)} sessions ({share:.1%})"
    )
    for key, seen in sorted(varying.items()):
        variants = "; ".join(
            f"{n}x {cell}{' ' + ','.join(v) if v else ''}" for (cell, v), n in seen.most_common()
        )
        print(f"  varies: {key}: {variants}")
    return share


def _replays(results: Path, count: int, seed: int, work: Path) -> None:
    runs: list[dict[str, Any]] = json.loads(results.read_text())["runs"]
    failed = [r for r in runs if r["judgement"]["cell"] in ("unexpected failure", "harness error")]
    chosen = failed or [r for r in runs if r["judgement"]["violated"]]
    kind = "failed" if failed else "with a violation (no run failed)"
    random.Random(seed).shuffle(chosen)
    chosen = chosen[:count]
    reproduced = 0
    for number, run in enumerate(chosen):
        argv = shlex.split(run["replay"])
        # The replay writes its report beside the recorded one: keep each apart.
        argv[argv.index("--report") + 1] = str(work / f"replay-{number}")
        if argv[0] != sys.executable and not Path(argv[0]).is_absolute():
            argv[0] = str(ROOT / argv[0])
        subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
        replayed = json.loads((work / f"replay-{number}" / "results.json").read_text())["runs"]
        check = replayed[0].get("replay_check") or {}
        same = bool(check.get("same"))
        reproduced += same
        print(
            f"  replay of {run['rep_key']}: {'same verdicts' if same else 'DIFFERENT'}"
            + ("" if same else f" ({'; '.join(check.get('differences', []))})")
            + ("" if check.get("schedules_same", True) else "; phase schedules differ")
        )
    print(
        f"replays of recorded runs {kind}: {reproduced} of {len(chosen)} reached the recorded "
        "verdicts (target: >= 9 of 10)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=["scenarios/"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--replays", type=int, default=10)
    parser.add_argument("--other-seeds", action="store_true")
    args = parser.parse_args()
    # Kept (not a temporary directory): every session's evidence stays readable.
    work = Path(tempfile.mkdtemp(prefix="bench-reproducibility-"))
    print(f"reports under {work}")
    same_seed = []
    codes = []
    for number in range(args.runs):
        report = work / f"seed-{number}"
        wall, code = _session(args.paths, report, args.seed, args.workers)
        codes.append(code)
        print(f"session {number + 1} (seed {args.seed}): {wall:.0f} s, exit {code}")
        same_seed.append(_signatures(report / "results.json"))
    share = _agreement(f"seed {args.seed}, {args.runs} sessions", same_seed)
    print(f"main job exit codes: {codes} ({codes.count(0)} of {len(codes)} green)")
    if args.other_seeds:
        others = []
        for number in range(args.runs):
            report = work / f"other-{number}"
            _session(args.paths, report, args.seed + 1 + number, args.workers)
            others.append(_signatures(report / "results.json"))
        baseline = _agreement("baseline: a different seed each session", others)
        print(f"identical cells: {share:.1%} with one seed against {baseline:.1%} without")
    print(f"target: >= 95% of the cells identical across {args.runs} runs with one seed")
    if args.replays:
        _replays(work / "seed-0" / "results.json", args.replays, args.seed, work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
