//! Versions of a completed job's result: edit, list, get, restore and delete.
//!
//! Version 1 is the job's own output (`keys::result`). Until the first edit the job has no
//! stored versions and v1 is implied; the first edit stores v1 (`created_by: system`) and
//! the new version (`created_by: user`). Each version's text is its own object under a key
//! unique to the write (`keys::result_version`), so concurrent edits never overwrite each
//! other's content. Every change is one conditional job write
//! ([`crate::ports::JobStore::replace_completed`]) that holds only while the job's
//! `updated_at` is the one the change was computed from: of two concurrent changes the
//! second gets 409 `RESULT_CHANGED` and nothing is lost. Version 1 and the
//! [`MAX_VERSIONS`]` - 1` newest are kept; older ones leave the index and their objects
//! are deleted once the write succeeded.

use serde_json::{json, Value};
use uuid::Uuid;

use super::catalog::entity::parse_object;
use super::views::{job_detail, visible_job, ResultFormat};
use super::Gateway;
use crate::domain::{fresh_timestamp, Job, JobStatus, ResultVersion};
use crate::engine::error::{EngineError, EngineResult, Location, Resource, Rule};
use crate::ports::keys;

/// Versions kept per job: version 1 plus the newest 9.
pub const MAX_VERSIONS: usize = 10;
/// Largest accepted `content`, in characters.
pub const MAX_CONTENT_CHARS: usize = 1_000_000;

/// `created_by` of version 1 (the job's output) and of edits and restores.
const BY_SYSTEM: &str = "system";
const BY_USER: &str = "user";
const TEXT: &str = "text/plain; charset=utf-8";

/// The key of the current version's text: the stored version numbered `current_version`,
/// else the job's own output (version 1).
pub fn current_result_key(job: &Job) -> String {
    job.versions
        .iter()
        .find(|version| version.version_number == job.current_version)
        .map_or_else(|| keys::result(job.id), |version| version.key.clone())
}

/// A version number from the path: a positive integer (400 naming `version_number`).
pub fn version_number(raw: &str) -> EngineResult<u32> {
    raw.parse::<u32>()
        .ok()
        .filter(|number| *number >= 1)
        .ok_or_else(|| EngineError::invalid_field("version_number", "must be a positive integer"))
}

/// The `content` of an edit body: a non-empty string of at most [`MAX_CONTENT_CHARS`]
/// characters (422 naming `content` otherwise).
pub fn parse_content(body: &[u8]) -> EngineResult<String> {
    let mut fields = parse_object(body)?;
    let invalid = |problem: String| EngineError::validation(Location::Body, "content", problem);
    let content = match fields.remove("content") {
        Some(Value::String(content)) => content,
        None | Some(Value::Null) => return Err(invalid("field required".into())),
        Some(_) => return Err(invalid("must be a string".into())),
    };
    if content.is_empty() {
        return Err(invalid("must not be empty".into()));
    }
    let chars = content.chars().count();
    if chars > MAX_CONTENT_CHARS {
        return Err(invalid(format!(
            "has {chars} characters; the limit is {MAX_CONTENT_CHARS}"
        )));
    }
    Ok(content)
}

/// A job visible to `organization_id` that is completed (400 `JOB_NOT_COMPLETED` else).
pub(crate) async fn completed_job(
    gateway: &Gateway,
    id: Uuid,
    organization_id: Option<&str>,
) -> EngineResult<Job> {
    let job = visible_job(gateway, id, organization_id).await?;
    if job.status != JobStatus::Completed {
        return Err(EngineError::refused(
            Rule::JobNotCompleted,
            format!(
                "job {id} is {}; only a completed job has a result to version",
                job.status.as_str()
            ),
        )
        .about("status", job.status.as_str()));
    }
    Ok(job)
}

