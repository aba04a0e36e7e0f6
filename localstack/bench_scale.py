"""Scale bench on the local stack: one job per input size, submitted by upload, with the
figures the scale issue asks for, side by side in one run.

    localstack/bench-scale.sh [--sizes 0.06,1,10] [--mode iterative|map_reduce]
                              [--latency-ms 0] [--max-new-turns 12] [--concurrency 32]
    localstack/bench-scale.sh --rounds      # 10 chunks, 5 at once, 200 ms mock:
                                            # map_reduce against iterative

Inputs come from ../shared/tools/gen_transcript.py --mb N --seed 1. The stack runs the
binaries of GATEWAY_PROFILE (release unless set) with RUST_LOG=info,aws_call=debug, so
every AWS call of the batch worker is a log line: the AWS calls and S3 bytes read per step
are counted from it. For each size it prints: upload and 202 times, the first LLM call
after the 202 (over GATEWAY_INLINE_PLAN_BYTES it includes planning the upload), wall time against the sum of LLM time, gateway time per step, AWS
calls and S3 bytes read per step, and the batch worker's peak RSS so far.

Started by localstack/bench-scale.sh (which provides the venv); it runs `localstack/demo.sh
--serve` on its own ports and state directory (through chaos.Stack), and stops it at the end.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chaos import REPO, Stack, http  # noqa: E402

SERVICE = "0b0d3f3e-0000-4000-8000-000000000201"
MODEL = "0b0d3f3e-0000-4000-8000-000000000101"
CHUNK_PROMPT = "Summarize this part of a meeting:\n{}"
ITERATIVE_PROMPT = "Summary so far:\n{}\n\nNew turns:\n{}"
REDUCE_PROMPT = "Merge these partial summaries:\n{}"
ORG = "bench"


def timestamp(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def flavor(stack, mode, max_new_turns, concurrency):
    """A flavor of the summarize service for the bench (created once per run)."""
    body = {
        "name": f"bench-{mode}-{max_new_turns}-{int(time.time())}", "model_id": MODEL,
        "temperature": 0.2, "top_p": 0.7, "processing_mode": mode,
        "create_new_turn_after": 150, "summary_turns": 3, "max_new_turns": max_new_turns,
        "prompt_user_content": CHUNK_PROMPT if mode == "map_reduce" else ITERATIVE_PROMPT,
        "reduce_summary": True, "prompt_reduce_content": REDUCE_PROMPT,
    }
    if mode == "map_reduce":
        body["map_concurrency"] = concurrency
    status, created = http("POST", f"{stack.api}/api/v1/services/{SERVICE}/flavors", body)
    if status != 201:
        sys.exit(f"bench: flavor not created ({status}): {created}")
    return created["id"]


def transcript(state, mb):
    path = os.path.join(state, f"transcript-{mb}mb.txt")
    if not os.path.exists(path):
        generator = os.path.join(REPO, "..", "shared", "tools", "gen_transcript.py")
        with open(path, "wb") as out:
            subprocess.run([sys.executable, generator, "--mb", str(mb), "--seed", "1"], stdout=out, check=True)
    return path


def upload(stack, path):
    status, created = http("POST", f"{stack.api}/api/v1/uploads?organization_id={ORG}")
    if status != 201:
        sys.exit(f"bench: upload not created ({status}): {created}")
    with open(path, "rb") as f:
        data = f.read()
    # A form content type (urllib's default) would have the emulator read the body as a form.
    request = urllib.request.Request(created["url"], data=data, method="PUT",
                                     headers={"content-type": "text/plain; charset=utf-8"})
    with urllib.request.urlopen(request, timeout=600) as response:
        response.read()
    return created["upload_id"]


class WorkerLog:
    """The batch worker's log from a position on: its AWS calls and S3 bytes read."""

    def __init__(self, stack):
        self.path = os.path.join(stack.state, "demo", "batch-worker.log")
        self.start = os.path.getsize(self.path)

    def calls(self):
        calls, s3_read = 0, 0
        with open(self.path, "rb") as f:
            f.seek(self.start)
            for line in f:
                if b'"aws call"' not in line:
                    continue
                try:
                    fields = json.loads(line)["fields"]
                except (ValueError, KeyError):
                    continue
                calls += 1
                if fields.get("operation") == "GetObject":
                    s3_read += int(fields.get("bytes", 0))
        return calls, s3_read


def worker_peak_rss_mb(profile):
    binary = os.path.join(REPO, "target", profile, "batch-worker")
    peak = 0
    for pid in subprocess.run(["pgrep", "-f", f"^{binary}$"], capture_output=True, text=True).stdout.split():
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
    return peak / 1024


