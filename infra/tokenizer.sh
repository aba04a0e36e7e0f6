#!/usr/bin/env bash
# Usage: infra/tokenizer.sh STACK_NAME OWNER/NAME [TOKENIZER_JSON]
# Stores a HuggingFace tokenizer.json in a deployed stack's bucket, where every function
# loads it from (they never download from HuggingFace): the given file, or without one the
# repo's tokenizer.json fetched once from huggingface.co (HF_TOKEN for gated repos). Then a
# model's tokenizer_name or a flavor's tokenizer_override may name OWNER/NAME, and
# GET /api/v1/tokenizers lists it. AWS credentials and region come from the environment.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,8p' "$0" >&2; exit 2; }
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(bash "$REPO/localstack/venv.sh")"
exec "$VENV/bin/python" "$REPO/localstack/put_tokenizer.py" --stack "$1" "${@:2}" \
    ${GATEWAY_SEED_ENDPOINT:+--endpoint "$GATEWAY_SEED_ENDPOINT"}