async fn read_text(gateway: &Gateway, key: &str) -> EngineResult<Option<String>> {
    Ok(gateway
        .blobs
        .get(key)
        .await?
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

/// Version 1 as stored on the first edit: the job's output, created when it completed.
fn original_version(job: &Job, content: &str) -> ResultVersion {
    ResultVersion {
        version_number: 1,
        created_at: job
            .completed_at
            .clone()
            .unwrap_or_else(|| job.created_at.clone()),
        created_by: BY_SYSTEM.to_string(),
        content_length: content.chars().count() as u64,
        key: keys::result(job.id),
    }
}

/// The job's versions, oldest first: the stored ones, or v1 alone (its text read to
/// measure it) when the result was never edited.
async fn versions_of(gateway: &Gateway, job: &Job) -> EngineResult<Vec<ResultVersion>> {
    if job.versions.is_empty() {
        let output = read_text(gateway, &keys::result(job.id))
            .await?
            .unwrap_or_default();
        return Ok(vec![original_version(job, &output)]);
    }
    let mut versions = job.versions.clone();
    versions.sort_by_key(|version| version.version_number);
    Ok(versions)
}

/// A version and its text (404 naming the number when it does not exist).
pub(crate) async fn version_with_content(
    gateway: &Gateway,
    job: &Job,
    number: u32,
) -> EngineResult<(ResultVersion, String)> {
    let missing = || EngineError::not_found_by(Resource::Version, number, "version_number");
    if job.versions.is_empty() {
        if number != 1 {
            return Err(missing());
        }
        let output = read_text(gateway, &keys::result(job.id))
            .await?
            .unwrap_or_default();
        return Ok((original_version(job, &output), output));
    }
    let version = job
        .versions
        .iter()
        .find(|version| version.version_number == number)
        .cloned()
        .ok_or_else(missing)?;
    let content = match read_text(gateway, &version.key).await? {
        Some(content) => content,
        // The job's output can be empty; an edit's object is gone only if the version was
        // deleted since the job was read.
        None if number == 1 => String::new(),
        None => return Err(missing()),
    };
    Ok((version, content))
}

fn summary_json(version: &ResultVersion) -> Value {
    json!({
        "version_number": version.version_number,
        "created_at": version.created_at,
        "created_by": version.created_by,
        "content_length": version.content_length,
    })
}

/// Drops the oldest versions beyond [`MAX_VERSIONS`], never version 1; returns them.
fn prune(versions: &mut Vec<ResultVersion>) -> Vec<ResultVersion> {
    let mut pruned = Vec::new();
    while versions.len() > MAX_VERSIONS {
        let Some(oldest) = versions.iter().position(|v| v.version_number != 1) else {
            break;
        };
        pruned.push(versions.remove(oldest));
    }
    pruned
}

fn result_changed(id: Uuid) -> EngineError {
    EngineError::refused(
        Rule::ResultChanged,
        format!("the result of job {id} changed while this request was handled; reload the job and retry"),
    )
}

/// Writes `after` if the stored job is still `before` (same `updated_at`). When another
/// change got there first, the object this change wrote (`written`) is deleted and the
/// answer is 409. A failed write keeps the object: the write may have happened.
async fn commit(
    gateway: &Gateway,
    before: &Job,
    after: &Job,
    written: Option<&str>,
) -> EngineResult<()> {
    if gateway
        .jobs
        .replace_completed(after, &before.updated_at)
        .await?
    {
        return Ok(());
    }
    tracing::warn!(job_id = %before.id, "job result changed concurrently; change refused");
    if let Some(key) = written {
        if let Err(error) = gateway.blobs.delete(key).await {
            tracing::warn!(job_id = %before.id, key, error = %error, "unused version object not deleted");
        }
    }
    Err(result_changed(before.id))
}

/// Adds a version with `content`, made current; returns the job as written.
async fn add_version(gateway: &Gateway, job: &Job, content: &str) -> EngineResult<Job> {
    let mut versions = versions_of(gateway, job).await?;
    let number = versions
        .iter()
        .map(|version| version.version_number)
        .max()
        .unwrap_or(1)
        .max(job.current_version)
        + 1;
    let key = keys::result_version(job.id, number, Uuid::new_v4());
    gateway
        .blobs
        .put(&key, content.as_bytes().to_vec(), TEXT)
        .await?;
    let now = fresh_timestamp(&job.updated_at);
    versions.push(ResultVersion {
        version_number: number,
        created_at: now.clone(),
        created_by: BY_USER.to_string(),
        content_length: content.chars().count() as u64,
        key: key.clone(),
    });
    let pruned = prune(&mut versions);
    let mut edited = job.clone();
    edited.versions = versions;
    edited.current_version = number;
    edited.last_edited_at = Some(now.clone());
    edited.updated_at = now;
    commit(gateway, job, &edited, Some(&key)).await?;
    for version in &pruned {
        if version.key == keys::result(job.id) {
            continue;
        }
        if let Err(error) = gateway.blobs.delete(&version.key).await {
            // The object stays until the job is deleted (its prefix goes with it).
            tracing::warn!(job_id = %job.id, key = %version.key, error = %error, "pruned version object not deleted");
        }
    }
    tracing::info!(
        job_id = %job.id,
        version = number,
        pruned = pruned.len(),
        chars = content.chars().count(),
        "result version added"
    );
    Ok(edited)
}

/// `PATCH /api/v1/jobs/{id}/result`: a new version with the body's `content`, made
/// current. Completed jobs only. Returns the job.
pub async fn edit_result(
    gateway: &Gateway,
    id: Uuid,
    organization_id: Option<&str>,
    body: &[u8],
) -> EngineResult<Value> {
    let content = parse_content(body)?;
    let job = completed_job(gateway, id, organization_id).await?;
    let edited = add_version(gateway, &job, &content).await?;
    job_detail(gateway, edited.id, organization_id, ResultFormat::Raw).await
}

/// `GET /api/v1/jobs/{id}/versions`: `[{version_number, created_at, created_by,
/// content_length}]`, oldest first.
pub async fn list_versions(
    gateway: &Gateway,
    id: Uuid,
    organization_id: Option<&str>,
) -> EngineResult<Value> {
    let job = completed_job(gateway, id, organization_id).await?;
    let versions = versions_of(gateway, &job).await?;
    Ok(Value::Array(versions.iter().map(summary_json).collect()))
}

/// `GET /api/v1/jobs/{id}/versions/{n}`: the summary plus `content`.
pub async fn get_version(
    gateway: &Gateway,
    id: Uuid,
    organization_id: Option<&str>,
    number: u32,
) -> EngineResult<Value> {
    let job = completed_job(gateway, id, organization_id).await?;
    let (version, content) = version_with_content(gateway, &job, number).await?;
    let mut body = summary_json(&version);
    body["content"] = json!(content);
    Ok(body)
}

/// 400 `CURRENT_VERSION` when `number` is the job's current version.
fn refuse_current(job: &Job, number: u32, problem: &str) -> EngineResult<()> {
    if number != job.current_version {
        return Ok(());
    }
    Err(EngineError::refused(
        Rule::CurrentVersion,
        format!("version {number} of job {} {problem}", job.id),
    )
    .about("version_number", number))
}

/// `POST /api/v1/jobs/{id}/versions/{n}/restore`: a new version with version `n`'s
/// content, made current (the current version → 400). Returns the job.
pub async fn restore_version(
    gateway: &Gateway,
    id: Uuid,
    organization_id: Option<&str>,
    number: u32,
) -> EngineResult<Value> {
    let job = completed_job(gateway, id, organization_id).await?;
    refuse_current(&job, number, "is already the current version")?;
    let (_, content) = version_with_content(gateway, &job, number).await?;
    let restored = add_version(gateway, &job, &content).await?;
    tracing::info!(job_id = %id, from = number, version = restored.current_version, "result version restored");
    job_detail(gateway, restored.id, organization_id, ResultFormat::Raw).await
}

/// `DELETE /api/v1/jobs/{id}/versions/{n}`: removes a version and its object. The current
/// version and version 1 (the job's output) cannot be deleted (400).
pub async fn delete_version(
    gateway: &Gateway,
    id: Uuid,
    organization_id: Option<&str>,
    number: u32,
) -> EngineResult<Value> {
    let job = completed_job(gateway, id, organization_id).await?;
    refuse_current(&job, number, "is the current version and cannot be deleted")?;
    if number == 1 {
        return Err(EngineError::refused(
            Rule::OriginalVersion,
            format!("version 1 is the original output of job {id} and cannot be deleted"),
        )
        .about("version_number", number));
    }
    let Some(version) = job
        .versions
        .iter()
        .find(|version| version.version_number == number)
        .cloned()
    else {
        return Err(EngineError::not_found_by(
            Resource::Version,
            number,
            "version_number",
        ));
    };
    let mut changed = job.clone();
    changed
        .versions
        .retain(|version| version.version_number != number);
    changed.updated_at = fresh_timestamp(&job.updated_at);
    commit(gateway, &job, &changed, None).await?;
    if let Err(error) = gateway.blobs.delete(&version.key).await {
        tracing::warn!(job_id = %id, key = %version.key, error = %error, "deleted version object not deleted");
    }
    tracing::info!(job_id = %id, version = number, "result version deleted");
    Ok(json!({
        "status": "success",
        "message": format!("Version {number} deleted"),
        "version_number": number,
    }))
}

#[cfg(test)]
#[path = "versions_tests.rs"]
mod tests;
