#!/usr/bin/env python3
"""Load catalog seeds into the `P-catalog` table (docs/local-contract.md), idempotently and
without overwriting edits: an object that already exists is kept as it is.

Usage: load_seeds.py --endpoint http://127.0.0.1:4566 --prefix llmgw --seeds seeds/   (local stack)
       load_seeds.py --stack llmgw --seeds seeds/    (a deployed stack: AWS credentials and
                     region from the environment, as the AWS CLI reads them; the stack's
                     outputs name the catalog table, the artifacts bucket and the KMS key)

Reads, relative to --seeds (each file optional):
  service-types.json    service types (code, name {en,fr}, supports_*, default_processing_mode)
  prompt-types.json     prompt types (code, name, service_type code)
  providers.json        providers. String values may hold ${VAR} or ${VAR:-default}, filled
                        from the environment. A non-empty `api_key` is encrypted with KMS
                        (alias/P-provider-keys) and stored base64 as `api_key_ciphertext`;
                        `api_key` itself is never stored.
  models.json           models.
  prompts.json          prompts; `content_file` (path relative to --seeds) gives `content`.
  presets.json          flavor presets (system presets).
  services/*.json       one service each, with an embedded `flavors` list; each flavor gets
                        `service_id`. A field named `X_file` becomes `X` holding the file's text.
  document-templates.json  system document templates; `file` (relative to --seeds) is the
                        .docx, uploaded to s3://P-artifacts/templates/{id}.docx when the record
                        is new; `placeholders` lists what the file holds (a Rust test checks it).
Every record gets `kind`, `id` (a fixed uuid5 of its kind and name when the seed has none),
`created_at`/`updated_at`, and the unique-name claims the catalog API checks (the key
formats of gateway_core::engine::catalog). Floats become Decimal, nulls are dropped.
"""
import argparse
import base64
import datetime
import glob
import hashlib
import json
import os
import re
import sys
import uuid
from decimal import Decimal

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

SEED_NAMESPACE = uuid.UUID("0b0d3f3e-5eed-4000-8000-000000000000")

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


def scoped(kind, org, value):
    return f"{kind}:{org or '*'}:{value.strip().lower()}"


def unique_keys(kind, body):
    """The unique-name claims of a record (same formats as the catalog API)."""
    if kind == "PROVIDER":
        return [f"provider-name:{body['name'].strip().lower()}"]
    if kind == "MODEL":
        return [f"model-identifier:{body['provider_id']}:{body['model_identifier'].strip()}"]
    if kind == "SERVICE":
        org = body.get("organization_id")
        return [scoped("service-name", org, body["name"]), scoped("service-route", org, body["route"])]
    if kind == "FLAVOR":
        return [f"flavor-name:{body['service_id']}:{body['name'].strip().lower()}"]
    if kind == "PROMPT":
        return [scoped("prompt-name", body.get("organization_id"), body["name"])]
    if kind == "SERVICE_TYPE":
        return [f"service-type:{body['code']}"]
    if kind == "PROMPT_TYPE":
        return [f"prompt-type:{body['code']}"]
    if kind == "PRESET":
        return [f"preset-name:{body['name'].strip().lower()}"]
    if kind == "DOCUMENT_TEMPLATE" and body.get("is_default"):
        return ["document-template:global-default"]
    return []


def with_id(kind, body, natural_key, where):
    """The record with its id: the seed's, or a fixed uuid5 of kind and natural key."""
    body = dict(body)
    if not body.get("id"):
        if not body.get(natural_key):
            raise SystemExit(f"load_seeds: {where}: needs `id` or `{natural_key}`")
        body["id"] = str(uuid.uuid5(SEED_NAMESPACE, f"{kind}:{body[natural_key]}"))
    return body


class Loader:
    def __init__(self, table):
        self.table = table
        self.now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self.written, self.kept = {}, {}

    def put(self, kind, body, pk, sk):
        """Claims the record's unique keys, then writes it unless it exists."""
        body = clean({**body, "created_at": body.get("created_at", self.now),
                      "updated_at": body.get("updated_at", self.now)})
        rid = body["id"]
        for key in unique_keys(kind, body):
            try:
                self.table.put_item(
                    Item={"pk": f"UNIQUE#{key}", "sk": "#UNIQUE", "owner": rid},
                    ConditionExpression="attribute_not_exists(pk) OR #o = :o",
                    ExpressionAttributeNames={"#o": "owner"},
                    ExpressionAttributeValues={":o": rid})
            except ClientError as e:
                if e.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
                print(f"load_seeds: warning: {kind.lower()} {rid}: '{key}' belongs to another object; seed skipped",
                      file=sys.stderr)
                self.kept[kind] = self.kept.get(kind, 0) + 1
                return
        try:
            self.table.put_item(Item={**body, "pk": pk, "sk": sk, "kind": kind},
                                ConditionExpression="attribute_not_exists(pk)")
            self.written[kind] = self.written.get(kind, 0) + 1
        except ClientError as e:
            if e.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            self.kept[kind] = self.kept.get(kind, 0) + 1

    def top(self, kind, body):
        self.put(kind, body, f"{kind}#{body['id']}", f"#{kind}")


def client_kwargs(endpoint):
    """boto3 client arguments: an emulator's (test credentials) or AWS's (the environment's)."""
    kw = dict(config=Config(retries={"max_attempts": 3, "mode": "standard"}))
    if endpoint:
        kw.update(
            endpoint_url=endpoint,
            region_name=os.environ.get("AWS_REGION", "us-east-1"),
            aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
            aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        )
    return kw


