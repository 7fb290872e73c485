"""``python -m harness.proxy --host 127.0.0.1 --port N``."""

from __future__ import annotations

from harness.proxy.server import main

raise SystemExit(main())
