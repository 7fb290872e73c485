#!/usr/bin/env bash
# Set up a fresh machine for deploy-chaos: PostgreSQL server binaries and a virtualenv with
# the package and its dev tools. Idempotent: re-running only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

have_pg() {
    command -v postgres >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null
}
if ! have_pg; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing PostgreSQL server binaries (apt-get install postgresql)"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null
    else
        echo "setup: PostgreSQL server binaries not found; install them (apt-get install postgresql)" >&2
        echo "       or set DEPLOY_CHAOS_PG_BINDIR to their directory" >&2
        exit 1
    fi
fi

# Headless Chromium (report tests) and tmux (game-day tests), from Debian's packages.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing ${missing[*]} (apt-get)"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
    else
        echo "setup: ${missing[*]} missing: the browser and terminal tests will be skipped" >&2
    fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
# Editable in "compat" mode: a plain path in a .pth file. The default mode installs an import
# hook that every Python process of the venv loads at startup (~20 ms each); the apps and
# migrations a chaos run starts are a dozen such processes per run.
stamp=.venv/.deploy-chaos-installed-compat
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing deploy-chaos and its dev tools into .venv"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' \
        --config-settings editable_mode=compat 2>&1 \
        | grep -v "is ignored: it is neither a file nor a directory" || true
    .venv/bin/python -c "import harness, psycopg, toxiproxy, testcontainers"
    touch "$stamp"
fi
# Every app start and migration is a fresh Python process: with PYTHONDONTWRITEBYTECODE set
# (as on some CI machines) each would compile the sources again. Compiled once here, they
# are read (never rewritten) even then; stale ones are ignored by Python.
.venv/bin/python -m compileall -q harness examples >/dev/null
