"""``deploy-chaos init`` in a fresh user repo (an Alembic app written here, outside the
project), then ``pytest -m deploy_chaos`` in that repo: the files it writes run as they are."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
pytest_plugins = ["pytester"]

APP = '''\
"""A user's tiny app: health (the database answers) and version (APP_RELEASE)."""
import argparse, json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import psycopg

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/version":
            status, body = 200, {"release": os.environ["APP_RELEASE"]}
        elif self.path == "/healthz":
            try:
                with psycopg.connect(os.environ["DATABASE_URL"], connect_timeout=2) as conn:
                    conn.execute("SELECT count(*) FROM items")
                status, body = 200, {"ok": True}
            except psycopg.Error as exc:
                status, body = 503, {"error": str(exc)}
        else:
            status, body = 404, {"error": "no route"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

parser = argparse.ArgumentParser()
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, required=True)
args = parser.parse_args()
ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()
'''

ENV_PY = """\
import os
from alembic import context
from sqlalchemy import create_engine

url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
with create_engine(url).connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
"""

REVISIONS = {
    "0001_items.py": (
        "0001",
        None,
        'op.create_table("items", sa.Column("id", sa.Integer, primary_key=True))',
        'op.drop_table("items")',
    ),
    "0002_sku.py": (
        "0002",
        "0001",
        'op.add_column("items", sa.Column("sku", sa.Text, nullable=True))',
        'op.drop_column("items", "sku")',
    ),
}


def _repo(root: Path) -> Path:
    (root / "migrations" / "versions").mkdir(parents=True)
    (root / "app.py").write_text(APP, encoding="utf-8")
    (root / "alembic.ini").write_text(
        "[alembic]\nscript_location = %(here)s/migrations\n", encoding="utf-8"
    )
    (root / "migrations" / "env.py").write_text(ENV_PY, encoding="utf-8")
    for name, (rev, down, up_op, down_op) in REVISIONS.items():
        (root / "migrations" / "versions" / name).write_text(
            "import sqlalchemy as sa\nfrom alembic import op\n\n"
            f"revision = {rev!r}\ndown_revision = {down!r}\n\n\n"
            f"def upgrade():\n    {up_op}\n\n\ndef downgrade():\n    {down_op}\n",
            encoding="utf-8",
        )
    return root


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).with_name("deploy-chaos")
    return subprocess.run(
        [str(cli), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_init_writes_a_target_and_scenario_that_pytest_runs_as_they_are(
    pytester: pytest.Pytester,
) -> None:
    repo = _repo(pytester.path)  # a fresh user repo: no ini, no conftest, no deploy-chaos file
    done = _cli(
        "init",
        "--command",
        "{python} app.py --host {host} --port {port}",
        "--seed",
        "3",
        cwd=repo,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"alembic project '{repo.name}'" in done.stdout
    target = repo / "scenarios" / "target.py"
    scenarios = list((repo / "scenarios").glob("*_first_rehearsal.yaml"))
    assert target.is_file()
    assert len(scenarios) == 1
    again = _cli("init", "--command", "{python} app.py --port {port}", cwd=repo)
    assert again.returncode == 2
    assert "already exist" in again.stderr
    assert "nothing was written" in again.stderr

    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-m",
        "deploy_chaos",
        "--chaos-backend",
        "local",
        "--chaos-report",
        str(repo / "chaos-report"),
        timeout=600,
    )
    result.assert_outcomes(passed=10)
    result.stdout.fnmatch_lines(["*10 runs: 10 pass, 0 known hazard, 0 unexpected failure*"])


def test_init_says_what_it_needs(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    done = _cli("init", cwd=empty)
    assert done.returncode == 2
    assert "found no migration tool" in done.stderr
    assert "alembic.ini" in done.stderr
    repo = _repo(tmp_path / "shop")
    done = _cli("init", cwd=repo)
    assert done.returncode == 2
    assert "how is the app started" in done.stderr
    assert not (repo / "scenarios").exists()
    done = _cli("init", "--command", "{python} app.py", cwd=repo)
    assert done.returncode == 2
    assert "does not use {port}" in done.stderr
