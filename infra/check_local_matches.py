#!/usr/bin/env python3
"""Checks that infra/template.yaml and the local stack agree (run by infra/check.sh).

Usage: check_local_matches.py   (with the project venv's python: moto, boto3, PyYAML)

1. Reads the template with its own small YAML loader (independent of provision.py's) and
   checks the settings the project relies on: resource names of docs/local-contract.md,
   queue visibility = 6 x worker timeout, both queues consumed by batch-worker with
   ReportBatchItemFailures, every queue encrypted, every function arm64 / provided.al2023 /
   rust-cargolambda with a binary that exists and its own log group with the retention
   parameter, the REST routes equal to functions/local/src/routes.rs, and the functions'
   environment variables equal to what provision.py exports.
2. Starts a throwaway moto server on 127.0.0.1, runs localstack/provision.py against it
   (twice: it must be idempotent) and compares what exists afterwards (describe_*) with the
   template: table names, key schemas, attributes, billing mode, GSIs, stream view type,
   TTL attribute, queue names, FIFO, deduplication, retention, redrive target and
   maxReceiveCount, bucket name, KMS alias.
3. Seeds that stack as a deployed one is seeded (infra/seed.sh STACK): a CloudFormation
   stack whose outputs name the provisioned table, bucket and key, seeded twice; the first
   run writes the seeds, the second keeps them all (never overwrites). Then stores a
   tokenizer with infra/tokenizer.sh, and refuses a file that is not one.
Exits 1 and lists every mismatch.
"""
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time

import boto3
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(REPO, "infra", "template.yaml")
PREFIX = "chk"
FAILURES = []
CHECKS = [0]


def check(ok, message):
    CHECKS[0] += 1
    if not ok:
        FAILURES.append(message)
    return ok


def equal(what, got, want):
    return check(got == want, f"{what}: got {got!r}, want {want!r}")


# ---------------------------------------------------------------- template


class Loader(yaml.SafeLoader):
    pass


def _tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Fn::" + suffix: value}


Loader.add_multi_constructor("!", _tag)

with open(TEMPLATE, encoding="utf-8") as f:
    T = yaml.load(f, Loader=Loader)
R = T["Resources"]
P = T["Parameters"]


def props(logical_id):
    return R[logical_id].get("Properties", {})


def name_of(value):
    """The name a !Sub gives for PREFIX, AWS pseudo parameters kept as written."""
    text = value["Fn::Sub"] if isinstance(value, dict) else value
    return text.replace("${Prefix}", PREFIX)


def ref(value):
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            return value["Fn::GetAtt"][0]
    return None


def of_type(kind):
    return {lid: r for lid, r in R.items() if r["Type"] == kind}


