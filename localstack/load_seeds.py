#!/usr/bin/env python3
"""Load catalog seeds into the `P-catalog` table (docs/local-contract.md).

Usage: load_seeds.py --endpoint http://127.0.0.1:4566 --prefix llmgw --seeds seeds/

Reads, relative to --seeds:
  providers.json        list of providers. String values may hold ${VAR} or ${VAR:-default},
                        filled from the environment. A non-empty `api_key` is encrypted with
                        KMS (alias/P-provider-keys) and stored base64 as `api_key_ciphertext`;
                        `api_key` itself is never stored.
  models.json           list of models.
  services/*.json       one service each, with an embedded `flavors` list. The service is
                        stored without `flavors`; each flavor gets `service_id`. A field named
                        `X_file` (path relative to --seeds) becomes `X` holding the file's text.
Floats become Decimal, nulls are dropped. put_item overwrites, so reruns are idempotent.
"""
import argparse
import base64
import glob
import json
import os
import re
import sys
from decimal import Decimal

import boto3
from botocore.config import Config

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f, parse_float=Decimal)


def substitute(value):
    """Replace ${VAR} / ${VAR:-default} in every string of a JSON value."""
    if isinstance(value, str):
        def repl(m):
            name, default = m.group(1), m.group(2)
            got = os.environ.get(name)
            if got is None or (got == "" and default is not None):
                if default is None:
                    print(f"load_seeds: warning: ${{{name}}} is not set; using empty string", file=sys.stderr)
                    return ""
                return default
            return got
        return PLACEHOLDER.sub(repl, value)
    if isinstance(value, list):
        return [substitute(v) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v) for k, v in value.items()}
    return value


def clean(value):
    """Drop nulls (recursively) and make numbers DynamoDB-friendly."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [clean(v) for v in value if v is not None]
    if isinstance(value, float):  # only reachable for values built in code
        return Decimal(str(value))
    return value


def inline_files(obj, seeds_dir, where):
    out = {}
    for k, v in obj.items():
        if k.endswith("_file") and isinstance(v, str):
            path = os.path.join(seeds_dir, v)
            try:
                with open(path, encoding="utf-8") as f:
                    out[k[: -len("_file")]] = f.read()
            except OSError as e:
                raise SystemExit(f"load_seeds: {where}: cannot read {k}={v!r}: {e}")
        else:
            out[k] = v
    return out


def require_id(obj, where):
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not obj["id"]:
        raise SystemExit(f"load_seeds: {where}: every entry needs a non-empty string `id`")
    return obj["id"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--seeds", required=True, help="seeds directory")
    args = ap.parse_args()
    seeds = args.seeds
    kw = dict(
        endpoint_url=args.endpoint,
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        config=Config(retries={"max_attempts": 3, "mode": "standard"}),
    )
    table = boto3.resource("dynamodb", **kw).Table(f"{args.prefix}-catalog")
    kms = boto3.client("kms", **kw)
    alias = f"alias/{args.prefix}-provider-keys"
    items = []

    path = os.path.join(seeds, "providers.json")
    if os.path.exists(path):
        for i, prov in enumerate(substitute(load_json(path))):
            pid = require_id(prov, f"providers.json[{i}]")
            prov = dict(prov)
            key = prov.pop("api_key", None)
            prov.pop("api_key_ciphertext", None)
            if key:
                blob = kms.encrypt(KeyId=alias, Plaintext=key.encode("utf-8"))["CiphertextBlob"]
                prov["api_key_ciphertext"] = base64.b64encode(blob).decode("ascii")
            items.append({**prov, "pk": f"PROVIDER#{pid}", "sk": "#PROVIDER"})

    path = os.path.join(seeds, "models.json")
    if os.path.exists(path):
        for i, model in enumerate(load_json(path)):
            mid = require_id(model, f"models.json[{i}]")
            items.append({**model, "pk": f"MODEL#{mid}", "sk": "#MODEL"})

    for path in sorted(glob.glob(os.path.join(seeds, "services", "*.json"))):
        name = os.path.relpath(path, seeds)
        svc = load_json(path)
        sid = require_id(svc, name)
        flavors = svc.get("flavors") or []
        svc = inline_files({k: v for k, v in svc.items() if k != "flavors"}, seeds, name)
        items.append({**svc, "pk": f"SERVICE#{sid}", "sk": "#SERVICE"})
        for j, fl in enumerate(flavors):
            fid = require_id(fl, f"{name} flavors[{j}]")
            fl = inline_files(fl, seeds, f"{name} flavor {fid}")
            fl["service_id"] = sid
            items.append({**fl, "pk": f"SERVICE#{sid}", "sk": f"FLAVOR#{fid}"})

    with table.batch_writer(overwrite_by_pkeys=["pk", "sk"]) as batch:
        for item in items:
            batch.put_item(Item=clean(item))
    kinds = {}
    for it in items:
        kind = it["sk"].split("#")[1] if it["sk"].startswith("#") else "FLAVOR"
        kinds[kind] = kinds.get(kind, 0) + 1
    summary = ", ".join(f"{n} {k.lower()}" for k, n in sorted(kinds.items())) or "nothing"
    print(f"load_seeds: wrote {summary} to {args.prefix}-catalog", file=sys.stderr)


if __name__ == "__main__":
    main()
