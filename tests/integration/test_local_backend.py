"""The local backend on real parts: a PostgreSQL server and real app processes."""

from __future__ import annotations

import json
import os
import socket
import threading
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from harness._runstate import proc_stat, process_start_time
from harness._wait import wait_for
from harness.backends import _listeners
from harness.backends import local as local_module
from harness.backends._listeners import group_listens, listening_inodes
from harness.backends.local import LocalBackend, LocalStack
from harness.backends.postgres import PgCluster, free_port
from harness.errors import AppNotHealthy, MigrationFailed, ServiceError
from tests.integration.apps import tiny_release, tiny_target


def _alive(pid: int | None) -> bool:
    return pid is not None and process_start_time(pid) is not None


def _version(stack: LocalStack, index: int) -> str:
    with urllib.request.urlopen(stack.apps[index].base_url + "/version", timeout=2) as r:
        return str(json.loads(r.read())["release"])


@pytest.fixture
def stack(local_backend: LocalBackend) -> Iterator[LocalStack]:
    target = tiny_target()
    with local_backend.start_stack(target, target.release("r1"), instances=2) as s:
        yield s


def test_stack_up_and_down(local_backend: LocalBackend) -> None:
    target = tiny_target()
    stack = local_backend.start_stack(target, target.release("r1"), instances=2)
    pids = [stack.database.pid, *(a.pid for a in stack.apps)]
    try:
        assert stack.applied_migrations() == ["1"]
        assert all(app.healthy() for app in stack.apps)
        assert [_version(stack, i) for i in range(2)] == ["r1", "r1"]
        assert stack.database.url.startswith("postgresql://chaos:")
        assert "@127.0.0.1:" in stack.database.url
        records = {r.name for r in local_backend.run.records()}
        assert {f"{stack.name}.db", f"{stack.name}.app0", f"{stack.name}.app1"} <= records
    finally:
        stack.close()
    assert not any(_alive(pid) for pid in pids)
    assert not any(r.name.startswith(stack.name) for r in local_backend.run.records())


def test_database_password_is_per_stack_and_required(stack: LocalStack) -> None:
    url = stack.database.url
    with psycopg.connect(url, connect_timeout=3) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("chaos",)
    wrong = url.replace(stack.database.password, "not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=3)


def test_database_crash_and_recovery_keeps_committed_data(stack: LocalStack) -> None:
    db = stack.database
    db.sql("CREATE TABLE t (x int)")
    db.sql("INSERT INTO t SELECT generate_series(1, 1000)")
    old_pid = db.pid
    db.kill()
    assert not _alive(old_pid)
    with pytest.raises(psycopg.OperationalError):
        db.sql("SELECT 1")
    db.restart()
    assert db.sql("SELECT count(*) FROM t") == [(1000,)]
    assert "automatic recovery in progress" in db.log_tail(100)
    # A SIGKILLed server cleans nothing up: its dynamic shared memory lives in the data
    # directory (removed with the stack), not in /dev/shm/PostgreSQL.*.
    assert db.sql("SHOW dynamic_shared_memory_type") == [("mmap",)]
    assert (db.datadir / "pg_dynshmem").is_dir()


def test_concurrent_restarts_after_a_crash_start_one_server(stack: LocalStack) -> None:
    # A fault's heal (on its duration's timer) and a recovery step may restart the crashed
    # server at the same moment: one postmaster must come up, and both callers succeed.
    db = stack.database
    db.kill()
    errors: list[BaseException] = []
    go = threading.Barrier(3)

    def restart() -> None:
        go.wait()
        try:
            db.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=restart) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert db.sql("SELECT 1") == [(1,)]
    assert "already exists" not in db.log_tail(200)
    postmasters = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _is_postmaster(p, db)]
    assert len(postmasters) == 1


def _is_postmaster(proc: Path, db: Any) -> bool:
    try:
        argv = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return str(db.datadir).encode() in argv and argv[0].endswith(b"postgres")


def test_database_pause_and_resume(stack: LocalStack) -> None:
    db = stack.database
    db.pause()
    try:
        assert db.paused
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(db.url, connect_timeout=1)
    finally:
        db.resume()
    assert db.sql("SELECT 1") == [(1,)]


#: An INSERT busy on the CPU for seconds: a backend checks for its postmaster's death only
#: when it waits, so one that a crash missed commits this row long after the "crash".
_BUSY_INSERT = "INSERT INTO t SELECT count(*) FROM (SELECT generate_series(1, 100000000)) s"


