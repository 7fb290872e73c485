"""How fast a stack comes up on the local backend.

Prints, from one run on this machine:
- median time to a ready database copied from the session template, and, as the baseline
  measured in the same run, from a fresh ``initdb``; with their ratio;
- median time to a healthy local stack: database from the session's prepared template
  (release v1's migrations and seed data applied once per session; a stack copies it), the
  proxy route and N ledger instances;
- with a Docker engine and the images (``docker/build-images.sh``): median time to a healthy
  docker stack (network, database restored from the session's prepared dump, proxy, N ledger
  instances) against, in the same run, a stack that runs the migrate and seed containers
  itself; median time to a ready database container, and, as the peer baseline measured in
  the same run, a plain testcontainers ``PostgresContainer`` start with the same image.

Usage: .venv/bin/python bench/stack_startup.py [--rounds 7] [--instances 2]
                                               [--backend both|local|docker]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness._loader import load_target  # noqa: E402
from harness.backends.docker import DockerBackend, DockerStack  # noqa: E402
from harness.backends.local import LocalBackend  # noqa: E402
from harness.backends.postgres import PgCluster, PgTemplate  # noqa: E402
from harness.spec import Target  # noqa: E402


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
    template = PgTemplate(backend.binaries, backend.run, f"fresh{i}", spares=0)
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


def _docker_db(backend: DockerBackend, target: Target, i: int) -> float:
    """A database container on a stack network: create, start, accept a connection."""
    stack = DockerStack(backend, target, f"bench-db{i}")
    try:
        stack.network, stack.subnet, stack.internal = backend.create_network(stack)
        started = time.perf_counter()
        stack.database.create()
        stack.database.wait_ready()
        return time.perf_counter() - started
    finally:
        stack.close()


def _testcontainers_pg(image: str) -> float:
    """The peer baseline: a plain testcontainers PostgresContainer start (its own wait)."""
    from testcontainers.community.postgres import PostgresContainer

    container = PostgresContainer(image, username="chaos", password="bench", dbname="ledger")
    started = time.perf_counter()
    container.start()
    elapsed = time.perf_counter() - started
    container.stop()
    return elapsed


def _docker_figures(target: Target, rounds: int, instances: int) -> None:
    from harness.backends.docker import engine_version

    if engine_version() is None:
        print("\ndocker: no engine answers; docker figures skipped (see docs/docker.md)")
        return
    v1 = target.release("v1")
    stack_times, fresh_times, db_times, tc_times = [], [], [], []
    with DockerBackend() as backend:
        fresh = DockerBackend(config=replace(backend.config, reuse_prepared=False))
        with fresh:
            # Warm-up, not counted; the first stack of a key also prepares its dump.
            backend.start_stack(target, v1, instances=instances, seed=0).close()
            fresh.start_stack(target, v1, instances=instances, seed=0).close()
            _testcontainers_pg(backend.config.postgres_image)
            for i in range(rounds):
                started = time.perf_counter()
                stack = backend.start_stack(target, v1, instances=instances, seed=0)
                stack_times.append(time.perf_counter() - started)
                stack.close()
                started = time.perf_counter()
                stack = fresh.start_stack(target, v1, instances=instances, seed=0)
                fresh_times.append(time.perf_counter() - started)
                stack.close()
                db_times.append(_docker_db(backend, target, i))
                tc_times.append(_testcontainers_pg(backend.config.postgres_image))
                print(
                    f"docker round {i + 1}/{rounds}: stack {stack_times[-1]:.3f}s "
                    f"(migrating and seeding itself {fresh_times[-1]:.3f}s), "
                    f"database container {db_times[-1]:.3f}s, "
                    f"testcontainers PostgresContainer {tc_times[-1]:.3f}s",
                    flush=True,
                )
        image = backend.config.postgres_image
    s, f, d, b = (statistics.median(x) for x in (stack_times, fresh_times, db_times, tc_times))
    print()
    print(
        f"healthy docker stack         : median {s * 1000:7.1f} ms   (network, database restored "
        f"from the prepared dump, proxy, {instances} ledger v1 containers; target < 4000 ms)"
    )
    print(
        f"  migrating and seeding itself: median {f * 1000:7.1f} ms   (baseline, same run: "
        f"migrate and seed containers per stack; prepared/baseline {s / f:.2f})"
    )
    print(f"database container ready     : median {d * 1000:7.1f} ms   ({image})")
    print(
        f"testcontainers PostgresContainer: median {b * 1000:7.1f} ms   (baseline, same run, "
        f"same image; ours/baseline {d / b:.2f}, target <= 1)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--backend", choices=("both", "local", "docker"), default="both")
    args = parser.parse_args()
    target = load_target(str(ROOT / "examples/ledger/target.py"))
    if args.backend != "docker":
        _local_figures(target, args.rounds, args.instances)
    if args.backend != "local":
        _docker_figures(target, args.rounds, args.instances)
    return 0


def _local_figures(target: Target, rounds: int, instances: int) -> None:
    v1 = target.release("v1")
    with LocalBackend() as backend:
        backend.template("app")  # the session's one-off initdb, not counted
        _db_from_template(backend, -1)  # warm the page cache
        # The session's one-off prepared template (v1 migrated and seeded), not counted.
        backend.start_stack(target, v1, instances=instances, seed=7).close()
        template_times, initdb_times, stack_times = [], [], []
        for i in range(rounds):
            template_times.append(_db_from_template(backend, i))
            initdb_times.append(_db_from_initdb(backend, i))
            started = time.perf_counter()
            stack = backend.start_stack(target, v1, instances=instances, seed=7)
            stack_times.append(time.perf_counter() - started)
            stack.close()
            print(
                f"round {i + 1}/{rounds}: template {template_times[-1]:.3f}s, "
                f"initdb {initdb_times[-1]:.3f}s, stack {stack_times[-1]:.3f}s",
                flush=True,
            )
    t = statistics.median(template_times)
    f = statistics.median(initdb_times)
    s = statistics.median(stack_times)
    print()
    print(
        f"database ready from template : median {t * 1000:7.1f} ms   "
        "(a spare copy renamed into place, then started)"
    )
    print(f"database ready from initdb   : median {f * 1000:7.1f} ms   (baseline, same run)")
    print(f"template speed-up            : {f / t:7.1f}x   (target >= 5x)")
    print(
        f"healthy local stack          : median {s * 1000:7.1f} ms   "
        f"(database from the prepared v1 template + proxy + {instances} ledger v1 instances;"
        " target < 1000 ms)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
