#!/usr/bin/env bash
# LocalStack init hook (docker-compose.yml mounts this folder at /etc/localstack/init and the
# repository at /opt/gateway): provisions the same resources as localstack/start.sh does for
# moto, from the same script (which reads infra/template.yaml), then loads the seeds.
set -euo pipefail
PY="$(command -v python3 || command -v python)"
"$PY" -c 'import boto3, yaml' 2>/dev/null || "$PY" -m pip install --quiet boto3 pyyaml
"$PY" /opt/gateway/localstack/provision.py --endpoint http://localhost:4566 \
    --prefix "${GATEWAY_PREFIX:-llmgw}" --env-file /tmp/gateway-stack.env
"$PY" /opt/gateway/localstack/load_seeds.py --endpoint http://localhost:4566 \
    --prefix "${GATEWAY_PREFIX:-llmgw}" --seeds /opt/gateway/seeds
