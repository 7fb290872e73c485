#!/usr/bin/env bash
# Build every image the docker backend needs, only what is missing or out of date, and write
# docker/local-images.env: the environment that points the harness at them.
#
#   bash docker/build-images.sh            # build what is missing, write the env file
#   bash docker/build-images.sh --check    # only say what is missing (exit 1 if anything is)
#   set -a; . docker/local-images.env; set +a
#
# With no registry (CI), the bases are made locally: debootstrap a minimal Debian bookworm
# (python3, postgresql-15) once and `docker import` it. With a registry, build FROM the
# official images instead:
#   DEPLOY_CHAOS_PYTHON_BASE=python:3.11-slim-bookworm \
#   DEPLOY_CHAOS_POSTGRES_BASE=postgres:15-bookworm bash docker/build-images.sh
#
# Each image carries a label with a hash of its inputs (Dockerfile, sources, wheels, base
# image id); an image whose label differs from the current inputs is rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

CHECK_ONLY=0
case "${1:-}" in
    --check) CHECK_ONLY=1 ;;
    "") ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

PREFIX=${DEPLOY_CHAOS_IMAGE_PREFIX:-deploy-chaos}
SUITE=${DEPLOY_CHAOS_DEBIAN_SUITE:-bookworm}
MIRROR=${DEPLOY_CHAOS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PY_VERSION=${DEPLOY_CHAOS_PYTHON_VERSION:-3.11}
ROOTFS_IMAGE=${DEPLOY_CHAOS_ROOTFS_IMAGE:-$PREFIX/rootfs:$SUITE}
PYTHON_BASE=${DEPLOY_CHAOS_PYTHON_BASE:-}
POSTGRES_BASE=${DEPLOY_CHAOS_POSTGRES_BASE:-}
POSTGRES_IMAGE=$PREFIX/postgres:15
PYBASE_IMAGE=$PREFIX/python-base:$PY_VERSION
PROXY_IMAGE=$PREFIX/proxy:latest
LEDGER_REPO=$PREFIX/ledger
LEDGER_RELEASES=(v1 v2 v2.1)
ENV_FILE=docker/local-images.env
WHEELS=docker/wheels
LABEL=deploy-chaos.inputs
ROOTFS_PACKAGES=python3,python3-pip,postgresql-15,ca-certificates

export DOCKER_BUILDKIT=0 # the classic builder: no BuildKit on Debian's engine
START=$SECONDS
say() { printf '[build-images %4ss] %s\n' "$((SECONDS - START))" "$*"; }
die() { echo "build-images: $*" >&2; exit 1; }

docker info >/dev/null 2>&1 || die "no Docker engine answers (start dockerd; see docs/docker.md)"

# -- helpers ---------------------------------------------------------------------------------

image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }
image_label() { docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null || true; }
hash_of() { sha256sum | cut -c1-16; }
hash_files() { # hash the contents and names of files (arguments: paths, dirs walked)
    find "$@" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | sort -z \
        | xargs -0 sha256sum | hash_of
}

MISSING=()
# state IMAGE HASH -> "ok" | "missing" | "stale"
state() {
    local have
    have=$(image_label "$1")
    if [ -z "$(image_id "$1")" ]; then echo missing
    elif [ "$have" != "$2" ]; then echo stale
    else echo ok; fi
}

# build IMAGE HASH DOCKERFILE CONTEXT [build args...]: classic build, progress as steps
build() {
    local image=$1 hash=$2 dockerfile=$3 context=$4
    shift 4
    local why
    why=$(state "$image" "$hash")
    if [ "$why" = ok ]; then
        say "$image: up to date"
        return 0
    fi
    if [ "$CHECK_ONLY" = 1 ]; then
        say "$image: $why"
        MISSING+=("$image")
        return 0
    fi
    say "$image: $why, building"
    docker build --rm --force-rm -f "$dockerfile" --label "$LABEL=$hash" -t "$image" "$@" \
        "$context" 2>&1 | grep --line-buffered -E '^(Step [0-9]+/[0-9]+ :|Successfully|ERROR|error)' \
        | sed -u 's/^/    /' || true
    [ "$(image_label "$image")" = "$hash" ] || die "building $image failed (run the docker build by hand to see why)"
}

# -- 1. the local root file system (only when no official base is used) ----------------------

