#!/usr/bin/env bash
# Usage: tests/run.sh [extra cargo nextest / cargo test arguments]
# Runs the whole test suite: creates the project venv (moto, cargo-lambda) if needed,
# runs the infrastructure-as-code checks (infra/check.sh; skip with GATEWAY_SKIP_INFRA_CHECK=1),
# starts a private emulator on a free 127.0.0.1 port (state in .local/test), builds every
# binary, runs all unit, handler and end-to-end tests, and stops the emulator it started.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
VENV="$(bash localstack/venv.sh)"
[ "${GATEWAY_SKIP_INFRA_CHECK:-0}" = 1 ] || bash infra/check.sh
PORT="$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

export GATEWAY_STATE_DIR="$REPO/.local/test"
export MOTO_PORT="$PORT"
stop() { bash localstack/stop.sh >/dev/null 2>&1 || true; }
trap stop EXIT
bash localstack/start.sh >/dev/null

export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT"
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export GATEWAY_PYTHON="$VENV/bin/python" GATEWAY_VENV="$VENV"
export PATH="$VENV/bin:$PATH"

# The end-to-end tests run the real function binaries.
cargo build --workspace --bins
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@"
else
    cargo test --workspace --no-fail-fast "$@"
fi