def stack_outputs(kw, stack_name, required):
    """The outputs of a deployed stack; exits naming any of `required` it lacks."""
    stack = boto3.client("cloudformation", **kw).describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    missing = set(required) - outputs.keys()
    if missing:
        sys.exit(f"stack {stack_name} has no output {', '.join(sorted(missing))}")
    return outputs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", help="an emulator's URL; without it, AWS")
    names = ap.add_mutually_exclusive_group(required=True)
    names.add_argument("--prefix", help="resource name prefix of a local stack")
    names.add_argument("--stack", help="name of a deployed CloudFormation stack")
    ap.add_argument("--seeds", required=True, help="seeds directory")
    args = ap.parse_args()
    seeds = args.seeds
    kw = client_kwargs(args.endpoint)
    if args.stack:
        outputs = stack_outputs(kw, args.stack, ["CatalogTableName", "ArtifactsBucketName", "ProviderKeysKeyId"])
        table_name, bucket, alias = (outputs["CatalogTableName"], outputs["ArtifactsBucketName"],
                                     outputs["ProviderKeysKeyId"])
    else:
        table_name, bucket, alias = (f"{args.prefix}-catalog", f"{args.prefix}-artifacts",
                                     f"alias/{args.prefix}-provider-keys")
    table = boto3.resource("dynamodb", **kw).Table(table_name)
    kms = boto3.client("kms", **kw)
    loader = Loader(table)

    def entries(name):
        path = os.path.join(seeds, name)
        return list(enumerate(load_json(path))) if os.path.exists(path) else []

    service_type_ids = {}
    for i, entry in entries("service-types.json"):
        entry = with_id("SERVICE_TYPE", {"is_system": True, "is_active": True, **entry}, "code",
                        f"service-types.json[{i}]")
        service_type_ids[entry["code"]] = entry["id"]
        loader.top("SERVICE_TYPE", entry)
    for i, entry in entries("prompt-types.json"):
        entry = with_id("PROMPT_TYPE", {"is_system": True, "is_active": True, **entry}, "code",
                        f"prompt-types.json[{i}]")
        code = entry.pop("service_type", None)
        if code:
            entry["service_type_id"] = service_type_ids.get(code)
        loader.top("PROMPT_TYPE", entry)
    for i, prov in enumerate(substitute([e for _, e in entries("providers.json")])):
        prov = with_id("PROVIDER", prov, "name", f"providers.json[{i}]")
        key = prov.pop("api_key", None)
        prov.pop("api_key_ciphertext", None)
        if key:
            blob = kms.encrypt(KeyId=alias, Plaintext=key.encode("utf-8"))["CiphertextBlob"]
            prov["api_key_ciphertext"] = base64.b64encode(blob).decode("ascii")
        loader.top("PROVIDER", prov)
    for i, model in enumerate(substitute([e for _, e in entries("models.json")])):
        loader.top("MODEL", with_id("MODEL", model, "model_identifier", f"models.json[{i}]"))
    for i, prompt in entries("prompts.json"):
        prompt = inline_files(with_id("PROMPT", prompt, "name", f"prompts.json[{i}]"), seeds, f"prompt {i}")
        loader.top("PROMPT", prompt)
    for i, preset in entries("presets.json"):
        preset = with_id("PRESET", {"is_system": True, "is_active": True, **preset}, "name", f"presets.json[{i}]")
        loader.top("PRESET", preset)
    for path in sorted(glob.glob(os.path.join(seeds, "services", "*.json"))):
        name = os.path.relpath(path, seeds)
        svc = with_id("SERVICE", load_json(path), "name", name)
        sid = svc["id"]
        flavors = svc.get("flavors") or []
        svc = inline_files({k: v for k, v in svc.items() if k != "flavors"}, seeds, name)
        svc.setdefault("route", svc["name"].strip().lower().replace(" ", "-").replace("_", "-"))
        loader.top("SERVICE", svc)
        for j, fl in enumerate(flavors):
            fl = inline_files(with_id("FLAVOR", fl, "name", f"{name} flavors[{j}]"), seeds, f"{name} flavor {j}")
            fl["service_id"] = sid
            loader.put("FLAVOR", fl, f"SERVICE#{sid}", f"FLAVOR#{fl['id']}")

    # Path-style addressing for an emulator; AWS picks its own.
    s3 = boto3.client("s3", **{**kw, "config": Config(retries={"max_attempts": 3, "mode": "standard"},
                                                      s3={"addressing_style": "path" if args.endpoint else "auto"})})
    for i, template in entries("document-templates.json"):
        template = with_id("DOCUMENT_TEMPLATE", template, "name_fr", f"document-templates.json[{i}]")
        path = os.path.join(seeds, template.pop("file"))
        with open(path, "rb") as f:
            data = f.read()
        template.update(file_name=os.path.basename(path), file_size=len(data),
                        file_hash=hashlib.sha256(data).hexdigest())
        pk = f"DOCUMENT_TEMPLATE#{template['id']}"
        if "Item" not in table.get_item(Key={"pk": pk, "sk": "#DOCUMENT_TEMPLATE"}):
            s3.put_object(Bucket=bucket, Key=f"templates/{template['id']}.docx", Body=data,
                          ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document")
        loader.top("DOCUMENT_TEMPLATE", template)

    def summary(counts):
        return ", ".join(f"{n} {k.lower().replace('_', ' ')}" for k, n in sorted(counts.items())) or "nothing"
    print(f"load_seeds: wrote {summary(loader.written)} to {table_name}; "
          f"kept existing {summary(loader.kept)}", file=sys.stderr)


if __name__ == "__main__":
    main()
