//! Throughput of the execute-time text pipeline (normalisation + token counting +
//! batching) on a 10 MB transcript, against baselines measured in the same run; then the
//! same pipeline on adversarial shapes (no whitespace, one huge line, punctuation only,
//! emoji, CJK without spaces) at several sizes, where MB/s must not fall as the size grows.
//!
//! Input: `BENCH_INPUT` if set, else `target/bench-data/t10.txt`, generated on first use
//! by `../shared/tools/gen_transcript.py --mb 10 --seed 1` (beside the checkout).
//! Shapes: `BENCH_SHAPE_MB` (default `0.25,0.5,1,2`), `BENCH_SHAPES` (default all),
//! `BENCH_SHAPE_RUNS` (default 3).
//! Prints the peak RSS after the transcript runs (Linux `VmHWM`).
//! Run: `cargo bench -p gateway-core --bench text_pipeline`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gateway_core::text::batching::BatchBudget;
use gateway_core::text::normalize::{normalize_transcript, NormalizeLimits};
use gateway_core::tokens::TokenCounter;

const RUNS: usize = 5;
/// Alternating runs of plain counting and the pipeline on the transcript.
const PAIRED_RUNS: usize = 15;

fn input_path() -> PathBuf {
    if let Some(path) = std::env::var_os("BENCH_INPUT") {
        return PathBuf::from(path);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = root.join("target/bench-data/t10.txt");
    if !path.exists() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let generator = root.join("../shared/tools/gen_transcript.py");
        let output = std::process::Command::new("python3")
            .arg(&generator)
            .args(["--mb", "10", "--seed", "1"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", generator.display()));
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::write(&path, output.stdout).unwrap();
    }
    path
}

/// Median wall time of `RUNS` runs, and the last result.
fn measure<T>(f: impl FnMut() -> T) -> (Duration, T) {
    measure_n(RUNS, f)
}

/// Median wall time of `runs` runs, and the last result.
fn measure_n<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let runs = runs.max(1);
    let mut times = Vec::with_capacity(runs);
    let mut result = None;
    for _ in 0..runs {
        let start = Instant::now();
        result = Some(std::hint::black_box(f()));
        times.push(start.elapsed());
    }
    times.sort();
    (times[runs / 2], result.unwrap())
}

/// Makes an input of about the given number of bytes.
type Generator = fn(usize) -> String;

/// The adversarial shapes: name and a generator.
const SHAPES: &[(&str, Generator)] = &[
    ("z-run", |n| "z".repeat(n)),
    ("words-1-line", words_line),
    ("punctuation", |n| ".,;!?".repeat(n / 5)),
    ("emoji-run", |n| "😀".repeat(n / 4)),
    ("cjk-no-space", |n| {
        "我们今天讨论预算问题然后决定下一步计划会议记录".repeat(n / 72)
    }),
];

/// One line of ordinary words, no sentence terminator (so one giant sentence).
fn words_line(bytes: usize) -> String {
    const WORDS: &str = "the budget meeting we agreed to review quarterly figures before next \
                         week and Marie will send report on hiring";
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let mut out = String::with_capacity(bytes + 16);
    let mut state = 7u64;
    while out.len() < bytes {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.push_str(words[(state >> 33) as usize % words.len()]);
        out.push(' ');
    }
    out.truncate(out.trim_end().len());
    out
}

/// Order-sensitive digest of the turns (text and count), to compare runs across changes.
fn digest(turns: &[gateway_core::text::normalize::NormalizedTurn]) -> u64 {
    let mut hash = 0xcbf29ce484222325u64;
    for turn in turns {
        for byte in turn.text.bytes().chain(turn.tokens.to_le_bytes()) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x100000001b3);
        }
    }
    hash
}

fn env_list(name: &str) -> Option<Vec<String>> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
}

