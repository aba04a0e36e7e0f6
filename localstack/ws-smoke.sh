#!/usr/bin/env bash
# Usage: localstack/ws-smoke.sh
# Smoke test of live progress with a stock command-line WebSocket client, as a user would:
# starts the local stack (localstack/demo.sh --serve), submits a transcript, follows it
# with `wscat` (npm, pinned, installed into .local/node) and checks that step updates and
# the final `complete` message arrive. Stops everything it started.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
WSCAT_VERSION=6.1.0
NODE_DIR="$REPO/.local/node"
STATE="$REPO/.local/ws-smoke"
mkdir -p "$STATE"
if [ ! -x "$NODE_DIR/node_modules/.bin/wscat" ]; then
    npm install --silent --no-audit --no-fund --prefix "$NODE_DIR" "wscat@$WSCAT_VERSION" >&2
fi
WSCAT="$NODE_DIR/node_modules/.bin/wscat"

export GATEWAY_HTTP_PORT="${GATEWAY_HTTP_PORT:-8080}" GATEWAY_WS_PORT="${GATEWAY_WS_PORT:-8081}" MOCK_LATENCY_MS=300
localstack/demo.sh --serve >"$STATE/demo.log" 2>&1 &
DEMO=$!
trap 'kill -TERM $DEMO 2>/dev/null; wait $DEMO 2>/dev/null || true' EXIT
for _ in $(seq 600); do grep -q "still serving" "$STATE/demo.log" && break; kill -0 $DEMO || { cat "$STATE/demo.log"; exit 1; }; sleep 1; done
grep -q "still serving" "$STATE/demo.log" || { echo "the stack did not start" >&2; exit 1; }

API="http://127.0.0.1:$GATEWAY_HTTP_PORT"
JOB=$(curl -sf -X POST "$API/api/v1/services/0b0d3f3e-0000-4000-8000-000000000201/execute" \
    -H 'content-type: application/json' \
    --data "$(python3 -c 'import json,sys; print(json.dumps({"input": open(sys.argv[1]).read(), "organization_id": "demo"}))' seeds/samples/meeting-transcript.txt)" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
echo "following job $JOB with wscat"
# wscat prints what it receives; it subscribes by sending a message on stdin.
( sleep 1; echo '{"action":"subscribe"}'; sleep 120 ) \
    | "$WSCAT" --no-color -c "ws://127.0.0.1:$GATEWAY_WS_PORT/?job_id=$JOB&organization_id=demo" >"$STATE/wscat.out" 2>&1 &
WSCAT_PID=$!
for _ in $(seq 120); do grep -q '"event_type":"complete"' "$STATE/wscat.out" && break; sleep 1; done
kill "$WSCAT_PID" 2>/dev/null || true
cut -c1-160 "$STATE/wscat.out"
steps=$(grep -c '"event_type":"progress"' "$STATE/wscat.out" || true)
if grep -q '"event_type":"complete"' "$STATE/wscat.out" && [ "$steps" -gt 0 ]; then
    echo "ws-smoke: ok ($steps progress messages, then complete)"
else
    echo "ws-smoke: FAILED (see $STATE/wscat.out and $STATE/demo.log)" >&2
    exit 1
fi
