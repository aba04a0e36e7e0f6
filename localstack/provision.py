#!/usr/bin/env python3
"""Create (idempotently) every AWS resource of docs/local-contract.md on an emulator.

Usage: provision.py --endpoint http://127.0.0.1:4566 --prefix llmgw [--env-file PATH]

Prints `export NAME=value` for every contract variable (and writes them to --env-file).
Safe to run repeatedly and concurrently with other prefixes; tests call it once per test
binary with a unique prefix, so it does no waiting on moto (tables are ACTIVE at once).
Env: GATEWAY_VISIBILITY_TIMEOUT (default 30), GATEWAY_MAX_RECEIVES (default: the template's
MaxReceives default, 5).

What it creates is read from infra/template.yaml, the deployment template, so the two
cannot drift: every DynamoDB table (name, billing mode, keys, GSIs, stream, TTL), every SQS
queue (name, FIFO, deduplication, retention, redrive to its DLQ), every S3 bucket and every
KMS key alias, and which resource each GATEWAY_* variable names (the functions' Globals
environment). Local differences, on purpose:
  - names drop the `-${AWS::AccountId}` / `-${AWS::Region}` parts of the template's
    `!Sub` (only the S3 bucket has them, for global uniqueness): `P-artifacts`;
  - the queues' visibility timeout is GATEWAY_VISIBILITY_TIMEOUT (30 s, tests use less),
    not the template's 6 x WorkerTimeoutSeconds;
  - encryption, point-in-time recovery, versioning, lifecycle, bucket policy, IAM, log
    groups, the API and the functions themselves are not created (functions/local and
    `cargo lambda watch` stand in for the last two).
infra/check_local_matches.py (run by infra/check.sh) provisions a throwaway moto with this
script and compares what it finds with the template.
"""
import argparse
import copy
import json
import os
import re
import shlex
import sys
import time

import boto3
import yaml
from botocore.config import Config
from botocore.exceptions import ClientError

REGION = "us-east-1"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(REPO, "infra", "template.yaml")
# The variables the functions read, in the order they are printed (after GATEWAY_PREFIX).
RESOURCE_VARS = (
    "GATEWAY_JOBS_TABLE",
    "GATEWAY_CATALOG_TABLE",
    "GATEWAY_BUCKET",
    "GATEWAY_JOB_QUEUE_URGENT_URL",
    "GATEWAY_JOB_QUEUE_URL",
    "GATEWAY_JOB_QUEUE_BULK_URL",
    "GATEWAY_JOB_DLQ_URL",
    "GATEWAY_KMS_KEY_ID",
    "GATEWAY_BREAKERS_TABLE",
    "GATEWAY_USAGE_TABLE",
    "GATEWAY_CONNECTIONS_TABLE",
)


# ---------------------------------------------------------------- template


class _CfnLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """SafeLoader that turns CloudFormation short tags (!Ref, !Sub, !GetAtt, ...) into
    their long form ({"Ref": ...}, {"Fn::Sub": ...}, ...)."""


def _cfn_tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Fn::" + suffix: value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template(path=TEMPLATE):
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=_CfnLoader)


def local_value(value, params):
    """The local value of a template scalar: a literal, a Ref to a parameter, or an Fn::Sub
    of parameters; `${AWS::...}` pseudo parameters (and the dash before them) are dropped."""
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            return params[value["Ref"]]
        if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
            text = re.sub(r"-?\$\{AWS::[A-Za-z]+\}", "", value["Fn::Sub"])
            return re.sub(r"\$\{([A-Za-z0-9]+)\}", lambda m: str(params[m.group(1)]), text)
        raise SystemExit(f"provision: cannot evaluate {value!r} from infra/template.yaml locally")
    return value


