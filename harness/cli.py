"""The ``deploy-chaos`` command.

``doctor`` says whether this machine can run the harness, ``reap`` removes what dead sessions
left behind, ``proxy`` runs the embedded Toxiproxy-compatible server, ``upgrade`` brings a
target's stack up on one release and upgrades it to another under a health probe, ``run``
runs scenario files through pytest and prints the scorecard, and ``merge`` merges the
results.json of several shards.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from harness.errors import ChaosError, ConfigError

#: Shown in ``init --help`` (harness.scaffold.DJANGO_COMMAND, not imported for the help).
DJANGO_COMMAND_HELP = "{python} manage.py runserver {host}:{port} --noreload"

__all__ = ["main"]

_PACKAGES = (
    "deploy-chaos",
    "pytest",
    "psycopg",
    "testcontainers",
    "docker",
    "toxiproxy-python",
    "tenacity",
    "faker",
)


def _say(message: str) -> None:
    print(message, flush=True)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from harness.backends.postgres import find_pg_binaries, pg_run_as

    ok = True
    _say(f"python           {platform.python_version()} ({sys.executable})")
    for name in _PACKAGES:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "MISSING"
            ok = False
        _say(f"{name:<16} {version}")
    try:
        binaries = find_pg_binaries(args.pg_bindir)
        _say(f"postgresql       {binaries.version} ({binaries.bindir})")
        run_as = pg_run_as()
        if run_as is not None:
            _say(f"pg runs as       {run_as.user} (uid {run_as.uid}; the harness runs as root)")
    except ChaosError as exc:
        ok = False
        _say(f"postgresql       NOT FOUND\n{exc}")
    _say("local backend    " + ("ready" if ok else "NOT ready (see above)"))
    docker_ok = _doctor_docker(args.target)
    _say("docker backend   " + ("ready" if docker_ok else "NOT ready (see above)"))
    return 0 if ok else 1


def _doctor_docker(target_ref: str | None) -> bool:
    """The engine, the docker backend's images (and a target's), found or missing."""
    from harness.backends.docker import doctor_lines

    extra: list[tuple[str, str]] = []
    if target_ref:
        from harness._loader import load_target

        target = load_target(target_ref)
        for release in target.releases:
            if release.image and all(release.image != image for image, _ in extra):
                extra.append((release.image, f"{target.name} release {release.name}"))
    lines, ready = doctor_lines(extra)
    for line in lines:
        _say(line)
    return ready


def _cmd_reap(args: argparse.Namespace) -> int:
    from harness._runstate import reap, state_roots

    report = reap(include_alive=args.all, include_kept=True)
    for line in report.processes_killed:
        _say(f"killed {line}")
    for run_id in report.runs_removed:
        _say(f"removed run {run_id}")
    _say(
        f"reaped {len(report.runs_removed)} dead run(s) under "
        f"{', '.join(map(str, state_roots())) or 'no state directory'}; "
        f"{len(report.runs_alive)} run(s) still owned by a live session"
    )
    from harness.backends.docker import engine_version, reap_docker

    if engine_version(timeout=3) is None:
        _say("no Docker engine answers: no containers or networks to reap")
        return 0
    found = reap_docker(include_alive=args.all, include_kept=True)
    for name in (*found.containers_removed, *found.networks_removed, *found.volumes_removed):
        _say(f"removed {name}")
    _say(
        f"reaped {len(found.containers_removed)} container(s), {len(found.networks_removed)} "
        f"network(s), {len(found.volumes_removed)} volume(s) of dead runs; "
        f"{len(found.runs_alive)} run(s) with containers still owned by a live session"
    )
    return 0


def _cmd_proxy(args: argparse.Namespace) -> int:
    proxy = importlib.import_module("harness.proxy")
    return int(proxy.main(["--host", args.host, "--port", str(args.port)]) or 0)


def _cmd_schema(args: argparse.Namespace) -> int:
    from harness.scenario_schema import schema_text

    text = schema_text()
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
        _say(f"schema: wrote {args.output}")
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    from harness.scaffold import detect, write

    scaffold = detect(
        Path(args.dir),
        command=args.command,
        app=args.app,
        name=args.name,
        health_path=args.health_path,
        version_path=args.version_path,
        seed=args.seed,
    )
    _say(
        f"init: {scaffold.tool} project {scaffold.name!r} in {scaffold.root};"
        f" migrations {', '.join(scaffold.ids)}"
    )
    for path in write(scaffold, force=args.force):
        _say(f"init: wrote {path}")
    _say(
        "init: run it with `pytest -m deploy_chaos` (scenarios/*.yaml is collected by default)"
        f" or `deploy-chaos run {scaffold.scenario_file}`; then describe the app's resources"
        " (harness.RestWorkload) in the target so its data is judged"
    )
    return 0


def _cmd_upgrade(args: argparse.Namespace) -> int:
    from harness._loader import load_target
    from harness.backends import open_backend
    from harness.deploy.plan import build_plan, execute_step, reported_release
    from harness.workload.probe import HealthProbe

    target = load_target(args.target)
    source = target.release(args.source)
    dest = target.release(args.dest)
    plan = build_plan(target, source, dest, instances=args.instances)
    _say(f"target {target.name}: {source.name} -> {dest.name}; plan: {', '.join(plan.step_names)}")
    started = time.monotonic()

    def stamp() -> str:
        return f"[{time.monotonic() - started:6.2f}s]"

    with open_backend(args.backend, pg_bindir=args.pg_bindir) as backend:
        _say(f"{stamp()} backend {backend.name}, run id {backend.run_id}")
        with backend.start_stack(target, source, instances=args.instances) as stack:
            _say(
                f"{stamp()} stack {stack.name} up on {source.name}: "
                f"migrations {stack.applied_migrations()}, "
                f"{len(stack.apps)} instance(s) healthy"
            )
            with HealthProbe(
                lambda: [a.base_url + a.release.health_path for a in stack.apps]
            ) as probe:
                for step in plan.steps:
                    _say(f"{stamp()} step {step.name} ...")
                    execute_step(stack, plan, step)
                stats = probe.stop()
            applied = stack.applied_migrations()
            releases = [reported_release(a.base_url, a.release) for a in stack.apps]
            _say(f"{stamp()} done: migrations {applied}; instances report {releases}")
            _say(
                f"{stamp()} health probe: {stats.polls} polls, error rate "
                f"{stats.error_rate:.1%}, longest outage {stats.longest_outage_s * 1000:.0f} ms"
            )
            good = applied == list(dest.migrations) and all(r == dest.name for r in releases)
            _say("upgrade " + ("OK" if good else "did NOT reach the expected state"))
            return 0 if good else 1


def run_pytest_args(args: argparse.Namespace) -> list[str]:
    """The pytest command line ``deploy-chaos run`` stands for."""
    argv = [*(args.paths or ["scenarios/"]), "-rfE"]
    argv += ["--chaos-backend", args.backend, "--chaos-report", args.report]
    if args.seed is not None:
        argv += ["--chaos-seed", str(args.seed)]
    for strategy in args.strategy or ():
        argv += ["--chaos-strategy", strategy]
    if args.fault is not None:
        argv += ["--chaos-fault", args.fault]
    if args.shard is not None:
        argv += ["--chaos-shard", args.shard]
    if args.keep:
        argv.append("--chaos-keep")
    if args.repeat is not None:
        argv += ["--chaos-repeat", str(args.repeat)]
    if args.repetition is not None:
        argv += ["--chaos-repetition", str(args.repetition)]
    if args.replay_of is not None:
        argv += ["--chaos-replay-of", args.replay_of]
    if args.pg_bindir is not None:
        argv += ["--chaos-pg-bindir", args.pg_bindir]
    if args.numprocesses not in (None, "0"):
        # Workers report each run as it ends; -v names it.
        argv += ["-n", args.numprocesses, "-v"]
    else:
        # Serial: live logging shows every run and every step as it happens.
        argv += [
            "-v",
            "-o",
            "log_cli=true",
            "--log-cli-level=INFO",
            "-o",
            "log_cli_format=%(asctime)s %(message)s",
            "-o",
            "log_cli_date_format=%H:%M:%S",
        ]
    return [*argv, *args.pytest_args]


def _cmd_run(args: argparse.Namespace) -> int:
    import pytest

    if args.numprocesses not in (None, "0", "auto", "logical") and not (
        str(args.numprocesses).isdigit()
    ):
        raise ConfigError("-n", args.numprocesses, "a number of workers, or auto")
    argv = run_pytest_args(args)
    _say("deploy-chaos run: pytest " + " ".join(argv))
    # This process imported harness before pytest loads it as a plugin, so pytest cannot
    # rewrite its asserts and says so; that is expected here (the printed command, run on
    # its own, does not see it).
    quiet = [
        "-W",
        "ignore:Module already imported so cannot be rewritten:pytest.PytestAssertRewriteWarning",
    ]
    code = int(pytest.main([*argv, *quiet]))
    # pytest: 0 all passed (known hazards are xfails), 1 failures, 5 nothing collected.
    return code


def _cmd_merge(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.report.json import load_results, merge_results
    from harness.report.terminal import entries_from_results, render_scorecard

    path = merge_results([Path(p) for p in args.inputs], Path(args.out))
    document = load_results(path)
    for line in render_scorecard(entries_from_results(document)):
        _say(line)
    _say(f"results: {path}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.report.html import write_report

    write_report([Path(p) for p in args.inputs], Path(args.output), progress=_say)
    return 0


def _cmd_gameday(args: argparse.Namespace) -> int:
    from harness.gameday import GameDayOptions, run_gameday

    return run_gameday(
        GameDayOptions(
            scenario=args.scenario,
            backend=args.backend,
            fault=args.fault,
            point=args.point,
            strategy=args.strategy,
            auto=args.auto,
            seed=args.seed,
            report=args.report,
            pg_bindir=args.pg_bindir,
        )
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deploy-chaos",
        description="Rehearse deployments of stateful apps under failure.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    doctor = sub.add_parser("doctor", help="check that this machine can run the harness")
    doctor.add_argument("--pg-bindir", default=None, help="PostgreSQL server binaries directory")
    doctor.add_argument(
        "--target", default=None, help="also check this target's release images (FILE.py[:NAME])"
    )
    doctor.set_defaults(func=_cmd_doctor)

    reap = sub.add_parser(
        "reap", help="remove processes, files, containers and networks that dead sessions left"
    )
    reap.add_argument(
        "--all", action="store_true", help="also runs whose owning session is still alive (careful)"
    )
    reap.set_defaults(func=_cmd_reap)

    proxy = sub.add_parser("proxy", help="run the embedded Toxiproxy-compatible server")
    proxy.add_argument("--host", default="127.0.0.1")
    proxy.add_argument("--port", type=int, default=8474)
    proxy.set_defaults(func=_cmd_proxy)

    upgrade = sub.add_parser(
        "upgrade", help="bring a target up on one release and upgrade it to another"
    )
    upgrade.add_argument("target", help="FILE.py[:NAME] or MODULE[:NAME] giving a Target")
    upgrade.add_argument("--from", dest="source", required=True, help="release to start on")
    upgrade.add_argument("--to", dest="dest", required=True, help="release to upgrade to")
    upgrade.add_argument("--instances", type=int, default=2)
    upgrade.add_argument("--backend", default="auto", help="auto, local or docker")
    upgrade.add_argument("--pg-bindir", default=None)
    upgrade.set_defaults(func=_cmd_upgrade)

    schema = sub.add_parser(
        "schema",
        help="print the JSON Schema of scenario files (for an editor's completion)",
    )
    schema.add_argument("--output", "-o", default="-", help="a file to write (default: stdout)")
    schema.set_defaults(func=_cmd_schema)

    init = sub.add_parser(
        "init",
        help="write a target and a first scenario for an Alembic or Django project",
    )
    init.add_argument("--dir", default=".", help="the project's root (default: here)")
    init.add_argument(
        "--command",
        default=None,
        help="how one instance starts, e.g. '{python} -m myapp --port {port}' (no shell;"
        f" Django default: '{DJANGO_COMMAND_HELP}')",
    )
    init.add_argument("--app", default=None, help="the Django app whose migrations to follow")
    init.add_argument("--name", default=None, help="the target's name (default: the directory)")
    init.add_argument("--health-path", default="/healthz")
    init.add_argument("--version-path", default="/version")
    init.add_argument(
        "--seed", type=int, default=None, help="the scenario's seed (default: random)"
    )
    init.add_argument("--force", action="store_true", help="overwrite files that exist")
    init.set_defaults(func=_cmd_init)

    run = sub.add_parser(
        "run",
        help="run scenario files through pytest, print the scorecard",
        description="Run the scenarios' matrices through pytest and the deploy-chaos plugin. "
        "Exit 0 only when nothing unexpected happened (known hazards are expected). "
        "Arguments after -- go to pytest unchanged.",
    )
    run.add_argument(
        "paths",
        nargs="*",
        metavar="PATHS",
        help="scenario files or directories (default: scenarios/); FILE::RUN selects one run",
    )
    run.add_argument("--backend", default="auto", choices=("auto", "local", "docker"))
    run.add_argument(
        "-n",
        dest="numprocesses",
        default=None,
        metavar="N",
        help="parallel workers (pytest-xdist): a number or auto",
    )
    run.add_argument(
        "--report",
        default="chaos-report",
        metavar="DIR",
        help="directory for results.json (default: chaos-report)",
    )
    run.add_argument("--fault", default=None, metavar="GLOB", help="only faults matching GLOB")
    run.add_argument(
        "--strategy", action="append", metavar="S", help="only this strategy (repeatable)"
    )
    run.add_argument("--shard", default=None, metavar="K/N", help="only shard K of N")
    run.add_argument("--seed", type=int, default=None, help="session seed (printed)")
    run.add_argument("--keep", action="store_true", help="keep failed runs' evidence")
    run.add_argument(
        "--repeat", type=int, default=None, metavar="N", help="run each cell N times (counts)"
    )
    run.add_argument(
        "--repetition",
        type=int,
        default=None,
        metavar="R",
        help="run only repetition R of each cell (replay one run)",
    )
    run.add_argument(
        "--replay-of",
        default=None,
        metavar="RESULTS_JSON",
        help="compare each run with the recorded one (same verdicts?)",
    )
    run.add_argument("--pg-bindir", default=None)
    run.set_defaults(func=_cmd_run, pytest_args=[])

    merge = sub.add_parser("merge", help="merge the results.json of several shards")
    merge.add_argument("inputs", nargs="+", metavar="RESULTS_JSON")
    merge.add_argument("--out", required=True, metavar="DIR")
    merge.set_defaults(func=_cmd_merge)

    report = sub.add_parser(
        "report", help="one self-contained report.html from results.json files (CI shards)"
    )
    report.add_argument("inputs", nargs="+", metavar="RESULTS_JSON")
    report.add_argument("-o", "--output", default="report.html", metavar="FILE")
    report.set_defaults(func=_cmd_report)

    gameday = sub.add_parser(
        "gameday", help="rehearse one failed deploy live, step by step, as a team"
    )
    gameday.add_argument("scenario", help="a scenario YAML file")
    gameday.add_argument("--backend", default="auto", help="auto, local or docker")
    gameday.add_argument("--fault", default=None, help="the fault (name or glob)")
    gameday.add_argument("--point", default=None, help="the fault point, e.g. during:migrate:0004")
    gameday.add_argument("--strategy", default=None, help="rollback, roll_forward, halt, restore")
    gameday.add_argument("--auto", action="store_true", help="inject without waiting")
    gameday.add_argument("--seed", type=int, default=None)
    gameday.add_argument("--report", default="chaos-report", metavar="DIR")
    gameday.add_argument("--pg-bindir", default=None)
    gameday.set_defaults(func=_cmd_gameday)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if words[:1] == ["run"] and "--" in words:
        # deploy-chaos run [options] -- [pytest arguments]
        cut = words.index("--")
        words, extra = words[:cut], words[cut + 1 :]
    args = _parser().parse_args(words)
    if extra:
        args.pytest_args = extra
    try:
        return int(args.func(args))
    except ChaosError as exc:
        print(f"deploy-chaos: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deploy-chaos: interrupted; everything started was torn down", file=sys.stderr)
        return 130


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
