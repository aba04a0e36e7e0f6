//! The result cache: a completed job answers a later execute of the same input with the
//! same effective settings, in the same organization, at once and without an LLM call.
//!
//! The key is a SHA-256 of the organization, the service, every setting that shapes the
//! answer (provider and model, tokenizer, prompts, sampling, chunking, reduce and
//! finishing prompts, consolidation, mode, extraction fields, categorisation context)
//! and the input. A job that completes stores `cache/{key}.json` naming itself; a hit
//! is a new job, completed at once, with the cached job's result and metadata, zero
//! usage, `cache_hit: true` and `cached_from`. The entry lives as long as the cached job:
//! an expired, deleted or foreign job is a miss. `cache: false` opts out.

use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::{now_timestamp, Job, JobStatus, UsageTotals};
use crate::engine::Gateway;
use crate::ports::{keys, IoError, IoResult};

/// What makes two jobs give the same answer.
#[derive(Serialize)]
struct CacheKey<'a> {
    organization_id: Option<&'a str>,
    service_id: Uuid,
    provider_id: Uuid,
    model: &'a str,
    tokenizer: &'a str,
    mode: &'a crate::domain::ProcessingMode,
    temperature: f32,
    top_p: f32,
    frequency_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    stop_sequences: &'a [String],
    custom_params: Option<&'a str>,
    user_prompt: &'a str,
    system_prompt: Option<&'a str>,
    create_new_turn_after: u32,
    summary_turns: u32,
    max_new_turns: u32,
    context_length: u32,
    max_generation_length: u32,
    output_type: &'a str,
    reduce_prompt: Option<&'a str>,
    consolidate: bool,
    extraction_prompt: Option<&'a str>,
    categorization_prompt: Option<&'a str>,
    extraction_fields: &'a Option<std::collections::BTreeMap<String, String>>,
    context: Option<serde_json::Value>,
    input_sha256: String,
}

/// The SHA-256 of `bytes` in lower-case hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The cache key of a planned job and its input.
pub fn cache_key(job: &Job, input: &str) -> String {
    let settings = &job.settings;
    let key = CacheKey {
        organization_id: job.organization_id.as_deref(),
        service_id: job.service_id,
        provider_id: settings.provider_id,
        model: &settings.model_identifier,
        tokenizer: &settings.tokenizer,
        mode: &job.processing_mode,
        temperature: settings.temperature,
        top_p: settings.top_p,
        frequency_penalty: settings.frequency_penalty,
        presence_penalty: settings.presence_penalty,
        stop_sequences: &settings.stop_sequences,
        custom_params: settings.custom_params.as_deref(),
        user_prompt: &settings.prompt_user_content,
        system_prompt: settings.prompt_system_content.as_deref(),
        create_new_turn_after: settings.create_new_turn_after,
        summary_turns: settings.summary_turns,
        max_new_turns: settings.max_new_turns,
        context_length: settings.context_length,
        max_generation_length: settings.max_generation_length,
        output_type: &settings.output_type,
        reduce_prompt: settings.reduce_prompt.as_deref(),
        consolidate: settings.consolidate,
        extraction_prompt: settings.extraction_prompt.as_deref(),
        categorization_prompt: settings.categorization_prompt.as_deref(),
        extraction_fields: &job.extraction_fields,
        context: job
            .context
            .as_ref()
            .and_then(|context| serde_json::to_value(context).ok()),
        input_sha256: sha256_hex(input.as_bytes()),
    };
    let encoded = serde_json::to_vec(&key).unwrap_or_default();
    sha256_hex(&encoded)
}

/// Records a completed job as the answer for its key (if it has one). A failure only
/// costs a later cache hit.
pub async fn remember(gateway: &Gateway, job: &Job) {
    let Some(key) = &job.cache_key else {
        return;
    };
    let entry = json!({ "job_id": job.id }).to_string().into_bytes();
    if let Err(error) = gateway
        .blobs
        .put(&keys::cache_entry(key), entry, "application/json")
        .await
    {
        tracing::warn!(job_id = %job.id, %error, "result cache entry not written");
    }
}

/// The completed job of the organization that answers `planned` (whose `cache_key` is
/// set), if there is one still alive.
async fn cached_job(gateway: &Gateway, planned: &Job) -> IoResult<Option<Job>> {
    let Some(key) = &planned.cache_key else {
        return Ok(None);
    };
    let Some(entry) = gateway.blobs.get(&keys::cache_entry(key)).await? else {
        return Ok(None);
    };
    let Some(id) = serde_json::from_slice::<serde_json::Value>(&entry)
        .ok()
        .and_then(|entry| {
            entry["job_id"]
                .as_str()
                .and_then(|id| Uuid::parse_str(id).ok())
        })
    else {
        return Ok(None);
    };
    let now = chrono::Utc::now().timestamp();
    Ok(gateway.jobs.get(id).await?.filter(|cached| {
        cached.status == JobStatus::Completed
            && cached.organization_id == planned.organization_id
            && cached.cache_key == planned.cache_key
            && cached.expires_at.is_none_or(|at| at > now)
    }))
}

/// Answers `planned` from the cache: a new completed job with the cached job's result,
/// or None on a miss.
pub async fn answer(gateway: &Gateway, planned: &Job) -> IoResult<Option<Job>> {
    let Some(cached) = cached_job(gateway, planned).await? else {
        return Ok(None);
    };
    let Some(result) = gateway.blobs.get(&keys::result(cached.id)).await? else {
        return Ok(None);
    };
    let now = now_timestamp();
    let mut job = planned.clone();
    job.status = JobStatus::Completed;
    job.started_at = Some(now.clone());
    job.completed_at = Some(now);
    job.progress = cached.progress.clone();
    job.usage = UsageTotals::default();
    job.extracted_metadata = cached.extracted_metadata.clone();
    job.categorization = cached.categorization.clone();
    job.cached_from = Some(cached.id);
    gateway
        .blobs
        .put(&keys::result(job.id), result, "text/plain; charset=utf-8")
        .await?;
    gateway
        .blobs
        .put(&keys::metrics(job.id), b"[]".to_vec(), "application/json")
        .await?;
    gateway
        .jobs
        .create(&job)
        .await
        .map_err(|error| IoError::new("store cached job", error.to_string()))?;
    tracing::info!(job_id = %job.id, cached_from = %cached.id, "answered from the result cache");
    Ok(Some(job))
}
