//! Provider failures against the in-memory ports: transient failures re-queue the step
//! with back-off until the patience runs out, failover moves the remaining steps to
//! another flavor's provider and model, and a job no provider can serve fails with an
//! error naming each one.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::domain::{FailureKind, Flavor, Model, Provider, QueueLane};
use crate::engine::notify::job_update;
use crate::llm::LlmError;
use crate::memory::{MemoryGateway, Seeded};
use crate::ports::{CatalogStore, CatalogWrite, Expect, Record, RecordKind, Secrets};

fn transcript(turns: usize) -> String {
    (0..turns)
        .map(|i| format!("Speaker{} : Turn {i} is about item {i}.", i % 3))
        .collect::<Vec<_>>()
        .join("\n")
}

fn status(code: u16) -> LlmError {
    LlmError::Status {
        status: code,
        message: format!("provider says {code}"),
        retry_after: None,
    }
}

async fn job(memory: &MemoryGateway, id: Uuid) -> Job {
    memory.gateway.jobs.get(id).await.unwrap().unwrap()
}

fn next_message(memory: &MemoryGateway) -> StepMessage {
    let mut sent = memory.queue.drain();
    assert_eq!(sent.len(), 1, "one message queued: {sent:?}");
    sent.remove(0).0
}

/// A second provider (`backup`, its own base URL) with a model, and a flavor of the seeded
/// service on it; the seeded iterative flavor fails over to it on every failure kind.
async fn with_backup(memory: &MemoryGateway, seeded: &Seeded) -> (Flavor, Flavor) {
    let ciphertext = memory.secrets.encrypt("backup-key").await.unwrap();
    let provider: Provider = serde_json::from_value(json!({
        "id": Uuid::new_v4(), "name": "backup", "api_base_url": "http://backup.test/v1",
        "api_key_ciphertext": ciphertext,
    }))
    .unwrap();
    let mut model: Model = seeded.model.clone();
    model.id = Uuid::new_v4();
    model.provider_id = provider.id;
    model.model_identifier = "backup-model".into();
    model.input_price_per_million = Some(10.0);
    model.output_price_per_million = Some(20.0);
    let mut backup = seeded.iterative.clone();
    backup.id = Uuid::new_v4();
    backup.name = "backup".into();
    backup.model_id = model.id;
    let mut primary = seeded.iterative.clone();
    primary.id = Uuid::new_v4();
    primary.name = "primary".into();
    primary.failover_enabled = true;
    primary.failover_flavor_id = Some(backup.id);
    primary.failover_on_model_error = true;
    primary.failover_on_rate_limit = true;
    for result in [
        memory.insert(&provider).await,
        memory.insert(&model).await,
        memory.insert(&backup).await,
        memory.insert(&primary).await,
    ] {
        result.unwrap();
    }
    (primary, backup)
}

#[tokio::test]
async fn transient_failures_requeue_with_backoff_until_the_patience_runs_out() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let submitted = memory
        .submit(&seeded.single_pass, "John : hi")
        .await
        .unwrap();
    let message = next_message(&memory);
    let limits = memory.gateway.limits;

    // Three tries of three attempts each: every try re-queues with a doubled wait.
    let mut delays = Vec::new();
    for _ in 0..3 {
        memory.llm.fail_next(3, status(503));
        match process_step(&memory.gateway, &message).await.unwrap() {
            StepOutcome::RetryLater { delay, lane } => {
                assert_eq!(lane, QueueLane::Standard);
                delays.push(delay);
            }
            other => panic!("expected a retry, got {other:?}"),
        }
    }
    assert_eq!(
        delays,
        [
            limits.requeue_base,
            limits.requeue_base * 2,
            limits.requeue_base * 4
        ]
    );
    let waiting = job(&memory, submitted.id).await;
    assert_eq!(waiting.progress.failures, 3);
    let update = job_update(None, &waiting).unwrap();
    assert_eq!(update["progress"]["phase"], "queued");

    // The provider recovers: the step completes and the failure count is cleared.
    assert_eq!(
        process_step(&memory.gateway, &message).await.unwrap(),
        StepOutcome::Completed
    );
    let done = job(&memory, submitted.id).await;
    assert_eq!(
        (done.status, done.progress.failures),
        (JobStatus::Completed, 0)
    );

    // Past the patience, a transient failure fails the job with its own code.
    let stuck = memory
        .submit(&seeded.single_pass, "Marie : hi")
        .await
        .unwrap();
    let message = next_message(&memory);
    let mut old = job(&memory, stuck.id).await;
    old.progress.failing_since = Some("2020-01-01T00:00:00.000000Z".into());
    assert!(memory.gateway.jobs.replace(&old, 0).await.unwrap());
    memory
        .llm
        .fail_next(3, LlmError::InvalidResponse("truncated body".into()));
    assert_eq!(
        process_step(&memory.gateway, &message).await.unwrap(),
        StepOutcome::Failed
    );
    let error = job(&memory, stuck.id).await.error.unwrap();
    assert_eq!(
        error.code, "PROVIDER_BAD_RESPONSE",
        "a malformed 200 is a bad response, not an unreachable provider"
    );
    assert!(
        error.message.contains("truncated body"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn a_retry_after_beyond_the_step_deadline_postpones_instead_of_sleeping() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    memory
        .submit(&seeded.single_pass, "John : hi")
        .await
        .unwrap();
    let message = next_message(&memory);
    memory.llm.fail_next(
        1,
        LlmError::Status {
            status: 429,
            message: "slow down".into(),
            retry_after: Some(Duration::from_secs(30)),
        },
    );
    let started = std::time::Instant::now();
    let outcome = process_step(&memory.gateway, &message).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "no 30 s sleep");
    assert_eq!(memory.llm.call_count(), 1);
    match outcome {
        StepOutcome::RetryLater { delay, .. } => assert_eq!(delay, Duration::from_secs(30)),
        other => panic!("expected a retry, got {other:?}"),
    }
}

