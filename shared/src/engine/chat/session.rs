//! The usage of chat answers, recorded on completed jobs: a new job per answer, or, with a
//! `session_id`, one job per session of an organization whose usage every answer adds to.
//! The session's job id is derived from (organization, session), so every request of the
//! session finds the same record; additions are conditional writes (create if absent, else
//! replace while `updated_at` is the one read), retried on conflict: two answers that end
//! at once are both counted, once each.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::PreparedChat;
use crate::domain::{fresh_timestamp, ChatRecord, Job, JobSettings, JobStatus};
use crate::engine::worker::MAX_WRITE_TRIES;
use crate::engine::Gateway;
use crate::ports::{IoError, IoResult};

/// The usage of one answer.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct AnswerUsage {
    pub(super) prompt_tokens: u64,
    pub(super) completion_tokens: u64,
    pub(super) cached_tokens: Option<u64>,
    /// At the prices of the model that answered.
    pub(super) cost: Option<f64>,
    pub(super) duration_ms: u64,
    pub(super) started_at: String,
}

/// The id of the job of `session_id` in `organization_id`: the same for every request of
/// the session, different for another organization's session of the same name.
pub fn session_job_id(organization_id: Option<&str>, session_id: &str) -> Uuid {
    let key = serde_json::json!(["chat-session", organization_id, session_id]).to_string();
    let digest = Sha256::digest(key.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Records one answer's usage (on `settings`' model): on a new job, or added to the job of
/// the request's session. Returns the job as written.
pub(super) async fn record(
    gateway: &Gateway,
    chat: &PreparedChat,
    settings: &JobSettings,
    usage: &AnswerUsage,
) -> IoResult<Job> {
    let Some(session_id) = &chat.request.session_id else {
        let job = new_job(Uuid::new_v4(), chat, settings, usage);
        gateway.jobs.create(&job).await?;
        return Ok(job);
    };
    let id = session_job_id(chat.request.organization_id.as_deref(), session_id);
    for _ in 0..MAX_WRITE_TRIES {
        match gateway.jobs.get(id).await? {
            None => {
                let job = new_job(id, chat, settings, usage);
                match gateway.jobs.create(&job).await {
                    Ok(()) => return Ok(job),
                    // Created meanwhile by another answer of the session: add to it.
                    Err(error) if gateway.jobs.get(id).await?.is_none() => return Err(error),
                    Err(_) => continue,
                }
            }
            Some(mut job) => {
                let read_at = job.updated_at.clone();
                add(&mut job, usage);
                job.updated_at = fresh_timestamp(&read_at);
                job.completed_at = Some(job.updated_at.clone());
                if gateway.jobs.replace_completed(&job, &read_at).await? {
                    return Ok(job);
                }
                tracing::debug!(job_id = %id, "session job changed meanwhile; adding again");
            }
        }
    }
    Err(IoError::new(
        "record chat usage",
        format!("the job of session {session_id} kept changing"),
    ))
}

/// Adds one answer to a session's job.
fn add(job: &mut Job, usage: &AnswerUsage) {
    let totals = &mut job.usage;
    totals.prompt_tokens += usage.prompt_tokens;
    totals.completion_tokens += usage.completion_tokens;
    totals.duration_ms += usage.duration_ms;
    totals.passes += 1;
    if let Some(cost) = usage.cost {
        totals.cost = Some(totals.cost.unwrap_or(0.0) + cost);
    }
    let record = job.chat.get_or_insert_with(ChatRecord::default);
    record.cached_tokens += usage.cached_tokens.unwrap_or(0);
}

/// A completed job holding one answer's usage.
fn new_job(id: Uuid, chat: &PreparedChat, settings: &JobSettings, usage: &AnswerUsage) -> Job {
    let mut job = Job::new(
        id,
        &chat.service,
        &chat.flavor,
        chat.request.organization_id.clone(),
        settings.clone(),
    );
    job.status = JobStatus::Completed;
    job.started_at = Some(usage.started_at.clone());
    job.completed_at = Some(job.created_at.clone());
    job.input_tokens = chat.primary.input_tokens as u32;
    job.input_chars = chat.request.context.transcript.chars().count() as u64;
    job.context_available = chat.primary.context_available as u32;
    job.chat = Some(ChatRecord {
        session_id: chat.request.session_id.clone(),
        cached_tokens: 0,
    });
    add(&mut job, usage);
    job
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_has_one_job_per_organization() {
        let id = session_job_id(Some("org-a"), "s1");
        assert_eq!(id, session_job_id(Some("org-a"), "s1"), "deterministic");
        assert_eq!(id.get_version_num(), 8);
        assert_ne!(id, session_job_id(Some("org-b"), "s1"));
        assert_ne!(id, session_job_id(None, "s1"));
        assert_ne!(id, session_job_id(Some("org-a"), "s2"));
        // No separator games: ("a\"", "b") and ("a", "\"b") are different sessions.
        assert_ne!(
            session_job_id(Some("a\""), "b"),
            session_job_id(Some("a"), "\"b")
        );
    }
}
