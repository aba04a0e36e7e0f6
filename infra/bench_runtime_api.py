#!/usr/bin/env python3
"""Local Lambda Runtime API stub that measures a function binary (stdlib only).

Used by infra/bench-packaging.sh. Two subcommands:

  measure --function NAME --event FILE --runs N [--warmup 1] --out FILE.json LABEL=BINARY...
      For each run, and for each LABEL in turn (the variants are interleaved run by run, so
      background load drifts hit every variant alike): start a Runtime API stub on a free
      127.0.0.1 port, spawn BINARY with AWS_LAMBDA_RUNTIME_API pointing at it and the other
      AWS_LAMBDA_* variables the runtime reads (the rest of the environment, e.g. the
      GATEWAY_* and AWS_* variables, is passed through), and record
        cold_ms    spawn -> the binary's first GET /2018-06-01/runtime/invocation/next
        invoke_ms  the event handed out -> its POST .../response (or .../error)
        rss_kib    VmHWM (peak RSS) from /proc/PID/status once it asks for the next event
      then SIGKILL it. Writes every sample to --out (JSON); warm-up runs are discarded.

  report --results DIR [--baseline LABEL]
      Prints one table per variant (size, cold start median/p90, first invoke median,
      peak RSS median, response kind) and the ratios of each variant to the baseline,
      from DIR/*.measure.json, DIR/sizes.tsv and DIR/pipeline-*.txt (cargo bench output).
"""
import argparse
import glob
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/2018-06-01/runtime"


class Run:
    """State of one process under measurement, shared with the stub's handler threads."""

    def __init__(self, event: bytes):
        self.event = event
        self.request_id = str(uuid.uuid4())
        self.t_spawn = 0.0
        self.t_ready = None
        self.t_sent = None
        self.t_done = None
        self.outcome = None  # "response" | "error" | "init-error"
        self.body = b""
        self.ready = threading.Event()
        self.done = threading.Event()
        self.next_again = threading.Event()
        self.release = threading.Event()
        self.nexts = 0
        self.lock = threading.Lock()


def make_handler(run: Run):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args):  # quiet
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        # trailers until an empty line
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _reply(self, status: int, body: bytes = b"", headers=None):
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

        def do_GET(self):
            now = time.perf_counter()
            if self.path != PREFIX + "/invocation/next":
                self._reply(404, b'{"errorMessage":"unknown path"}')
                return
            with run.lock:
                run.nexts += 1
                first = run.nexts == 1
            if first:
                run.t_ready = now
                run.ready.set()
                deadline = int((time.time() + 900) * 1000)
                headers = {
                    "Lambda-Runtime-Aws-Request-Id": run.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(deadline),
                    "Lambda-Runtime-Invoked-Function-Arn":
                        "arn:aws:lambda:us-east-1:123456789012:function:bench",
                    "Lambda-Runtime-Trace-Id":
                        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
                }
                run.t_sent = time.perf_counter()
                self._reply(200, run.event, headers)
                return
            # The binary is idle and waits for its next event: the measurement is over.
            run.next_again.set()
            run.release.wait(30)
            self.close_connection = True

        def do_POST(self):
            now = time.perf_counter()
            body = self._body()
            if self.path.endswith("/response") or self.path.endswith("/error"):
                if run.t_done is None:
                    run.t_done = now
                    run.outcome = "response" if self.path.endswith("/response") else "error"
                    run.body = body
                    run.done.set()
                self._reply(202, b'{"status":"OK"}')
            elif self.path == PREFIX + "/init/error":
                run.outcome = "init-error"
                run.body = body
                run.done.set()
                run.ready.set()
                self._reply(202, b'{"status":"OK"}')
            else:
                self._reply(404, b'{"errorMessage":"unknown path"}')

    return Handler


def vm_hwm_kib(pid: int):
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def summarize_response(outcome, body: bytes) -> str:
    """A short label: the HTTP status for API Gateway proxy answers, else the outcome."""
    if outcome is None:
        return "none"
    try:
        payload = json.loads(body or b"null")
    except ValueError:
        return outcome
    if outcome == "response" and isinstance(payload, dict) and "statusCode" in payload:
        return f"http {payload['statusCode']}"
    if outcome == "response" and isinstance(payload, dict) and "batchItemFailures" in payload:
        return f"sqs {len(payload['batchItemFailures'])} failed"
    return outcome


