#!/usr/bin/env bash
# Usage: infra/bench-packaging.sh [VARIANT...]
# Builds the release binaries of the deployed functions for the host once per profile
# variant and reports, per function: binary size, cold start (spawn -> first
# GET /2018-06-01/runtime/invocation/next on a local Runtime API stub, median and p90 of
# RUNS runs), first-invoke latency (the function's sample event from events/ -> its
# response) and peak RSS (VmHWM); then the text-pipeline speed per variant
# (cargo bench -p gateway-core --bench text_pipeline under the same profile), and the
# ratios of every variant to the opt-level 3 build of the same run.
#
# A VARIANT is an opt-level (3, 2, s, z) with optional suffixes:
#   +hot   the packages of HOT_PACKAGES (token counting, normalisation) stay at opt-level 3
#   +fat   lto = "fat", codegen-units = 1 (instead of Cargo.toml's lto / codegen-units)
# "cargo" builds with [profile.release] of Cargo.toml exactly as it is.
# "prebuilt:LABEL" builds nothing: it measures the binaries already in RESULTS_DIR/bin/LABEL/
# (e.g. those of an earlier commit, to compare before and after in one run); it has no
# text-pipeline run.
# Every other variant pins the opt-level of the whole graph, HOT_PACKAGES included, so the
# result does not depend on the per-package overrides Cargo.toml may hold.
#
# Env: VARIANTS (default "3 s s+hot"; arguments win), RUNS (20), WARMUP (1),
#      PIPELINE_VARIANTS (variants that also run the text-pipeline bench; default all but
#      prebuilt ones, "none" to skip), BASELINE (the label the ratios are to; default o3), PIPELINE_ROUNDS (3), HOT_PACKAGES, MEMORY_MB (1024, the template's MemorySize), MOTO_PORT (default: a free port),
#      RESULTS_DIR (default target/packaging-results), SKIP_BUILD=1 (measure the binaries
#      already in RESULTS_DIR/bin, with the snapshot they were built from), SNAPSHOT (what is built, extracted once to
#      target/packaging-src so that edits made while the script runs cannot reach some
#      variants only: "head" (default) = git archive HEAD; "worktree" = the working tree's
#      tracked and untracked files; "none" builds the checkout in place), PACKAGING_TARGET_DIR (one target dir
#      shared by every variant: cargo keeps artifacts of different profiles apart, so this
#      only saves build time).
# Target dirs: target/packaging-<label> (one per variant; never the default target dir);
# each variant's binaries are copied to RESULTS_DIR/bin/<label>/ before the next build.
# The emulator runs with GATEWAY_STATE_DIR=.local/bench-packaging and is stopped on exit.
set -euo pipefail

# The deployed functions (binary names); functions/local is dev-only and not measured.
FUNCTIONS="execute jobs catalog export batch-worker ws chat"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
VARIANTS="${*:-${VARIANTS:-3 s s+hot}}"
RUNS="${RUNS:-20}"
WARMUP="${WARMUP:-1}"
MEMORY_MB="${MEMORY_MB:-1024}"
PIPELINE_VARIANTS="${PIPELINE_VARIANTS:-$(for v in $VARIANTS; do case "$v" in prebuilt:*) ;; *) printf '%s ' "$v" ;; esac; done)}"
PIPELINE_VARIANTS="${PIPELINE_VARIANTS:-none}"
PIPELINE_ROUNDS="${PIPELINE_ROUNDS:-3}"
HOT_PACKAGES="${HOT_PACKAGES:-gateway-core tiktoken regex regex-automata fancy-regex tokenizers ruzstd rustc-hash memchr aho-corasick}"
RESULTS="${RESULTS_DIR:-$REPO/target/packaging-results}"
STATE_DIR="$REPO/.local/bench-packaging"
HELPER="$HERE/bench_runtime_api.py"

log() { echo "bench-packaging: $*" >&2; }

# The sample event each function is measured with.
event_for() {
    case "$1" in
        jobs) echo "$REPO/events/jobs-get.json" ;;
        catalog) echo "$REPO/events/catalog-providers-list.json" ;;
        batch-worker) echo "$REPO/events/batch-worker-sqs.json" ;;
        ws) echo "$REPO/events/ws-connect.json" ;;
        chat) echo "$REPO/events/chat-completions.json" ;;
        export) echo "$REPO/events/export-templates-list.json" ;;
        *) echo "$REPO/events/$1.json" ;;
    esac
}

# o3, os, os-hot3, oz-fat, cargo, or the LABEL of prebuilt:LABEL ...
label_for() {
    local variant="$1" label
    [ "$variant" = cargo ] && { echo cargo; return; }
    case "$variant" in prebuilt:*) echo "${variant#prebuilt:}"; return ;; esac
    label="o${variant%%+*}"
    case "$variant" in *+hot*) label="$label-hot3" ;; esac
    case "$variant" in *+fat*) label="$label-fat" ;; esac
    echo "$label"
}

