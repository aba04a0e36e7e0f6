//! Job lifecycle actions: cancel (the worker stops at its next step) and delete (terminal
//! jobs only, with every stored object).

use serde_json::json;
use uuid::Uuid;

use super::views::visible_job;
use super::Gateway;
use crate::domain::{now_timestamp, Job, JobStatus};
use crate::error::ApiError;
use crate::ports::keys;

/// Attempts before giving up when the worker keeps advancing the job under us.
const CANCEL_ATTEMPTS: usize = 5;

fn already_finished(job: &Job) -> ApiError {
    ApiError::new(
        400,
        "JOB_ALREADY_FINISHED",
        format!(
            "job {} is already {} and cannot be cancelled",
            job.id,
            job.status.as_str()
        ),
    )
    .with("status", job.status.as_str())
}

/// Cancels a queued or processing job: stored as `cancelled`; the worker drops the job's
/// next step (and the output of a call in flight is never applied). A finished job → 400.
pub async fn cancel(
    gateway: &Gateway,
    id: Uuid,
    organization_id: Option<&str>,
) -> Result<Job, ApiError> {
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
    Err(ApiError::new(
        409,
        "JOB_BUSY",
        format!("job {id} kept changing; try again"),
    ))
}

/// Deletes a finished job and all its stored objects. A job still running → 400.
pub async fn delete(
    gateway: &Gateway,
    id: Uuid,
    organization_id: Option<&str>,
) -> Result<serde_json::Value, ApiError> {
    let job = visible_job(gateway, id, organization_id).await?;
    if !job.status.is_terminal() {
        return Err(ApiError::new(
            400,
            "JOB_NOT_FINISHED",
            format!("job {id} is {}; cancel it first", job.status.as_str()),
        )
        .with("status", job.status.as_str()));
    }
    if !gateway.jobs.delete_terminal(id).await? {
        return Err(ApiError::not_found("job", id));
    }
    let objects = gateway.blobs.delete_prefix(&keys::job_prefix(id)).await?;
    tracing::info!(job_id = %id, organization_id = organization_id.unwrap_or(""), objects, "job deleted");
    Ok(json!({"job_id": id, "deleted": true, "objects_deleted": objects}))
}
