#!/usr/bin/env bash
# Usage: localstack/bench-scale.sh [--sizes 0.06,1,10] [--mode iterative|map_reduce]
#        [--latency-ms 0] [--max-new-turns 12] [--concurrency 32] | --rounds
# Scale bench on the local stack (release binaries unless GATEWAY_PROFILE says otherwise):
# one job per input size, submitted by upload; prints a table per run (see
# localstack/bench_scale.py). Takes minutes; not part of tests/run.sh.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
VENV="$(bash localstack/venv.sh)"
exec "$VENV/bin/python" localstack/bench_scale.py "$@"
