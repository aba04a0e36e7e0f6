#!/usr/bin/env bash
# Usage: localstack/demo.sh [--serve] [TRANSCRIPT_FILE]
# Starts the whole gateway locally and runs one real summary job end to end:
#   1. the mock LLM (skipped when LLM_BASE_URL points at a real OpenAI-compatible server;
#      then also set LLM_MODEL and, if needed, LLM_API_KEY — it is stored KMS-encrypted),
#   2. the AWS emulator with every resource and the seeds (localstack/start.sh),
#   3. `cargo lambda watch` (Lambda Runtime + Invoke APIs) and the real function binaries,
#      ${GATEWAY_LOCAL_CONCURRENCY:-4} processes of each (invocations of a function at once),
#   4. functions/local: the REST front door on 127.0.0.1:${GATEWAY_HTTP_PORT:-8080}, the
#      WebSocket front door on ${GATEWAY_WS_PORT:-8081}, the SQS and DynamoDB stream mappings,
# then submits the transcript (default seeds/samples/meeting-transcript.txt) to the
# `summarize` service, prints progress and the result. State (logs, the emulator's pid and
# env file) goes under ${GATEWAY_STATE_DIR:-.local}. Without --serve everything it
# started is stopped at the end; with --serve it keeps running until Ctrl-C.
# GATEWAY_PROFILE=release builds and runs release binaries (what the benches measure).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
SERVE=0
if [ "${1:-}" = "--serve" ]; then SERVE=1; shift; fi
TRANSCRIPT="${1:-$REPO/seeds/samples/meeting-transcript.txt}"
# Every state path (emulator pid/log/env, the demo's logs) follows GATEWAY_STATE_DIR, so two
# stacks started from one checkout (on other ports) never share or stop each other's state.
export GATEWAY_STATE_DIR="${GATEWAY_STATE_DIR:-$REPO/.local}"
STATE="$GATEWAY_STATE_DIR/demo"
HTTP_PORT="${GATEWAY_HTTP_PORT:-8080}"
WS_PORT="${GATEWAY_WS_PORT:-8081}"
RUNTIME_PORT="${LAMBDA_RUNTIME_PORT:-9000}"
mkdir -p "$STATE"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

VENV="$(bash localstack/venv.sh)"
export PATH="$VENV/bin:$PATH"
PY="$VENV/bin/python"

say "building the function binaries, functions/local and the mock LLM"
PROFILE="${GATEWAY_PROFILE:-debug}"
PROFILE_FLAG=()
[ "$PROFILE" = release ] && PROFILE_FLAG=(--release)
cargo build "${PROFILE_FLAG[@]}" --bins -p execute -p jobs -p catalog -p export -p batch-worker -p ws -p chat -p local -p mock-llm -p llmgw
BIN="${CARGO_TARGET_DIR:-$REPO/target}/$PROFILE"

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    bash localstack/stop.sh >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$HTTP_PORT" "$WS_PORT" "$RUNTIME_PORT"; do
    port_free "$port" || { echo "port $port is in use; set GATEWAY_HTTP_PORT / GATEWAY_WS_PORT / LAMBDA_RUNTIME_PORT" >&2; exit 1; }
done

if [ -z "${LLM_BASE_URL:-}" ]; then
    say "starting the mock LLM (set LLM_BASE_URL to use a real OpenAI-compatible server)"
    "$BIN/mock-llm" --port 0 --latency-ms "${MOCK_LATENCY_MS:-200}" --delta-delay-ms "${MOCK_DELTA_DELAY_MS:-40}" >"$STATE/mock-llm.out" 2>"$STATE/mock-llm.log" &
    PIDS+=($!)
    for _ in $(seq 50); do grep -q listening "$STATE/mock-llm.out" 2>/dev/null && break; sleep 0.1; done
    export LLM_BASE_URL="$(sed -n 's/^mock-llm listening on //p' "$STATE/mock-llm.out")"
fi
say "LLM: $LLM_BASE_URL"

say "starting the AWS emulator and loading the seeds"
bash localstack/start.sh >/dev/null
set -a; . "$GATEWAY_STATE_DIR/stack.env"; set +a

say "starting cargo lambda watch and the functions"
cargo lambda watch -A 127.0.0.1 -P "$RUNTIME_PORT" --only-lambda-apis --ignore-changes >"$STATE/watch.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 300); do port_free "$RUNTIME_PORT" || break; sleep 0.2; done
export GATEWAY_WS_MANAGEMENT_URL="http://127.0.0.1:$WS_PORT"
# Like Lambda's execution environments: CONCURRENCY processes of each function poll the same
# Runtime API, and functions/local runs up to that many invocations of a function at once.
CONCURRENCY="${GATEWAY_LOCAL_CONCURRENCY:-4}"
for fn in execute jobs catalog export batch-worker ws chat; do
    : >"$STATE/$fn.log"
    for _ in $(seq "$CONCURRENCY"); do
        AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$RUNTIME_PORT/.rt/$fn" AWS_LAMBDA_FUNCTION_NAME="$fn" \
        AWS_LAMBDA_FUNCTION_VERSION=1 AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1024 \
            "$BIN/$fn" >>"$STATE/$fn.log" 2>&1 &
        PIDS+=($!)
    done
done
"$BIN/local" --invoke-url "http://127.0.0.1:$RUNTIME_PORT" --http-port "$HTTP_PORT" --ws-port "$WS_PORT" \
    --concurrency "$CONCURRENCY" >"$STATE/local.out" 2>"$STATE/local.log" &
PIDS+=($!)
for _ in $(seq 100); do grep -q listening "$STATE/local.out" 2>/dev/null && break; sleep 0.1; done
API="http://127.0.0.1:$HTTP_PORT"
say "gateway API on $API, live progress on ws://127.0.0.1:$WS_PORT/?job_id=... (logs in $STATE)"

say "submitting $(basename "$TRANSCRIPT") ($(wc -c <"$TRANSCRIPT") bytes) to the summarize service"
# The command-line client submits, follows the job live (progress on stderr) and prints the
# final job as JSON.
"$BIN/llmgw" --endpoint "$API" --ws "ws://127.0.0.1:$WS_PORT" --org demo --json \
    run --service summarize "$TRANSCRIPT" >"$STATE/job.json"
"$PY" - "$API" "$STATE/job.json" "$STATE" <<'PYEOF'
import json, os, sys, time, urllib.request
api, job_path, state = sys.argv[1], sys.argv[2], sys.argv[3]
with open(job_path, encoding="utf-8") as f:
    job = json.load(f)
m = job["token_metrics"]
print("\n--- result ---")
print(job["result"].get("output") or f"(large result, at {job['result'].get('url')})")
print(f"--- {m['pass_count']} LLM passes, {m['total_prompt_tokens']} prompt + {m['total_completion_tokens']} completion tokens, "
      f"{m['total_duration_ms']} ms in LLM calls, estimated cost {m['total_estimated_cost']} ---")
for fmt in ("docx", "pdf", "html"):
    started = time.time()
    with urllib.request.urlopen(f"{api}/api/v1/jobs/{job['id']}/export/{fmt}?organization_id=demo&timezone=Europe/Paris") as r:
        data = r.read()
        name = r.headers.get("content-disposition", "").split('filename="')[-1].rstrip('"') or f"export.{fmt}"
    with open(os.path.join(state, name), "wb") as f:
        f.write(data)
    print(f"exported {fmt}: {len(data)} bytes in {time.time() - started:.2f} s -> {os.path.join(state, name)}")
PYEOF

if [ "$SERVE" = 1 ]; then
    say "still serving on $API; Ctrl-C stops everything"
    wait
fi
