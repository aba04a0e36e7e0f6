//! Job views returned by the API: status, progress, result, token metrics.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use super::{versions, Gateway};
use crate::domain::{Job, JobStatus};
use crate::engine::error::{EngineError, EngineResult, Resource};
use crate::ports::{keys, IoError, JobQuery};
use crate::postprocess::plain_text::markdown_to_text;

/// Default and largest page sizes of job listings.
pub const DEFAULT_PAGE_SIZE: usize = 50;
pub const MAX_PAGE_SIZE: usize = 100;

/// The progress object of a job (the reference's shape): turns done, the phase, and the
/// calls done and known in that phase (`current_batch` / `total_batches`), plus the
/// processing batches and every call so far.
pub fn progress_json(job: &Job) -> Value {
    let total_turns = job.progress.total_turns;
    let completed_turns = job.progress.cursor.min(total_turns);
    json!({
        "current": completed_turns,
        "total": total_turns,
        "percentage": job.percentage(),
        "phase": job.phase_name(),
        "current_batch": job.progress.phase_step,
        "total_batches": job.progress.phase_total,
        "completed_turns": completed_turns,
        "total_turns": total_turns,
        "processing_batches": job.progress.total_batches,
        "calls": job.progress.step,
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
    // A chat job counts answers (the reference's `message_count`).
    if let Some(chat) = &job.chat {
        metrics["message_count"] = json!(usage.passes);
        if chat.cached_tokens > 0 {
            metrics["total_cached_tokens"] = json!(chat.cached_tokens);
        }
    }
    metrics
}

/// The job as returned by the API (without the result text).
pub fn job_json(job: &Job) -> Value {
    let body = json!({
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
        "output_type": job.settings.output_type,
        "current_version": job.current_version,
        "last_edited_at": job.last_edited_at,
        "has_extraction_prompt": job.settings.has_extraction_prompt,
        "extracted_metadata": job.extracted_metadata,
        "categorization": job.categorization,
        "provider": job.settings.provider_name,
    });
    let mut body = with_flavor_choice(body, job);
    if let Some(chat) = &job.chat {
        body["chat_session_id"] = json!(chat.session_id);
    }
    body
}

/// `body` plus what answers the job and why, in the reference's fields: `fallback_*`
/// (the input did not fit the requested flavor), `failover_*` / `final_flavor_*` (a
/// provider failed during the job), and `cache_hit` / `cached_from` (the result cache).
pub fn with_flavor_choice(mut body: Value, job: &Job) -> Value {
    let fallback = job.fallback.as_ref();
    let (final_flavor_id, final_flavor_name) = job.final_flavor();
    let fields = json!({
        "fallback_applied": fallback.is_some(),
        "original_flavor_id": fallback.map(|f| f.original_flavor_id),
        "original_flavor_name": fallback.map(|f| f.original_flavor_name.clone()),
        "fallback_reason": fallback.map(|f| f.reason.clone()),
        "fallback_input_tokens": fallback.map(|f| f.input_tokens),
        "fallback_context_available": fallback.map(|f| f.context_available),
        "failover_applied": !job.failover_chain.is_empty(),
        "failover_chain": job.failover_chain,
        "final_flavor_id": final_flavor_id,
        "final_flavor_name": final_flavor_name,
        "cache_hit": job.cached_from.is_some(),
        "cached_from": job.cached_from,
    });
    if let (Value::Object(body), Value::Object(fields)) = (&mut body, fields) {
        body.extend(fields);
    }
    body
}

/// How long a result URL given instead of an inline result stays valid.
const RESULT_URL_TTL: Duration = Duration::from_secs(3600);

/// The `result` object of a completed job: `{output, extracted_metadata?, categorization?}`
/// with the current version's text, or `{url, size_bytes, …}` (a presigned URL) when the
/// text is larger than the inline limit.
async fn result_json(gateway: &Gateway, job: &Job) -> EngineResult<Value> {
    let key = versions::current_result_key(job);
    let text = gateway.blobs.get(&key).await?.unwrap_or_default();
    let mut result = if text.len() > gateway.limits.result_inline_bytes {
        json!({
            "url": gateway.blobs.presigned_get(&key, RESULT_URL_TTL).await?,
            "url_expires_in": RESULT_URL_TTL.as_secs(),
            "size_bytes": text.len(),
        })
    } else {
        json!({ "output": String::from_utf8_lossy(&text) })
    };
    if let Some(metadata) = &job.extracted_metadata {
        result["extracted_metadata"] = Value::Object(metadata.clone());
    }
    if let Some(categorization) = &job.categorization {
        result["categorization"] = categorization.clone();
    }
    Ok(result)
}

/// The per-pass metrics of a completed job (empty before completion).
async fn passes_json(gateway: &Gateway, job: &Job) -> EngineResult<Value> {
    Ok(match gateway.blobs.get(&keys::metrics(job.id)).await? {
        Some(bytes) => {
            serde_json::from_slice(&bytes).map_err(|e| IoError::new("decode metrics", e))?
        }
        None => Value::Array(Vec::new()),
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

/// How `GET /jobs/{id}?format=` presents a completed job's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFormat {
    /// As stored (`raw`, the default, and `json`).
    Raw,
    /// `{output, format: "markdown"}`.
    Markdown,
    /// `{output, format: "text"}` with the markdown rendered to plain text.
    Text,
}

impl ResultFormat {
    /// Parses the `format` query parameter (`raw`, `json`, `md`, `text`).
    pub fn parse(value: Option<&str>) -> EngineResult<Self> {
        match value {
            None | Some("raw") | Some("json") => Ok(ResultFormat::Raw),
            Some("md") | Some("markdown") => Ok(ResultFormat::Markdown),
            Some("text") => Ok(ResultFormat::Text),
            Some(_) => Err(EngineError::invalid_field(
                "format",
                "must be one of raw, json, md, text",
            )),
        }
    }
}

/// The full job: status, progress, metrics, and for a completed job the result (in
/// `format`) and passes.
pub async fn job_detail(
    gateway: &Gateway,
    id: Uuid,
    organization_id: Option<&str>,
    format: ResultFormat,
) -> EngineResult<Value> {
    let job = visible_job(gateway, id, organization_id).await?;
    let mut body = job_json(&job);
    if job.status == JobStatus::Completed {
        let mut result = result_json(gateway, &job).await?;
        if let Some(output) = result.get("output").and_then(Value::as_str) {
            match format {
                ResultFormat::Raw => {}
                ResultFormat::Markdown => result["format"] = json!("markdown"),
                ResultFormat::Text => {
                    result["output"] = json!(markdown_to_text(output));
                    result["format"] = json!("text");
                }
            }
        }
        body["result"] = result;
        body["token_metrics"] = token_metrics_json(&job, Some(passes_json(gateway, &job).await?));
    }
    Ok(body)
}

/// `GET /jobs/{id}/metrics`: the token metrics with every pass, and for a completed job the
/// reference's `final_summary`.
pub async fn job_metrics(
    gateway: &Gateway,
    id: Uuid,
    organization_id: Option<&str>,
) -> EngineResult<Value> {
    let job = visible_job(gateway, id, organization_id).await?;
    let passes = passes_json(gateway, &job).await?;
    let final_summary = (job.status == JobStatus::Completed).then(|| {
        json!({
            "total_tokens": job.usage.prompt_tokens + job.usage.completion_tokens,
            "total_duration_ms": job.usage.duration_ms,
            "total_passes": job.usage.passes,
            "total_estimated_cost": job.estimated_cost(),
        })
    });
    Ok(json!({
        "job_id": job.id,
        "status": job.status,
        "token_metrics": token_metrics_json(&job, Some(passes)),
        "final_summary": final_summary,
    }))
}

/// Lists jobs newest first: `{items, page_size, next_cursor}`.
/// Most jobs a numbered page (`?page=`) counts through; past it, the cursor pages.
pub const MAX_NUMBERED_JOBS: usize = 10_000;

/// The reference's numbered pages: `{items, total, page, page_size, total_pages}` for
/// page `page` (from 1). The total needs every matching job, read 100 at a time with the
/// cursor: fine for the lists reference clients page through; past
/// [`MAX_NUMBERED_JOBS`] the answer is a 400 pointing at the cursor.
pub async fn list_jobs_numbered(
    gateway: &Gateway,
    mut query: JobQuery,
    page: usize,
) -> EngineResult<Value> {
    let page_size = query.page_size;
    let first = (page - 1).saturating_mul(page_size);
    query.page_size = MAX_PAGE_SIZE;
    query.cursor = None;
    let (mut items, mut total) = (Vec::new(), 0usize);
    loop {
        let batch = gateway.jobs.list(&query).await?;
        for job in &batch.jobs {
            if total >= first && items.len() < page_size {
                items.push(job_json(job));
            }
            total += 1;
        }
        if total > MAX_NUMBERED_JOBS {
            return Err(EngineError::invalid_field(
                "page",
                format!("more than {MAX_NUMBERED_JOBS} jobs match: page with cursor and next_cursor instead"),
            ));
        }
        match batch.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => break,
        }
    }
    Ok(json!({
        "items": items,
        "total": total,
        "page": page,
        "page_size": page_size,
        "total_pages": total.div_ceil(page_size),
    }))
}

/// Jobs newest first, a page at a time with an opaque cursor: `{items, page_size, next_cursor}`.
pub async fn list_jobs(gateway: &Gateway, query: JobQuery) -> EngineResult<Value> {
    let page = gateway.jobs.list(&query).await?;
    Ok(json!({
        "items": page.jobs.iter().map(job_json).collect::<Vec<_>>(),
        "page_size": query.page_size,
        "next_cursor": page.next_cursor,
    }))
}
