//! Job lifecycle actions: cancel (the worker stops at its next step) and delete (terminal
//! jobs only, with every stored object).

use serde_json::json;
use uuid::Uuid;

use super::views::visible_job;
use super::Gateway;
use crate::domain::{now_timestamp, Job, JobStatus};
use crate::engine::error::{EngineError, EngineResult, Resource, Rule};
use crate::ports::keys;

/// Attempts before giving up when the worker keeps advancing the job under us.
const CANCEL_ATTEMPTS: usize = 5;

fn already_finished(job: &Job) -> EngineError {
    EngineError::refused(
        Rule::JobAlreadyFinished,
        format!(
            "job {} is already {} and cannot be cancelled",
            job.id,
            job.status.as_str()
        ),
    )
    .about("status", job.status.as_str())
}

/// Cancels a queued or processing job: stored as `cancelled`; the worker drops the job's
/// next step (and the output of a call in flight is never applied). A finished job → 400.
pub async fn cancel(
    gateway: &Gateway,
    id: Uuid,
    organization_id: Option<&str>,
) -> EngineResult<Job> {
    let mut job = visible_job(gateway, id, organization_id).await?;
    for _ in 0..CANCEL_ATTEMPTS {
        if job.status.is_terminal() {
            return Err(already_finished(&job));
        }
        let expected_step = job.progress.step;
        let mut cancelled = job.clone();
        cancelled.status = JobStatus::Cancelled;
        cancelled.completed_at = Some(now_timestamp());
        cancelled.updated_at = now_timestamp();
        if gateway.jobs.replace(&cancelled, expected_step).await? {
            tracing::info!(job_id = %id, organization_id = organization_id.unwrap_or(""), step = expected_step, "job cancelled");
            return Ok(cancelled);
        }
        job = visible_job(gateway, id, organization_id).await?;
    }
    Err(EngineError::refused(
        Rule::JobBusy,
        format!("job {id} kept changing; try again"),
    ))
}

/// Deletes a finished job and all its stored objects. A job still running → 400.
pub async fn delete(
    gateway: &Gateway,
    id: Uuid,
    organization_id: Option<&str>,
) -> EngineResult<serde_json::Value> {
    let job = visible_job(gateway, id, organization_id).await?;
    if !job.status.is_terminal() {
        return Err(EngineError::refused(
            Rule::JobNotFinished,
            format!("job {id} is {}; cancel it first", job.status.as_str()),
        )
        .about("status", job.status.as_str()));
    }
    if !gateway.jobs.delete_terminal(id).await? {
        return Err(EngineError::not_found(Resource::Job, id));
    }
    let objects = gateway.blobs.delete_prefix(&keys::job_prefix(id)).await?;
    tracing::info!(job_id = %id, organization_id = organization_id.unwrap_or(""), objects, "job deleted");
    Ok(json!({"job_id": id, "deleted": true, "objects_deleted": objects}))
}
