"""The docker backend on real containers: every operation of the backend contract."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from harness.backends.docker import (
    LABEL_OWNER_PID,
    LABEL_RUN,
    LABEL_STACK,
    DockerBackend,
    DockerStack,
    ImageMissing,
)
from harness.backends.docker import stack as docker_module
from harness.errors import AppNotHealthy, MigrationFailed, ServiceError
from harness.faults.network import ToxicSpec
from harness.spec import Target


def _version(stack: DockerStack, index: int) -> str:
    with urllib.request.urlopen(stack.apps[index].base_url + "/version", timeout=5) as r:
        return str(json.loads(r.read())["release"])


def _labelled(backend: DockerBackend, stack: str) -> tuple[list[str], list[str]]:
    selector = {"label": [f"{LABEL_RUN}={backend.run_id}", f"{LABEL_STACK}={stack}"]}
    containers = [c.name for c in backend.client.containers.list(all=True, filters=selector)]
    networks = [n.name for n in backend.client.networks.list(filters=selector)]
    return containers, networks


@pytest.fixture(scope="module")
def stack(docker_backend: DockerBackend, ledger_target: Target) -> Iterator[DockerStack]:
    """One ledger v1 stack shared by the module; each test leaves it running and healthy."""
    with docker_backend.start_stack(
        ledger_target, ledger_target.release("v1"), instances=2, name="ops"
    ) as s:
        yield s


def test_stack_is_labelled_published_on_loopback_and_isolated(
    docker_backend: DockerBackend, stack: DockerStack
) -> None:
    assert stack.applied_migrations() == ["0001", "0002"]
    assert all(app.healthy() for app in stack.apps)
    assert [_version(stack, 0), _version(stack, 1)] == ["v1", "v1"]
    containers, networks = _labelled(docker_backend, "ops")
    assert len(containers) == 4  # db, proxy, app0, app1 (migrations are removed)
    assert networks == [stack.network_name]
    for service in stack.services():
        assert service.container is not None
        service.container.reload()
        labels = service.container.labels
        assert labels[LABEL_RUN] == docker_backend.run_id
        assert labels[LABEL_OWNER_PID].isdigit()
        bindings = service.container.attrs["HostConfig"]["PortBindings"]
        assert bindings
        assert {b["HostIp"] for ports in bindings.values() for b in ports} == {"127.0.0.1"}
    assert stack.network is not None
    options = stack.network.attrs["Options"]
    assert options["com.docker.network.bridge.enable_ip_masquerade"] == "false"


def test_database_password_is_per_stack_and_required(stack: DockerStack) -> None:
    url = stack.database.url
    with psycopg.connect(url, connect_timeout=3) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("chaos",)
    wrong = url.replace(stack.database.password, "not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=3)


def test_database_crash_and_recovery_keeps_committed_data(stack: DockerStack) -> None:
    db = stack.database
    db.sql("CREATE TABLE crash_t (x int)")
    db.sql("INSERT INTO crash_t SELECT generate_series(1, 1000)")
    db.kill()
    assert not db.running
    with pytest.raises(psycopg.OperationalError):
        db.sql("SELECT 1")
    db.restart()
    assert db.sql("SELECT count(*) FROM crash_t") == [(1000,)]
    assert "automatic recovery in progress" in db.log_tail(200)
    db.sql("DROP TABLE crash_t")
    stack.apps[0].wait_healthy(timeout=10)  # the app's pool reconnects through the proxy


def test_database_pause_and_resume(stack: DockerStack) -> None:
    db = stack.database
    db.pause()
    try:
        assert db.paused
        assert db.running
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(db.url, connect_timeout=1)
    finally:
        db.resume()
    assert db.sql("SELECT 1") == [(1,)]


def test_app_kill_restart_pause_resume(stack: DockerStack) -> None:
    app = stack.apps[1]
    app.kill()
    assert not app.running
    assert not app.healthy(timeout=0.5)
    assert stack.apps[0].healthy(), "killing one instance must not touch the other"
    app.restart()
    assert app.healthy()
    app.pause()
    assert app.paused
    assert not app.healthy(timeout=0.3)
    app.resume()
    assert app.healthy()
    app.restart()
    assert app.healthy()


def test_migrate_up_deploy_and_migrate_down(stack: DockerStack, ledger_target: Target) -> None:
    v1, v2 = ledger_target.release("v1"), ledger_target.release("v2")
    result = stack.migrate(v2, "0004")
    assert result.ok
    assert stack.applied_migrations() == ["0001", "0002", "0003", "0004"]
    stack.apps[0].deploy(v2)
    assert [_version(stack, 0), _version(stack, 1)] == ["v2", "v1"]
    stack.apps[0].deploy(v1)
    stack.migrate(v2, "0002")
    assert stack.applied_migrations() == ["0001", "0002"]
    assert [_version(stack, 0), _version(stack, 1)] == ["v1", "v1"]


def test_failing_migration_raises_with_output(stack: DockerStack, ledger_target: Target) -> None:
    broken = replace(
        ledger_target.release("v2"),
        name="broken",
        migrate_command=("{python}", "-c", "raise SystemExit('boom')"),
    )
    with pytest.raises(MigrationFailed) as info:
        stack.migrate(broken, "0003")
    assert info.value.returncode == 1
    assert "boom" in info.value.output


def test_command_is_killed_and_timed_out(stack: DockerStack, ledger_target: Target) -> None:
    v1 = ledger_target.release("v1")
    command = stack.start_command(v1, ("{python}", "-c", "import time; time.sleep(60)"))
    assert command.poll() is None
    assert command.pid > 0
    command.kill()
    result = command.wait(timeout=20)
    assert result.returncode == 137
    slow = stack.start_command(v1, ("{python}", "-c", "import time; time.sleep(60)"))
    started = time.monotonic()
    assert slow.wait(timeout=1.5).returncode == 137
    assert time.monotonic() - started < 15


def test_backup_and_restore(stack: DockerStack, tmp_path: Path) -> None:
    db = stack.database
    db.sql("CREATE TABLE keep_me (x int)")
    db.sql("INSERT INTO keep_me VALUES (1), (2)")
    dump = tmp_path / "before.dump"
    db.backup(dump)
    assert dump.stat().st_size > 0
    db.sql("DELETE FROM keep_me")
    db.restore(dump)
    assert db.sql("SELECT count(*) FROM keep_me") == [(2,)]
    assert stack.applied_migrations() == ["0001", "0002"]
    db.sql("DROP TABLE keep_me")
    for app in stack.apps:
        app.wait_healthy(timeout=10)


def test_later_stacks_restore_the_first_stacks_prepared_database(
    docker_backend: DockerBackend, ledger_target: Target
) -> None:
    # A seed no other test uses: the first stack of this key migrates and seeds.
    release, seed = ledger_target.release("v1"), 7919
    fingerprint_sql = (
        "SELECT (SELECT count(*) FROM accounts), (SELECT sum(balance_cents) FROM accounts),"
        " (SELECT md5(string_agg(idempotency_key || ':' || amount_cents, ',' ORDER BY id))"
        "  FROM transfers), (SELECT string_agg(id, ',' ORDER BY id) FROM schema_migrations)"
    )
    with docker_backend.start_stack(
        ledger_target, release, instances=1, name="prepared-a", seed=seed
    ) as first:
        before = first.database.sql(fingerprint_sql)
        commands = first._commands
    with docker_backend.start_stack(
        ledger_target, release, instances=1, name="prepared-b", seed=seed
    ) as second:
        after = second.database.sql(fingerprint_sql)
        assert second._commands == 0, "restored from the dump: no migrate or seed container"
        # The sequences came with the dump: a new account gets the next id, not a taken one.
        request = urllib.request.Request(
            second.apps[0].base_url + "/accounts",
            data=json.dumps({"owner": "after restore"}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 201
            created = json.loads(answer.read())
        assert created["id"] > before[0][0]
    assert commands == 2, "the first stack ran the migrate and the seed command"
    assert before == after
    assert before[0][0] > 0
    assert before[0][3] == "0001,0002"


def test_a_host_port_taken_before_docker_binds_it_is_picked_again(
    stack: DockerStack,
    docker_backend: DockerBackend,
    ledger_target: Target,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The new stack's database is first given the port the shared stack's database already
    # publishes, as when two workers' free-port picks collide.
    taken = stack.database.port
    picks = iter([taken])
    real = docker_module.free_port
    monkeypatch.setattr(docker_module, "free_port", lambda: next(picks, None) or real())
    with docker_backend.start_stack(
        ledger_target, ledger_target.release("v1"), instances=1, name="port-taken"
    ) as moved:
        assert moved.database.port != taken
        assert moved.applied_migrations() == ["0001", "0002"]
        assert moved.apps[0].healthy()
    assert stack.database.sql("SELECT 1") == [(1,)], "the first stack keeps its port"


def test_toxics_and_partition_through_the_proxy_container(stack: DockerStack) -> None:
    route = stack.db_proxy
    assert route is not None
    via_proxy = stack.database.url_via(route.listen_host, route.listen_port)

    def round_trip() -> float:
        started = time.monotonic()
        with psycopg.connect(via_proxy, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
        return time.monotonic() - started

    baseline = round_trip()
    with route.client.toxic(route.name, ToxicSpec.latency(400)):
        assert round_trip() >= baseline + 0.4
    with route.client.down(route.name):
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(via_proxy, connect_timeout=2)
        assert not stack.apps[0].healthy(timeout=3), "the app reaches the db through the proxy"
    assert route.client.list_toxics(route.name) == []
    for app in stack.apps:
        app.wait_healthy(timeout=15)


def test_proxy_restart_recreates_the_route(stack: DockerStack) -> None:
    stack.proxy.kill()
    assert not stack.proxy.running
    stack.proxy.restart()
    route = stack.db_proxy
    assert route is not None
    assert list(route.client.list_proxies()) == [route.name]
    for app in stack.apps:
        app.wait_healthy(timeout=15)


def test_release_that_crashes_at_start_fails_and_cleans_up(
    docker_backend: DockerBackend, ledger_target: Target
) -> None:
    crash = "import sys; print('crash at start', flush=True); sys.exit(3)"
    bad = replace(ledger_target.release("v1"), name="bad", image_command=("{python}", "-c", crash))
    with pytest.raises(ServiceError) as info:
        docker_backend.start_stack(ledger_target, bad, instances=1, name="bad-stack")
    assert "crash at start" in str(info.value)
    assert _labelled(docker_backend, "bad-stack") == ([], [])


def test_health_timeout_names_the_instance_and_shows_the_log(
    docker_backend: DockerBackend, ledger_target: Target
) -> None:
    hang = "import time; print('listening nowhere', flush=True); time.sleep(60)"
    silent = replace(
        ledger_target.release("v1"),
        name="silent",
        image_command=("{python}", "-c", hang),
        startup_timeout=2.0,
    )
    with pytest.raises(AppNotHealthy) as info:
        docker_backend.start_stack(ledger_target, silent, instances=1, name="silent-stack")
    assert "silent-stack/app0" in str(info.value)
    assert "listening nowhere" in str(info.value)
    assert _labelled(docker_backend, "silent-stack") == ([], [])


def test_missing_image_says_how_to_build_it(
    docker_backend: DockerBackend, ledger_target: Target
) -> None:
    ghost = replace(ledger_target.release("v1"), image="127.0.0.1:9/deploy-chaos/ghost:0")
    with pytest.raises(ImageMissing) as info:
        docker_backend.start_stack(ledger_target, ghost, instances=1, name="ghost-stack")
    assert "docker/build-images.sh" in str(info.value)
    assert _labelled(docker_backend, "ghost-stack") == ([], [])


def test_interrupt_half_way_through_start_removes_everything(
    docker_backend: DockerBackend, ledger_target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    # After the network, database and proxy exist; before any app.
    monkeypatch.setattr(DockerBackend, "prepare_database", interrupted)
    with pytest.raises(KeyboardInterrupt):
        docker_backend.start_stack(
            ledger_target, ledger_target.release("v1"), instances=1, name="ctrl-c"
        )
    assert _labelled(docker_backend, "ctrl-c") == ([], [])
