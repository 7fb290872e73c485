"""A cluster's Unix socket stays within the 107 bytes a socket path may hold, however long
its stack's name (a target named after a long directory broke every start before)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness._runstate import RunDir
from harness.backends.postgres import PgCluster
from harness.errors import ConfigError


def test_a_long_stack_name_keeps_a_short_socket_path(tmp_path: Path) -> None:
    run = RunDir.create(root=tmp_path, run_id="r1")
    long_name = "test_init_writes_a_target_and_scenario_that_pytest_runs_as_they_are0" * 2
    directory = run.subdir("stacks", long_name, "db")
    cluster = PgCluster(name=long_name, binaries=None, run=run, directory=directory, database="app")  # type: ignore[arg-type]
    other = PgCluster(name="b", binaries=None, run=run, directory=run.subdir("b"), database="app")  # type: ignore[arg-type]
    assert len(str(directory / "sock" / ".s.PGSQL.65535")) > 107  # what it was
    assert len(str(cluster.socket_dir / ".s.PGSQL.65535")) <= 107
    assert cluster.socket_dir.parent == run.path / "s"
    assert cluster.socket_dir != other.socket_dir


def test_a_state_dir_too_long_for_any_socket_says_so(tmp_path: Path) -> None:
    root = tmp_path.joinpath(*["d" * 30] * 3)
    run = RunDir.create(root=root, run_id="r1")
    with pytest.raises(ConfigError, match="DEPLOY_CHAOS_STATE_DIR"):
        PgCluster(name="db", binaries=None, run=run, directory=run.subdir("db"), database="app")  # type: ignore[arg-type]
