#!/usr/bin/env bash
# The main job on the embedded default (local backend): run the reference chaos suite
# (scenarios/*.yaml against examples/ledger) through pytest, two workers, printing each run
# as it ends and the scorecard at the end; results.json lands in chaos-report/.
# Exit 0 only when nothing unexpected happened (known hazards are declared in the scenarios).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/deploy-chaos run scenarios/ --backend local -n 2 --report chaos-report "$@"