def _server_processes(db: PgCluster) -> set[tuple[int, int]]:
    """The postmaster and every process under it, as (pid, start time), read from /proc."""
    stats = {int(e): f for e in os.listdir("/proc") if e.isdigit() and (f := proc_stat(e))}
    assert db.pid is not None
    found = {db.pid}
    while True:
        more = {pid for pid, f in stats.items() if int(f[1]) in found} - found
        if not more:
            return {(pid, int(stats[pid][19])) for pid in found if pid in stats}
        found |= more


def _state(pid: int, start_time: int) -> str | None:
    """The process's state letter, or None when it is gone (or the pid is another's)."""
    fields = proc_stat(pid)
    return fields[0] if fields is not None and int(fields[19]) == start_time else None


def _running(pid: int, start_time: int) -> bool:
    """Not gone and not a zombie (a zombie holds no memory; init may be slow to reap it)."""
    return _state(pid, start_time) not in (None, "Z", "X")


def _backend_pid(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


def _start_busy_insert(
    db: PgCluster, pool: ThreadPoolExecutor, conn: psycopg.Connection[Any]
) -> Future[Any]:
    """Run :data:`_BUSY_INSERT` on ``conn`` and return once the server is executing it."""
    pid = _backend_pid(conn)
    insert = pool.submit(conn.execute, _BUSY_INSERT)
    wait_for(
        lambda: (
            db.sql("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,)) == [("active",)]
        ),
        what=f"backend {pid} to execute the busy insert",
        timeout=10,
        max_interval=0.01,
    )
    return insert


def test_a_transaction_in_flight_at_a_crash_never_commits(stack: LocalStack) -> None:
    db = stack.database
    db.sql("CREATE TABLE t (x bigint)")
    idle = psycopg.connect(db.url, autocommit=True, connect_timeout=3)
    busy = psycopg.connect(db.url, autocommit=True, connect_timeout=3)
    try:
        idle.execute("BEGIN")
        idle.execute("INSERT INTO t VALUES (1)")
        backend = _backend_pid(idle)
        with ThreadPoolExecutor(1) as pool:
            insert = _start_busy_insert(db, pool, busy)
            server = _server_processes(db)
            assert backend in {pid for pid, _ in server}
            assert len(server) >= 5, "postmaster, two backends and background processes"
            db.kill()
            # Every process of the old server is gone the moment kill() returns.
            assert [p for p in server if _running(*p)] == []
            with pytest.raises(psycopg.OperationalError):
                insert.result(timeout=10)
        with pytest.raises(psycopg.OperationalError):
            idle.execute("COMMIT")
        assert idle.broken
    finally:
        idle.close()
        busy.close()
    db.restart()
    assert db.sql("SELECT x FROM t") == []


def test_a_paused_database_answers_no_open_connection_and_commits_nothing(
    stack: LocalStack,
) -> None:
    db = stack.database
    db.sql("CREATE TABLE t (at timestamptz)")
    reader = psycopg.connect(db.url, autocommit=True, connect_timeout=3)
    writer = psycopg.connect(db.url, autocommit=True, connect_timeout=3)
    try:
        with ThreadPoolExecutor(2) as pool:
            db.pause()
            try:
                assert db.paused
                server = _server_processes(db)
                assert {_state(*p) for p in server} <= {"T", "t"}, "every process stopped"
                select = pool.submit(lambda: reader.execute("SELECT 1").fetchone())
                write = pool.submit(writer.execute, "INSERT INTO t VALUES (clock_timestamp())")
                with pytest.raises(FutureTimeout):
                    select.result(timeout=0.5)
                assert not write.done()
                resumed_at = datetime.now(UTC)
            finally:
                db.resume()
            assert not db.paused
            assert select.result(timeout=5) == (1,)
            write.result(timeout=5)
    finally:
        reader.close()
        writer.close()
    # The write ran (and so committed) only after the resume.
    [(at,)] = db.sql("SELECT at FROM t")
    assert at >= resumed_at


def test_crash_and_restart_twenty_times_in_a_row(stack: LocalStack) -> None:
    # A backend that outlived a crash kept the old shared memory attached, and the restart
    # right after failed ("pre-existing shared memory block is still in use"): once in 183.
    db = stack.database
    db.sql("CREATE TABLE t (x bigint)")
    for _ in range(20):
        with (
            psycopg.connect(db.url, autocommit=True, connect_timeout=3) as busy,
            ThreadPoolExecutor(1) as pool,
        ):
            insert = _start_busy_insert(db, pool, busy)
            db.kill()
            db.restart()
            with pytest.raises(psycopg.OperationalError):
                insert.result(timeout=10)
    assert db.sql("SELECT count(*) FROM t") == [(0,)]


def test_app_kill_restart_pause_resume(stack: LocalStack) -> None:
    app = stack.apps[1]
    app.kill()
    assert not app.running
    assert not app.healthy(timeout=0.5)
    assert stack.apps[0].healthy(), "killing one instance must not touch the other"
    app.restart()
    assert app.healthy()
    app.pause()
    assert not app.healthy(timeout=0.3)
    app.resume()
    assert app.healthy()


def test_deploy_and_migrate_up_and_down(stack: LocalStack) -> None:
    target = stack.target
    r2 = target.release("r2")
    stack.migrate(r2, "2")
    assert stack.applied_migrations() == ["1", "2"]
    stack.apps[0].deploy(r2)
    assert [_version(stack, 0), _version(stack, 1)] == ["r2", "r1"]
    stack.migrate(r2, "base")
    assert stack.applied_migrations() == []


def test_failing_migration_raises_with_output(stack: LocalStack) -> None:
    broken = replace(
        tiny_release("r9", ("1",)), migrate_command=("{python}", "-c", "raise SystemExit('boom')")
    )
    with pytest.raises(MigrationFailed) as info:
        stack.migrate(broken, "1")
    assert info.value.returncode == 1
    assert "boom" in info.value.output


def test_release_that_never_gets_healthy_fails_and_cleans_up(local_backend: LocalBackend) -> None:
    target = tiny_target()
    crash = "import sys; print('crash at start'); sys.exit(3)"
    bad = replace(tiny_release("bad", ("1",)), command=("{python}", "-c", crash))
    before = {r.name for r in local_backend.run.records()}
    with pytest.raises(ServiceError) as info:
        local_backend.start_stack(target, bad, instances=1, name="bad-stack")
    assert "crash at start" in str(info.value)
    assert {r.name for r in local_backend.run.records()} == before


def test_health_timeout_names_the_instance_and_shows_the_log(local_backend: LocalBackend) -> None:
    target = tiny_target()
    hang = "import time; print('listening nowhere', flush=True); time.sleep(30)"
    silent = replace(
        tiny_release("silent", ("1",)), command=("{python}", "-c", hang), startup_timeout=1.5
    )
    with pytest.raises(AppNotHealthy) as info:
        local_backend.start_stack(target, silent, instances=1, name="silent-stack")
    assert "silent-stack/app0" in str(info.value)
    assert "listening nowhere" in str(info.value)


class _Stranger(BaseHTTPRequestHandler):
    """Another program on the instance's port: answers every GET with 200."""

    def do_GET(self) -> None:
        body = b"stranger"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        return None


def test_an_instance_whose_port_was_taken_moves_and_the_stranger_is_not_believed(
    local_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another program binds the port picked for app0 before app0 does, and answers 200 to
    # the health URL: the harness must not take it for the instance.
    stranger = ThreadingHTTPServer(("127.0.0.1", 0), _Stranger)
    threading.Thread(target=stranger.serve_forever, daemon=True).start()
    taken = int(stranger.server_address[1])
    picks = iter([taken])
    monkeypatch.setattr(local_module, "free_port", lambda: next(picks, None) or free_port())
    target = tiny_target()
    try:
        with local_backend.start_stack(target, target.release("r1"), instances=1) as stack:
            app = stack.apps[0]
            assert app.port != taken
            with urllib.request.urlopen(app.base_url + "/version", timeout=5) as answer:
                assert json.loads(answer.read())["release"] == "r1"
            assert "is taken by another program" in app.log_tail()
    finally:
        stranger.shutdown()
        stranger.server_close()


def test_listeners_are_told_apart_by_process_group() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stranger)
    six = socket.socket(socket.AF_INET6)
    try:
        port = int(server.server_address[1])
        six.bind(("::1", 0))
        six.listen()
        six_port = int(six.getsockname()[1])
        # The kernel's answer over netlink matches its /proc tables, for IPv4 and IPv6.
        for listening in (port, six_port):
            found = _listeners._netlink_listening_inodes(listening)
            assert len(found) == 1
            assert found == _listeners._proc_listening_inodes(listening)
        assert listening_inodes(port)
        assert group_listens(os.getpgrp(), port) is True
        assert group_listens(os.getpgrp() + 1_000_000, port) is False
    finally:
        server.server_close()
        six.close()
    assert group_listens(os.getpgrp(), port) is False, "nobody listens any more"