def static_checks():
    # Names of docs/local-contract.md.
    equal("JobsTable name", name_of(props("JobsTable")["TableName"]), f"{PREFIX}-jobs")
    equal("CatalogTable name", name_of(props("CatalogTable")["TableName"]), f"{PREFIX}-catalog")
    equal("JobQueueUrgent name", name_of(props("JobQueueUrgent")["QueueName"]), f"{PREFIX}-jobs-urgent.fifo")
    equal("JobQueue name", name_of(props("JobQueue")["QueueName"]), f"{PREFIX}-jobs.fifo")
    equal("JobQueueBulk name", name_of(props("JobQueueBulk")["QueueName"]), f"{PREFIX}-jobs-bulk.fifo")
    equal("JobDeadLetterQueue name", name_of(props("JobDeadLetterQueue")["QueueName"]), f"{PREFIX}-jobs-dlq.fifo")
    equal("KMS alias", name_of(props("ProviderKeysAlias")["AliasName"]), f"alias/{PREFIX}-provider-keys")
    jobs, catalog = props("JobsTable"), props("CatalogTable")
    equal("JobsTable key", jobs["KeySchema"], [{"AttributeName": "id", "KeyType": "HASH"}])
    equal("JobsTable GSIs", [(g["IndexName"], g["KeySchema"], g["Projection"]) for g in jobs["GlobalSecondaryIndexes"]],
          [("by_org", [{"AttributeName": "org_key", "KeyType": "HASH"},
                       {"AttributeName": "created_at", "KeyType": "RANGE"}], {"ProjectionType": "ALL"}),
           ("by_activity", [{"AttributeName": "active_org", "KeyType": "HASH"},
                            {"AttributeName": "updated_at", "KeyType": "RANGE"}], {"ProjectionType": "ALL"})])
    equal("JobsTable TTL", jobs.get("TimeToLiveSpecification"), {"AttributeName": "expires_at", "Enabled": True})
    equal("JobsTable stream", jobs.get("StreamSpecification"), {"StreamViewType": "NEW_AND_OLD_IMAGES"})
    equal("CatalogTable key", catalog["KeySchema"], [{"AttributeName": "pk", "KeyType": "HASH"},
                                                     {"AttributeName": "sk", "KeyType": "RANGE"}])
    for table in ("JobsTable", "CatalogTable"):
        equal(f"{table} attribute types", {a["AttributeType"] for a in props(table)["AttributeDefinitions"]}, {"S"})
        equal(f"{table} billing", props(table).get("BillingMode"), "PAY_PER_REQUEST")
    bucket = name_of(props("ArtifactsBucket")["BucketName"])
    check(re.fullmatch(rf"{PREFIX}-artifacts(-\$\{{AWS::[A-Za-z]+\}})*", bucket) is not None,
          f"ArtifactsBucket name {bucket!r} is not {PREFIX}-artifacts plus AWS pseudo parameters")

    # Visibility timeout = 6 x worker timeout, for every allowed worker timeout.
    allowed = P["WorkerTimeoutSeconds"].get("AllowedValues")
    check(bool(allowed), "WorkerTimeoutSeconds has no AllowedValues (the visibility mapping needs them)")
    mapping = T.get("Mappings", {}).get("WorkerTimeouts", {})
    for seconds in allowed or []:
        row = mapping.get(str(seconds))
        if check(row is not None, f"Mappings.WorkerTimeouts has no row for {seconds}"):
            check(int(row["QueueVisibilityTimeout"]) >= 6 * int(seconds),
                  f"visibility {row['QueueVisibilityTimeout']} < 6 x worker timeout {seconds}")
    check(str(P["WorkerTimeoutSeconds"]["Default"]) in {str(s) for s in allowed or []},
          "WorkerTimeoutSeconds default is not an allowed value")
    lookup = {"Fn::FindInMap": ["WorkerTimeouts", {"Ref": "WorkerTimeoutSeconds"}, "QueueVisibilityTimeout"]}
    for queue in of_type("AWS::SQS::Queue"):
        equal(f"{queue} VisibilityTimeout", props(queue).get("VisibilityTimeout"), lookup)
        q = props(queue)
        check(q.get("SqsManagedSseEnabled") in (True, "true") or "KmsMasterKeyId" in q,
              f"{queue} is not encrypted (SqsManagedSseEnabled or KmsMasterKeyId)")
    equal("BatchWorkerFunction Timeout", props("BatchWorkerFunction").get("Timeout"), {"Ref": "WorkerTimeoutSeconds"})
    lanes = {"JobQueueUrgent", "JobQueue", "JobQueueBulk"}
    for lane in sorted(lanes):
        equal(f"{lane} maxReceiveCount", props(lane)["RedrivePolicy"]["maxReceiveCount"], {"Ref": "MaxReceives"})
        equal(f"{lane} dead-letter target", ref(props(lane)["RedrivePolicy"]["deadLetterTargetArn"]),
              "JobDeadLetterQueue")
    equal("DLQ retention", int(props("JobDeadLetterQueue")["MessageRetentionPeriod"]), 1209600)

    # batch-worker consumes every lane and the DLQ, reporting partial batch failures.
    events = props("BatchWorkerFunction").get("Events", {})
    consumed = {ref(e["Properties"]["Queue"]) for e in events.values() if e["Type"] == "SQS"
                if check(e["Properties"].get("FunctionResponseTypes") == ["ReportBatchItemFailures"],
                         f"batch-worker SQS event on {ref(e['Properties']['Queue'])} lacks ReportBatchItemFailures")}
    equal("queues consumed by batch-worker", consumed, lanes | {"JobDeadLetterQueue"})

    # Functions: runtime, architecture, build method, binary, log group.
    glob = T["Globals"]["Function"]
    crates = {d for d in os.listdir(os.path.join(REPO, "functions"))
              if os.path.exists(os.path.join(REPO, "functions", d, "src", "main.rs"))}
    log_groups = of_type("AWS::Logs::LogGroup")
    for lg, res in log_groups.items():
        equal(f"{lg} RetentionInDays", res["Properties"].get("RetentionInDays"), {"Ref": "LogRetentionDays"})
    for fn, res in of_type("AWS::Serverless::Function").items():
        p = res["Properties"]
        for key, want in (("Runtime", "provided.al2023"), ("Architectures", ["arm64"]), ("Handler", "bootstrap")):
            equal(f"{fn} {key}", p.get(key, glob.get(key)), want)
        meta = res.get("Metadata", {})
        equal(f"{fn} BuildMethod", meta.get("BuildMethod"), "rust-cargolambda")
        binary = meta.get("BuildProperties", {}).get("Binary")
        check(binary in crates, f"{fn} Binary {binary!r} is not a crate with src/main.rs under functions/")
        check(os.path.exists(os.path.join(os.path.dirname(TEMPLATE), p.get("CodeUri", glob.get("CodeUri", "")),
                                          "Cargo.toml")), f"{fn} CodeUri does not point at the workspace")
        equal(f"{fn} FunctionName", name_of(p.get("FunctionName", "")), f"{PREFIX}-{binary}")
        group = ref(p.get("LoggingConfig", {}).get("LogGroup"))
        if check(group in log_groups, f"{fn} has no LoggingConfig.LogGroup of its own"):
            equal(f"{group} name", name_of(log_groups[group]["Properties"]["LogGroupName"]),
                  f"/aws/lambda/{PREFIX}-{binary}")

    # REST routes = the local front door's route table.
    rust = open(os.path.join(REPO, "functions", "local", "src", "routes.rs"), encoding="utf-8").read()
    local_routes = set(re.findall(r'resource:\s*"([^"]+)",\s*function:\s*"([^"]+)"', rust))
    template_routes, methods = set(), set()
    for fn, res in of_type("AWS::Serverless::Function").items():
        for event in res["Properties"].get("Events", {}).values():
            if event["Type"] == "Api":
                template_routes.add((event["Properties"]["Path"], res["Metadata"]["BuildProperties"]["Binary"]))
                methods.add(event["Properties"]["Method"].upper())
                equal(f"{fn} API", ref(event["Properties"].get("RestApiId")), "RestApi")
    check(bool(local_routes), "no routes found in functions/local/src/routes.rs")
    equal("REST routes (template vs functions/local/src/routes.rs)", sorted(template_routes), sorted(local_routes))
    equal("REST methods (handlers check the method)", methods, {"ANY"})

    # Environment: the variables of the contract, every one exported by provision.py.
    contract = open(os.path.join(REPO, "docs", "local-contract.md"), encoding="utf-8").read()
    env = glob["Environment"]["Variables"]
    for var in env:
        check(var == "RUST_LOG" or f"`{var}`" in contract, f"{var} is not in docs/local-contract.md")
    return env


