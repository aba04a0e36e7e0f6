#!/usr/bin/env bash
# Usage: localstack/chaos.sh [--jobs 10] [--turns 120] [--kills 30] [--no-faults]
# Runs the same jobs on the local stack undisturbed, then with the mock LLM failing about
# 30 % of calls (429 with Retry-After, 500, 503, malformed bodies, hangs past the timeout)
# while every batch-worker process is SIGKILLed and restarted --kills times; prints the
# figures (see localstack/chaos.py). Takes several minutes; not part of tests/run.sh.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
VENV="$(bash localstack/venv.sh)"
exec "$VENV/bin/python" localstack/chaos.py "$@"