def measure_once(binary: str, function: str, event: bytes, memory: int, timeout: float, log_path: str):
    run = Run(event)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(run))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = dict(os.environ)
    env.update({
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{server.server_address[1]}",
        "AWS_LAMBDA_FUNCTION_NAME": function,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]bench",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "_HANDLER": "bootstrap",
        "LAMBDA_TASK_ROOT": os.path.dirname(os.path.abspath(binary)),
    })
    sample = {"cold_ms": None, "invoke_ms": None, "rss_kib": None, "response": "none"}
    with open(log_path, "ab") as log:
        run.t_spawn = time.perf_counter()
        proc = subprocess.Popen([binary], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + timeout
            while not run.ready.wait(0.05):
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
            if run.t_ready is not None:
                sample["cold_ms"] = (run.t_ready - run.t_spawn) * 1000
                if run.done.wait(max(0.0, deadline - time.monotonic())) and run.t_done is not None:
                    sample["invoke_ms"] = (run.t_done - run.t_sent) * 1000
                # Give the runtime a moment to ask for the next event (it is then idle).
                run.next_again.wait(5)
            sample["response"] = summarize_response(run.outcome, run.body)
            sample["rss_kib"] = vm_hwm_kib(proc.pid)
            if proc.poll() is not None and sample["cold_ms"] is None:
                sample["response"] = f"exited {proc.returncode}"
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
            run.release.set()
            server.shutdown()
            server.server_close()
    return sample


def cmd_measure(args):
    event = open(args.event, "rb").read()
    variants = []
    for spec in args.variants:
        label, _, path = spec.partition("=")
        if not path or not os.access(path, os.X_OK):
            sys.exit(f"bench_runtime_api: {spec!r}: want LABEL=EXECUTABLE")
        variants.append((label, path))
    samples = {label: [] for label, _ in variants}
    logs = {label: os.path.join(args.log_dir, f"{label}.{args.function}.log") for label, _ in variants}
    for path in logs.values():
        open(path, "wb").close()
    for index in range(args.warmup + args.runs):
        for label, path in variants:
            sample = measure_once(path, args.function, event, args.memory, args.timeout, logs[label])
            if sample["cold_ms"] is None:
                sys.exit(f"bench_runtime_api: {args.function} ({label}) never asked for an event "
                         f"({sample['response']}); see {logs[label]}")
            if index >= args.warmup:
                samples[label].append(sample)
    with open(args.out, "w", encoding="utf-8") as out:
        json.dump({"function": args.function, "event": os.path.basename(args.event),
                   "runs": args.runs, "samples": samples}, out, indent=1)
    for label, _ in variants:
        cold = [s["cold_ms"] for s in samples[label]]
        print(f"  {args.function:<13} {label:<8} cold start median {statistics.median(cold):7.1f} ms",
              file=sys.stderr)


def percentile(values, q):
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def cmd_report(args):
    sizes, zipped_sizes = {}, {}
    size_file = os.path.join(args.results, "sizes.tsv")
    if os.path.exists(size_file):
        for line in open(size_file, encoding="utf-8"):
            label, function, size, *zipped = line.split()
            sizes[(label, function)] = int(size)
            if zipped:
                zipped_sizes[(label, function)] = int(zipped[0])
    stats = {}  # (label, function) -> dict
    labels, functions = [], []
    for path in sorted(glob.glob(os.path.join(args.results, "*.measure.json"))):
        data = json.load(open(path, encoding="utf-8"))
        function = data["function"]
        if function not in functions:
            functions.append(function)
        for label, samples in data["samples"].items():
            if label not in labels:
                labels.append(label)
            cold = [s["cold_ms"] for s in samples]
            invoke = [s["invoke_ms"] for s in samples if s["invoke_ms"] is not None]
            rss = [s["rss_kib"] for s in samples if s["rss_kib"] is not None]
            kinds = sorted({s["response"] for s in samples})
            stats[(label, function)] = {
                "cold_med": statistics.median(cold), "cold_p90": percentile(cold, 0.9),
                "invoke_med": statistics.median(invoke) if invoke else float("nan"),
                "rss_mib": statistics.median(rss) / 1024 if rss else float("nan"),
                "answered": f"{len(invoke)}/{len(samples)} {','.join(kinds)}",
            }
    functions = [f for f in args.functions.split() if f in functions] + \
        [f for f in functions if f not in args.functions.split()]
    order = [label for label in args.order.split() if label in labels] + \
        [label for label in labels if label not in args.order.split()]
    pipeline, rounds = {}, {}
    for label in order:
        path = os.path.join(args.results, f"pipeline-{label}.txt")
        if os.path.exists(path):
            runs = {}
            for line in open(path, encoding="utf-8"):
                match = re.match(r"(baseline|pipeline)\s+(.+?)\s+([\d.]+) MB/s", line)
                if match:
                    runs.setdefault(match.group(2).split()[0], []).append(float(match.group(3)))
            # median over the bench rounds (the file holds one block per round)
            rates = {name: statistics.median(values) for name, values in runs.items()}
            rounds[label] = max((len(values) for values in runs.values()), default=0)
            pipeline[label] = rates

    def fmt_size(size, zipped):
        size_text = f"{size:>11,} {size / 2**20:6.2f}" if size is not None else f"{'?':>11} {'?':>6}"
        return size_text + (f" {zipped / 1e6:7.2f}" if zipped is not None else f" {'?':>7}")

    for label in order:
        flags = open(os.path.join(args.results, f"flags-{label}.txt"), encoding="utf-8").read().strip() \
            if os.path.exists(os.path.join(args.results, f"flags-{label}.txt")) else ""
        print(f"\n== variant {label}: {flags}")
        print(f"{'function':<13} {'size bytes':>11} {'MiB':>6} {'zipped':>7} {'cold med':>9} {'cold p90':>9} "
              f"{'1st invoke':>10} {'peak RSS':>9}  answered")
        print(f"{'':<13} {'':>11} {'':>6} {'MB':>7} {'ms':>9} {'ms':>9} {'ms (med)':>10} {'MiB (med)':>9}")
        for function in functions:
            s = stats.get((label, function))
            if not s:
                continue
            print(f"{function:<13} {fmt_size(sizes.get((label, function)), zipped_sizes.get((label, function)))} {s['cold_med']:9.1f} "
                  f"{s['cold_p90']:9.1f} {s['invoke_med']:10.1f} {s['rss_mib']:9.1f}  {s['answered']}")
        if label in pipeline:
            rates = pipeline[label]
            print(f"text pipeline (10 MB transcript, median of {rounds[label]} bench runs): " + ", ".join(
                f"{name} {rate:.1f} MB/s" for name, rate in rates.items()))

    base = args.baseline
    if base not in order:
        return
    print(f"\n== ratios to the {base} build, same run (size, zipped size, cold start median, first "
          f"invoke median, peak RSS: <1 is better; MB/s rows: >1 is better)")
    print(f"{'function':<13} " + " ".join(f"{label:>32}" for label in order if label != base))
    for function in functions:
        b = stats.get((base, function))
        cells = []
        for label in order:
            if label == base:
                continue
            s = stats.get((label, function))
            bsize, size = sizes.get((base, function)), sizes.get((label, function))
            if not (s and b):
                cells.append(f"{'-':>32}")
                continue
            size_ratio = size / bsize if size and bsize else float("nan")
            bzip, zipped = zipped_sizes.get((base, function)), zipped_sizes.get((label, function))
            zip_ratio = zipped / bzip if zipped and bzip else float("nan")
            cells.append(f"{size_ratio:5.2f} {zip_ratio:5.2f} {s['cold_med'] / b['cold_med']:5.2f} "
                         f"{s['invoke_med'] / b['invoke_med']:5.2f} {s['rss_mib'] / b['rss_mib']:5.2f}".rjust(32))
        print(f"{function:<13} " + " ".join(cells))
    for name, title in (("normalise+count+batch", "pipeline MB/s"), ("tiktoken", "count MB/s")):
        if not pipeline.get(base, {}).get(name):
            continue
        print(f"{title:<13} " + " ".join(
            (f"{pipeline[label][name] / pipeline[base][name]:.2f}x"
             if pipeline.get(label, {}).get(name) else "-").rjust(32)
            for label in order if label != base))

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--function", required=True)
    m.add_argument("--event", required=True)
    m.add_argument("--runs", type=int, default=20)
    m.add_argument("--warmup", type=int, default=1)
    m.add_argument("--memory", type=int, default=512)
    m.add_argument("--timeout", type=float, default=60.0)
    m.add_argument("--log-dir", default=".")
    m.add_argument("--out", required=True)
    m.add_argument("variants", nargs="+", metavar="LABEL=BINARY")
    r = sub.add_parser("report")
    r.add_argument("--results", required=True)
    r.add_argument("--baseline", default="o3")
    r.add_argument("--order", default="", help="variant labels in print order")
    r.add_argument("--functions", default="", help="function names in print order")
    args = parser.parse_args()
    if args.command == "measure":
        cmd_measure(args)
    else:
        cmd_report(args)


if __name__ == "__main__":
    main()
