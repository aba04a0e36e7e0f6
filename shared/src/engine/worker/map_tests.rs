//! The map phase of `map_reduce` jobs against the in-memory ports: chunks sent in a
//! window, each in its own message group; completions counted once, even when they land
//! at once; the reduce planned exactly once; chunk failures re-queued per chunk.

use std::collections::HashSet;

use serde_json::{json, Value};
use uuid::Uuid;

use super::*;
use crate::domain::Flavor;
use crate::engine::catalog::entity::Entity;
use crate::engine::execute::{submit, ExecuteRequest};
use crate::llm::LlmError;
use crate::memory::{MemoryGateway, Seeded};

const CHUNK_PROMPT: &str = "Summarise this part of a meeting:\n{}";
const REDUCE_PROMPT: &str = "Merge these partial summaries:\n{}";

fn transcript(turns: usize) -> String {
    (0..turns)
        .map(|i| format!("Speaker {} : turn {i} about item {i}.", i % 3))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A map_reduce flavor of the seeded service: 2 turns per chunk, `window` at once.
async fn map_flavor(
    memory: &MemoryGateway,
    seeded: &Seeded,
    window: u32,
    changes: Value,
) -> Flavor {
    let mut body = serde_json::to_value(&seeded.iterative).unwrap();
    for (key, value) in json!({
        "id": Uuid::new_v4(), "name": format!("map-{window}"), "is_default": false,
        "processing_mode": "map_reduce", "prompt_user_content": CHUNK_PROMPT,
        "max_new_turns": 2, "map_concurrency": window,
        "reduce_summary": true, "prompt_reduce_content": REDUCE_PROMPT,
    })
    .as_object()
    .unwrap()
    .iter()
    .chain(changes.as_object().unwrap())
    {
        body[key] = value.clone();
    }
    let flavor: Flavor = serde_json::from_value(body).unwrap();
    memory.insert(&flavor).await.unwrap();
    flavor
}

async fn submit_to(memory: &MemoryGateway, flavor: &Flavor, turns: usize) -> Job {
    let request = ExecuteRequest {
        input: transcript(turns),
        flavor_id: Some(flavor.id),
        ..ExecuteRequest::default()
    };
    submit(&memory.gateway, flavor.service_id, request)
        .await
        .expect("job submitted")
}

async fn stored(memory: &MemoryGateway, id: Uuid) -> Job {
    memory.gateway.jobs.get(id).await.unwrap().unwrap()
}

/// Delivers the first message: the first chunks go out.
async fn start(memory: &MemoryGateway, job: &Job) -> Vec<StepMessage> {
    let first = memory.queue.drain();
    assert_eq!(first.len(), 1);
    let outcome = process_step(&memory.gateway, &first[0].0).await.unwrap();
    assert_eq!(outcome, StepOutcome::Advanced { next_step: 0 });
    let chunks: Vec<StepMessage> = memory.queue.drain().into_iter().map(|(m, _)| m).collect();
    assert!(chunks.iter().all(|m| m.chunk && m.job_id == job.id));
    chunks
}

#[tokio::test]
async fn chunks_run_in_a_window_each_in_its_own_group_without_rolling_context() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let flavor = map_flavor(&memory, &seeded, 3, json!({})).await;
    let job = submit_to(&memory, &flavor, 20).await;
    assert_eq!(job.settings.map_concurrency, 3);
    assert_eq!(
        job.progress.total_batches, 10,
        "exact: chunks carry no context"
    );

    let chunks = start(&memory, &job).await;
    assert_eq!(chunks.iter().map(|m| m.step).collect::<Vec<_>>(), [0, 1, 2]);
    let groups: HashSet<String> = chunks.iter().map(StepMessage::group_id).collect();
    assert_eq!(groups.len(), 3, "one message group per chunk");
    let state = stored(&memory, job.id).await.progress.map.unwrap();
    assert_eq!(
        state
            .in_flight
            .iter()
            .map(|c| c.turns.clone())
            .collect::<Vec<_>>(),
        [0..2, 2..4, 4..6]
    );

    let delivered = memory.run_queue_with(chunks).await;
    let done = stored(&memory, job.id).await;
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error);
    let calls = memory.llm.calls();
    let prompts: Vec<&str> = calls
        .iter()
        .map(|c| c.request.messages.last().unwrap().content.as_str())
        .collect();
    assert_eq!(prompts.len(), 11, "10 chunks and one reduce");
    for (chunk, prompt) in prompts[..10].iter().enumerate() {
        assert!(prompt.starts_with("Summarise this part"), "{prompt}");
        assert_eq!(
            prompt.lines().count(),
            3,
            "the prompt line and 2 turns, no context: {prompt}"
        );
        let _ = chunk;
    }
    assert!(prompts[10].starts_with("Merge these"));
    for chunk in 0..10 {
        assert!(
            prompts[10].contains(&format!("turn {} ", chunk * 2 + 1)),
            "reduce holds every chunk's output"
        );
    }
    assert_eq!(done.usage.passes, 11);
    assert_eq!((done.progress.step, done.progress.total_batches), (11, 10));
    assert!(done.progress.map.is_none());
    assert!(delivered
        .iter()
        .all(|(_, _, outcome)| !matches!(outcome, StepOutcome::Failed)));
    let covered: HashSet<String> = prompts[..10]
        .iter()
        .flat_map(|p| p.lines().skip(1))
        .map(str::to_string)
        .collect();
    assert_eq!(covered.len(), 20, "every turn in exactly one chunk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chunks_finishing_at_once_are_each_counted_once_and_reduce_once() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let flavor = map_flavor(&memory, &seeded, 5, json!({})).await;
    let job = submit_to(&memory, &flavor, 20).await;
    let mut wave = start(&memory, &job).await;
    let mut reduce_messages = Vec::new();
    while !wave.is_empty() {
        // Every chunk in flight completes at once, each on its own thread; then each is
        // delivered again (a message group holds one chunk, so a copy comes after).
        for round in [&wave, &wave] {
            let deliveries: Vec<_> = round
                .iter()
                .cloned()
                .map(|message| {
                    let gateway = memory.gateway.clone();
                    tokio::spawn(async move { process_step(&gateway, &message).await })
                })
                .collect();
            for delivery in deliveries {
                delivery.await.unwrap().expect("chunk processed");
            }
        }
        let sent: Vec<StepMessage> = memory.queue.drain().into_iter().map(|(m, _)| m).collect();
        reduce_messages.extend(sent.iter().filter(|m| !m.chunk).cloned());
        wave = sent.into_iter().filter(|m| m.chunk).collect();
    }
    assert_eq!(
        reduce_messages.len(),
        1,
        "the reduce step is sent once: {reduce_messages:?}"
    );
    assert_eq!(reduce_messages[0].step, 10);
    let counted = stored(&memory, job.id).await;
    assert_eq!(counted.progress.phase, Phase::Reducing);
    assert_eq!(counted.progress.step, 10);
    assert_eq!(counted.usage.passes, 10, "no chunk counted twice");
    assert_eq!(memory.llm.call_count(), 10, "no chunk called twice");
    let outcome = process_step(&memory.gateway, &reduce_messages[0])
        .await
        .unwrap();
    assert_eq!(outcome, StepOutcome::Completed);
}