# ---------------------------------------------------------------- local stack


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def provision(endpoint):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "AWS_"))}
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, os.path.join(REPO, "localstack", "provision.py"), "--endpoint", endpoint,
         "--prefix", PREFIX], env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit(f"check_local_matches: provision.py failed:\n{out.stderr}")
    exports = dict(line[len("export "):].split("=", 1) for line in out.stdout.splitlines()
                   if line.startswith("export "))
    return {k: v.strip("'\"") for k, v in exports.items()}, time.monotonic() - started


def compare_stack(endpoint, exports, env):
    kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
              aws_secret_access_key="test")
    ddb, sqs, s3, kms = (boto3.client(n, **kw) for n in ("dynamodb", "sqs", "s3", "kms"))
    params = {k: v.get("Default") for k, v in P.items()}

    for var, value in env.items():
        if var != "RUST_LOG":
            check(var in exports, f"provision.py exports no {var}")

    by_ref = {}  # logical id -> the exported value of the variable naming it
    for var, value in env.items():
        if ref(value):
            by_ref[ref(value)] = exports.get(var)

    for lid, res in of_type("AWS::DynamoDB::Table").items():
        p = res["Properties"]
        name = name_of(p["TableName"])
        if lid in by_ref:
            equal(f"{lid} exported name", by_ref[lid], name)
        desc = ddb.describe_table(TableName=name)["Table"]
        equal(f"{name} KeySchema", desc["KeySchema"], p["KeySchema"])
        equal(f"{name} AttributeDefinitions",
              sorted(map(json.dumps, desc["AttributeDefinitions"])), sorted(map(json.dumps, p["AttributeDefinitions"])))
        equal(f"{name} BillingMode", desc.get("BillingModeSummary", {}).get("BillingMode"), p["BillingMode"])
        got = {g["IndexName"]: (g["KeySchema"], g["Projection"]) for g in desc.get("GlobalSecondaryIndexes", [])}
        want = {g["IndexName"]: (g["KeySchema"], g["Projection"]) for g in p.get("GlobalSecondaryIndexes", [])}
        equal(f"{name} GSIs", got, want)
        want_stream = p.get("StreamSpecification", {}).get("StreamViewType")
        got_stream = desc.get("StreamSpecification", {})
        equal(f"{name} stream", got_stream.get("StreamViewType") if got_stream.get("StreamEnabled") else None,
              want_stream)
        ttl = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        want_ttl = p.get("TimeToLiveSpecification", {}).get("AttributeName")
        equal(f"{name} TTL attribute",
              ttl.get("AttributeName") if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING") else None, want_ttl)

    arns = {}
    for lid, res in of_type("AWS::SQS::Queue").items():
        name = name_of(res["Properties"]["QueueName"])
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        if lid in by_ref:
            equal(f"{lid} exported URL", by_ref[lid], url)
        arns[lid] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for lid, res in of_type("AWS::SQS::Queue").items():
        p = res["Properties"]
        name = name_of(p["QueueName"])
        attrs = sqs.get_queue_attributes(QueueUrl=sqs.get_queue_url(QueueName=name)["QueueUrl"],
                                         AttributeNames=["All"])["Attributes"]
        equal(f"{name} FifoQueue", attrs.get("FifoQueue", "false"), "true" if p.get("FifoQueue") else "false")
        equal(f"{name} ContentBasedDeduplication", attrs.get("ContentBasedDeduplication", "false"),
              "true" if p.get("ContentBasedDeduplication") else "false")
        if "MessageRetentionPeriod" in p:
            equal(f"{name} MessageRetentionPeriod", attrs.get("MessageRetentionPeriod"), str(p["MessageRetentionPeriod"]))
        equal(f"{name} VisibilityTimeout (local default)", attrs.get("VisibilityTimeout"), "30")
        redrive = p.get("RedrivePolicy")
        got = json.loads(attrs["RedrivePolicy"]) if "RedrivePolicy" in attrs else None
        if redrive:
            if check(got is not None, f"{name} has no redrive policy"):
                equal(f"{name} deadLetterTargetArn", got["deadLetterTargetArn"], arns[ref(redrive["deadLetterTargetArn"])])
                equal(f"{name} maxReceiveCount", str(got["maxReceiveCount"]), str(params[ref(redrive["maxReceiveCount"])]))
        else:
            equal(f"{name} redrive policy", got, None)

    buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    for lid, res in of_type("AWS::S3::Bucket").items():
        local = re.sub(r"-?\$\{AWS::[A-Za-z]+\}", "", name_of(res["Properties"]["BucketName"]))
        check(local in buckets, f"bucket {local} was not created")
        if lid in by_ref:
            equal(f"{lid} exported name", by_ref[lid], local)

    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    for lid, res in of_type("AWS::KMS::Alias").items():
        alias = name_of(res["Properties"]["AliasName"])
        if check(alias in aliases, f"KMS alias {alias} was not created"):
            key = ref(res["Properties"]["TargetKeyId"])
            if key in by_ref:
                equal(f"{alias} target = exported key id", aliases[alias], by_ref[key])


def seed_deployed_stack(endpoint, exports):
    """infra/seed.sh against a stack's outputs, as after `sam deploy`."""
    kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
              aws_secret_access_key="test")
    outputs = {"CatalogTableName": exports["GATEWAY_CATALOG_TABLE"],
               "ArtifactsBucketName": exports["GATEWAY_BUCKET"],
               "ProviderKeysKeyId": exports["GATEWAY_KMS_KEY_ID"]}
    template = {"Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
                "Outputs": {name: {"Value": value} for name, value in outputs.items()}}
    boto3.client("cloudformation", **kw).create_stack(StackName="chk-deployed",
                                                      TemplateBody=json.dumps(template))
    env = {**os.environ, "GATEWAY_SEED_ENDPOINT": endpoint, "AWS_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "LLM_API_KEY": "sk-seed"}
    runs = []
    for _ in range(2):
        out = subprocess.run([os.path.join(REPO, "infra", "seed.sh"), "chk-deployed"], env=env,
                             capture_output=True, text=True, check=False)
        check(out.returncode == 0, f"infra/seed.sh failed: {out.stderr[-2000:]}")
        runs.append(out.stderr)
    check("wrote nothing" not in runs[0] and exports["GATEWAY_CATALOG_TABLE"] in runs[0],
          f"infra/seed.sh wrote no seeds to the stack's table: {runs[0][-500:]}")
    check(re.search(r"wrote nothing to", runs[1]) is not None,
          f"infra/seed.sh overwrote seeds on a second run: {runs[1][-500:]}")
    items = boto3.client("dynamodb", **kw).scan(TableName=exports["GATEWAY_CATALOG_TABLE"],
                                                Select="COUNT")["Count"]
    check(items > 20, f"the stack's catalog holds {items} items after seeding")

    # infra/tokenizer.sh stores a tokenizer.json where the functions load it from.
    fixture = os.path.join(REPO, "tests", "fixtures", "tokenizer-word-level.json")
    tokenizer = [os.path.join(REPO, "infra", "tokenizer.sh"), "chk-deployed", "test-owner/word-level"]
    out = subprocess.run(tokenizer + [fixture], env=env, capture_output=True, text=True, check=False)
    check(out.returncode == 0, f"infra/tokenizer.sh failed: {out.stderr[-2000:]}")
    key = "tokenizers/test-owner--word-level/tokenizer.json"
    stored = boto3.client("s3", **kw).get_object(Bucket=exports["GATEWAY_BUCKET"], Key=key)["Body"].read()
    with open(fixture, "rb") as f:
        equal("the stored tokenizer", stored, f.read())
    bad = subprocess.run(tokenizer + [os.path.join(REPO, "README.md")], env=env, capture_output=True,
                         text=True, check=False)
    check(bad.returncode != 0 and "not a tokenizer.json" in bad.stderr,
          f"infra/tokenizer.sh stored a file that is not a tokenizer: {bad.stderr[-500:]}")


def main():
    env = static_checks()
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        exports, first = provision(endpoint)
        again, second = provision(endpoint)
        equal("provision.py output on a second run (idempotent)", again, exports)
        compare_stack(endpoint, exports, env)
        seed_deployed_stack(endpoint, exports)
    finally:
        server.stop()
    if FAILURES:
        print("check_local_matches: FAILED", file=sys.stderr)
        for failure in FAILURES:
            print(f"  - {failure}", file=sys.stderr)
        sys.exit(1)
    print(f"check_local_matches: {CHECKS[0]} checks passed "
          f"(provision.py {first:.1f} s, rerun {second:.1f} s)")


if __name__ == "__main__":
    main()