# Fills the array PROFILE_ARGS with the cargo --config arguments of a variant for the
# profile $2 (release or bench); prints a human-readable summary on stdout.
PROFILE_ARGS=()
profile_args() {
    local variant="$1" profile="$2" level hot_level package
    PROFILE_ARGS=()
    if [ "$variant" = cargo ]; then
        echo "[profile.release] of Cargo.toml"
        return
    fi
    level="${variant%%+*}"
    case "$level" in
        0 | 1 | 2 | 3) ;;
        s | z) level="\"$level\"" ;;
        *) log "unknown opt-level in variant '$variant'"; exit 2 ;;
    esac
    hot_level="$level"
    case "$variant" in *+hot*) hot_level=3 ;; esac
    PROFILE_ARGS+=(--config "profile.$profile.opt-level=$level")
    for package in $HOT_PACKAGES; do
        PROFILE_ARGS+=(--config "profile.$profile.package.$package.opt-level=$hot_level")
    done
    case "$variant" in
        *+fat*) PROFILE_ARGS+=(--config "profile.$profile.lto=\"fat\"" --config "profile.$profile.codegen-units=1") ;;
    esac
    echo "opt-level=$level, HOT_PACKAGES opt-level=$hot_level$(case "$variant" in *+fat*) echo ', lto=fat, codegen-units=1' ;; esac)"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

