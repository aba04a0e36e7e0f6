"""Chaos run on the local stack: the same jobs undisturbed, then under provider faults and
worker kills; prints what completed, whether the results are byte-identical, the LLM calls
against the passes, and the wall times side by side.

    localstack/chaos.sh [--jobs 10] [--turns 120] [--kills 30] [--no-faults]
    localstack/chaos.sh --burst 1000   # jobs at once, two organizations: none lost,
                                       # none duplicated, the second not starved
    localstack/chaos.sh --scenario failover   # the primary model down for good, a failover set
    localstack/chaos.sh --scenario all-down   # every model down: named failures within the bound

Started by localstack/chaos.sh (which provides the venv); it runs `localstack/demo.sh --serve`
on its own ports and state directory, and stops it at the end.
"""

import argparse
import datetime
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEAKERS = ["Alice", "Bruno", "Chloé", "Dmitri", "Eve"]


def transcript(turns, seed):
    rng = random.Random(seed)
    words = "budget plan release risk hiring travel office client roadmap audit".split()
    return "\n".join(
        f"{SPEAKERS[i % len(SPEAKERS)]} : " + " ".join(rng.choice(words) for _ in range(12)) + "."
        for i in range(turns)
    )


def http(method, url, body=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


class Stack:
    def __init__(self, args):
        self.state = os.path.join(REPO, ".local", "chaos")
        os.makedirs(self.state, exist_ok=True)
        self.env = dict(os.environ,
                        GATEWAY_STATE_DIR=self.state,
                        # Its own emulator, beside a demo on the default port.
                        MOTO_PORT=str(args.http_port + 10),
                        GATEWAY_HTTP_PORT=str(args.http_port),
                        GATEWAY_WS_PORT=str(args.http_port + 1),
                        LAMBDA_RUNTIME_PORT=str(args.runtime_port),
                        MOCK_LATENCY_MS=str(args.latency_ms),
                        GATEWAY_LLM_TIMEOUT_SECS="5")
        self.llm_timeout_s = 5
        self.api = f"http://127.0.0.1:{args.http_port}"
        self.runtime_port = args.runtime_port
        sample = os.path.join(self.state, "warmup.txt")
        with open(sample, "w") as f:
            f.write(transcript(5, 0))
        self.log = open(os.path.join(self.state, "demo.err"), "w")
        self.demo = subprocess.Popen(["bash", "localstack/demo.sh", "--serve", sample], cwd=REPO,
                                     env=self.env, stdout=subprocess.DEVNULL, stderr=self.log,
                                     start_new_session=True)
        deadline = time.time() + 900
        while time.time() < deadline:
            text = open(self.log.name).read()
            if "still serving" in text:
                self.llm = text.split("==> LLM: ", 1)[1].split("\x1b", 1)[0].strip()
                return
            if self.demo.poll() is not None:
                sys.exit(f"chaos: demo.sh stopped early; see {self.log.name}")
            time.sleep(1)
        sys.exit("chaos: the stack did not start in 15 minutes")

    def stop(self):
        os.killpg(self.demo.pid, signal.SIGINT)
        self.demo.wait(timeout=120)

    def mock(self, method, path, body=None):
        return http(method, self.llm.rsplit("/v1", 1)[0] + path, body)

    def worker_env(self):
        env = dict(self.env)
        with open(os.path.join(self.state, "stack.env")) as f:
            for line in f:
                if line.startswith("export "):
                    key, _, value = line[len("export "):].strip().partition("=")
                    env[key] = value.strip("'")
        env.update(AWS_LAMBDA_RUNTIME_API=f"http://127.0.0.1:{self.runtime_port}/.rt/batch-worker",
                   AWS_LAMBDA_FUNCTION_NAME="batch-worker", AWS_LAMBDA_FUNCTION_VERSION="1",
                   AWS_LAMBDA_FUNCTION_MEMORY_SIZE="1024")
        return env

    def kill_and_restart_workers(self):
        """SIGKILLs every batch-worker process, then starts as many new ones."""
        binary = os.path.join(REPO, "target", "debug", "batch-worker")
        pids = subprocess.run(["pgrep", "-f", f"^{binary}$"], capture_output=True, text=True).stdout.split()
        for pid in pids:
            os.kill(int(pid), signal.SIGKILL)
        log = open(os.path.join(self.state, "demo", "batch-worker.log"), "a")
        for _ in range(max(len(pids), 1)):
            subprocess.Popen([binary], env=self.worker_env(), stdout=log, stderr=log, start_new_session=True)
        return len(pids)


def crash_recovery(log, kill_times, llm_timeout_s):
    """For each kill, the calls it interrupted (aborted requests received less than an LLM
    timeout before it) and how long until the same prompt was sent again: the time a step
    lost to a crash takes to be retried."""
    waits = []
    for killed_at in kill_times:
        k = killed_at * 1000
        for entry in log:
            if entry["outcome"] != "aborted" or not (k - llm_timeout_s * 1000 < entry["received_at_ms"] < k):
                continue
            again = [e["received_at_ms"] for e in log
                     if e["prompt"] == entry["prompt"] and e["received_at_ms"] > k]
            if again:
                waits.append((min(again) - k) / 1000)
    waits.sort()
    if not waits:
        return {"interrupted_calls": 0}
    return {"interrupted_calls": len(waits), "retry_after_kill_median_s": round(waits[len(waits) // 2], 1),
            "retry_after_kill_max_s": round(waits[-1], 1)}


def run_jobs(stack, inputs, label):
    started = time.time()
    ids = []
    for text in inputs:
        status, body = http("POST", f"{stack.api}/api/v1/services/0b0d3f3e-0000-4000-8000-000000000201/execute",
                            # The same inputs run twice: the second run must not be answered by
                            # the result cache.
                            {"input": text, "organization_id": "chaos", "cache": False})
        if status != 202:
            sys.exit(f"chaos: execute answered {status}: {body}")
        ids.append(body["job_id"])
    jobs = {}
    while len(jobs) < len(ids) and time.time() - started < 1800:
        for job_id in ids:
            if job_id in jobs:
                continue
            status, job = http("GET", f"{stack.api}/api/v1/jobs/{job_id}?organization_id=chaos")
            if status == 200 and job["status"] in ("completed", "failed", "cancelled"):
                jobs[job_id] = job
        time.sleep(0.5)
    wall = time.time() - started
    completed = [j for j in jobs.values() if j["status"] == "completed"]
    print(f"{label}: {len(completed)}/{len(ids)} completed in {wall:.1f} s"
          + "".join(f"; {j['id']} {j['status']} {j.get('error_code')}" for j in jobs.values()
                    if j["status"] != "completed"), flush=True)
    return [jobs.get(i) for i in ids], wall


def burst(stack, count, skew=False):
    """Submits `count` jobs at once (mixed single pass and iterative; organization A first,
    then a tenth as many for B) and reports completion, duplicates and B's start delays.
    With `skew`, A's jobs are all iterative and B's 5 jobs are sent only once all of A's
    are queued: a deep backlog of one tenant, then a small burst of another."""
    from concurrent.futures import ThreadPoolExecutor
    url = f"{stack.api}/api/v1/services/0b0d3f3e-0000-4000-8000-000000000201/execute"
    b_count = 5 if skew else max(count // 10, 1)
    specs = [("org-a", i) for i in range(count - b_count)] + [("org-b", i) for i in range(b_count)]

    def submit(spec):
        org, i = spec
        single = i % 2 and not (skew and org == "org-a")
        body = {"input": transcript(12 if single else 60, i), "organization_id": org}
        if single:
            body["flavor_name"] = "single-pass"
        sent = time.time()
        status, answer = http("POST", url, body, timeout=120)
        return org, sent, status, answer

    stack.mock("DELETE", "/_mock/requests")
    started = time.time()
    with ThreadPoolExecutor(max_workers=16) as pool:
        if skew:
            accepted = list(pool.map(submit, [s for s in specs if s[0] == "org-a"]))
            accepted += list(pool.map(submit, [s for s in specs if s[0] == "org-b"]))
        else:
            accepted = list(pool.map(submit, specs))
    refused = [a for a in accepted if a[2] != 202]
    ids = [(org, sent, answer["job_id"]) for org, sent, status, answer in accepted if status == 202]
    done = {}
    while len(done) < len(ids) and time.time() - started < 3600:
        for org, sent, job_id in ids:
            if job_id not in done:
                status, job = http("GET", f"{stack.api}/api/v1/jobs/{job_id}?organization_id={org}")
                if status == 200 and job["status"] in ("completed", "failed", "cancelled"):
                    done[job_id] = (org, sent, job)
        time.sleep(1)
    wall = time.time() - started
    _, log = stack.mock("GET", "/_mock/requests")
    answered = sum(1 for e in log if e["outcome"] == "answered")
    passes = sum(j["token_metrics"]["pass_count"] for _, _, j in done.values())

    def delays(org, field):
        waits = []
        for o, sent, job in done.values():
            if o == org and job.get(field):
                at = datetime.datetime.fromisoformat(job[field].replace("Z", "+00:00"))
                waits.append(at.timestamp() - sent)
        waits.sort()
        return {"median_s": round(waits[len(waits) // 2], 1), "max_s": round(waits[-1], 1)} if waits else None

    print(json.dumps({
        "submitted": len(specs), "refused": len(refused), "finished": len(done),
        "completed": sum(1 for _, _, j in done.values() if j["status"] == "completed"),
        "llm_answered": answered, "passes": passes,
        "start_delay_org_a": delays("org-a", "started_at"), "start_delay_org_b": delays("org-b", "started_at"),
        "turnaround_org_a": delays("org-a", "completed_at"), "turnaround_org_b": delays("org-b", "completed_at"),
        "wall_s": round(wall, 1),
    }, indent=2))


SERVICE = "0b0d3f3e-0000-4000-8000-000000000201"
ITERATIVE = "0b0d3f3e-0000-4000-8000-000000000301"
PROVIDER = "0b0d3f3e-0000-4000-8000-000000000001"


def providers_down(stack, args, all_down):
    """Adds a backup model and flavor, makes the seeded iterative flavor fail over to it,
    takes the seeded model down for good (and the backup too when `all_down`), runs the
    jobs and reports how they ended."""
    status, model = http("POST", f"{stack.api}/api/v1/models", {
        "provider_id": PROVIDER, "model_name": "Backup model", "model_identifier": "backup-model",
        "context_length": 8192, "max_generation_length": 2048, "tokenizer_name": "cl100k_base"})
    assert status == 201, model
    status, seeded = http("GET", f"{stack.api}/api/v1/flavors/{ITERATIVE}")
    assert status == 200, seeded
    backup = {key: seeded[key] for key in (
        "temperature", "top_p", "processing_mode", "prompt_user_content", "create_new_turn_after",
        "summary_turns", "max_new_turns", "reduce_summary", "consolidate_summary", "prompt_reduce_content")}
    status, backup = http("POST", f"{stack.api}/api/v1/services/{SERVICE}/flavors",
                          dict(backup, name="backup", model_id=model["id"]))
    assert status == 201, backup
    status, body = http("PATCH", f"{stack.api}/api/v1/flavors/{ITERATIVE}",
                        {"failover_enabled": True, "failover_flavor_id": backup["id"]})
    assert status == 200, body
    down = ["mock-model"] + (["backup-model"] if all_down else [])
    for model_name in down:
        stack.mock("POST", "/_mock/faults", {"kind": "status", "status": 503, "times": 1_000_000,
                                              "match_model": model_name})
    inputs = [transcript(args.turns, seed) for seed in range(1, args.jobs + 1)]
    jobs, wall = run_jobs(stack, inputs, "primary down" if not all_down else "all down")
    chains = [[(hop["from_flavor_name"], hop["to_flavor_name"], hop["reason"]) for hop in j["failover_chain"]]
              for j in jobs if j]
    print(json.dumps({
        "scenario": "all-down" if all_down else "failover",
        "jobs": args.jobs,
        "completed": sum(1 for j in jobs if j and j["status"] == "completed"),
        "failed": sum(1 for j in jobs if j and j["status"] == "failed"),
        "error_codes": sorted({j.get("error_code") for j in jobs if j and j.get("error_code")}),
        "failover_chains": sorted({json.dumps(chain) for chain in chains}),
        "final_flavors": sorted({j["final_flavor_name"] for j in jobs if j}),
        "first_error": next((j["error"] for j in jobs if j and j.get("error")), None),
        "step_patience_s": int(stack.env.get("GATEWAY_STEP_PATIENCE_SECS", "900")),
        "wall_s": round(wall, 1),
    }, indent=2))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--turns", type=int, default=120)
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--no-faults", action="store_true")
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--http-port", type=int, default=8090)
    parser.add_argument("--runtime-port", type=int, default=9010)
    parser.add_argument("--burst", type=int, default=0)
    parser.add_argument("--skew", action="store_true",
                        help="with --burst: A's jobs first (all iterative), then 5 of B's")
    parser.add_argument("--scenario", choices=["faults", "failover", "all-down"], default="faults")
    args = parser.parse_args()
    if args.scenario == "all-down":
        # A short patience bounds the run: transient failures end the job after it.
        os.environ.setdefault("GATEWAY_STEP_PATIENCE_SECS", "30")

    stack = Stack(args)
    try:
        if args.burst:
            burst(stack, args.burst, args.skew)
            return
        if args.scenario != "faults":
            providers_down(stack, args, args.scenario == "all-down")
            return
        inputs = [transcript(args.turns, seed) for seed in range(1, args.jobs + 1)]
        stack.mock("DELETE", "/_mock/requests")
        clean, clean_wall = run_jobs(stack, inputs, "undisturbed")
        _, log = stack.mock("GET", "/_mock/requests")
        clean_calls = len(log)

        stack.mock("DELETE", "/_mock/requests")
        if not args.no_faults:
            # About 30 % of calls fail: 429 with Retry-After, 500, 503, bad bodies, hangs.
            for rule in ({"kind": "status", "status": 429, "retry_after_secs": 1, "every": 7},
                         {"kind": "status", "status": 500, "every": 11},
                         {"kind": "status", "status": 503, "every": 13},
                         {"kind": "malformed", "every": 17},
                         {"kind": "hang", "every": 29}):
                rule["times"] = 1_000_000
                status, body = stack.mock("POST", "/_mock/faults", rule)
                if status >= 300:
                    sys.exit(f"chaos: the mock refused {rule}: {body}")
        kills = 0
        kill_times = []
        stop = threading.Event()

        def killer():
            nonlocal kills
            while kills < args.kills and not stop.is_set():
                time.sleep(random.uniform(1.0, 3.0))
                at = time.time()
                if stack.kill_and_restart_workers():
                    kills += 1
                    kill_times.append(at)

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        chaos, chaos_wall = run_jobs(stack, inputs, "under chaos")
        stop.set()
        thread.join()
        _, log = stack.mock("GET", "/_mock/requests")
        answered = sum(1 for entry in log if entry["outcome"] == "answered")
        passes = sum(j["token_metrics"]["pass_count"] for j in chaos if j and j["status"] == "completed")
        identical = sum(1 for a, b in zip(clean, chaos)
                        if a and b and a.get("result") == b.get("result"))
        print(json.dumps({
            "jobs": args.jobs, "turns_per_job": args.turns, "worker_kills": kills,
            "faults": not args.no_faults,
            "completed": sum(1 for j in chaos if j and j["status"] == "completed"),
            "results_identical_to_undisturbed": identical,
            "llm_calls_undisturbed": clean_calls,
            "llm_requests_under_chaos": len(log), "answered_under_chaos": answered,
            "passes_under_chaos": passes,
            "wall_s_undisturbed": round(clean_wall, 1), "wall_s_under_chaos": round(chaos_wall, 1),
            "crash_recovery": crash_recovery(log, kill_times, stack.llm_timeout_s),
        }, indent=2))
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
