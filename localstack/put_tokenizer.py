#!/usr/bin/env python3
"""Store a HuggingFace tokenizer.json where every function loads it from (the artifacts
bucket, key tokenizers/{owner}--{name}/tokenizer.json), so that flavors and models may name
it (`tokenizer_override`, `tokenizer_name`). Functions never download from HuggingFace.

Usage: put_tokenizer.py (--stack NAME | --endpoint URL --prefix P) REPO [FILE]
  REPO   the HuggingFace repo id, owner/name
  FILE   a tokenizer.json you have; without it, fetched once from huggingface.co
         (HF_TOKEN in the environment for gated repositories)
"""
import argparse
import json
import os
import re
import sys
import urllib.request

import boto3

from load_seeds import client_kwargs, stack_outputs

REPO_ID = re.compile(r"^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$")


def fetch(repo):
    request = urllib.request.Request(f"https://huggingface.co/{repo}/resolve/main/tokenizer.json")
    if os.environ.get("HF_TOKEN"):
        request.add_header("Authorization", f"Bearer {os.environ['HF_TOKEN']}")
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", help="an emulator's URL; without it, AWS")
    names = ap.add_mutually_exclusive_group(required=True)
    names.add_argument("--prefix", help="resource name prefix of a local stack")
    names.add_argument("--stack", help="name of a deployed CloudFormation stack")
    ap.add_argument("repo")
    ap.add_argument("file", nargs="?")
    args = ap.parse_args()
    if not REPO_ID.match(args.repo) or ".." in args.repo.split("/"):
        sys.exit(f"put_tokenizer: '{args.repo}' is not a HuggingFace repo id (owner/name)")
    if args.file:
        with open(args.file, "rb") as f:
            data = f.read()
    else:
        data = fetch(args.repo)
    try:
        model = json.loads(data).get("model", {})
    except (ValueError, AttributeError) as error:
        sys.exit(f"put_tokenizer: not a tokenizer.json: {error}")
    if not isinstance(model, dict) or "type" not in model:
        sys.exit("put_tokenizer: not a tokenizer.json (no model.type)")
    kw = client_kwargs(args.endpoint)
    if args.stack:
        bucket = stack_outputs(kw, args.stack, ["ArtifactsBucketName"])["ArtifactsBucketName"]
    else:
        bucket = f"{args.prefix}-artifacts"
    key = "tokenizers/" + args.repo.replace("/", "--", 1) + "/tokenizer.json"
    boto3.client("s3", **kw).put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/json")
    print(f"put_tokenizer: {args.repo} ({model['type']}, {len(data)} bytes) stored as s3://{bucket}/{key}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
