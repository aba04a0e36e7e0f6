//! [`JobStore`] in memory.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use base64::Engine as _;
use serde_json::json;
use uuid::Uuid;

use crate::domain::{Job, JobStatus};
use crate::ports::{IoError, IoResult, JobPage, JobQuery, JobStore, ListError};

use super::support::{lock, round_trip, FailNext};

/// A test hook run on the stored job just before a replace checks its condition.
type ReplaceHook = Box<dyn FnOnce(&mut Job) + Send>;

/// [`JobStore`] in memory, with the conditions of [`crate::aws::DynamoJobStore`].
#[derive(Default)]
pub struct MemoryJobStore {
    jobs: Mutex<BTreeMap<Uuid, Job>>,
    fail_get: FailNext,
    fail_replace: FailNext,
    before_replace: Mutex<Option<ReplaceHook>>,
}

impl MemoryJobStore {
    /// Makes the next `times` calls of [`JobStore::get`] fail with an [`IoError`].
    pub fn fail_next_gets(&self, times: usize) {
        self.fail_get.arm(None, times);
    }

    /// Makes the next `times` calls of [`JobStore::replace`] or
    /// [`JobStore::replace_completed`] fail with an [`IoError`] (nothing is written).
    pub fn fail_next_replaces(&self, times: usize) {
        self.fail_replace.arm(None, times);
    }

    /// Runs `change` on the stored job inside the next [`JobStore::replace`] or
    /// [`JobStore::replace_completed`], before its condition is checked: what another
    /// writer (a second delivery, a cancel, a concurrent result edit) does between the
    /// caller's read and its conditional write.
    pub fn before_next_replace(&self, change: impl FnOnce(&mut Job) + Send + 'static) {
        *lock(&self.before_replace) = Some(Box::new(change));
    }

    /// Every stored job, by id.
    pub fn all(&self) -> Vec<Job> {
        lock(&self.jobs).values().cloned().collect()
    }

    /// A conditional put: fails as armed by [`Self::fail_next_replaces`], runs the
    /// [`Self::before_next_replace`] hook on the stored job, then writes `job` only if
    /// `holds` is true of the stored one (a missing job fails the condition).
    fn replace_if(
        &self,
        job: &Job,
        operation: &'static str,
        holds: impl FnOnce(&Job) -> bool,
    ) -> IoResult<bool> {
        self.fail_replace.trip(operation, "")?;
        let stored = round_trip(job, "encode job")?;
        let hook = lock(&self.before_replace).take();
        let mut jobs = lock(&self.jobs);
        if let (Some(hook), Some(current)) = (hook, jobs.get_mut(&job.id)) {
            hook(current);
        }
        let holds = jobs.get(&job.id).is_some_and(holds);
        if holds {
            jobs.insert(job.id, stored);
        }
        Ok(holds)
    }
}

/// The sort position of a job in a listing (newest first, then by id).
fn listing_key(job: &Job) -> (String, Uuid) {
    (job.created_at.clone(), job.id)
}

/// The query's filters as the cursor holds them (service id, status).
fn cursor_filters(query: &JobQuery) -> (Option<String>, Option<String>) {
    (
        query.service_id.map(|id| id.to_string()),
        query.status.map(|status| status.as_str().to_string()),
    )
}

/// Encodes a page cursor like the DynamoDB adapter: base64 of the last evaluated key
/// (`id`, `created_at`, `org_key`) and the query's filters.
fn encode_cursor(job: &Job, query: &JobQuery) -> IoResult<String> {
    let (service_id, status) = cursor_filters(query);
    let cursor = json!({
        "key": {
            "id": job.id.to_string(),
            "created_at": job.created_at,
            "org_key": job.organization_id.as_deref().unwrap_or(NO_ORGANIZATION),
        },
        "service_id": service_id,
        "status": status,
    });
    let bytes = serde_json::to_vec(&cursor).map_err(|e| IoError::new("encode cursor", e))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Decodes a page cursor of `query` into its sort position. Like the adapter's, it is
/// [`ListError::InvalidCursor`] unless it is a whole start key of the query's organization
/// with the query's filters.
fn decode_cursor(cursor: &str, query: &JobQuery) -> Result<(String, Uuid), ListError> {
    #[derive(serde::Deserialize)]
    struct Cursor {
        key: BTreeMap<String, String>,
        service_id: Option<String>,
        status: Option<String>,
    }
    let invalid = || ListError::InvalidCursor;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| invalid())?;
    let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let names: Vec<&str> = cursor.key.keys().map(String::as_str).collect();
    let organization = query.organization_id.as_deref().unwrap_or(NO_ORGANIZATION);
    if names != ["created_at", "id", "org_key"]
        || cursor.key.get("org_key").map(String::as_str) != Some(organization)
        || (cursor.service_id, cursor.status) != cursor_filters(query)
    {
        return Err(invalid());
    }
    let id = cursor
        .key
        .get("id")
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(invalid)?;
    let created_at = cursor.key.get("created_at").cloned().ok_or_else(invalid)?;
    Ok((created_at, id))
}

