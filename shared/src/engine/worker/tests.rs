//! The worker's step paths against the in-memory ports ([`crate::memory`]): jobs are
//! submitted through [`crate::engine::execute::submit`], and each test drives the queue
//! by hand, so it can redeliver, drop or reorder messages and inject failures.

use serde_json::Value;
use uuid::Uuid;

use super::*;
use crate::domain::{QueueLane, StepMessage};
use crate::engine::lifecycle;
use crate::engine::views::{job_detail, ResultFormat};
use crate::llm::{ChatCompletion, LlmError};
use crate::memory::{MemoryGateway, MemoryLlm, Seeded, ITERATIVE_PROMPT, SEEDED_API_KEY};
use crate::ports::{CatalogStore, CatalogWrite, RecordKind};

/// A transcript of `turns` short attributed lines.
fn transcript(turns: usize) -> String {
    const SPEAKERS: [&str; 3] = ["John", "Marie", "Ahmed"];
    (0..turns)
        .map(|i| format!("{} : Turn {i} is about item {i}.", SPEAKERS[i % 3]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A seeded memory gateway.
async fn setup() -> (MemoryGateway, Seeded) {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    (memory, seeded)
}

/// Submits an iterative job of 5 turns: 3 steps of 2, 2 and 1 turns.
async fn submit_iterative(memory: &MemoryGateway, seeded: &Seeded) -> Job {
    memory
        .submit(&seeded.iterative, &transcript(5))
        .await
        .expect("iterative job submitted")
}

async fn submit_single_pass(memory: &MemoryGateway, seeded: &Seeded, input: &str) -> Job {
    memory
        .submit(&seeded.single_pass, input)
        .await
        .expect("single-pass job submitted")
}

async fn job(memory: &MemoryGateway, id: Uuid) -> Job {
    memory
        .gateway
        .jobs
        .get(id)
        .await
        .unwrap()
        .expect("job exists")
}

async fn stored_output(memory: &MemoryGateway, id: Uuid, step: u32) -> Option<StepOutput> {
    memory
        .gateway
        .blobs
        .get(&keys::step(id, step))
        .await
        .unwrap()
        .map(|bytes| serde_json::from_slice(&bytes).unwrap())
}

async fn blob_text(memory: &MemoryGateway, key: &str) -> Option<String> {
    memory
        .gateway
        .blobs
        .get(key)
        .await
        .unwrap()
        .map(|bytes| String::from_utf8(bytes).unwrap())
}

/// Takes the queue's only message.
fn only_message(memory: &MemoryGateway) -> (StepMessage, QueueLane) {
    let mut sent = memory.queue.drain();
    assert_eq!(sent.len(), 1, "exactly one message queued: {sent:?}");
    sent.remove(0)
}

/// The default answer of the fake LLM to each call received, in order.
fn answers(memory: &MemoryGateway) -> Vec<ChatCompletion> {
    memory
        .llm
        .calls()
        .iter()
        .map(|call| MemoryLlm::answer_for(&call.request))
        .collect()
}

fn status(code: u16) -> LlmError {
    LlmError::Status {
        status: code,
        message: format!("provider says {code}"),
        retry_after: None,
    }
}

#[tokio::test]
async fn single_pass_job_completes_in_one_step_with_result_and_usage() {
    let (memory, seeded) = setup().await;
    let input = "John : hello everyone\nMarie : the budget is approved";
    let submitted = submit_single_pass(&memory, &seeded, input).await;
    let (message, lane) = only_message(&memory);
    assert_eq!((message.job_id, message.step), (submitted.id, 0));
    assert_eq!(lane, QueueLane::Standard, "priority 5");

    let outcome = process_step(&memory.gateway, &message).await.unwrap();
    assert_eq!(outcome, StepOutcome::Completed);

    let calls = memory.llm.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].endpoint.api_key.as_deref(), Some(SEEDED_API_KEY));
    assert_eq!(calls[0].endpoint.base_url, seeded.provider.api_base_url);
    assert_eq!(calls[0].request.model, seeded.model.model_identifier);
    assert_eq!(
        calls[0].request.max_tokens,
        seeded.model.max_generation_length
    );
    assert_eq!(
        calls[0].request.messages[0].content,
        format!("Summarize this transcript:\n{input}"),
        "the whole input in the one placeholder"
    );

    let answer = MemoryLlm::answer_for(&calls[0].request);
    let done = job(&memory, submitted.id).await;
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(
        (
            done.progress.step,
            done.progress.cursor,
            done.progress.total_batches
        ),
        (1, 1, 1)
    );
    assert!(done.started_at.is_some() && done.completed_at.is_some());
    assert_eq!(done.error, None);
    assert_eq!(done.usage.passes, 1);
    assert_eq!(
        done.usage.prompt_tokens,
        u64::from(answer.prompt_tokens.unwrap())
    );
    assert_eq!(
        done.usage.completion_tokens,
        u64::from(answer.completion_tokens.unwrap())
    );
    assert_eq!(
        blob_text(&memory, &keys::result(done.id)).await.as_deref(),
        Some(answer.content.as_str())
    );

    let detail = job_detail(&memory.gateway, done.id, None, ResultFormat::Raw)
        .await
        .unwrap();
    assert_eq!(detail["result"]["output"], answer.content.as_str());
    let passes = detail["token_metrics"]["passes"].as_array().unwrap();
    assert_eq!(passes.len(), 1);
    assert_eq!(passes[0]["pass_type"], "single_pass");
    assert!(passes[0]["estimated_cost"].as_f64().unwrap() > 0.0);
    assert!(
        memory.queue.sent().is_empty(),
        "nothing after the last step"
    );
}

#[tokio::test]
async fn iterative_job_runs_every_step_in_order_on_its_lane() {
    let (memory, seeded) = setup().await;
    let submitted = submit_iterative(&memory, &seeded).await;
    assert_eq!(submitted.progress.total_turns, 5);
    assert_eq!(submitted.progress.total_batches, 3, "2 + 2 + 1 turns");

    let delivered = memory.run_queue().await;
    let steps: Vec<(u32, QueueLane, StepOutcome)> = delivered
        .iter()
        .map(|(message, lane, outcome)| (message.step, *lane, outcome.clone()))
        .collect();
    assert_eq!(
        steps,
        [
            (0, QueueLane::Bulk, StepOutcome::Advanced { next_step: 1 }),
            (1, QueueLane::Bulk, StepOutcome::Advanced { next_step: 2 }),
            (2, QueueLane::Bulk, StepOutcome::Completed),
        ],
        "every step on the job's lane (priority 8)"
    );

    let calls = memory.llm.calls();
    assert_eq!(calls.len(), 3, "one LLM call per step");
    let prompts: Vec<&str> = calls
        .iter()
        .map(|call| call.request.messages[0].content.as_str())
        .collect();
    let batches: Vec<&str> = prompts
        .iter()
        .map(|prompt| prompt.split_once("New turns:\n").unwrap().1)
        .collect();
    let turns: Vec<String> = transcript(5).lines().map(str::to_string).collect();
    assert_eq!(
        batches,
        [
            turns[0..2].join("\n"),
            turns[2..4].join("\n"),
            turns[4].clone()
        ],
        "the turns of each batch, in order"
    );

    // The rolling context carries the previous outputs (2 lines at most).
    let answers = answers(&memory);
    let outputs: Vec<&str> = answers.iter().map(|a| a.content.as_str()).collect();
    assert_eq!(delivered[0].0.context, Vec::<String>::new());
    assert_eq!(delivered[1].0.context, [outputs[0]]);
    assert_eq!(delivered[2].0.context, [outputs[0], outputs[1]]);
    assert!(prompts[2].starts_with(&fill(
        ITERATIVE_PROMPT,
        &[&format!("{}\n{}", outputs[0], outputs[1]), ""]
    )));

    let done = job(&memory, submitted.id).await;
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error);
    assert_eq!(
        (
            done.progress.step,
            done.progress.cursor,
            done.progress.total_batches
        ),
        (3, 5, 3)
    );
    assert_eq!(done.usage.passes, 3);
    let prompt_tokens: u64 = answers
        .iter()
        .map(|a| u64::from(a.prompt_tokens.unwrap()))
        .sum();
    assert_eq!(done.usage.prompt_tokens, prompt_tokens);
    assert_eq!(
        blob_text(&memory, &keys::result(done.id)).await.unwrap(),
        outputs.join("\n"),
        "the result joins the outputs in step order"
    );

    let metrics: Value =
        serde_json::from_str(&blob_text(&memory, &keys::metrics(done.id)).await.unwrap()).unwrap();
    let passes: Vec<(String, u64, u64)> = metrics
        .as_array()
        .unwrap()
        .iter()
        .map(|pass| {
            (
                pass["pass_type"].as_str().unwrap().to_string(),
                pass["batch_start"].as_u64().unwrap(),
                pass["batch_end"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        passes,
        [
            ("initial".to_string(), 0, 2),
            ("continuation".to_string(), 2, 4),
            ("continuation".to_string(), 4, 5),
        ]
    );
}

#[tokio::test]
async fn redelivered_message_with_a_stored_output_does_not_call_the_llm_again() {
    let (memory, seeded) = setup().await;
    let submitted = submit_iterative(&memory, &seeded).await;
    let (first, _) = only_message(&memory);
    assert_eq!(
        process_step(&memory.gateway, &first).await.unwrap(),
        StepOutcome::Advanced { next_step: 1 }
    );
    let (next, _) = only_message(&memory);
    let output = stored_output(&memory, submitted.id, 0).await.unwrap();

    // The worker died after storing the output but before its conditional write: the job
    // is back at step 0 with step 0's output stored.
    assert!(memory.gateway.jobs.replace(&submitted, 1).await.unwrap());
    let again = process_step(&memory.gateway, &first).await.unwrap();
    assert_eq!(again, StepOutcome::Advanced { next_step: 1 });
    assert_eq!(memory.llm.call_count(), 1, "the stored output is reused");
    assert_eq!(only_message(&memory).0, next, "the same next message");
    assert_eq!(
        stored_output(&memory, submitted.id, 0).await.unwrap(),
        output
    );
    let advanced = job(&memory, submitted.id).await;
    assert_eq!(advanced.progress.step, 1);
    assert_eq!(advanced.progress.cursor, output.batch_end);
    assert_eq!(advanced.usage.passes, 1, "usage counted once");
    assert_eq!(
        advanced.usage.prompt_tokens,
        u64::from(output.prompt_tokens)
    );
}

#[tokio::test]
async fn resend_path_re_enqueues_the_lost_next_message_without_the_llm() {
    let (memory, seeded) = setup().await;
    let submitted = submit_iterative(&memory, &seeded).await;
    let (first, _) = only_message(&memory);
    process_step(&memory.gateway, &first).await.unwrap();
    // The job advanced to step 1 but message 1 never reached the queue.
    let (lost, lost_lane) = only_message(&memory);
    let advanced = job(&memory, submitted.id).await;

    let outcome = process_step(&memory.gateway, &first).await.unwrap();
    assert_eq!(outcome, StepOutcome::Advanced { next_step: 1 });
    assert_eq!(memory.llm.call_count(), 1, "no LLM call on the resend path");
    assert_eq!(
        memory.queue.sent(),
        [(lost, lost_lane)],
        "message 1 again, same context and lane"
    );
    assert_eq!(job(&memory, submitted.id).await, advanced, "job untouched");

    // The job then finishes normally from the re-sent message.
    let rest = memory.run_queue().await;
    let outcomes: Vec<StepOutcome> = rest.into_iter().map(|(_, _, outcome)| outcome).collect();
    assert_eq!(
        outcomes,
        [
            StepOutcome::Advanced { next_step: 2 },
            StepOutcome::Completed
        ]
    );
    assert_eq!(memory.llm.call_count(), 3);
}

#[tokio::test]
async fn stale_message_is_skipped_without_calling_the_llm() {
    let (memory, seeded) = setup().await;
    let submitted = submit_iterative(&memory, &seeded).await;
    let (first, _) = only_message(&memory);
    process_step(&memory.gateway, &first).await.unwrap();
    let (second, _) = only_message(&memory);
    process_step(&memory.gateway, &second).await.unwrap();
    let pending = memory.queue.drain();
    let at_step_two = job(&memory, submitted.id).await;
    assert_eq!(at_step_two.progress.step, 2);

    let future = StepMessage {
        step: 7,
        ..first.clone()
    };
    for stale in [first, future] {
        assert_eq!(
            process_step(&memory.gateway, &stale).await.unwrap(),
            StepOutcome::Skipped("stale step message"),
            "step {}",
            stale.step
        );
    }
    assert_eq!(memory.llm.call_count(), 2);
    assert!(memory.queue.sent().is_empty(), "nothing enqueued");
    assert_eq!(job(&memory, submitted.id).await, at_step_two);
    assert_eq!(pending.len(), 1, "step 2 still pending");
}

#[tokio::test]
async fn unknown_job_is_skipped() {
    let (memory, _) = setup().await;
    let message = StepMessage::new(Uuid::new_v4(), 0, Vec::new());
    assert_eq!(
        process_step(&memory.gateway, &message).await.unwrap(),
        StepOutcome::Skipped("job not found")
    );
    assert_eq!(memory.llm.call_count(), 0);
}

#[tokio::test]
async fn cancelled_job_is_skipped_and_the_llm_is_not_called() {
    let (memory, seeded) = setup().await;
    let submitted = submit_iterative(&memory, &seeded).await;
    let (first, _) = only_message(&memory);
    let cancelled = lifecycle::cancel(&memory.gateway, submitted.id, None)
        .await
        .unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);

    let outcome = process_step(&memory.gateway, &first).await.unwrap();
    assert_eq!(outcome, StepOutcome::Skipped("job already finished"));
    assert_eq!(memory.llm.call_count(), 0);
    assert!(memory.queue.sent().is_empty());
    assert!(stored_output(&memory, submitted.id, 0).await.is_none());
    assert_eq!(job(&memory, submitted.id).await, cancelled);
}

#[tokio::test]
async fn cancel_during_the_llm_call_wins_over_the_step() {
    let (memory, seeded) = setup().await;
    let submitted = submit_iterative(&memory, &seeded).await;
    let (first, _) = only_message(&memory);
    memory
        .jobs
        .before_next_replace(|job| job.status = JobStatus::Cancelled);

    let outcome = process_step(&memory.gateway, &first).await.unwrap();
    assert_eq!(outcome, StepOutcome::Skipped("job advanced concurrently"));
    assert_eq!(memory.llm.call_count(), 1);
    assert!(
        memory.queue.sent().is_empty(),
        "no next step for a cancelled job"
    );
    let stored = job(&memory, submitted.id).await;
    assert_eq!(stored.status, JobStatus::Cancelled);
    assert_eq!((stored.progress.step, stored.usage.passes), (0, 0));
}

#[tokio::test]
async fn non_retryable_provider_error_fails_the_job() {
    let (memory, seeded) = setup().await;
    let submitted = submit_iterative(&memory, &seeded).await;
    let (first, _) = only_message(&memory);
    memory.llm.fail_next(1, status(400));

    let outcome = process_step(&memory.gateway, &first).await.unwrap();
    assert_eq!(outcome, StepOutcome::Failed);
    assert_eq!(memory.llm.call_count(), 1, "a 4xx is not retried");
    let failed = job(&memory, submitted.id).await;
    assert_eq!(failed.status, JobStatus::Failed);
    let error = failed.error.unwrap();
    assert_eq!(error.code, "PROVIDER_BAD_REQUEST");
    assert!(error.message.contains("HTTP 400"), "{}", error.message);
    assert!(error.message.contains("1 attempt"), "{}", error.message);
    assert!(failed.completed_at.is_some());
    assert!(memory.queue.sent().is_empty());
    assert!(stored_output(&memory, submitted.id, 0).await.is_none());

    // A redelivery of the same message finds the job finished.
    assert_eq!(
        process_step(&memory.gateway, &first).await.unwrap(),
        StepOutcome::Skipped("job already finished")
    );
    assert_eq!(memory.llm.call_count(), 1);
}

#[tokio::test]
async fn retryable_provider_errors_are_retried_within_the_attempt_budget() {
    let (memory, seeded) = setup().await;
    let recovers = submit_single_pass(&memory, &seeded, "John : hi").await;
    let (message, _) = only_message(&memory);
    memory.llm.fail_next(2, status(503));
    assert_eq!(
        process_step(&memory.gateway, &message).await.unwrap(),
        StepOutcome::Completed
    );
    assert_eq!(memory.llm.call_count(), 3, "two 503s, then an answer");
    assert_eq!(job(&memory, recovers.id).await.usage.passes, 1);

    let unreachable = submit_single_pass(&memory, &seeded, "Marie : hello").await;
    let (message, _) = only_message(&memory);
    memory
        .llm
        .fail_next(3, LlmError::Transport("connection refused".into()));
    assert!(
        matches!(
            process_step(&memory.gateway, &message).await.unwrap(),
            StepOutcome::RetryLater { .. }
        ),
        "a transient failure after the in-call retries re-queues the step"
    );
    assert_eq!(memory.llm.call_count(), 6, "max_attempts 3");
    let waiting = job(&memory, unreachable.id).await;
    assert_eq!(
        (waiting.status, waiting.progress.failures),
        (JobStatus::Queued, 1)
    );
    assert!(waiting.error.is_none());
}

#[tokio::test]
async fn deleted_provider_fails_the_job_without_a_call() {
    let (memory, seeded) = setup().await;
    let submitted = submit_single_pass(&memory, &seeded, "John : hi").await;
    let (message, _) = only_message(&memory);
    memory
        .catalog
        .write(vec![CatalogWrite::Delete {
            kind: RecordKind::Provider,
            id: seeded.provider.id,
            parent: None,
        }])
        .await
        .unwrap();
    assert!(memory
        .catalog
        .record(RecordKind::Provider, seeded.provider.id)
        .await
        .unwrap()
        .is_none());

    assert_eq!(
        process_step(&memory.gateway, &message).await.unwrap(),
        StepOutcome::Failed
    );
    assert_eq!(memory.llm.call_count(), 0);
    let error = job(&memory, submitted.id).await.error.unwrap();
    assert_eq!(error.code, "PROVIDER_NOT_FOUND");
}

#[tokio::test]
async fn dead_letter_fails_a_queued_job() {
    let (memory, seeded) = setup().await;
    let submitted = submit_iterative(&memory, &seeded).await;
    let (first, _) = only_message(&memory);

    let outcome = fail_dead_letter(&memory.gateway, &first, 4).await.unwrap();
    assert_eq!(outcome, StepOutcome::Failed);
    let failed = job(&memory, submitted.id).await;
    assert_eq!(failed.status, JobStatus::Failed);
    let error = failed.error.unwrap();
    assert_eq!(error.code, "STEP_RETRIES_EXHAUSTED");
    assert!(
        error.message.contains("after 4 deliveries"),
        "{}",
        error.message
    );
    assert!(error.message.contains(&submitted.id.to_string()));
    assert_eq!(memory.llm.call_count(), 0);

    assert_eq!(
        fail_dead_letter(&memory.gateway, &first, 5).await.unwrap(),
        StepOutcome::Skipped("job already finished")
    );
    assert_eq!(
        job(&memory, submitted.id).await.error.unwrap().message,
        error.message,
        "the first failure is kept"
    );
}

#[tokio::test]
async fn failed_put_of_the_step_output_is_retried_and_calls_the_llm_again() {
    let (memory, seeded) = setup().await;
    let submitted = submit_single_pass(&memory, &seeded, "John : hi").await;
    let (message, _) = only_message(&memory);
    memory
        .blobs
        .fail_next_puts_of(&keys::step(submitted.id, 0), 1);

    let error = process_step(&memory.gateway, &message).await.unwrap_err();
    assert_eq!(error.operation, "write blob");
    assert_eq!(memory.llm.call_count(), 1);
    assert!(stored_output(&memory, submitted.id, 0).await.is_none());
    assert_eq!(job(&memory, submitted.id).await, submitted, "job untouched");

    // Nothing was stored, so the retry has to ask again.
    assert_eq!(
        process_step(&memory.gateway, &message).await.unwrap(),
        StepOutcome::Completed
    );
    assert_eq!(memory.llm.call_count(), 2);
}

#[tokio::test]
async fn failed_put_of_the_result_is_retried_without_a_second_llm_call() {
    let (memory, seeded) = setup().await;
    let submitted = submit_single_pass(&memory, &seeded, "John : hi").await;
    let (message, _) = only_message(&memory);
    memory
        .blobs
        .fail_next_puts_of(&keys::metrics(submitted.id), 1);

    let error = process_step(&memory.gateway, &message).await.unwrap_err();
    assert_eq!(error.operation, "write blob");
    assert_eq!(memory.llm.call_count(), 1);
    assert!(stored_output(&memory, submitted.id, 0).await.is_some());
    let unchanged = job(&memory, submitted.id).await;
    assert_eq!(
        (unchanged.status, unchanged.progress.step),
        (JobStatus::Queued, 0)
    );

    assert_eq!(
        process_step(&memory.gateway, &message).await.unwrap(),
        StepOutcome::Completed
    );
    assert_eq!(memory.llm.call_count(), 1, "the stored output is reused");
    let done = job(&memory, submitted.id).await;
    assert_eq!((done.status, done.usage.passes), (JobStatus::Completed, 1));
    assert_eq!(
        blob_text(&memory, &keys::result(done.id)).await.unwrap(),
        answers(&memory)[0].content
    );
}

#[tokio::test]
async fn failed_send_of_the_next_step_is_retried_through_the_resend_path() {
    let (memory, seeded) = setup().await;
    let submitted = submit_iterative(&memory, &seeded).await;
    let (first, lane) = only_message(&memory);
    memory.queue.fail_next_sends(1);

    let error = process_step(&memory.gateway, &first).await.unwrap_err();
    assert_eq!(error.operation, "enqueue step");
    assert_eq!(memory.llm.call_count(), 1);
    assert!(memory.queue.sent().is_empty());
    assert_eq!(
        job(&memory, submitted.id).await.progress.step,
        1,
        "the job advanced before the send"
    );

    // The retried message re-sends step 1 without asking the LLM again.
    assert_eq!(
        process_step(&memory.gateway, &first).await.unwrap(),
        StepOutcome::Advanced { next_step: 1 }
    );
    assert_eq!(memory.llm.call_count(), 1);
    let (next, next_lane) = memory.queue.sent()[0].clone();
    assert_eq!((next.step, next_lane), (1, lane));
    assert_eq!(next.context, [answers(&memory)[0].content.clone()]);

    let rest = memory.run_queue().await;
    assert_eq!(rest.last().unwrap().2, StepOutcome::Completed);
    assert_eq!(memory.llm.call_count(), 3, "one call per step in all");
}

#[tokio::test]
async fn failed_replace_is_retried_without_a_second_llm_call() {
    let (memory, seeded) = setup().await;
    let submitted = submit_iterative(&memory, &seeded).await;
    let (first, _) = only_message(&memory);
    memory.jobs.fail_next_replaces(1);

    let error = process_step(&memory.gateway, &first).await.unwrap_err();
    assert_eq!(error.operation, "update job");
    assert_eq!(memory.llm.call_count(), 1);
    assert!(memory.queue.sent().is_empty());
    assert_eq!(job(&memory, submitted.id).await, submitted);

    assert_eq!(
        process_step(&memory.gateway, &first).await.unwrap(),
        StepOutcome::Advanced { next_step: 1 }
    );
    assert_eq!(memory.llm.call_count(), 1);
    assert_eq!(job(&memory, submitted.id).await.usage.passes, 1);
    assert_eq!(only_message(&memory).0.step, 1);
}

#[tokio::test]
async fn concurrent_advance_is_skipped_and_sends_nothing() {
    let (memory, seeded) = setup().await;
    let submitted = submit_iterative(&memory, &seeded).await;
    let (first, _) = only_message(&memory);
    // Another delivery of the same step advances the job between our read and our write.
    memory.jobs.before_next_replace(|job| {
        job.status = JobStatus::Processing;
        job.progress.step = 1;
        job.progress.cursor = 2;
    });

    let outcome = process_step(&memory.gateway, &first).await.unwrap();
    assert_eq!(outcome, StepOutcome::Skipped("job advanced concurrently"));
    assert_eq!(memory.llm.call_count(), 1);
    assert!(
        memory.queue.sent().is_empty(),
        "the other delivery sends step 1"
    );
    let stored = job(&memory, submitted.id).await;
    assert_eq!((stored.progress.step, stored.usage.passes), (1, 0));
}

#[tokio::test]
async fn missing_provider_usage_is_counted_and_blank_lines_are_tidied() {
    let (memory, seeded) = setup().await;
    let submitted = submit_single_pass(&memory, &seeded, "John : hi\nMarie : hello").await;
    let (message, _) = only_message(&memory);
    let content = "• John — hi\n\n   \n• Marie — hello  ";
    memory.llm.respond_next(ChatCompletion {
        content: content.into(),
        prompt_tokens: None,
        completion_tokens: None,
        finish_reason: None,
    });

    assert_eq!(
        process_step(&memory.gateway, &message).await.unwrap(),
        StepOutcome::Completed
    );
    let counter = crate::tokens::TokenCounter::load(&submitted.settings.tokenizer).unwrap();
    let prompt = &memory.llm.calls()[0].request.messages[0].content;
    let done = job(&memory, submitted.id).await;
    assert_eq!(done.usage.prompt_tokens, counter.count(prompt) as u64);
    assert_eq!(done.usage.completion_tokens, counter.count(content) as u64);
    assert_eq!(
        blob_text(&memory, &keys::result(done.id)).await.unwrap(),
        "• John — hi\n\n• Marie — hello",
        "trailing spaces trimmed, runs of blank lines collapsed, paragraphs kept"
    );
}
