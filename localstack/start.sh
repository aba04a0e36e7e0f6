#!/usr/bin/env bash
# Usage: localstack/start.sh
# Starts the local AWS emulator on 127.0.0.1:${MOTO_PORT:-4566}, provisions every resource of
# docs/local-contract.md for prefix ${GATEWAY_PREFIX:-llmgw}, loads seeds/ into the catalog,
# writes $REPO/.local/stack.env (export lines) and prints it. Idempotent: a moto that this
# script started and that still answers is reused. Stop with localstack/stop.sh.
#   default: moto server from the project venv (pid/log in $REPO/.local/moto.{pid,log})
#   GATEWAY_EMULATOR=localstack and a Docker daemon that answers: docker compose up -d
# Env: MOTO_PORT, GATEWAY_STATE_DIR (pid/log/env folder, default $REPO/.local), GATEWAY_PREFIX, GATEWAY_SEEDS_DIR (default $REPO/seeds), GATEWAY_EMULATOR,
#      GATEWAY_VISIBILITY_TIMEOUT, GATEWAY_MAX_RECEIVES, GATEWAY_VENV.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
LOCAL="${GATEWAY_STATE_DIR:-$REPO/.local}"
PORT="${MOTO_PORT:-4566}"
PREFIX="${GATEWAY_PREFIX:-llmgw}"
SEEDS="${GATEWAY_SEEDS_DIR:-$REPO/seeds}"
ENDPOINT="http://127.0.0.1:$PORT"
PIDFILE="$LOCAL/moto.pid"
LOG="$LOCAL/moto.log"
COMPOSE_MARK="$LOCAL/compose.started"
ENV_FILE="$LOCAL/stack.env"
mkdir -p "$LOCAL"

log() { echo "start.sh: $*" >&2; }

VENV="$(bash "$HERE/venv.sh")"
PY="$VENV/bin/python"

# True when something answers HTTP on the endpoint (any status counts).
answers() {
    "$PY" - "$ENDPOINT" <<'EOF' 2>/dev/null
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1] + "/", timeout=1)
except urllib.error.HTTPError:
    pass
except Exception:
    sys.exit(1)
EOF
}

# True when the pid file names a live moto server that we started.
ours_alive() {
    [ -f "$PIDFILE" ] || return 1
    local pid
    pid="$(cat "$PIDFILE")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q moto
}

wait_ready() {
    local deadline=$((SECONDS + 30))
    until answers; do
        if [ -n "${1:-}" ] && ! kill -0 "$1" 2>/dev/null; then
            log "emulator process $1 exited; last log lines:"; tail -n 20 "$LOG" >&2 || true
            exit 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "emulator at $ENDPOINT did not answer within 30 s (log: $LOG)"
            tail -n 20 "$LOG" >&2 || true
            exit 1
        fi
        sleep 0.2
    done
}

if [ "${GATEWAY_EMULATOR:-moto}" = localstack ] && command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    log "Docker answers and GATEWAY_EMULATOR=localstack: docker compose up -d"
    [ -n "${LOCALSTACK_AUTH_TOKEN:-}" ] || log "warning: LOCALSTACK_AUTH_TOKEN is empty; current LocalStack images need it"
    MOTO_PORT="$PORT" docker compose -f "$REPO/docker-compose.yml" up -d >&2
    touch "$COMPOSE_MARK"
    LOG="$LOCAL/localstack.log"
    wait_ready
else
    [ "${GATEWAY_EMULATOR:-moto}" = localstack ] && log "GATEWAY_EMULATOR=localstack but no Docker daemon answers; using moto"
    if ours_alive && answers; then
        log "reusing moto (pid $(cat "$PIDFILE")) at $ENDPOINT"
    else
        if ours_alive; then
            log "moto pid $(cat "$PIDFILE") is alive but does not answer on $ENDPOINT; restarting it"
            bash "$HERE/stop.sh"
        fi
        rm -f "$PIDFILE"
        if answers; then
            log "something else already answers on $ENDPOINT (not started by this script);"
            log "stop it or choose another port with MOTO_PORT=..."
            exit 1
        fi
        log "starting moto on $ENDPOINT (log: $LOG)"
        nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" >>"$LOG" 2>&1 </dev/null &
        echo $! >"$PIDFILE"
        wait_ready "$(cat "$PIDFILE")"
    fi
fi

log "provisioning prefix $PREFIX"
"$PY" "$HERE/provision.py" --endpoint "$ENDPOINT" --prefix "$PREFIX" --env-file "$ENV_FILE" >/dev/null

if [ -f "$SEEDS/providers.json" ] || [ -f "$SEEDS/models.json" ] || [ -d "$SEEDS/services" ]; then
    log "loading seeds from $SEEDS"
    "$PY" "$HERE/load_seeds.py" --endpoint "$ENDPOINT" --prefix "$PREFIX" --seeds "$SEEDS"
else
    log "no seeds in $SEEDS; catalog left empty"
fi

log "environment written to $ENV_FILE (source it):"
cat "$ENV_FILE"
