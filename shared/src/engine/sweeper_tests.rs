//! The sweeper on the in-memory ports: a step whose worker went silent is sent again with
//! its rolling context and completes without repeating stored calls; a step waiting in
//! its queue is left alone until it counts as lost; a job re-sent too often fails; expired
//! jobs are removed with their objects.

use std::time::Duration;

use super::*;
use crate::domain::JobStatus;
use crate::engine::worker::{process_step, StepOutcome};
use crate::memory::MemoryGateway;

fn transcript(turns: usize) -> String {
    (0..turns)
        .map(|i| format!("Speaker{} : Turn {i} is about item {i}.", i % 3))
        .collect::<Vec<_>>()
        .join("\n")
}

const LONG_AGO: &str = "2020-01-01T00:00:00.000000Z";
const SILENT: Duration = Duration::from_secs(60);
const LOST: Duration = Duration::from_secs(1800);

async fn job(memory: &MemoryGateway, id: uuid::Uuid) -> Job {
    memory.gateway.jobs.get(id).await.unwrap().unwrap()
}

/// Makes the stored job look like `change` happened long ago.
async fn age(memory: &MemoryGateway, id: uuid::Uuid, change: impl FnOnce(&mut Job)) {
    let mut stored = job(memory, id).await;
    change(&mut stored);
    stored.updated_at = LONG_AGO.into();
    let step = stored.progress.step;
    assert!(memory.gateway.jobs.replace(&stored, step).await.unwrap());
}

#[tokio::test]
async fn a_silent_step_is_sent_again_with_its_context_and_completes() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let submitted = memory
        .submit(&seeded.iterative, &transcript(5))
        .await
        .unwrap();
    let (first, _) = memory.queue.drain().remove(0);
    process_step(&memory.gateway, &first).await.unwrap();
    let (second, lane) = memory.queue.drain().remove(0);
    // The worker that took step 1 died during its call: its heartbeat is old.
    age(&memory, submitted.id, |job| {
        job.heartbeat_at = Some(LONG_AGO.into())
    })
    .await;

    let report = sweep(&memory.gateway, SILENT, LOST).await.unwrap();
    assert_eq!(report["requeued_count"], 1, "{report}");
    assert_eq!(report["requeued_jobs"][0]["action"], "requeued");
    let sent = memory.queue.drain();
    assert_eq!(sent.len(), 1);
    let (resent, resent_lane) = &sent[0];
    assert_eq!((resent.step, resent.generation, *resent_lane), (1, 1, lane));
    assert_ne!(resent.group_id(), second.group_id(), "a new FIFO group");
    assert_eq!(resent.context, second.context, "the same rolling context");
    assert_ne!(resent.deduplication_id(), second.deduplication_id());
    let swept = job(&memory, submitted.id).await;
    assert_eq!(
        (swept.progress.sweeps, swept.heartbeat_at.clone()),
        (1, None)
    );

    // Sweeping again at once does nothing: the job was just touched.
    let again = sweep(&memory.gateway, SILENT, LOST).await.unwrap();
    assert_eq!(again["requeued_count"], 0);

    let calls = memory.llm.call_count();
    assert!(matches!(
        process_step(&memory.gateway, resent).await.unwrap(),
        StepOutcome::Advanced { next_step: 2 }
    ));
    // The dead worker's own message comes back later: the step is done, so it only
    // re-sends the next message (deduplicated by SQS FIFO), without a call.
    assert_eq!(
        process_step(&memory.gateway, &second).await.unwrap(),
        StepOutcome::Advanced { next_step: 2 }
    );
    assert_eq!(memory.llm.call_count(), calls + 1);
    assert_eq!(
        job(&memory, submitted.id).await.progress.sweeps,
        0,
        "reset by progress"
    );
}

#[tokio::test]
async fn a_queued_step_is_left_alone_until_it_counts_as_lost() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let waiting = memory
        .submit(&seeded.single_pass, "John : hi")
        .await
        .unwrap();
    memory.queue.drain();
    // Not picked up for two minutes: still in its queue.
    let recent = (chrono::Utc::now() - chrono::Duration::seconds(120))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut stored = job(&memory, waiting.id).await;
    stored.updated_at = recent;
    assert!(memory.gateway.jobs.replace(&stored, 0).await.unwrap());
    let report = sweep(&memory.gateway, SILENT, LOST).await.unwrap();
    assert_eq!(report["requeued_count"], 0, "{report}");
    assert!(memory.queue.drain().is_empty());

    // Not picked up for hours: its message is presumed lost and sent again.
    age(&memory, waiting.id, |_| {}).await;
    let report = sweep(&memory.gateway, SILENT, LOST).await.unwrap();
    assert_eq!(report["requeued_jobs"][0]["action"], "requeued_lost");
    let (resent, _) = memory.queue.drain().remove(0);
    assert_eq!(
        process_step(&memory.gateway, &resent).await.unwrap(),
        StepOutcome::Completed
    );
}

#[tokio::test]
async fn a_step_re_sent_too_often_fails_its_job() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let stuck = memory
        .submit(&seeded.single_pass, "John : hi")
        .await
        .unwrap();
    let max = memory.gateway.limits.max_resends;
    age(&memory, stuck.id, |job| {
        job.heartbeat_at = Some(LONG_AGO.into());
        job.progress.sweeps = max;
    })
    .await;
    let report = sweep(&memory.gateway, SILENT, LOST).await.unwrap();
    assert_eq!(report["failed_count"], 1, "{report}");
    let failed = job(&memory, stuck.id).await;
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.error.unwrap().code, "STEP_STALLED");
}

#[tokio::test]
async fn expired_jobs_are_deleted_with_their_objects() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let expired = memory
        .submit(&seeded.single_pass, "John : hi")
        .await
        .unwrap();
    let kept = memory
        .submit(&seeded.single_pass, "Marie : hi")
        .await
        .unwrap();
    let mut stored = job(&memory, expired.id).await;
    stored.expires_at = Some(chrono::Utc::now().timestamp() - 10);
    assert!(memory.gateway.jobs.replace(&stored, 0).await.unwrap());

    let report = delete_expired(&memory.gateway).await.unwrap();
    assert_eq!(report["deleted_count"], 1, "{report}");
    assert!(memory.gateway.jobs.get(expired.id).await.unwrap().is_none());
    assert!(memory
        .gateway
        .blobs
        .get(&keys::input(expired.id))
        .await
        .unwrap()
        .is_none());
    assert!(memory.gateway.jobs.get(kept.id).await.unwrap().is_some());
}
