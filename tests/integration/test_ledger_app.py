"""The ledger app as a real process on a real PostgreSQL: every endpoint, idempotency,
the mixed-version and rollback hazards, the bug switches, and a misbehaving database."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from harness._wait import wait_for

LEDGER_DIR = Path(__file__).resolve().parents[2] / "examples" / "ledger"


def migrate(url: str, release: str, target: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ledger.migrate", "--release", release, "--to", target],
        cwd=LEDGER_DIR,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class App:
    """A running ledger process and a tiny JSON client for it."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def call(self, method: str, path: str, body: object = None) -> tuple[int, dict[str, object]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            payload = body if isinstance(body, str) else json.dumps(body) if body else None
            conn.request(method, path, body=payload)
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, dict[str, object]]:
        return self.call("GET", path)

    def post(self, path: str, body: object) -> tuple[int, dict[str, object]]:
        return self.call("POST", path, body)

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])


@contextmanager
def running_app(url: str, release: str, log_dir: Path, **env: str) -> Iterator[App]:
    """Start ``python -m ledger.app``, wait until healthy, always stop it."""
    port = _free_port()
    log = log_dir / f"ledger-{release}-{port}.log"
    argv = [sys.executable, "-m", "ledger.app", "--release", release]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            argv,
            cwd=LEDGER_DIR,
            env={**os.environ, "DATABASE_URL": url, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    app = App(process, port, log)
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                pytest.fail(f"ledger exited with {process.returncode}:\n{app.log_tail()}")
            return app.get("/healthz")[0] == 200

        wait_for(
            healthy,
            what=f"ledger {release} healthy",
            timeout=10,
            transient=(OSError, http.client.HTTPException),
            log_tail=app.log_tail,
        )
        yield app
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _balance(url: str, account_id: object) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT balance_cents FROM accounts WHERE id = %s", (account_id,))
        return int(row.fetchone()[0])  # type: ignore[index]


def test_v2_serves_every_endpoint(pg_url: str, tmp_path: Path) -> None:
    migrate(pg_url, "v2", "0005")
    with running_app(pg_url, "v2", tmp_path) as app:
        assert app.get("/healthz") == (200, {"status": "ok"})
        assert app.get("/version") == (
            200,
            {"release": "v2", "migrations": ["0001", "0002", "0003", "0004", "0005"]},
        )
        status, ann = app.post("/accounts", {"owner": "Ann", "currency": "EUR"})
        assert status == 201
        assert ann == {"id": ann["id"], "owner": "Ann", "balance_cents": 0, "currency": "EUR"}
        _, bob = app.post("/accounts", {"owner": "Bob", "currency": "EUR"})
        _, carl = app.post("/accounts", {"owner": "Carl"})
        assert carl["currency"] == "USD"

        status, deposit = app.post(
            "/deposits", {"account_id": ann["id"], "amount_cents": 1000, "idempotency_key": "d1"}
        )
        assert status == 201
        assert deposit["from_account"] is None
        assert deposit["currency"] == "EUR"
        transfer_body = {
            "from_account": ann["id"],
            "to_account": bob["id"],
            "amount_cents": 300,
            "idempotency_key": "t1",
        }
        status, transfer = app.post("/transfers", transfer_body)
        assert status == 201
        assert transfer["amount_cents"] == 300
        assert app.get(f"/accounts/{ann['id']}")[1]["balance_cents"] == 700
        assert app.get(f"/accounts/{bob['id']}")[1]["balance_cents"] == 300
        assert app.get(f"/transfers/{transfer['id']}") == (200, transfer)
        assert app.get("/transfers?idempotency_key=t1") == (200, transfer)

        # Replays apply nothing; reusing a key for something else is refused.
        assert app.post("/transfers", transfer_body) == (200, transfer)
        assert _balance(pg_url, ann["id"]) == 700
        status, body = app.post("/transfers", {**transfer_body, "amount_cents": 1})
        assert status == 422
        assert "already used" in str(body["error"])

        # Clean "not applied" answers.
        to_carl = {**transfer_body, "to_account": carl["id"], "idempotency_key": "t3"}
        cases = [
            ("/transfers", {**transfer_body, "amount_cents": 10_000, "idempotency_key": "t2"}, 409),
            ("/transfers", to_carl, 422),
            ("/transfers", {**transfer_body, "to_account": 999_999, "idempotency_key": "t4"}, 404),
            ("/deposits", {"account_id": ann["id"], "amount_cents": 5, "idempotency_key": "d2",
                           "currency": "GBP"}, 422),
            ("/transfers", '{"from_account": 1', 400),
            ("/transfers", {"from_account": ann["id"]}, 400),
            ("/accounts", {"owner": "Dan", "currency": "XYZ"}, 422),
        ]  # fmt: skip
        for path, body, expected in cases:
            status, answer = app.post(path, body)
            assert status == expected, (path, body, answer)
            assert answer["outcome"] == "not_applied"
            assert answer["error"]
        assert _balance(pg_url, ann["id"]) == 700

        assert app.get("/accounts/999999")[0] == 404
        assert app.get("/accounts/abc")[0] == 400
        assert app.get("/transfers/999999")[0] == 404
        assert app.get("/transfers?idempotency_key=nope")[0] == 404
        assert app.get("/transfers")[0] == 400
        assert app.get("/nowhere")[0] == 404
        assert app.post("/healthz", {})[0] == 405
        assert app.process.poll() is None


def test_concurrent_replays_of_one_key_apply_once(pg_url: str, tmp_path: Path) -> None:
    migrate(pg_url, "v2.1", "0005")
    with running_app(pg_url, "v2.1", tmp_path) as app:
        _, account = app.post("/accounts", {"owner": "Ann"})
        body = {"account_id": account["id"], "amount_cents": 250, "idempotency_key": "same"}
        answers: list[tuple[int, dict[str, object]]] = []
        lock = threading.Lock()

        def deposit() -> None:
            answer = app.post("/deposits", body)
            with lock:
                answers.append(answer)

        threads = [threading.Thread(target=deposit) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=15)
        statuses = sorted(status for status, _ in answers)
        assert statuses == [200] * 5 + [201], answers
        assert len({answer["id"] for _, answer in answers}) == 1
        assert _balance(pg_url, account["id"]) == 250


def test_v1_works_on_the_expanded_schema_and_fails_after_the_contract(
    pg_url: str, tmp_path: Path
) -> None:
    migrate(pg_url, "v1", "0002")
    with running_app(pg_url, "v1", tmp_path) as app:
        status, account = app.post("/accounts", {"owner": "Ann", "currency": "EUR"})
        assert status == 201
        assert account == {"id": account["id"], "owner": "Ann", "balance_cents": 0}

        migrate(pg_url, "v2", "0003")  # expand: v1 keeps working on nullable columns
        status, other = app.post("/accounts", {"owner": "Bob"})
        assert status == 201
        deposit = {"account_id": other["id"], "amount_cents": 100, "idempotency_key": "k1"}
        assert app.post("/deposits", deposit)[0] == 201
        assert app.get("/version")[1]["migrations"] == ["0001", "0002", "0003"]

        # Backfill, then contract (no v1 write in between, or v2's 0005 would fail).
        migrate(pg_url, "v2", "0004")
        migrate(pg_url, "v2", "0005")  # v1 can no longer write
        status, body = app.post("/accounts", {"owner": "Carl"})
        assert status == 500
        assert 'null value in column "currency"' in str(body["error"])
        assert body["outcome"] == "not_applied"
        status, _ = app.post("/deposits", {**deposit, "idempotency_key": "k2"})
        assert status == 500
        assert app.get(f"/accounts/{other['id']}")[1]["balance_cents"] == 100
        assert app.get("/healthz")[0] == 200


def test_rollback_after_v2_wrote_eur_silently_changes_its_meaning(
    pg_url: str, tmp_path: Path
) -> None:
    migrate(pg_url, "v2", "0005")
    with running_app(pg_url, "v2", tmp_path) as v2:
        _, account = v2.post("/accounts", {"owner": "Ann", "currency": "EUR"})
        deposit = {"account_id": account["id"], "amount_cents": 1000, "idempotency_key": "eur"}
        assert v2.post("/deposits", deposit)[0] == 201
        assert v2.get(f"/accounts/{account['id']}")[1]["currency"] == "EUR"

        migrate(pg_url, "v2", "0002")  # the rollback a team really writes
        # v2 instances not yet redeployed now fail on the v1 schema.
        status, body = v2.get(f"/accounts/{account['id']}")
        assert status == 500
        assert 'column "currency" does not exist' in str(body["error"])

    with running_app(pg_url, "v1", tmp_path) as v1:
        status, body = v1.get(f"/accounts/{account['id']}")
        # 10.00 EUR became 1000 cents of v1's implicit USD: nothing errors.
        assert status == 200
        assert body == {"id": account["id"], "owner": "Ann", "balance_cents": 1000}
        status, transfer = v1.get("/transfers?idempotency_key=eur")
        assert status == 200
        assert "currency" not in transfer


def test_bug_ack_before_commit_acknowledges_a_write_it_rolls_back(
    pg_url: str, tmp_path: Path
) -> None:
    migrate(pg_url, "v2", "0005")
    with running_app(pg_url, "v2", tmp_path, LEDGER_BUG="ack_before_commit") as app:
        _, account = app.post("/accounts", {"owner": "Ann"})
        assert app.get(f"/accounts/{account['id']}")[0] == 200  # accounts are not affected
        body = {"account_id": account["id"], "amount_cents": 500, "idempotency_key": "lost"}
        status, transfer = app.post("/deposits", body)
        assert status == 201
        assert app.get(f"/transfers/{transfer['id']}")[0] == 404
        assert app.get("/transfers?idempotency_key=lost")[0] == 404
        assert _balance(pg_url, account["id"]) == 0


def test_bug_double_apply_moves_the_money_again_on_a_replay(pg_url: str, tmp_path: Path) -> None:
    migrate(pg_url, "v2", "0005")
    with running_app(pg_url, "v2", tmp_path, LEDGER_BUG="double_apply") as app:
        _, account = app.post("/accounts", {"owner": "Ann"})
        body = {"account_id": account["id"], "amount_cents": 500, "idempotency_key": "twice"}
        status, first = app.post("/deposits", body)
        assert status == 201
        status, again = app.post("/deposits", body)
        assert status == 201
        assert again == first
        assert _balance(pg_url, account["id"]) == 1000
        with psycopg.connect(pg_url) as conn:
            assert conn.execute("SELECT count(*) FROM transfers").fetchone() == (1,)


def test_unknown_bug_or_missing_database_url_exits_at_start() -> None:
    argv = [sys.executable, "-m", "ledger.app", "--release", "v2", "--port", str(_free_port())]
    for env, message in (
        ({"DATABASE_URL": "postgresql://127.0.0.1/x", "LEDGER_BUG": "nope"}, "LEDGER_BUG='nope'"),
        ({"DATABASE_URL": ""}, "DATABASE_URL=''"),
    ):
        result = subprocess.run(
            argv,
            cwd=LEDGER_DIR,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        assert result.returncode == 2
        assert message in result.stderr


class _Relay:
    """A TCP relay to the database that can freeze: connections stay open, bytes stop."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.frozen = threading.Event()
        self.closed = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
                server = socket.create_connection(self.upstream)
            except OSError:
                return
            self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                if self.frozen.is_set():
                    self.closed.wait()  # swallow: a black hole until the relay closes
                    return
                sink.sendall(data)

    def close(self) -> None:
        self.closed.set()
        for sock in self.sockets:
            sock.close()


def test_a_frozen_database_answers_503_and_never_hangs(pg_url: str, tmp_path: Path) -> None:
    migrate(pg_url, "v2", "0005")
    parts = urlsplit(pg_url)
    assert parts.hostname is not None
    assert parts.port is not None
    relay = _Relay((parts.hostname, parts.port))
    netloc = parts.netloc.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{relay.port}")
    try:
        with running_app(urlunsplit(parts._replace(netloc=netloc)), "v2", tmp_path) as app:
            _, account = app.post("/accounts", {"owner": "Ann"})
            relay.frozen.set()
            for method, path, body in (
                ("GET", "/healthz", None),
                ("POST", "/deposits", {"account_id": account["id"], "amount_cents": 1,
                                       "idempotency_key": "frozen"}),
            ):  # fmt: skip
                started = time.monotonic()
                status, answer = app.call(method, path, body)
                elapsed = time.monotonic() - started
                assert status == 503, answer
                assert elapsed < 4, (path, elapsed)
            status, version = app.get("/version")
            assert status == 200
            assert version["migrations"] is None
            assert app.process.poll() is None
    finally:
        relay.close()


def test_an_absent_database_answers_503(tmp_path: Path) -> None:
    closed_port = _free_port()
    url = f"postgresql://postgres@127.0.0.1:{closed_port}/postgres"
    port = _free_port()
    with (tmp_path / "absent.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ledger.app", "--release", "v1", "--port", str(port)],
            cwd=LEDGER_DIR,
            env={**os.environ, "DATABASE_URL": url},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    app = App(process, port, tmp_path / "absent.log")
    try:
        status, body = wait_for(
            lambda: app.get("/healthz"),
            what="ledger listening",
            timeout=10,
            transient=(OSError,),
            log_tail=app.log_tail,
        )
        assert status == 503
        assert body["status"] == "unavailable"
        status, body = app.post("/accounts", {"owner": "Ann"})
        assert status == 503
        assert body["outcome"] == "not_applied"
    finally:
        process.terminate()
        process.wait(timeout=5)
