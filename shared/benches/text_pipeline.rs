//! Throughput of the execute-time text pipeline (normalisation + token counting +
//! batching) on a 10 MB transcript, against baselines measured in the same run.
//!
//! Input: `BENCH_INPUT` if set, else `target/bench-data/t10.txt`, generated on first use
//! by `../shared/tools/gen_transcript.py --mb 10 --seed 1` (beside the checkout).
//! Run: `cargo bench -p gateway-core --bench text_pipeline`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gateway_core::text::batching::BatchBudget;
use gateway_core::text::normalize::{normalize_transcript, NormalizeLimits};
use gateway_core::tokens::TokenCounter;

const RUNS: usize = 5;

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
fn measure<T>(mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::with_capacity(RUNS);
    let mut result = None;
    for _ in 0..RUNS {
        let start = Instant::now();
        result = Some(std::hint::black_box(f()));
        times.push(start.elapsed());
    }
    times.sort();
    (times[RUNS / 2], result.unwrap())
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

    let (count_time, total_tokens) = measure(|| counter.count(&text));
    let reference = tiktoken_rs::cl100k_base().unwrap();
    let (reference_time, reference_tokens) = measure(|| reference.encode_ordinary(&text).len());
    assert_eq!(
        total_tokens, reference_tokens,
        "tiktoken and tiktoken-rs agree"
    );
    let (pipeline_time, (turns, batches)) = measure(|| {
        let turns = normalize_transcript(&text, &counter, limits);
        let tokens: Vec<u32> = turns.iter().map(|t| t.tokens).collect();
        let batches = budget.estimate_batches(&tokens, 120);
        (turns.len(), batches)
    });

    let turns_made = normalize_transcript(&text, &counter, limits);
    let under = turns_made
        .iter()
        .filter(|t| (t.tokens as usize) < counter.count(&t.text))
        .count();
    let over: usize = turns_made
        .iter()
        .map(|t| t.tokens as usize - counter.count(&t.text).min(t.tokens as usize))
        .sum();
    println!("counts: {under} of {} turns underestimated; estimates exceed exact counts by {over} tokens in all", turns_made.len());
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
        "ratios: pipeline = {:.2}x tiktoken-rs counting, {:.2}x plain tiktoken counting; {:.1}x the reference's ~2 MB/s",
        rate(pipeline_time) / rate(reference_time),
        rate(pipeline_time) / rate(count_time),
        rate(pipeline_time) / 2.0
    );
}
