#!/usr/bin/env bash
# Usage: infra/seed.sh STACK_NAME [SEEDS_DIR]
# Loads the catalog seeds (service and prompt types, prompts, presets, the built-in document
# template, the example provider, model and service) into a deployed stack, once after the
# first `sam deploy` or again after seeds change. Like the local stack, it never overwrites
# an object that already exists (edits made through the API are kept).
# AWS credentials and region come from the environment (AWS_PROFILE, AWS_REGION, ...), as
# for the AWS CLI. The example provider reads LLM_BASE_URL, LLM_API_KEY (encrypted with the
# stack's KMS key, never stored in clear) and LLM_MODEL from the environment.
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,10p' "$0" >&2; exit 2; }
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(bash "$REPO/localstack/venv.sh")"
exec "$VENV/bin/python" "$REPO/localstack/load_seeds.py" --stack "$1" --seeds "${2:-$REPO/seeds}" \
    ${GATEWAY_SEED_ENDPOINT:+--endpoint "$GATEWAY_SEED_ENDPOINT"}