#[tokio::test]
async fn failover_moves_the_remaining_steps_and_keeps_the_done_ones() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let (primary, backup) = with_backup(&memory, &seeded).await;
    let submitted = memory.submit(&primary, &transcript(6)).await.unwrap();
    assert!(submitted.settings.failover.enabled);

    // Step 0 runs on the primary.
    let first = next_message(&memory);
    assert!(matches!(
        process_step(&memory.gateway, &first).await.unwrap(),
        StepOutcome::Advanced { next_step: 1 }
    ));
    // Step 1: the primary keeps answering 503 → fail over at once, same step again.
    let second = next_message(&memory);
    memory.llm.fail_next(3, status(503));
    let outcome = process_step(&memory.gateway, &second).await.unwrap();
    assert!(
        matches!(outcome, StepOutcome::RetryLater { delay, .. } if delay.is_zero()),
        "{outcome:?}"
    );
    let moved = job(&memory, submitted.id).await;
    assert_eq!(moved.failover_chain.len(), 1);
    let hop = &moved.failover_chain[0];
    assert_eq!(
        (hop.from_flavor, hop.to_flavor, hop.reason, hop.at_step),
        (primary.id, backup.id, FailureKind::ServerError, 1)
    );
    assert_eq!(
        (hop.from_provider.as_str(), hop.to_provider.as_str()),
        ("memory", "backup")
    );
    assert_eq!(moved.settings.model_identifier, "backup-model");
    assert_eq!(moved.final_flavor(), (backup.id, "backup"));
    let update = job_update(None, &moved).unwrap();
    assert_eq!(update["failover_chain"][0]["to_flavor"], json!(backup.id));

    // The redelivered step and the rest run on the backup; step 0 is not run again.
    let calls_before = memory.llm.call_count();
    assert!(matches!(
        process_step(&memory.gateway, &second).await.unwrap(),
        StepOutcome::Advanced { next_step: 2 }
    ));
    let third = next_message(&memory);
    assert_eq!(
        process_step(&memory.gateway, &third).await.unwrap(),
        StepOutcome::Completed
    );
    let calls = memory.llm.calls();
    assert_eq!(calls.len(), calls_before + 2);
    for call in &calls[calls_before..] {
        assert_eq!(call.endpoint.base_url, "http://backup.test/v1");
        assert_eq!(call.endpoint.api_key.as_deref(), Some("backup-key"));
        assert_eq!(call.request.model, "backup-model");
    }
    let done = job(&memory, submitted.id).await;
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(
        done.usage.passes, 3,
        "step 0 kept, steps 1 and 2 on the backup"
    );
    // Each pass is costed at its own model's prices.
    let metrics: serde_json::Value = serde_json::from_slice(
        &memory
            .gateway
            .blobs
            .get(&keys::metrics(done.id))
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(metrics[0]["model"], "memory-model");
    assert_eq!(metrics[1]["model"], "backup-model");
    let cost = |pass: &serde_json::Value| pass["estimated_cost"].as_f64().unwrap();
    let total: f64 = metrics.as_array().unwrap().iter().map(cost).sum();
    assert!((done.estimated_cost().unwrap() - total).abs() < 1e-6);
    let tokens = |pass: &serde_json::Value, key: &str| pass[key].as_f64().unwrap();
    let at_backup_prices = (tokens(&metrics[1], "prompt_tokens") * 10.0
        + tokens(&metrics[1], "completion_tokens") * 20.0)
        / 1_000_000.0;
    assert!((cost(&metrics[1]) - at_backup_prices).abs() < 1e-6);
}

