//! Paged turns and planning in pieces, against the in-memory ports.

use super::*;
use crate::domain::{JobStatus, ProcessingMode};
use crate::engine::execute::{submit, uploads, ExecuteRequest};
use crate::engine::worker::StepOutcome;
use crate::memory::{sample_job, MemoryGateway};

fn counter() -> TokenCounter {
    crate::tokens::TokenCounter::default_counter()
}

/// A transcript of `lines` attributed lines of varied length, with accents.
fn transcript(lines: usize) -> String {
    (0..lines)
        .map(|i| {
            let words = "réunion budget planning équipe".repeat(1 + i % 7);
            format!("Speaker {} : point {i}, {words}.", i % 4)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn iterative_job() -> Job {
    let mut job = sample_job(JobStatus::Queued, "2026-01-01T00:00:00.000000Z");
    job.processing_mode = ProcessingMode::Iterative;
    job.settings.context_length = 8192;
    job.settings.max_generation_length = 1024;
    job.settings.create_new_turn_after = 40;
    job.settings.max_new_turns = 10;
    job.progress.phase = Phase::Planning;
    job
}

fn limits() -> NormalizeLimits {
    normalize_limits(&iterative_job().settings)
}

#[tokio::test]
async fn a_batch_reads_its_turns_across_page_boundaries() {
    let memory = MemoryGateway::new();
    let counter = counter();
    let turns = normalize_transcript(&transcript(300), &counter, limits());
    let mut job = iterative_job();
    let mut writer = PageWriter::new(&memory.gateway, job.id, 0, 0);
    writer.page_limit = 1_000;
    writer.extend(turns.clone()).await.unwrap();
    let stored = writer.finish().await.unwrap();
    assert!(stored.pages.len() > 10, "{} pages", stored.pages.len());
    assert_eq!(stored.pages[0], 0);
    assert!(stored.pages.windows(2).all(|pair| pair[0] < pair[1]));
    assert_eq!(
        stored.tokens,
        turns.iter().map(|t| t.tokens).collect::<Vec<_>>()
    );
    job.progress.turn_pages = stored.pages.clone();

    for from in [0, 1, 17, stored.pages[3], stored.pages[3] - 1, 290, 299] {
        let read = read_turns(&memory.gateway, &job, from, 12).await.unwrap();
        let end = (from as usize + 12).min(turns.len());
        assert_eq!(read, turns[from as usize..end], "from {from}");
    }
    assert!(read_turns(&memory.gateway, &job, 300, 5)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_failover_recut_starts_at_the_cursor() {
    let memory = MemoryGateway::new();
    let counter = counter();
    let turns = normalize_transcript(&transcript(120), &counter, limits());
    let mut job = iterative_job();
    job.progress.turn_pages = store_turns(&memory.gateway, job.id, turns.clone())
        .await
        .unwrap();
    let tighter = NormalizeLimits {
        create_new_turn_after: 8,
        max_turn_tokens: 8,
    };
    let stored = recut_turns(&memory.gateway, &job, 50, 1, &counter, tighter)
        .await
        .unwrap();
    let rest: Vec<&str> = turns[50..].iter().map(|t| t.text.as_str()).collect();
    let expected = normalize_transcript(&rest.join("\n"), &counter, tighter);
    assert_eq!(stored.pages[0], 50);
    job.progress.turns_revision = 1;
    job.progress.turn_pages = stored.pages;
    let read = read_turns(&memory.gateway, &job, 50, usize::MAX)
        .await
        .unwrap();
    assert_eq!(read, expected);
    assert!(read.iter().all(|turn| turn.tokens <= 8));
}

/// Plans `text` stored as the job's upload, read in pieces of `piece_bytes`.
async fn plan_upload(
    memory: &MemoryGateway,
    text: &[u8],
    piece_bytes: u64,
) -> Result<Job, JobError> {
    let upload = uuid::Uuid::new_v4();
    memory
        .gateway
        .blobs
        .put(&keys::upload_data(upload), text.to_vec(), "text/plain")
        .await
        .unwrap();
    let mut job = iterative_job();
    job.input_upload_id = Some(upload);
    plan_in_pieces(&memory.gateway, job, &counter(), piece_bytes)
        .await
        .unwrap()
}

#[tokio::test]
async fn planning_in_pieces_gives_the_turns_of_the_whole_text() {
    let memory = MemoryGateway::new();
    // Lines up to 12 KB: pieces of 4 KB and more hold a line whole, as planning does.
    let text = transcript(400) + "\n\n" + &"mot ".repeat(3_000) + "\r\nLast : line";
    for piece_bytes in [4_000, 5_000, 1 << 20] {
        let job = plan_upload(&memory, text.as_bytes(), piece_bytes)
            .await
            .unwrap();
        let whole = normalize_transcript(&text, &counter(), limits());
        assert_eq!(job.progress.phase, Phase::Processing);
        assert_eq!(job.progress.total_turns as usize, whole.len());
        let read = read_turns(&memory.gateway, &job, 0, usize::MAX)
            .await
            .unwrap();
        assert_eq!(read, whole, "pieces of {piece_bytes} bytes");
        assert_eq!(job.input_chars, text.chars().count() as u64);
        assert!(job.input_tokens as usize >= counter().count(&text) * 9 / 10);
        assert_eq!(
            job.progress.total_batches,
            estimate_batches(
                &job.settings,
                job.processing_mode,
                &whole.iter().map(|t| t.tokens).collect::<Vec<_>>()
            )
        );
        let copied = memory
            .gateway
            .blobs
            .get(&keys::input(job.id))
            .await
            .unwrap();
        assert_eq!(copied.as_deref(), Some(text.as_bytes()));
    }
}

#[tokio::test]
async fn a_line_without_breaks_is_cut_in_bounded_pieces() {
    let memory = MemoryGateway::new();
    let text = "é".repeat(5_000) + &"word ".repeat(2_000);
    let key = "long.txt".to_string();
    memory
        .gateway
        .blobs
        .put(&key, text.clone().into_bytes(), "text/plain")
        .await
        .unwrap();
    let mut pieces = LinePieces::new(memory.gateway.blobs.clone(), key, 100);
    let mut joined = String::new();
    while let Some(piece) = pieces.next().await.unwrap() {
        let piece = piece.expect("valid UTF-8 pieces");
        assert!(
            piece.len() <= 100 * (MAX_LINE_PIECES as usize + 1),
            "{}",
            piece.len()
        );
        joined.push_str(&piece);
    }
    assert_eq!(joined, text);
}

#[tokio::test]
async fn input_that_is_not_text_fails_the_plan_with_its_offset() {
    let memory = MemoryGateway::new();
    let mut bytes = b"A : hello\nB : ".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    let error = plan_upload(&memory, &bytes, 4).await.unwrap_err();
    assert_eq!(error.code, "INPUT_NOT_UTF8");
    assert!(error.message.contains("offset 14"), "{}", error.message);
    let error = plan_upload(&memory, b" \n\n  \n", 4).await.unwrap_err();
    assert_eq!(error.code, "INPUT_EMPTY");
}

#[tokio::test]
async fn an_upload_over_the_inline_size_is_planned_by_the_first_step() {
    let mut memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    memory.gateway.limits.inline_plan_bytes = 2_000;
    let text = transcript(40);
    let created = uploads::create(&memory.gateway, None).await.unwrap();
    let upload: uuid::Uuid = serde_json::from_value(created.body["upload_id"].clone()).unwrap();
    memory
        .gateway
        .blobs
        .put(
            &keys::upload_data(upload),
            text.clone().into_bytes(),
            "text/plain",
        )
        .await
        .unwrap();
    let mut request = ExecuteRequest {
        input_upload_id: Some(upload),
        flavor_id: Some(seeded.iterative.id),
        ..Default::default()
    };
    uploads::resolve_input(&memory.gateway, &mut request)
        .await
        .unwrap();
    assert_eq!(request.deferred_upload, Some(text.len() as u64));
    assert!(request.input.is_empty(), "not read before the answer");

    let job = submit(&memory.gateway, seeded.service.id, request.clone())
        .await
        .unwrap();
    assert_eq!(job.progress.phase, Phase::Planning);
    assert_eq!(job.input_upload_id, Some(upload));
    let accepted = crate::engine::execute::accepted_json(&job);
    assert_eq!(accepted["planning"], "first_step");
    assert!(accepted["input_tokens"].is_null());
    let progress = crate::engine::views::progress_json(&job);
    assert_eq!(progress["phase"], "planning");

    let delivered = memory.run_queue().await;
    assert_eq!(delivered.last().unwrap().2, StepOutcome::Completed);
    let done = memory.gateway.jobs.get(job.id).await.unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Completed);
    let whole = normalize_transcript(&text, &counter(), normalize_limits(&done.settings));
    assert_eq!(done.progress.total_turns as usize, whole.len());
    assert!(done.input_tokens > 1_000);
    assert_eq!(done.progress.step, done.usage.passes);

    // A single-pass flavor cannot take an input it has not read.
    let mut single = request.clone();
    single.flavor_id = Some(seeded.single_pass.id);
    let refused = submit(&memory.gateway, seeded.service.id, single)
        .await
        .unwrap_err();
    assert_eq!(refused.field(), Some("input_upload_id"), "{refused}");
}
