"""A minimal app for backend tests: /healthz checks the database, /version says the release."""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg

RELEASE = sys.argv[1]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/version":
            self._send(200, {"release": RELEASE})
        elif self.path == "/healthz":
            try:
                with psycopg.connect(os.environ["DATABASE_URL"], connect_timeout=1) as conn:
                    conn.execute("SELECT 1")
            except psycopg.Error as exc:
                self._send(503, {"error": str(exc)})
                return
            self._send(200, {"status": "ok"})
        else:
            self._send(404, {"error": "not found"})


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
