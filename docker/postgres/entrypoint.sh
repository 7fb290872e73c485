#!/bin/sh
# The official postgres image's environment contract over a data directory made at build
# time: on the first start, POSTGRES_USER (default postgres) gets POSTGRES_PASSWORD and
# POSTGRES_DB (default: the user's name) is created, in single-user mode (no initdb, no
# server restart). Later starts (docker restart after a crash) go straight to the server,
# which runs crash recovery by itself.
set -eu
first=${1:-postgres}
if [ "$first" = postgres ]; then
    [ "$#" -gt 0 ] && shift
elif [ "${first#-}" = "$first" ]; then
    exec "$@" # some other command (not a server option): run it as is
fi
marker="$PGDATA/.deploy-chaos-configured"
if [ ! -e "$marker" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "deploy-chaos-postgres: POSTGRES_PASSWORD is required (as in the official image)" >&2
        exit 1
    fi
    user=${POSTGRES_USER:-postgres}
    db=${POSTGRES_DB:-$user}
    ident() { printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"; }
    literal() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }
    {
        if [ "$user" = postgres ]; then
            echo "ALTER ROLE postgres PASSWORD $(literal "$POSTGRES_PASSWORD");"
        else
            echo "CREATE ROLE $(ident "$user") SUPERUSER LOGIN PASSWORD $(literal "$POSTGRES_PASSWORD");"
        fi
        if [ "$db" != postgres ]; then
            echo "CREATE DATABASE $(ident "$db") OWNER $(ident "$user") STRATEGY FILE_COPY;"
        fi
    } | postgres --single -F -D "$PGDATA" -c log_min_messages=warning postgres >"$PGDATA/setup.log" 2>&1
    if grep -q "ERROR" "$PGDATA/setup.log"; then
        cat "$PGDATA/setup.log" >&2
        exit 1
    fi
    touch "$marker"
fi
exec postgres "$@"
