#!/usr/bin/env bash
# Usage: infra/check.sh
# Static checks of the infrastructure as code (tests/run.sh runs it before the cargo tests):
#   1. cfn-lint infra/template.yaml
#   2. sam validate --lint -t infra/template.yaml   (offline: no AWS credentials needed)
#   3. checkov --framework cloudformation: fails on any failed check not accepted, with its
#      reason, in infra/checkov-accepted.md
#   4. infra/check_local_matches.py: the template and localstack/provision.py agree
# Tools live in venvs under .local/ (created on first use by localstack/venv.sh from
# infra/requirements-sam.txt and infra/requirements-checkov.txt, which cannot share a venv).
# Prints one line per tool; exits non-zero when any check fails (all of them still run).
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
LOCAL="$REPO/.local"
TEMPLATE=infra/template.yaml
OUT="$LOCAL/infra-check"
mkdir -p "$OUT"

venv() { # venv DIR REQUIREMENTS: creates/updates $LOCAL/DIR (in parallel with the others)
    GATEWAY_VENV="$LOCAL/$1" GATEWAY_VENV_REQUIREMENTS="$REPO/$2" bash localstack/venv.sh >/dev/null
}
venv infra-venv-sam infra/requirements-sam.txt & sam_pid=$!
venv infra-venv-checkov infra/requirements-checkov.txt & checkov_pid=$!
PROJECT_VENV="$(bash localstack/venv.sh)" || exit 1
wait "$sam_pid" || { echo "infra/check.sh: could not install infra/requirements-sam.txt" >&2; exit 1; }
wait "$checkov_pid" || { echo "infra/check.sh: could not install infra/requirements-checkov.txt" >&2; exit 1; }
SAM_VENV="$LOCAL/infra-venv-sam" CHECKOV_VENV="$LOCAL/infra-venv-checkov"

# The four checks run in parallel (most of their time is interpreter start-up); each one's
# output goes to $OUT/NAME.log and is shown when it fails.
NAMES=() PIDS=() STARTED=$SECONDS
run() { # run NAME COMMAND...
    local name="$1"
    shift
    NAMES+=("$name")
    "$@" >"$OUT/$name.log" 2>&1 &
    PIDS+=($!)
}

# cfn-lint and SAM must not depend on the caller's AWS setup: fixed region, no profile, SAM's
# config (telemetry off, weekly version check) kept under .local instead of ~/.aws-sam.
offline() {
    env -u AWS_PROFILE -u AWS_DEFAULT_PROFILE AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
        SAM_CLI_TELEMETRY=0 __SAM_CLI_APP_DIR="$LOCAL/infra-sam-config" "$@"
}

run cfn-lint offline "$SAM_VENV/bin/cfn-lint" "$TEMPLATE"
run sam-validate offline "$SAM_VENV/bin/sam" validate --lint -t "$TEMPLATE"
ACCEPTED="$(grep -oE '^\| `CKV2?_[A-Z0-9_]+`' infra/checkov-accepted.md | grep -oE 'CKV2?_[A-Z0-9_]+' | paste -sd, -)"
run checkov env BC_API_KEY= "$CHECKOV_VENV/bin/checkov" --quiet --compact --skip-download \
    --framework cloudformation -f "$TEMPLATE" --skip-check "${ACCEPTED:-none}"
run local-matches "$PROJECT_VENV/bin/python" infra/check_local_matches.py

FAILED=0
for i in "${!NAMES[@]}"; do
    name="${NAMES[$i]}"
    if wait "${PIDS[$i]}"; then
        summary="$(grep -m1 -E 'Passed checks|valid SAM Template|checks passed' "$OUT/$name.log")"
        echo "infra/check.sh: $name ok: ${summary:-no findings}"
    else
        echo "infra/check.sh: $name FAILED; output:"
        sed 's/^/    /' "$OUT/$name.log"
        FAILED=1
    fi
done

if [ "$FAILED" -ne 0 ]; then
    echo "infra/check.sh: FAILED (logs in $OUT)"
    exit 1
fi
echo "infra/check.sh: all IaC checks passed ($((SECONDS - STARTED)) s)"
