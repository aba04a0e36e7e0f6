#!/usr/bin/env bash
# Usage: localstack/stop.sh
# Stops only what localstack/start.sh started: the moto server named by $REPO/.local/moto.pid
# (SIGTERM, then SIGKILL after 5 s) and, if start.sh used it, the docker compose LocalStack.
# Removes the pid file and marker. Idempotent: does nothing when nothing runs.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
LOCAL="${GATEWAY_STATE_DIR:-$REPO/.local}"
PIDFILE="$LOCAL/moto.pid"
COMPOSE_MARK="$LOCAL/compose.started"

log() { echo "stop.sh: $*" >&2; }

if [ -f "$PIDFILE" ]; then
    pid="$(cat "$PIDFILE")"
    # Only signal the pid if it is still a moto process (pids get reused).
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q moto; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "moto pid $pid ignored SIGTERM; sending SIGKILL"
            kill -9 "$pid" 2>/dev/null || true
        fi
        log "stopped moto (pid $pid)"
    else
        log "moto pid file was stale; nothing to stop"
    fi
    rm -f "$PIDFILE"
fi

if [ -f "$COMPOSE_MARK" ]; then
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        docker compose -f "$REPO/docker-compose.yml" down >&2 || true
        log "stopped docker compose LocalStack"
    fi
    rm -f "$COMPOSE_MARK"
fi