/// The organization key of jobs without an organization (as in the adapter).
const NO_ORGANIZATION: &str = "#none";

#[async_trait]
impl JobStore for MemoryJobStore {
    async fn create(&self, job: &Job) -> IoResult<()> {
        let stored = round_trip(job, "encode job")?;
        let mut jobs = lock(&self.jobs);
        if jobs.contains_key(&job.id) {
            return Err(IoError::new(
                "create job",
                "ConditionalCheckFailed: the job exists",
            ));
        }
        jobs.insert(job.id, stored);
        Ok(())
    }

    async fn get(&self, id: Uuid) -> IoResult<Option<Job>> {
        self.fail_get.trip("read job", "")?;
        Ok(lock(&self.jobs).get(&id).cloned())
    }

    /// Written only if the stored job has `step == expected_step` and its status is
    /// queued or processing (`#step = :step AND #status IN (:queued, :processing)`); a
    /// missing job fails the condition too.
    async fn replace(&self, job: &Job, expected_step: u32) -> IoResult<bool> {
        self.replace_if(job, "update job", |current| {
            current.progress.step == expected_step
                && matches!(current.status, JobStatus::Queued | JobStatus::Processing)
        })
    }

    /// Written only if the stored job is completed and its `updated_at` is
    /// `expected_updated_at` (`#status = :completed AND #updated_at = :updated_at`); a
    /// missing job fails the condition too.
    async fn replace_completed(&self, job: &Job, expected_updated_at: &str) -> IoResult<bool> {
        self.replace_if(job, "update completed job", |current| {
            current.status == JobStatus::Completed && current.updated_at == expected_updated_at
        })
    }

    /// The jobs of the query's organization (no organization: only jobs without one),
    /// newest first, filtered by service and status. Like a DynamoDB query with `Limit`,
    /// a full page has a cursor even when nothing follows (the next page is then empty).
    async fn list(&self, query: &JobQuery) -> Result<JobPage, ListError> {
        let page_size = query.page_size.clamp(1, 100);
        let start = query
            .cursor
            .as_deref()
            .map(|cursor| decode_cursor(cursor, query))
            .transpose()?;
        let jobs = lock(&self.jobs);
        let mut partition: Vec<&Job> = jobs
            .values()
            .filter(|job| job.organization_id == query.organization_id)
            .collect();
        partition.sort_by_key(|job| std::cmp::Reverse(listing_key(job)));
        let from = match &start {
            Some(start) => partition.partition_point(|job| listing_key(job) >= *start),
            None => 0,
        };
        let mut page = Vec::new();
        let mut last_evaluated = None;
        for job in &partition[from..] {
            last_evaluated = Some(*job);
            let matches = query.service_id.is_none_or(|id| id == job.service_id)
                && query.status.is_none_or(|status| status == job.status);
            if matches {
                page.push((*job).clone());
                if page.len() == page_size {
                    break;
                }
            }
        }
        let next_cursor = match last_evaluated {
            Some(job) if page.len() == page_size => Some(encode_cursor(job, query)?),
            _ => None,
        };
        Ok(JobPage {
            jobs: page,
            next_cursor,
        })
    }

    async fn delete_terminal(&self, id: Uuid) -> IoResult<bool> {
        let mut jobs = lock(&self.jobs);
        if jobs.get(&id).is_some_and(|job| job.status.is_terminal()) {
            jobs.remove(&id);
            return Ok(true);
        }
        Ok(false)
    }

    /// `SET heartbeat_at = :at, updated_at = :at` if the job is at `step` and active.
    async fn heartbeat(&self, id: Uuid, step: u32, at: &str) -> IoResult<bool> {
        let mut jobs = lock(&self.jobs);
        match jobs.get_mut(&id) {
            Some(job) if job.progress.step == step && !job.status.is_terminal() => {
                job.heartbeat_at = Some(at.to_string());
                job.updated_at = at.to_string();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn stale_active(&self, before: &str, limit: usize) -> IoResult<Vec<Job>> {
        let mut jobs: Vec<Job> = lock(&self.jobs)
            .values()
            .filter(|job| !job.status.is_terminal() && job.updated_at.as_str() < before)
            .cloned()
            .collect();
        jobs.sort_by(|a, b| a.updated_at.cmp(&b.updated_at));
        jobs.truncate(limit);
        Ok(jobs)
    }

    async fn active_count(&self, organization_id: Option<&str>, up_to: usize) -> IoResult<usize> {
        Ok(lock(&self.jobs)
            .values()
            .filter(|job| {
                !job.status.is_terminal() && job.organization_id.as_deref() == organization_id
            })
            .count()
            .min(up_to))
    }

    async fn expired(&self, now: i64, limit: usize) -> IoResult<Vec<Job>> {
        let mut jobs: Vec<Job> = lock(&self.jobs)
            .values()
            .filter(|job| job.expires_at.is_some_and(|at| at < now))
            .cloned()
            .collect();
        jobs.truncate(limit);
        Ok(jobs)
    }
}