def _ref(value):
    """Logical id of a {"Ref": X} or {"Fn::GetAtt": [X, ...]} value, else None."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            return value["Fn::GetAtt"][0]
    return None


def _flag(value):
    return "true" if value in (True, "true", "True") else "false"


def local_plan(template, prefix, visibility, max_receives=None):
    """What to create locally, derived from the template: tables, queues (dead-letter
    queues first), buckets, KMS aliases, and the variable -> logical id map."""
    params = {name: spec.get("Default") for name, spec in template.get("Parameters", {}).items()}
    params["Prefix"] = prefix
    if max_receives is not None:
        params["MaxReceives"] = max_receives
    resources = template["Resources"]
    of_type = lambda kind: [(lid, r.get("Properties", {})) for lid, r in resources.items() if r["Type"] == kind]

    tables = []
    for lid, props in of_type("AWS::DynamoDB::Table"):
        spec = {
            "TableName": local_value(props["TableName"], params),
            "BillingMode": props.get("BillingMode", "PROVISIONED"),
            "AttributeDefinitions": copy.deepcopy(props["AttributeDefinitions"]),
            "KeySchema": copy.deepcopy(props["KeySchema"]),
        }
        if props.get("GlobalSecondaryIndexes"):
            spec["GlobalSecondaryIndexes"] = [
                {"IndexName": g["IndexName"], "KeySchema": copy.deepcopy(g["KeySchema"]),
                 "Projection": copy.deepcopy(g["Projection"])}
                for g in props["GlobalSecondaryIndexes"]
            ]
        stream = props.get("StreamSpecification")
        if stream:
            spec["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
        ttl = props.get("TimeToLiveSpecification") or {}
        tables.append({"id": lid, "spec": spec,
                       "ttl": ttl.get("AttributeName") if ttl.get("Enabled") in (True, "true") else None})

    queues = []
    for lid, props in of_type("AWS::SQS::Queue"):
        attributes = {}
        if "FifoQueue" in props:
            attributes["FifoQueue"] = _flag(props["FifoQueue"])
        if "ContentBasedDeduplication" in props:
            attributes["ContentBasedDeduplication"] = _flag(props["ContentBasedDeduplication"])
        if "MessageRetentionPeriod" in props:
            attributes["MessageRetentionPeriod"] = str(local_value(props["MessageRetentionPeriod"], params))
        if "VisibilityTimeout" in props:
            attributes["VisibilityTimeout"] = str(visibility)
        redrive = props.get("RedrivePolicy")
        queues.append({
            "id": lid,
            "name": local_value(props["QueueName"], params),
            "attributes": attributes,
            "dlq": _ref(redrive["deadLetterTargetArn"]) if redrive else None,
            "max_receives": str(local_value(redrive["maxReceiveCount"], params)) if redrive else None,
        })
    # A queue's dead-letter queue must exist first.
    queues.sort(key=lambda q: q["dlq"] is not None)

    buckets = [{"id": lid, "name": local_value(props["BucketName"], params)}
               for lid, props in of_type("AWS::S3::Bucket")]
    aliases = [{"key": _ref(props["TargetKeyId"]), "alias": local_value(props["AliasName"], params)}
               for _, props in of_type("AWS::KMS::Alias")]

    env = (template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}))
    var_refs = {name: _ref(value) for name, value in env.items() if _ref(value)}
    return {"tables": tables, "queues": queues, "buckets": buckets, "aliases": aliases,
            "var_refs": var_refs, "params": params}


# ---------------------------------------------------------------- AWS


def client(name, endpoint):
    return boto3.client(
        name,
        endpoint_url=endpoint,
        region_name=os.environ.get("AWS_REGION", REGION),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        config=Config(retries={"max_attempts": 3, "mode": "standard"},
                      s3={"addressing_style": "path"}),
    )


def code(err):
    return err.response.get("Error", {}).get("Code", "")


def wait_active(ddb, table):
    # moto returns ACTIVE immediately; LocalStack/real AWS may need a moment.
    for _ in range(120):
        desc = ddb.describe_table(TableName=table)["Table"]
        gsis = desc.get("GlobalSecondaryIndexes", [])
        if desc["TableStatus"] == "ACTIVE" and all(g.get("IndexStatus", "ACTIVE") == "ACTIVE" for g in gsis):
            return desc
        time.sleep(0.5)
    raise SystemExit(f"provision: table {table} did not become ACTIVE")


def ensure_table(ddb, spec, ttl_attribute):
    """Creates the table; repairs its stream and TTL when it exists with other settings.
    Returns the latest stream ARN ("" without a stream)."""
    table = spec["TableName"]
    try:
        ddb.create_table(**spec)
    except ClientError as e:
        if code(e) != "ResourceInUseException":
            raise
    desc = wait_active(ddb, table)
    want_stream = spec.get("StreamSpecification")
    if want_stream:
        have = desc.get("StreamSpecification") or {}
        if not have.get("StreamEnabled") or have.get("StreamViewType") != want_stream["StreamViewType"]:
            ddb.update_table(TableName=table, StreamSpecification=want_stream)
            desc = wait_active(ddb, table)
    if ttl_attribute:
        ttl = ddb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
        if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING") or ttl.get("AttributeName") != ttl_attribute:
            ddb.update_time_to_live(TableName=table, TimeToLiveSpecification={
                "Enabled": True, "AttributeName": ttl_attribute})
    return desc.get("LatestStreamArn", "")


def ensure_queue(sqs, name, attributes):
    create = {"FifoQueue": "true"} if attributes.get("FifoQueue") == "true" else {}
    try:
        url = sqs.create_queue(QueueName=name, Attributes=create)["QueueUrl"]
    except ClientError as e:
        if code(e) not in ("QueueAlreadyExists", "AWS.SimpleQueueService.QueueAlreadyExists"):
            raise
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    # set_queue_attributes is idempotent and also repairs a queue made with other settings.
    sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return url


def ensure_bucket(s3, bucket):
    try:
        s3.create_bucket(Bucket=bucket)
    except ClientError as e:
        if code(e) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


def ensure_kms_key(kms, alias):
    try:
        return kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"]
    except ClientError as e:
        if code(e) != "NotFoundException":
            raise
    key_id = kms.create_key(
        Description=f"provider API keys ({alias})",
        KeyUsage="ENCRYPT_DECRYPT",
        KeySpec="SYMMETRIC_DEFAULT",
    )["KeyMetadata"]["KeyId"]
    try:
        kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    except ClientError as e:
        if code(e) != "AlreadyExistsException":
            raise
        # Lost a race with a concurrent provisioner: use the key the alias points to.
        kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
        key_id = kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"]
    return key_id


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", required=True, help="emulator URL, e.g. http://127.0.0.1:4566")
    ap.add_argument("--prefix", required=True, help="resource name prefix, e.g. llmgw")
    ap.add_argument("--env-file", help="also write the export lines to this file")
    args = ap.parse_args()
    p, ep = args.prefix, args.endpoint.rstrip("/")
    visibility = int(os.environ.get("GATEWAY_VISIBILITY_TIMEOUT", "30"))
    max_receives = os.environ.get("GATEWAY_MAX_RECEIVES")
    plan = local_plan(load_template(), p, visibility, int(max_receives) if max_receives else None)
    max_receives = str(plan["params"]["MaxReceives"])

    ddb, sqs, s3, kms = (client(n, ep) for n in ("dynamodb", "sqs", "s3", "kms"))

    physical, stream_arns = {}, {}  # logical id -> what !Ref gives (name, URL, key id)
    for table in plan["tables"]:
        stream_arns[table["id"]] = ensure_table(ddb, table["spec"], table["ttl"])
        physical[table["id"]] = table["spec"]["TableName"]
    arns = {}
    for queue in plan["queues"]:
        attributes = dict(queue["attributes"])
        if queue["dlq"]:
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": arns[queue["dlq"]], "maxReceiveCount": queue["max_receives"]})
        url = ensure_queue(sqs, queue["name"], attributes)
        physical[queue["id"]] = url
        arns[queue["id"]] = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for bucket in plan["buckets"]:
        ensure_bucket(s3, bucket["name"])
        physical[bucket["id"]] = bucket["name"]
    for alias in plan["aliases"]:
        physical[alias["key"]] = ensure_kms_key(kms, alias["alias"])

    def resource_of(var):
        lid = plan["var_refs"].get(var)
        if lid not in physical:
            raise SystemExit(f"provision: infra/template.yaml gives {var} no resource to provision locally")
        return lid

    env = [("GATEWAY_PREFIX", p)]
    env += [(var, physical[resource_of(var)]) for var in RESOURCE_VARS]
    env += [
        ("GATEWAY_VISIBILITY_TIMEOUT", str(visibility)),
        ("GATEWAY_MAX_RECEIVES", max_receives),
        ("GATEWAY_JOBS_STREAM_ARN", stream_arns.get(resource_of("GATEWAY_JOBS_TABLE"), "")),
        ("AWS_ENDPOINT_URL", ep),
        ("AWS_REGION", os.environ.get("AWS_REGION", REGION)),
        ("AWS_DEFAULT_REGION", os.environ.get("AWS_REGION", REGION)),
        ("AWS_ACCESS_KEY_ID", os.environ.get("AWS_ACCESS_KEY_ID", "test")),
        ("AWS_SECRET_ACCESS_KEY", os.environ.get("AWS_SECRET_ACCESS_KEY", "test")),
    ]
    text = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env)
    if args.env_file:
        os.makedirs(os.path.dirname(os.path.abspath(args.env_file)), exist_ok=True)
        tmp = args.env_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, args.env_file)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
