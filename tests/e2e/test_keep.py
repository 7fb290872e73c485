"""``--chaos-keep`` on real parts: a failed run's stack outlives the session, reachable at the
addresses it printed, until ``deploy-chaos reap`` removes it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from harness._runstate import reap
from harness._wait import wait_for

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
LEDGER = ROOT / "examples" / "ledger" / "target.py"

#: No fix release: rolling forward re-runs v2's half-applied 0003, which fails (unexpected).
FAILING = f"""\
scenario: doomed
target: {LEDGER}
upgrade: {{from: v1, to: v2}}
seed: 5
faults: [migration_fails_at(3)]
points: [before:migrate:0003]
strategies: [roll_forward]
"""


def _refused(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2):
            return False
    except psycopg.OperationalError:
        return True


@pytest.fixture
def state(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A state root of the test's own (PostgreSQL, run as another user, must traverse it)."""
    path = Path(tempfile.mkdtemp(prefix="deploy-chaos-keep-"))
    path.chmod(0o755)
    monkeypatch.setenv("DEPLOY_CHAOS_STATE_DIR", str(path))
    try:
        yield path
    finally:
        reap(path, include_kept=True)
        shutil.rmtree(path, ignore_errors=True)


def test_a_kept_stack_outlives_the_session_until_reaped(
    pytester: pytest.Pytester, state: Path
) -> None:
    (pytester.path / "scenarios").mkdir()
    (pytester.path / "scenarios" / "doomed.yaml").write_text(FAILING)

    result = pytester.runpytest_subprocess("scenarios/", "--chaos-keep", "--chaos-report=out")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    database = re.search(r"kept: database: (postgresql://\S+)", out)
    app = re.search(r"kept: app0: (http://127\.0\.0\.1:\d+) \((\S+)\)", out)
    assert database is not None, out
    assert app is not None, out
    assert "remove it with: deploy-chaos reap" in out
    assert (
        pytester.path
        / "out"
        / "kept"
        / "doomed_migration_fails_at_3_-before_migrate_0003-roll_forward"
        / "README.txt"
    ).is_file()

    # The session is over: the database holds the run's end state (v2's 0003 half-applied,
    # not recorded) and the instance answers through the stack's own proxy.
    with psycopg.connect(database.group(1), connect_timeout=5) as conn:
        applied = [row[0] for row in conn.execute("SELECT id FROM schema_migrations ORDER BY id")]
        columns = conn.execute(
            "SELECT count(*) FROM information_schema.columns"
            " WHERE table_name = 'accounts' AND column_name = 'currency'"
        ).fetchone()
    assert applied == ["0001", "0002"]
    assert columns == (1,)

    def healthy() -> bool:
        with urllib.request.urlopen(app.group(1) + "/healthz", timeout=5) as response:
            return bool(response.status == 200)

    # Moving the route to the stack's own proxy cut the pooled connections: they come back.
    wait_for(healthy, what="the kept instance to answer", timeout=15, transient=(OSError,))

    # A new session's start leaves it alone ...
    report = reap(state)
    assert report.runs_removed == ()
    assert len(report.runs_kept) == 1
    assert not _refused(database.group(1))

    # ... `deploy-chaos reap` removes it: processes gone, directory gone.
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "reap"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert _refused(database.group(1))
    assert list(state.iterdir()) == []