need_rootfs=0
[ -z "$PYTHON_BASE" ] && need_rootfs=1
[ -z "$POSTGRES_BASE" ] && need_rootfs=1
if [ "$need_rootfs" = 1 ]; then
    rootfs_hash=$(printf '%s\n' "$SUITE" "$ROOTFS_PACKAGES" "trim-v1" | hash_of)
    rootfs_state=$(state "$ROOTFS_IMAGE" "$rootfs_hash")
    if [ "$rootfs_state" = ok ]; then
        say "$ROOTFS_IMAGE: up to date"
    elif [ "$CHECK_ONLY" = 1 ]; then
        say "$ROOTFS_IMAGE: $rootfs_state"
        MISSING+=("$ROOTFS_IMAGE")
    else
        command -v debootstrap >/dev/null || die "debootstrap is needed (apt-get install -y debootstrap)"
        [ "$(id -u)" = 0 ] || die "debootstrap needs root"
        tmp=$(mktemp -d /tmp/deploy-chaos-rootfs.XXXXXX)
        trap 'rm -rf "$tmp"' EXIT
        say "$ROOTFS_IMAGE: $rootfs_state; debootstrap $SUITE ($ROOTFS_PACKAGES), about a minute"
        debootstrap --variant=minbase --include="$ROOTFS_PACKAGES" "$SUITE" "$tmp/root" "$MIRROR" \
            2>&1 | grep --line-buffered -E '^I: (Retrieving Packages|Installing core|Unpacking the base|Configuring the base|Base system installed)' \
            | sed -u 's/^/    /' || true
        [ -x "$tmp/root/usr/bin/python3" ] || die "debootstrap failed (no python3 in the root file system)"
        # Trim what a container never uses: docs, man pages, apt caches, the cluster the
        # package created, and LLVM (only PostgreSQL's optional JIT loads it; we run jit=off).
        rm -rf "$tmp/root/usr/share/doc" "$tmp/root/usr/share/man" "$tmp/root/usr/share/info" \
            "$tmp/root/var/cache/apt"/*.bin "$tmp/root/var/cache/apt/archives"/*.deb \
            "$tmp/root/var/lib/apt/lists"/* "$tmp/root/var/lib/postgresql/15/main" \
            "$tmp/root/etc/postgresql/15/main" "$tmp/root/usr/lib/postgresql/15/lib/llvmjit"* \
            "$tmp/root/usr/lib/postgresql/15/lib/bitcode" \
            "$tmp/root/usr/lib/x86_64-linux-gnu/libLLVM-"*
        find "$tmp/root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'C*' -exec rm -rf {} +
        say "$ROOTFS_IMAGE: importing ($(du -sh "$tmp/root" | cut -f1))"
        tar -C "$tmp/root" -c . | docker import \
            -c "ENV LANG=C.UTF-8 PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
            -c "LABEL $LABEL=$rootfs_hash" - "$ROOTFS_IMAGE" >/dev/null
        rm -rf "$tmp"
        trap - EXIT
    fi
fi
PYTHON_BASE=${PYTHON_BASE:-$ROOTFS_IMAGE}
POSTGRES_BASE=${POSTGRES_BASE:-$ROOTFS_IMAGE}

# -- 2. wheels, made on the host (a container cannot do TLS to PyPI here) --------------------

# openfeature: the reference app's flag reader (a release with code behind a flag).
REQUIREMENTS=("psycopg[binary]>=3.1" "psycopg-pool>=3.2" "tenacity>=8.2"
    "openfeature-sdk>=0.8" "openfeature-provider-flagd>=0.2")
wheels_hash=$(printf '%s\n' "$PY_VERSION" "${REQUIREMENTS[@]}" | hash_of)
if [ "$CHECK_ONLY" = 0 ] && [ "$(cat "$WHEELS/.inputs" 2>/dev/null)" != "$wheels_hash" ]; then
    say "wheels for Python $PY_VERSION: pip download into $WHEELS"
    rm -rf "$WHEELS"
    mkdir -p "$WHEELS"
    PIP=${PIP:-$ROOT/.venv/bin/python -m pip}
    $PIP download -q --disable-pip-version-check --only-binary=:all: \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux_2_28_x86_64 --python-version "$PY_VERSION" --implementation cp \
        -d "$WHEELS" "${REQUIREMENTS[@]}" 2>&1 | grep -v "is ignored: it is neither a file nor" || true
    ls "$WHEELS"/psycopg_binary-* >/dev/null 2>&1 || die "pip download of ${REQUIREMENTS[*]} failed"
    printf '%s\n' "${REQUIREMENTS[@]}" >"$WHEELS/requirements.txt"
    echo "$wheels_hash" >"$WHEELS/.inputs"
fi

# -- 3. images -------------------------------------------------------------------------------

stage=$(mktemp -d /tmp/deploy-chaos-build.XXXXXX)
trap 'rm -rf "$stage"' EXIT

# PostgreSQL: the official image's environment contract, data directory made at build time.
pg_base_id=$(image_id "$POSTGRES_BASE")
[ -n "$pg_base_id" ] || [ "$CHECK_ONLY" = 1 ] || docker pull -q "$POSTGRES_BASE" >/dev/null \
    || die "base image $POSTGRES_BASE not found and cannot be pulled"
pg_hash=$( (hash_files docker/postgres; image_id "$POSTGRES_BASE") | hash_of)
build "$POSTGRES_IMAGE" "$pg_hash" docker/postgres/Dockerfile docker/postgres \
    --build-arg "BASE=$POSTGRES_BASE"

# The Python base: the harness's and the apps' common dependencies, from the wheels.
py_base_id=$(image_id "$PYTHON_BASE")
[ -n "$py_base_id" ] || [ "$CHECK_ONLY" = 1 ] || docker pull -q "$PYTHON_BASE" >/dev/null \
    || die "base image $PYTHON_BASE not found and cannot be pulled"
mkdir -p "$stage/base"
cp docker/base/Dockerfile "$stage/base/"
[ -d "$WHEELS" ] && cp -r "$WHEELS" "$stage/base/wheels"
pybase_hash=$( (hash_files docker/base; cat "$WHEELS/.inputs" 2>/dev/null; image_id "$PYTHON_BASE") | hash_of)
build "$PYBASE_IMAGE" "$pybase_hash" "$stage/base/Dockerfile" "$stage/base" \
    --build-arg "BASE=$PYTHON_BASE"

# The embedded Toxiproxy-compatible proxy (the harness package, run as a server).
mkdir -p "$stage/proxy"
cp docker/proxy/Dockerfile "$stage/proxy/"
cp -r harness "$stage/proxy/harness"
find "$stage/proxy" -name __pycache__ -prune -exec rm -rf {} +
proxy_hash=$( (hash_files docker/proxy harness; image_id "$PYBASE_IMAGE") | hash_of)
build "$PROXY_IMAGE" "$proxy_hash" "$stage/proxy/Dockerfile" "$stage/proxy" \
    --build-arg "BASE=$PYBASE_IMAGE"

# The reference app: one image holds every code release; each release is a tag of it.
mkdir -p "$stage/ledger"
cp docker/ledger/Dockerfile "$stage/ledger/"
cp -r examples/ledger/ledger "$stage/ledger/ledger"
find "$stage/ledger" -name __pycache__ -prune -exec rm -rf {} +
ledger_hash=$( (hash_files docker/ledger examples/ledger/ledger; image_id "$PYBASE_IMAGE") | hash_of)
for release in "${LEDGER_RELEASES[@]}"; do
    build "$LEDGER_REPO:$release" "$ledger_hash" "$stage/ledger/Dockerfile" "$stage/ledger" \
        --build-arg "BASE=$PYBASE_IMAGE" --build-arg "RELEASE=$release"
done

if [ "$CHECK_ONLY" = 1 ]; then
    if [ "${#MISSING[@]}" -gt 0 ]; then
        say "missing or stale: ${MISSING[*]}; run: bash docker/build-images.sh"
        exit 1
    fi
    say "every image is present and up to date"
    exit 0
fi

cat >"$ENV_FILE" <<EOF
# Written by docker/build-images.sh: the images the docker backend uses on this machine.
# Load with:  set -a; . docker/local-images.env; set +a
DEPLOY_CHAOS_POSTGRES_IMAGE=$POSTGRES_IMAGE
DEPLOY_CHAOS_PROXY_IMAGE=$PROXY_IMAGE
DEPLOY_CHAOS_LEDGER_IMAGE=$LEDGER_REPO
TESTCONTAINERS_RYUK_DISABLED=true
EOF
say "wrote $ENV_FILE; images:"
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}} (shared base layer included)' \
    | grep "^$PREFIX/" | sed 's/^/    /' || true