#[tokio::test]
async fn when_every_provider_fails_the_error_names_each_one() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let (primary, _backup) = with_backup(&memory, &seeded).await;
    let submitted = memory.submit(&primary, &transcript(2)).await.unwrap();
    let message = next_message(&memory);
    memory.llm.fail_next(1, status(401));
    assert!(matches!(
        process_step(&memory.gateway, &message).await.unwrap(),
        StepOutcome::RetryLater { .. }
    ));
    memory.llm.fail_next(1, status(401));
    assert_eq!(
        process_step(&memory.gateway, &message).await.unwrap(),
        StepOutcome::Failed,
        "a refused key is not transient and the backup has no failover"
    );
    let failed = job(&memory, submitted.id).await;
    let error = failed.error.unwrap();
    assert_eq!(error.code, "ALL_PROVIDERS_FAILED");
    assert!(
        error.message.contains("provider 'memory' (primary): auth")
            && error.message.contains("provider 'backup' (backup): auth"),
        "{}",
        error.message
    );
    assert_eq!(
        memory.llm.call_count(),
        2,
        "a 401 is not retried in the call"
    );
}

#[tokio::test]
async fn failover_follows_the_depth_limit_and_never_loops() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let (mut primary, backup) = with_backup(&memory, &seeded).await;
    // The backup fails over back to the primary: a cycle the job must not follow.
    let mut looping = backup.clone();
    looping.failover_enabled = true;
    looping.failover_flavor_id = Some(primary.id);
    looping.updated_at = crate::domain::now_timestamp();
    let record = Record {
        kind: RecordKind::Flavor,
        id: looping.id,
        parent: Some(looping.service_id),
        body: serde_json::to_value(&looping).unwrap(),
    };
    memory
        .catalog
        .write(vec![CatalogWrite::Put {
            record,
            expect: Expect::UpdatedAt(backup.updated_at.clone()),
        }])
        .await
        .unwrap();
    primary.max_failover_depth = 3;
    let submitted = memory.submit(&primary, &transcript(2)).await.unwrap();
    let message = next_message(&memory);
    memory.llm.fail_next(1, status(401));
    process_step(&memory.gateway, &message).await.unwrap();
    memory.llm.fail_next(1, status(401));
    assert_eq!(
        process_step(&memory.gateway, &message).await.unwrap(),
        StepOutcome::Failed
    );
    let failed = job(&memory, submitted.id).await;
    assert_eq!(
        failed.failover_chain.len(),
        1,
        "the way back to the primary is not taken"
    );
    assert_eq!(failed.error.unwrap().code, "ALL_PROVIDERS_FAILED");
}

#[tokio::test]
async fn an_open_breaker_stops_calls_and_fails_over_or_waits() {
    let mut memory = MemoryGateway::new();
    memory.gateway.limits.breaker_failures = 2;
    memory.gateway.limits.breaker_cool_down = Duration::from_secs(30);
    let seeded = memory.seed().await;
    let (primary, _backup) = with_backup(&memory, &seeded).await;

    // Two failed steps of the seeded provider open its breaker.
    for input in ["A : one", "B : two"] {
        memory.submit(&seeded.single_pass, input).await.unwrap();
        let message = next_message(&memory);
        memory.llm.fail_next(3, status(503));
        assert!(matches!(
            process_step(&memory.gateway, &message).await.unwrap(),
            StepOutcome::RetryLater { .. }
        ));
    }
    // A third job waits in the queue for the cool-down, without a call.
    let waiting = memory
        .submit(&seeded.single_pass, "C : three")
        .await
        .unwrap();
    let message = next_message(&memory);
    let calls = memory.llm.call_count();
    match process_step(&memory.gateway, &message).await.unwrap() {
        StepOutcome::RetryLater { delay, .. } => {
            assert!(
                delay > Duration::from_secs(20),
                "until the cool-down ends: {delay:?}"
            )
        }
        other => panic!("expected a wait, got {other:?}"),
    }
    assert_eq!(
        memory.llm.call_count(),
        calls,
        "no call while the breaker is open"
    );
    assert_eq!(job(&memory, waiting.id).await.progress.failures, 1);

    // A job whose flavor has a failover moves at once, still without a call.
    let moving = memory.submit(&primary, &transcript(2)).await.unwrap();
    let message = next_message(&memory);
    assert!(matches!(
        process_step(&memory.gateway, &message).await.unwrap(),
        StepOutcome::RetryLater { delay, .. } if delay.is_zero()
    ));
    assert_eq!(memory.llm.call_count(), calls);
    let moved = job(&memory, moving.id).await;
    assert_eq!(moved.failover_chain[0].reason, FailureKind::ServerError);
    assert!(moved.failover_chain[0]
        .error
        .contains("circuit breaker open"));
    assert_eq!(
        process_step(&memory.gateway, &message).await.unwrap(),
        StepOutcome::Completed,
        "the backup's breaker is closed"
    );
}
