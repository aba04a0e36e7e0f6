#!/usr/bin/env python3
"""Create (idempotently) every AWS resource of docs/local-contract.md on an emulator.

Usage: provision.py --endpoint http://127.0.0.1:4566 --prefix llmgw [--env-file PATH]

Prints `export NAME=value` for every contract variable (and writes them to --env-file).
Safe to run repeatedly and concurrently with other prefixes; tests call it once per test
binary with a unique prefix, so it does no waiting on moto (tables are ACTIVE at once).
Env: GATEWAY_VISIBILITY_TIMEOUT (default 30), GATEWAY_MAX_RECEIVES (default 5).
"""
import argparse
import json
import os
import shlex
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

REGION = "us-east-1"


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


def ensure_jobs_table(ddb, table):
    try:
        ddb.create_table(
            TableName=table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "id", "AttributeType": "S"},
                {"AttributeName": "org_key", "AttributeType": "S"},
                {"AttributeName": "created_at", "AttributeType": "S"},
            ],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            GlobalSecondaryIndexes=[{
                "IndexName": "by_org",
                "KeySchema": [
                    {"AttributeName": "org_key", "KeyType": "HASH"},
                    {"AttributeName": "created_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
    except ClientError as e:
        if code(e) != "ResourceInUseException":
            raise
    desc = wait_active(ddb, table)
    spec = desc.get("StreamSpecification") or {}
    if not spec.get("StreamEnabled") or spec.get("StreamViewType") != "NEW_AND_OLD_IMAGES":
        ddb.update_table(TableName=table, StreamSpecification={
            "StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
        desc = wait_active(ddb, table)
    ttl = ddb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING") or ttl.get("AttributeName") != "expires_at":
        ddb.update_time_to_live(TableName=table, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": "expires_at"})
    return desc.get("LatestStreamArn", "")


def ensure_catalog_table(ddb, table):
    try:
        ddb.create_table(
            TableName=table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
        )
    except ClientError as e:
        if code(e) != "ResourceInUseException":
            raise
    wait_active(ddb, table)


def ensure_fifo_queue(sqs, name, attributes):
    try:
        url = sqs.create_queue(QueueName=name, Attributes={"FifoQueue": "true"})["QueueUrl"]
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
    max_receives = int(os.environ.get("GATEWAY_MAX_RECEIVES", "5"))

    ddb, sqs, s3, kms = (client(n, ep) for n in ("dynamodb", "sqs", "s3", "kms"))

    jobs_table, catalog_table = f"{p}-jobs", f"{p}-catalog"
    stream_arn = ensure_jobs_table(ddb, jobs_table)
    ensure_catalog_table(ddb, catalog_table)

    dlq_url = ensure_fifo_queue(sqs, f"{p}-jobs-dlq.fifo", {
        "FifoQueue": "true",
        "ContentBasedDeduplication": "false",
        "MessageRetentionPeriod": "1209600",
    })
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = ensure_fifo_queue(sqs, f"{p}-jobs.fifo", {
        "FifoQueue": "true",
        "ContentBasedDeduplication": "false",
        "VisibilityTimeout": str(visibility),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)}),
    })

    bucket = f"{p}-artifacts"
    ensure_bucket(s3, bucket)
    key_id = ensure_kms_key(kms, f"alias/{p}-provider-keys")

    env = [
        ("GATEWAY_PREFIX", p),
        ("GATEWAY_JOBS_TABLE", jobs_table),
        ("GATEWAY_CATALOG_TABLE", catalog_table),
        ("GATEWAY_BUCKET", bucket),
        ("GATEWAY_JOB_QUEUE_URL", queue_url),
        ("GATEWAY_JOB_DLQ_URL", dlq_url),
        ("GATEWAY_KMS_KEY_ID", key_id),
        ("GATEWAY_VISIBILITY_TIMEOUT", str(visibility)),
        ("GATEWAY_MAX_RECEIVES", str(max_receives)),
        ("GATEWAY_JOBS_STREAM_ARN", stream_arn),
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
