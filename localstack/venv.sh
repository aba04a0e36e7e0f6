#!/usr/bin/env bash
# Usage: localstack/venv.sh
# Creates (idempotently) the project venv at ${GATEWAY_VENV:-$REPO/.local/venv} and installs
# ${GATEWAY_VENV_REQUIREMENTS:-localstack/requirements.txt} into it, only when missing or when
# the requirements changed (a stamp file in the venv holds the requirements hash).
# infra/check.sh uses the two variables for its own venvs (SAM CLI, checkov).
# Prints the venv path on stdout; progress goes to stderr. Safe to run concurrently (flock when available).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
VENV="${GATEWAY_VENV:-$REPO/.local/venv}"
REQ="${GATEWAY_VENV_REQUIREMENTS:-$HERE/requirements.txt}"
STAMP="$VENV/.requirements.sha256"
PY="${PYTHON:-python3}"

log() { echo "venv.sh: $*" >&2; }

req_hash() {
    # Hash of the requirements plus the interpreter version: a new Python means a new venv.
    { cat "$REQ"; "$PY" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1
}

up_to_date() {
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' 2>/dev/null \
        && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]
}

make_venv() {
    rm -rf "$VENV"
    if "$PY" -m venv "$VENV" >&2 2>/dev/null; then return 0; fi
    rm -rf "$VENV"
    # Debian/Ubuntu system Python ships venv/ensurepip separately.
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        log "python3 -m venv failed; installing python3-venv with apt-get"
        ver="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
        apt-get update -qq >&2 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2 \
            || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python${ver}-venv" >&2 || true
        if "$PY" -m venv "$VENV" >&2; then return 0; fi
        rm -rf "$VENV"
    fi
    # Last resort: virtualenv from PyPI (needs only pip).
    log "falling back to virtualenv"
    "$PY" -m pip install -q --user virtualenv >&2
    "$PY" -m virtualenv -q "$VENV" >&2
}

WANT="$(req_hash)"
if up_to_date; then
    echo "$VENV"
    exit 0
fi

mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
# Re-check under the lock: another process may have finished the job meanwhile.
if ! up_to_date; then
    if ! { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; }; then
        log "creating venv at $VENV"
        make_venv
    fi
    log "installing $(basename "$REQ") (takes about a minute the first time)"
    rm -f "$STAMP"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ" >&2
    echo "$WANT" >"$STAMP"
fi
echo "$VENV"
