//! Job views returned by the API: status, progress, result, token metrics.

use serde_json::{json, Value};
use uuid::Uuid;

use super::Gateway;
use crate::domain::{Job, JobStatus};
use crate::engine::error::{EngineError, EngineResult, Resource};
use crate::ports::{keys, IoError, JobQuery};

/// Default and largest page sizes of job listings.
pub const DEFAULT_PAGE_SIZE: usize = 50;
pub const MAX_PAGE_SIZE: usize = 100;

/// The progress object of a job.
pub fn progress_json(job: &Job) -> Value {
    json!({
        "current_batch": job.progress.step,
        "total_batches": job.progress.total_batches,
        "completed_turns": job.progress.cursor.min(job.progress.total_turns),
        "total_turns": job.progress.total_turns,
        "percentage": job.percentage(),
    })
}

/// Totals of token usage so far (plus `passes` when given).
pub fn token_metrics_json(job: &Job, passes: Option<Value>) -> Value {
    let usage = &job.usage;
    let total = usage.prompt_tokens + usage.completion_tokens;
    let per_pass = |value: u64| {
        if usage.passes == 0 {
            0
        } else {
            value / u64::from(usage.passes)
        }
    };
    let mut metrics = json!({
        "total_prompt_tokens": usage.prompt_tokens,
        "total_completion_tokens": usage.completion_tokens,
        "total_tokens": total,
        "total_duration_ms": usage.duration_ms,
        "total_estimated_cost": job.estimated_cost(),
        "pass_count": usage.passes,
        "avg_tokens_per_pass": per_pass(total),
        "avg_duration_per_pass_ms": per_pass(usage.duration_ms),
    });
    if let Some(passes) = passes {
        metrics["passes"] = passes;
    }
    metrics
}

/// The job as returned by the API (without the result text).
pub fn job_json(job: &Job) -> Value {
    json!({
        "id": job.id,
        "job_id": job.id,
        "service_id": job.service_id,
        "service_name": job.service_name,
        "flavor_id": job.flavor_id,
        "flavor_name": job.flavor_name,
        "organization_id": job.organization_id,
        "status": job.status,
        "processing_mode": job.processing_mode,
        "priority": job.settings.priority,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "completed_at": job.completed_at,
        "updated_at": job.updated_at,
        "input_tokens": job.input_tokens,
        "input_chars": job.input_chars,
        "context_available": job.context_available,
        "tokenizer": job.settings.tokenizer,
        "model": job.settings.model_identifier,
        "progress": progress_json(job),
        "token_metrics": token_metrics_json(job, None),
        "error": job.error.as_ref().map(|e| e.message.clone()),
        "error_code": job.error.as_ref().map(|e| e.code.clone()),
        "expires_at": job.expires_at,
    })
}

/// Reads a job visible to `organization_id`: a job of another organization is a 404.
pub async fn visible_job(
    gateway: &Gateway,
    id: Uuid,
    organization_id: Option<&str>,
) -> EngineResult<Job> {
    gateway
        .jobs
        .get(id)
        .await?
        .filter(|job| {
            job.organization_id.is_none() || job.organization_id.as_deref() == organization_id
        })
        .ok_or_else(|| EngineError::not_found(Resource::Job, id))
}

/// The full job: status, progress, metrics, and for a completed job the result and passes.
pub async fn job_detail(
    gateway: &Gateway,
    id: Uuid,
    organization_id: Option<&str>,
) -> EngineResult<Value> {
    let job = visible_job(gateway, id, organization_id).await?;
    let mut body = job_json(&job);
    if job.status == JobStatus::Completed {
        let result = gateway
            .blobs
            .get(&keys::result(job.id))
            .await?
            .unwrap_or_default();
        body["result"] = json!({ "output": String::from_utf8_lossy(&result) });
        let passes = match gateway.blobs.get(&keys::metrics(job.id)).await? {
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| IoError::new("decode metrics", e))?
            }
            None => Value::Array(Vec::new()),
        };
        body["token_metrics"] = token_metrics_json(&job, Some(passes));
    }
    Ok(body)
}

/// Lists jobs newest first: `{items, page_size, next_cursor}`.
pub async fn list_jobs(gateway: &Gateway, query: JobQuery) -> EngineResult<Value> {
    let page = gateway.jobs.list(&query).await?;
    Ok(json!({
        "items": page.jobs.iter().map(job_json).collect::<Vec<_>>(),
        "page_size": query.page_size,
        "next_cursor": page.next_cursor,
    }))
}