#[tokio::test]
async fn a_failing_chunk_is_requeued_alone_and_the_others_go_on() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let flavor = map_flavor(&memory, &seeded, 2, json!({})).await;
    let job = submit_to(&memory, &flavor, 8).await;
    let chunks = start(&memory, &job).await;
    memory.llm.fail_next(
        3,
        LlmError::Status {
            status: 503,
            message: "busy".into(),
            retry_after: None,
        },
    );
    let failed = process_step(&memory.gateway, &chunks[0]).await.unwrap();
    assert!(
        matches!(failed, StepOutcome::RetryLater { .. }),
        "{failed:?}"
    );
    let state = stored(&memory, job.id).await.progress.map.unwrap();
    assert_eq!(
        (state.in_flight[0].failures, state.in_flight[1].failures),
        (1, 0)
    );
    assert!(state.in_flight[0].failing_since.is_some());

    let ok = process_step(&memory.gateway, &chunks[1]).await.unwrap();
    assert_eq!(ok, StepOutcome::Advanced { next_step: 2 });
    let retried = process_step(&memory.gateway, &chunks[0]).await.unwrap();
    assert_eq!(retried, StepOutcome::Advanced { next_step: 3 });
    let rest: Vec<StepMessage> = memory.queue.drain().into_iter().map(|(m, _)| m).collect();
    memory.run_queue_with(rest).await;
    assert_eq!(stored(&memory, job.id).await.status, JobStatus::Completed);
}

#[tokio::test]
async fn the_sweeper_resend_and_a_stale_chunk_change_nothing() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let flavor = map_flavor(&memory, &seeded, 2, json!({})).await;
    let job = submit_to(&memory, &flavor, 6).await;
    let chunks = start(&memory, &job).await;
    // A step message in the map phase (the sweeper's) sends the chunks in flight again.
    let resend = StepMessage::of(&stored(&memory, job.id).await, 0, Vec::new());
    let outcome = process_step(&memory.gateway, &resend).await.unwrap();
    assert_eq!(outcome, StepOutcome::Skipped("chunks in flight sent again"));
    let again: Vec<u32> = memory
        .queue
        .drain()
        .into_iter()
        .map(|(m, _)| m.step)
        .collect();
    assert_eq!(again, [0, 1]);
    process_step(&memory.gateway, &chunks[0]).await.unwrap();
    let duplicate = process_step(&memory.gateway, &chunks[0]).await.unwrap();
    assert_eq!(duplicate, StepOutcome::Skipped("chunk already counted"));
    assert_eq!(memory.llm.call_count(), 1);
}

#[tokio::test]
async fn map_settings_are_checked_on_write() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let mut iterative = seeded.iterative.clone();
    iterative.map_concurrency = Some(3);
    assert_eq!(
        iterative.validate().unwrap_err().field(),
        Some("map_concurrency")
    );
    let mut map: Flavor = seeded.iterative.clone();
    map.processing_mode = crate::domain::ProcessingMode::MapReduce;
    map.prompt_user_content = CHUNK_PROMPT.into();
    map.map_concurrency = Some(33);
    assert_eq!(map.validate().unwrap_err().field(), Some("map_concurrency"));
    map.map_concurrency = Some(8);
    map.validate().expect("a valid map_reduce flavor");
    map.failover_enabled = true;
    assert_eq!(
        map.validate().unwrap_err().field(),
        Some("failover_enabled")
    );
    map.failover_enabled = false;
    map.prompt_user_content = "{} and {}".into();
    assert!(map.validate().is_err(), "one placeholder: the chunk");
}
