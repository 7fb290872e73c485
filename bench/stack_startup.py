"""How fast a stack comes up on the local backend.

Prints, from one run on this machine:
- median time to a ready database copied from the session template, and, as the baseline
  measured in the same run, from a fresh ``initdb``; with their ratio;
- median time to a healthy local stack: database from the template plus N ledger instances
  (release v1, its migrations applied).

Usage: .venv/bin/python bench/stack_startup.py [--rounds 7] [--instances 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness._loader import load_target  # noqa: E402
from harness.backends.local import LocalBackend  # noqa: E402
from harness.backends.postgres import PgCluster, PgTemplate  # noqa: E402


def _db_from_template(backend: LocalBackend, i: int) -> float:
    cluster = PgCluster(
        name=f"bench-t{i}.db",
        binaries=backend.binaries,
        run=backend.run,
        directory=backend.run.subdir("bench", f"t{i}"),
        database="app",
    )
    started = time.perf_counter()
    try:
        cluster.create_from(backend.template("app"))
        cluster.start()
        return time.perf_counter() - started
    finally:
        cluster.close()


def _db_from_initdb(backend: LocalBackend, i: int) -> float:
    started = time.perf_counter()
    template = PgTemplate(backend.binaries, backend.run, f"fresh{i}")
    cluster = PgCluster(
        name=f"bench-f{i}.db",
        binaries=backend.binaries,
        run=backend.run,
        directory=backend.run.subdir("bench", f"f{i}"),
        database=f"fresh{i}",
    )
    try:
        # A fresh initdb, then the same start; cp of a just-made directory is the cheap part.
        cluster.create_from(template)
        cluster.start()
        return time.perf_counter() - started
    finally:
        cluster.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--instances", type=int, default=2)
    args = parser.parse_args()
    target = load_target(str(ROOT / "examples/ledger/target.py"))
    v1 = target.release("v1")
    with LocalBackend() as backend:
        backend.template("app")  # the session's one-off initdb, not counted
        _db_from_template(backend, -1)  # warm the page cache
        template_times, initdb_times, stack_times = [], [], []
        for i in range(args.rounds):
            template_times.append(_db_from_template(backend, i))
            initdb_times.append(_db_from_initdb(backend, i))
            started = time.perf_counter()
            stack = backend.start_stack(target, v1, instances=args.instances)
            stack_times.append(time.perf_counter() - started)
            stack.close()
            print(
                f"round {i + 1}/{args.rounds}: template {template_times[-1]:.3f}s, "
                f"initdb {initdb_times[-1]:.3f}s, stack {stack_times[-1]:.3f}s",
                flush=True,
            )
    t = statistics.median(template_times)
    f = statistics.median(initdb_times)
    s = statistics.median(stack_times)
    print()
    print(f"database ready from template : median {t * 1000:7.1f} ms")
    print(f"database ready from initdb   : median {f * 1000:7.1f} ms   (baseline, same run)")
    print(f"template speed-up            : {f / t:7.1f}x   (target >= 5x)")
    print(
        f"healthy local stack          : median {s * 1000:7.1f} ms   "
        f"(database + migrations + {args.instances} ledger v1 instances; target < 1000 ms)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