mkdir -p "$RESULTS"
rm -f "$RESULTS"/*.measure.json "$RESULTS"/*.log "$RESULTS"/sizes.tsv "$RESULTS"/pipeline-*.txt "$RESULTS"/flags-*.txt

# ---------------------------------------------------------------- source snapshot
SRC="$REPO"
case "${SNAPSHOT:-head}" in
    none) ;;
    worktree | head)
        SRC="$REPO/target/packaging-src"
        if [ "${SKIP_BUILD:-0}" = 1 ] && [ -f "$SRC/.snapshot" ]; then
            log "reusing the snapshot the binaries were built from: $(cat "$SRC/.snapshot")"
        else
            rm -rf "$SRC"
            mkdir -p "$SRC"
            if [ "${SNAPSHOT:-head}" = head ]; then
                git -C "$REPO" archive HEAD | tar -x -C "$SRC"
                echo "HEAD $(git -C "$REPO" rev-parse --short HEAD)" >"$SRC/.snapshot"
            else
                (cd "$REPO" && git ls-files -z -co --exclude-standard \
                    | tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -x -C "$SRC"
                echo "worktree at $(date -u +%FT%TZ) (HEAD $(git -C "$REPO" rev-parse --short HEAD))" >"$SRC/.snapshot"
            fi
            log "building from a snapshot in $SRC: $(cat "$SRC/.snapshot")"
        fi
        ;;
    *) log "SNAPSHOT must be worktree, head or none"; exit 2 ;;
esac
# The text-pipeline bench input (generated beside the checkout, as the bench itself does).
BENCH_INPUT="$REPO/target/bench-data/t10.txt"
if [ ! -s "$BENCH_INPUT" ]; then
    mkdir -p "$(dirname "$BENCH_INPUT")"
    python3 "$REPO/../shared/tools/gen_transcript.py" --mb 10 --seed 1 >"$BENCH_INPUT"
fi
export BENCH_INPUT

target_for() {
    if [ -n "${PACKAGING_TARGET_DIR:-}" ]; then echo "$PACKAGING_TARGET_DIR"; else echo "$REPO/target/packaging-$1"; fi
}
PACKAGE_ARGS=()
for function in $FUNCTIONS; do PACKAGE_ARGS+=(-p "$function"); done

# ---------------------------------------------------------------- build
LABELS=()
for variant in $VARIANTS; do
    label="$(label_for "$variant")"
    LABELS+=("$label")
    target="$(target_for "$label")"
    bin="$RESULTS/bin/$label"
    case "$variant" in
        prebuilt:*) summary="prebuilt binaries in $bin" ;;
        *) summary="$(profile_args "$variant" release)"; profile_args "$variant" release >/dev/null ;;
    esac
    echo "$summary" >"$RESULTS/flags-$label.txt"
    if [ "${SKIP_BUILD:-0}" != 1 ] && [ "${variant#prebuilt:}" = "$variant" ]; then
        log "building $label ($summary) into $target"
        start=$SECONDS
        (cd "$SRC" && CARGO_TARGET_DIR="$target" cargo build --release --locked \
            ${PROFILE_ARGS[@]+"${PROFILE_ARGS[@]}"} "${PACKAGE_ARGS[@]}")
        log "built $label in $((SECONDS - start)) s"
        mkdir -p "$bin"
        for function in $FUNCTIONS; do cp "$target/release/$function" "$bin/$function"; done
    fi
    for function in $FUNCTIONS; do
        binary="$bin/$function"
        [ -x "$binary" ] || { log "missing $binary (build it, or drop SKIP_BUILD)"; exit 1; }
        # The deployment package: the binary as `bootstrap` in a zip, deflated as
        # cargo lambda's --output-format zip does.
        zipped="$(python3 -c 'import io, sys, zipfile
buffer = io.BytesIO()
with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
    archive.write(sys.argv[1], "bootstrap")
print(len(buffer.getvalue()))' "$binary")"
        printf '%s\t%s\t%s\t%s\n' "$label" "$function" "$(stat -c %s "$binary")" "$zipped" >>"$RESULTS/sizes.tsv"
    done
done

# ---------------------------------------------------------------- emulator
export GATEWAY_STATE_DIR="$STATE_DIR"
MOTO_PORT="${MOTO_PORT:-$(free_port)}"
export MOTO_PORT
# The emulator, resources and seeds come from the same snapshot as the binaries (a newer
# seed or table shape in the checkout would make the old handlers answer 503). Its venv is
# the project venv when the requirements are the same, else a private one.
if cmp -s "$SRC/localstack/requirements.txt" "$REPO/localstack/requirements.txt"; then
    export GATEWAY_VENV="${GATEWAY_VENV:-$REPO/.local/venv}"
else
    export GATEWAY_VENV="$STATE_DIR/venv"
fi
cleanup() { bash "$SRC/localstack/stop.sh" || true; }
trap cleanup EXIT
log "starting the emulator on 127.0.0.1:$MOTO_PORT (state in $STATE_DIR)"
bash "$SRC/localstack/start.sh" >/dev/null
# GATEWAY_* resources and AWS_ENDPOINT_URL/AWS_REGION/credentials for the emulator.
# shellcheck source=/dev/null
. "$STATE_DIR/stack.env"
# ws builds a management API client at start-up; $connect never posts to it.
export GATEWAY_WS_MANAGEMENT_URL="http://127.0.0.1:9"
export RUST_LOG="${RUST_LOG:-warn}"

# ---------------------------------------------------------------- cold start, invoke, RSS
log "measuring $RUNS runs (+$WARMUP warm-up) per function and variant, variants interleaved; load: $(cut -d' ' -f1-3 /proc/loadavg)"
for function in $FUNCTIONS; do
    specs=()
    for label in "${LABELS[@]}"; do
        specs+=("$label=$RESULTS/bin/$label/$function")
    done
    python3 "$HELPER" measure --function "$function" --event "$(event_for "$function")" \
        --runs "$RUNS" --warmup "$WARMUP" --memory "$MEMORY_MB" --log-dir "$RESULTS" \
        --out "$RESULTS/$function.measure.json" "${specs[@]}"
done

# ---------------------------------------------------------------- text pipeline
if [ "$PIPELINE_VARIANTS" != none ]; then
    # Round 1 builds each variant's bench binary; later rounds only run it. Rounds go
    # through the variants in turn, and the report takes the median of the rounds.
    for round in $(seq "$PIPELINE_ROUNDS"); do
        for variant in $PIPELINE_VARIANTS; do
            label="$(label_for "$variant")"
            target="$(target_for "$label")"
            # cargo bench uses the bench profile (which inherits release): pin both.
            profile_args "$variant" release >/dev/null
            args=(${PROFILE_ARGS[@]+"${PROFILE_ARGS[@]}"})
            profile_args "$variant" bench >/dev/null
            args+=(${PROFILE_ARGS[@]+"${PROFILE_ARGS[@]}"})
            log "text pipeline bench for $label, round $round of $PIPELINE_ROUNDS"
            start=$SECONDS
            (cd "$SRC" && CARGO_TARGET_DIR="$target" cargo bench --locked ${args[@]+"${args[@]}"} \
                -p gateway-core --bench text_pipeline) >>"$RESULTS/pipeline-$label.txt" \
                2>>"$RESULTS/pipeline-$label.log"
            log "text pipeline bench for $label: $((SECONDS - start)) s (build included)"
        done
    done
fi

# ---------------------------------------------------------------- report
baseline="${BASELINE:-$(label_for 3)}"
order="${LABELS[*]}"
python3 "$HELPER" report --results "$RESULTS" --baseline "$baseline" --order "$order" \
    --functions "$FUNCTIONS" \
    | tee "$RESULTS/report.txt"
log "raw samples, logs and report.txt in $RESULTS"