def run_job(stack, flavor_id, source, label, profile):
    """Submits one job (an upload id, or inline text) and follows it; returns its figures."""
    stack.mock("DELETE", "/_mock/requests")
    log = WorkerLog(stack)
    body = {"flavor_id": flavor_id, "organization_id": ORG, "cache": False}
    if label.startswith("inline"):
        body["input"] = source
    else:
        body["input_upload_id"] = source
    sent = time.time()
    status, accepted = http("POST", f"{stack.api}/api/v1/services/{SERVICE}/execute", body, timeout=120)
    answered = time.time()
    if status != 202:
        sys.exit(f"bench: execute answered {status}: {accepted}")
    job_id = accepted["job_id"]
    while True:
        status, job = http("GET", f"{stack.api}/api/v1/jobs/{job_id}?organization_id={ORG}")
        if job.get("status") in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.2)
    if job["status"] != "completed":
        sys.exit(f"bench: job {job_id} {job['status']}: {job.get('error')}")
    _, requests = stack.mock("GET", "/_mock/requests")
    requests = requests if isinstance(requests, list) else requests.get("requests", [])
    first_call = min((r["received_at_ms"] for r in requests), default=None)
    metrics = job["token_metrics"]
    wall = timestamp(job["completed_at"]) - timestamp(job["created_at"])
    llm = metrics["total_duration_ms"] / 1000
    passes = metrics["pass_count"]
    calls, s3_read = log.calls()
    return {
        "label": label,
        "execute_s": answered - sent,
        "first_call_ms": None if first_call is None else first_call - answered * 1000,
        "wall_s": wall,
        "llm_s": llm,
        "passes": passes,
        "per_step_ms": (wall - llm) / passes * 1000 if passes else 0,
        "calls_per_step": calls / passes if passes else 0,
        "read_per_step_kb": s3_read / passes / 1024 if passes else 0,
        "rss_mb": worker_peak_rss_mb(profile),
    }


def print_table(rows, title):
    print(f"\n{title}")
    header = ("input", "upload s", "202 s", "1st LLM ms", "wall s", "LLM s", "wall/LLM",
              "passes", "gateway ms/step", "AWS calls/step", "S3 KB read/step", "worker RSS MB")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        ratio = f"{r['wall_s'] / r['llm_s']:.2f}" if r["llm_s"] > 0 else "-"
        first = "-" if r["first_call_ms"] is None else f"{r['first_call_ms']:.0f}"
        print(f"| {r['label']} | {r.get('upload_s', 0):.2f} | {r['execute_s']:.2f} | {first} "
              f"| {r['wall_s']:.1f} | {r['llm_s']:.1f} | {ratio} | {r['passes']} | {r['per_step_ms']:.1f} "
              f"| {r['calls_per_step']:.1f} | {r['read_per_step_kb']:.1f} | {r['rss_mb']:.0f} |", flush=True)


def sizes_bench(stack, args, profile):
    flavor_id = flavor(stack, args.mode, args.max_new_turns, args.concurrency)
    stack.mock("POST", "/_mock/config", {"latency_ms": args.latency_ms})
    rows = []
    for mb in [float(s) for s in args.sizes.split(",")]:
        path = transcript(stack.state, mb)
        started = time.time()
        upload_id = upload(stack, path)
        uploaded = time.time() - started
        row = run_job(stack, flavor_id, upload_id, f"{os.path.getsize(path) / 1e6:g} MB", profile)
        row["upload_s"] = uploaded
        rows.append(row)
        print_table(rows[-1:], f"{row['label']} done")
    print_table(rows, f"{args.mode}, max_new_turns {args.max_new_turns}, mock latency {args.latency_ms} ms, "
                      f"{profile} binaries")


def rounds_bench(stack, profile):
    """10 chunks, 5 at once, 200 ms per call: map_reduce against iterative on one input."""
    stack.mock("POST", "/_mock/config", {"latency_ms": 200})
    text = "\n".join(f"Speaker {i % 4} : point {i} of the agenda, decided and minuted." for i in range(120))
    rows = []
    for mode in ("iterative", "map_reduce"):
        flavor_id = flavor(stack, mode, 12, 5)
        row = run_job(stack, flavor_id, text, f"inline 120 turns, {mode}", profile)
        row["upload_s"] = 0
        rows.append(row)
    print_table(rows, "10 chunks of 12 turns, map_concurrency 5, mock latency 200 ms (passes include the reduce)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="0.06,1,10")
    parser.add_argument("--mode", default="iterative", choices=["iterative", "map_reduce"])
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--max-new-turns", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", action="store_true")
    parser.add_argument("--http-port", type=int, default=8090)
    parser.add_argument("--runtime-port", type=int, default=9010)
    args = parser.parse_args()
    profile = os.environ.setdefault("GATEWAY_PROFILE", "release")
    os.environ.setdefault("RUST_LOG", "info,aws_call=debug")
    stack = Stack(argparse.Namespace(http_port=args.http_port, runtime_port=args.runtime_port,
                                     latency_ms=args.latency_ms))
    try:
        if args.rounds:
            rounds_bench(stack, profile)
        else:
            sizes_bench(stack, args, profile)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
