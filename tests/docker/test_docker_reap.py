"""A session killed with SIGKILL leaves containers and a network; ``deploy-chaos reap``
removes them (testcontainers' Ryuk is disabled: our labels and reaper are the cleanup)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

from harness._wait import wait_for
from harness.backends.docker import LABEL_RUN, DockerBackend, DockerConfig, connect, reap_docker
from harness.spec import Target
from tests.docker.conftest import LEDGER_IMAGE_ENV, images_env

ROOT = Path(__file__).resolve().parents[2]

_SESSION = textwrap.dedent(
    """
    import sys
    from harness._loader import load_target
    from harness.backends.docker import DockerBackend, DockerConfig

    target = load_target(sys.argv[3])
    config = DockerConfig(postgres_image=sys.argv[1], proxy_image=sys.argv[2])
    backend = DockerBackend(config=config)
    backend.start_stack(target, target.release("v1"), instances=1, name="doomed")
    print("READY", backend.run_id, flush=True)
    sys.stdin.read()  # until killed
    """
)


def _ours(run_id: str) -> list[str]:
    client = connect()
    try:
        selector = {"label": f"{LABEL_RUN}={run_id}"}
        found = [c.name for c in client.containers.list(all=True, filters=selector)]
        found += [n.name for n in client.networks.list(filters=selector)]
    finally:
        client.close()
    return found


def test_reap_after_sigkill_leaves_nothing_labelled(docker_config: DockerConfig) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env[LEDGER_IMAGE_ENV] = images_env().get(LEDGER_IMAGE_ENV, "")
    session = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _SESSION,
            docker_config.postgres_image,
            docker_config.proxy_image,
            str(ROOT / "examples/ledger/target.py"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert session.stdout is not None
        line = session.stdout.readline()
        for _ in range(200):
            if line.startswith("READY") or not line:
                break
            line = session.stdout.readline()
        assert line.startswith("READY"), f"the session did not start its stack: {line!r}"
        run_id = line.split()[1]
    finally:
        session.send_signal(signal.SIGKILL)
        session.wait()
    left = _ours(run_id)
    assert len(left) == 4, f"db, proxy, app0 and the network outlive a SIGKILL: {left}"

    reaped = subprocess.run(
        [sys.executable, "-m", "harness.cli", "reap"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert reaped.returncode == 0, reaped.stdout + reaped.stderr
    for name in left:
        assert f"removed {name}" in reaped.stdout, reaped.stdout
    wait_for(lambda: _ours(run_id) == [], what="nothing labelled with the run left", timeout=10)


def test_a_kept_stack_survives_its_session_until_reaped(
    docker_config: DockerConfig,
    ledger_target: Target,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEPLOY_CHAOS_STATE_DIR", str(tmp_path / "state"))
    target = ledger_target
    backend = DockerBackend(config=docker_config)
    run_id = backend.run_id
    try:
        with backend:
            stack = backend.start_stack(target, target.release("v1"), instances=1, name="kept")
            notes = backend.keep(stack)
            stack.close()  # a no-op now, as at the end of a run
            url = stack.database.url
        assert any(url in line for line in notes), notes
        assert len(_ours(run_id)) == 4, "db, proxy, app0 and the network outlive the backend"
        with psycopg.connect(url, connect_timeout=5) as conn:
            assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (2,)

        # Reaping spares it (even aimed at its run); reaping kept stacks too removes it.
        assert reap_docker(run_id=run_id).containers_removed == ()
        assert len(reap_docker(run_id=run_id, include_kept=True).containers_removed) == 3
        wait_for(lambda: _ours(run_id) == [], what="nothing labelled with the run left", timeout=10)
    finally:
        reap_docker(run_id=run_id, include_kept=True)