fn main() {
    let text = std::fs::read_to_string(input_path()).expect("bench input");
    let mb = text.len() as f64 / 1e6;
    let counter = TokenCounter::load("cl100k_base").unwrap();
    let budget = BatchBudget {
        context_length: 8192,
        max_generation: 2048,
        prompt_tokens: 60,
        max_new_turns: 12,
    };
    let limits = NormalizeLimits {
        create_new_turn_after: 150,
        max_turn_tokens: budget.max_turn_tokens(),
    };

    let reference = tiktoken_rs::cl100k_base().unwrap();
    let (reference_time, reference_tokens) = measure(|| reference.encode_ordinary(&text).len());
    // Counting and the pipeline alternate, run by run, so that a slower spell of a shared
    // machine weighs on both alike; the ratio is the median of the runs' ratios.
    let mut paired = Vec::with_capacity(PAIRED_RUNS);
    let mut total_tokens = 0;
    let (mut turns, mut batches) = (0, 0);
    for _ in 0..PAIRED_RUNS {
        let (count_time, tokens) = measure_n(1, || counter.count(&text));
        // The turns are returned, as the pipeline hands them on: freeing them is not timed.
        let (pipeline_time, (made, made_batches)) = measure_n(1, || {
            let turns = normalize_transcript(&text, &counter, limits);
            let tokens: Vec<u32> = turns.iter().map(|t| t.tokens).collect();
            let batches = budget.estimate_batches(&tokens, 120);
            (turns, batches)
        });
        paired.push((count_time, pipeline_time));
        total_tokens = tokens;
        (turns, batches) = (made.len(), made_batches);
    }
    assert_eq!(
        total_tokens, reference_tokens,
        "tiktoken and tiktoken-rs agree"
    );
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let count_time =
        Duration::from_secs_f64(median(paired.iter().map(|p| p.0.as_secs_f64()).collect()));
    let pipeline_time =
        Duration::from_secs_f64(median(paired.iter().map(|p| p.1.as_secs_f64()).collect()));
    let paired_ratio = median(
        paired
            .iter()
            .map(|(count, pipeline)| count.as_secs_f64() / pipeline.as_secs_f64())
            .collect(),
    );

    let turns_made = normalize_transcript(&text, &counter, limits);
    let inexact = turns_made
        .iter()
        .filter(|t| t.tokens as usize != counter.count(&t.text))
        .count();
    println!(
        "turns digest {:016x} ({} turns)",
        digest(&turns_made),
        turns_made.len()
    );
    println!(
        "counts: {inexact} of {} turns differ from an exact count of their text",
        turns_made.len()
    );
    let rate = |d: Duration| mb / d.as_secs_f64();
    println!("input: {mb:.2} MB, {total_tokens} cl100k tokens; pipeline made {turns} turns in {batches} batches");
    println!(
        "baseline  tiktoken-rs count only        {:>8.1} MB/s",
        rate(reference_time)
    );
    println!(
        "baseline  tiktoken count only           {:>8.1} MB/s",
        rate(count_time)
    );
    println!(
        "pipeline  normalise+count+batch         {:>8.1} MB/s",
        rate(pipeline_time)
    );
    println!(
        "ratios: pipeline = {:.2}x tiktoken-rs counting, {:.2}x plain tiktoken counting (median of {PAIRED_RUNS} paired runs); {:.1}x the reference's ~2 MB/s",
        rate(pipeline_time) / rate(reference_time),
        paired_ratio,
        rate(pipeline_time) / 2.0
    );

    println!(
        "peak RSS of this process after the 10 MB runs: {} MB (VmHWM; the input and {} turns held)",
        peak_rss_mb().map_or("unknown".into(), |mb| format!("{mb:.0}")),
        turns_made.len()
    );

    shapes(&counter, &budget, limits, rate(count_time));
}

/// The process's peak resident set (Linux `VmHWM`), in MB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The pipeline on each adversarial shape and size, in MB/s beside plain counting of the
/// same text; the transcript's pipeline rate is the same-run baseline.
fn shapes(counter: &TokenCounter, budget: &BatchBudget, limits: NormalizeLimits, count_rate: f64) {
    let sizes: Vec<f64> = env_list("BENCH_SHAPE_MB")
        .map(|l| {
            l.iter()
                .map(|s| s.parse().expect("BENCH_SHAPE_MB"))
                .collect()
        })
        .unwrap_or_else(|| vec![0.25, 0.5, 1.0, 2.0]);
    let only = env_list("BENCH_SHAPES");
    let runs: usize = std::env::var("BENCH_SHAPE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    println!();
    println!("shapes (pipeline = normalise+count+batch; count = tiktoken count of the whole text)");
    println!(
        "{:<14} {:>6} {:>12} {:>12} {:>8} {:>8}",
        "shape", "MB", "pipeline", "count", "turns", "batches"
    );
    for (name, make) in SHAPES {
        if only.as_ref().is_some_and(|o| !o.iter().any(|s| s == name)) {
            continue;
        }
        for &size in &sizes {
            let text = make((size * 1e6) as usize);
            let mb = text.len() as f64 / 1e6;
            let (count_time, _) = measure_n(runs, || counter.count(&text));
            let (pipeline_time, (turns, batches)) = measure_n(runs, || {
                let turns = normalize_transcript(&text, counter, limits);
                let tokens: Vec<u32> = turns.iter().map(|t| t.tokens).collect();
                let batches = budget.estimate_batches(&tokens, 120);
                (turns.len(), batches)
            });
            println!(
                "{:<14} {:>6.2} {:>7.1} MB/s {:>7.1} MB/s {:>8} {:>8}",
                name,
                mb,
                mb / pipeline_time.as_secs_f64(),
                mb / count_time.as_secs_f64(),
                turns,
                batches
            );
        }
    }
    println!("(same-run baseline: tiktoken count of the transcript {count_rate:.1} MB/s)");
}
