#!/usr/bin/env bash
# Run the whole test suite (lint, types, unit, integration) on a fresh or set-up machine.
# Extra arguments go to pytest, e.g.  bash scripts/test.sh -m "not integration"
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff"
.venv/bin/ruff check harness tests bench examples
echo "== mypy --strict harness"
.venv/bin/mypy
echo "== pytest"
set +e
.venv/bin/python -m pytest -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    exit 1
fi
exit "$status"
