#!/usr/bin/env bash
# The main job on the embedded default (local backend): bring the reference ledger up on v1
# and upgrade it to v2 under a health probe, printing every step.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/deploy-chaos upgrade examples/ledger/target.py --from v1 --to v2 "$@"
