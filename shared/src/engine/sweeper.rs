//! Nothing stuck: the sweeper finds queued and processing jobs whose step stopped moving
//! and sends the step again (stored outputs are reused, so no LLM call is repeated for a
//! step that got its answer), or fails the job after a few re-sends. A step is stuck when
//! its worker's heartbeat went silent (the worker died during the call), or when no
//! worker picked it up for a long time (its message was lost). It also removes expired
//! jobs. The jobs function serves it as the reference's `cleanup-*` routes, and a
//! schedule calls `cleanup-orphaned` every minute.

use std::time::Duration;

use serde_json::{json, Value};

use super::worker::{context_for_step, fail_job};
use super::Gateway;
use crate::domain::{now_timestamp, Job, JobError, StepMessage};
use crate::engine::catalog::tokenizers::counter_or_default;
use crate::engine::error::EngineResult;
use crate::ports::keys;

/// Jobs looked at per sweep (the oldest first); the next sweep takes the rest.
const SWEEP_BATCH: usize = 500;

/// What the sweeper did to one job.
fn entry(job: &Job, action: &str) -> Value {
    json!({
        "job_id": job.id,
        "step": job.progress.step,
        "previous_status": job.status,
        "action": action,
    })
}

/// Sends again the step of every job silent for longer than `silent_after` (heartbeat)
/// or, never picked up, `lost_after`; fails the jobs already re-sent `max_resends` times.
/// Returns `{status, requeued_count, requeued_jobs, failed_count, failed_jobs, message}`.
pub async fn sweep(
    gateway: &Gateway,
    silent_after: Duration,
    lost_after: Duration,
) -> EngineResult<Value> {
    let now = chrono::Utc::now();
    let before = |age: Duration| {
        let age = chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
        (now - age).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    };
    let (silent_before, lost_before) = (before(silent_after), before(lost_after));
    let mut requeued = Vec::new();
    let mut failed = Vec::new();
    for mut job in gateway
        .jobs
        .stale_active(&silent_before, SWEEP_BATCH)
        .await?
    {
        let running = job.heartbeat_at.is_some();
        if !running && job.updated_at >= lost_before {
            continue; // waiting in its queue, or postponed after a provider failure
        }
        let step = job.progress.step;
        if job.progress.sweeps >= gateway.limits.max_resends {
            let error = JobError {
                code: "STEP_STALLED".into(),
                message: format!(
                    "step {step} made no progress after {} re-sends (last sign of life {})",
                    job.progress.sweeps,
                    job.heartbeat_at.as_deref().unwrap_or(&job.updated_at)
                ),
            };
            failed.push(entry(&job, "failed"));
            fail_job(gateway, job, error).await?;
            continue;
        }
        let counter = counter_or_default(gateway, &job.settings.tokenizer).await;
        let context = context_for_step(gateway, &job, &counter).await?;
        let entry = entry(&job, if running { "requeued" } else { "requeued_lost" });
        job.progress.sweeps += 1;
        if running {
            // The dead worker's message holds the job's FIFO group until its visibility
            // timeout: move the job to a new group.
            job.progress.generation += 1;
        }
        job.heartbeat_at = None;
        job.updated_at = now_timestamp();
        if !gateway.jobs.replace(&job, step).await? {
            continue; // it moved meanwhile
        }
        let message = StepMessage::of(&job, step, context);
        gateway.queue.send(&message, job.lane()).await?;
        tracing::warn!(job_id = %job.id, step, generation = message.generation, running, "stuck step sent again");
        requeued.push(entry);
    }
    let summary = format!(
        "re-sent {} stuck step(s), failed {} job(s)",
        requeued.len(),
        failed.len()
    );
    Ok(json!({
        "status": "success",
        "requeued_count": requeued.len(),
        "requeued_jobs": requeued,
        "failed_count": failed.len(),
        "failed_jobs": failed,
        "message": summary,
    }))
}

/// Deletes jobs whose `expires_at` has passed, with their objects:
/// `{status, deleted_count, message}`.
pub async fn delete_expired(gateway: &Gateway) -> EngineResult<Value> {
    let now = chrono::Utc::now().timestamp();
    let mut deleted = 0usize;
    for job in gateway.jobs.expired(now, SWEEP_BATCH).await? {
        if !job.status.is_terminal() {
            // Never pull a running job from under its worker: fail it first.
            let error = JobError {
                code: "JOB_EXPIRED".into(),
                message: "the job reached its expiry before it finished".into(),
            };
            fail_job(gateway, job.clone(), error).await?;
        }
        if gateway.jobs.delete_terminal(job.id).await? {
            gateway
                .blobs
                .delete_prefix(&keys::job_prefix(job.id))
                .await?;
            deleted += 1;
        }
    }
    Ok(json!({
        "status": "success",
        "deleted_count": deleted,
        "message": if deleted == 0 { "No expired jobs found".to_string() } else { format!("Deleted {deleted} expired jobs") },
    }))
}

#[cfg(test)]
#[path = "sweeper_tests.rs"]
mod tests;
