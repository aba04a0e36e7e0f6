//! Live job updates over WebSocket: subscriptions ($connect / subscribe / unsubscribe /
//! $disconnect) and the fan-out of job updates, driven by the jobs table's stream so that
//! no written update is missed. Messages keep the reference's shape plus tokens and cost;
//! results are referenced by URL, never inlined, so messages stay far below 128 KB.

use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::{json, Value};
use uuid::Uuid;

use super::views::{progress_json, visible_job};
use super::Gateway;
use crate::domain::{Job, JobStatus};
use crate::engine::error::{BodyProblem, EngineError, EngineResult, Resource};
use crate::ports::{ConnectionStore, Delivery, IoResult, JobQuery, Notifier, Topic};

/// Posts in flight at once during a fan-out.
const FAN_OUT_CONCURRENCY: usize = 32;
/// Active jobs listed in an organization snapshot.
const SNAPSHOT_SIZE: usize = 100;

/// Subscriptions and the notifier; built once per execution environment.
#[derive(Clone)]
pub struct Realtime {
    pub connections: Arc<dyn ConnectionStore>,
    pub notifier: Arc<dyn Notifier>,
}

/// The kind of a job update, as the reference names it.
fn event_type(old: Option<&Job>, new: &Job) -> &'static str {
    match new.status {
        JobStatus::Completed => "complete",
        JobStatus::Failed => "error",
        JobStatus::Cancelled => "cancelled",
        _ if old.is_some_and(|old| old.failover_chain.len() < new.failover_chain.len()) => {
            "failover"
        }
        _ if old.is_some_and(|old| old.progress.failures < new.progress.failures) => "retry",
        _ if old.is_none_or(|old| old.status != new.status) => "status_change",
        _ => "progress",
    }
}

/// The `job_update` message for a change from `old` to `new`, or None when nothing a
/// subscriber sees changed (status, step, cursor).
pub fn job_update(old: Option<&Job>, new: &Job) -> Option<Value> {
    if let Some(old) = old {
        if old.status == new.status
            && old.progress == new.progress
            && old.failover_chain.len() == new.failover_chain.len()
        {
            return None;
        }
    }
    Some(update_message(new, event_type(old, new)))
}

fn update_message(job: &Job, event_type: &str) -> Value {
    let result = (job.status == JobStatus::Completed)
        .then(|| json!({ "url": format!("/api/v1/jobs/{}", job.id) }));
    json!({
        "type": "job_update",
        "job_id": job.id,
        "event_type": event_type,
        "status": job.status,
        "progress": progress_json(job),
        "result": result,
        "error": job.error.as_ref().map(|e| e.message.clone()),
        "error_code": job.error.as_ref().map(|e| e.code.clone()),
        "tokens": {
            "prompt": job.usage.prompt_tokens,
            "completion": job.usage.completion_tokens,
            "total": job.usage.prompt_tokens + job.usage.completion_tokens,
        },
        "estimated_cost": job.estimated_cost(),
        "failover_applied": !job.failover_chain.is_empty(),
        "failover_chain": job.failover_chain,
        "retry_info": (job.progress.failures > 0).then(|| json!({
            "failures": job.progress.failures,
            "failing_since": job.progress.failing_since,
        })),
        "timestamp": job.updated_at,
    })
}

/// What `$connect`'s query asks to follow: `job_id=` or `organization_id=` (both: the job,
/// checked against the organization).
pub async fn connect(
    gateway: &Gateway,
    realtime: &Realtime,
    connection_id: &str,
    job_id: Option<&str>,
    organization_id: Option<&str>,
) -> EngineResult<()> {
    let topic = topic_for(gateway, job_id, organization_id).await?;
    realtime
        .connections
        .subscribe(connection_id, &topic, organization_id)
        .await?;
    tracing::info!(connection_id, topic = %topic.key(), "connected");
    Ok(())
}

async fn topic_for(
    gateway: &Gateway,
    job_id: Option<&str>,
    organization_id: Option<&str>,
) -> EngineResult<Topic> {
    match (job_id, organization_id) {
        (Some(job_id), org) => {
            let id = Uuid::parse_str(job_id)
                .map_err(|_| EngineError::invalid_field("job_id", "must be a UUID"))?;
            visible_job(gateway, id, org).await?;
            Ok(Topic::Job(id))
        }
        (None, Some(org)) => {
            super::catalog::validate::validate_organization_id(org)
                .map_err(|problem| EngineError::invalid_field("organization_id", problem))?;
            Ok(Topic::Organization(org.to_string()))
        }
        (None, None) => Err(EngineError::invalid_field(
            "job_id",
            "give job_id or organization_id to follow",
        )),
    }
}

/// Handles a message from a client (`{"action": "subscribe"|"unsubscribe", "job_id"?,
/// "organization_id"?}`); the answer goes back to that client only. `subscribe` answers
/// with the current state: the job's update, or a `jobs_snapshot` of the organization's
/// active jobs.
pub async fn client_message(
    gateway: &Gateway,
    realtime: &Realtime,
    connection_id: &str,
    body: &str,
) -> EngineResult<Value> {
    let message: Value = serde_json::from_str(body)
        .map_err(|e| EngineError::InvalidBody(BodyProblem::NotJson(e.to_string())))?;
    let field = |name: &str| message.get(name).and_then(Value::as_str);
    let action = field("action").ok_or_else(|| {
        EngineError::invalid_field("action", "is required (subscribe or unsubscribe)")
    })?;
    // A connection keeps the organization it connected with; it cannot borrow another.
    let organization = realtime
        .connections
        .organization_of(connection_id)
        .await?
        .flatten();
    let organization = field("organization_id")
        .map(str::to_string)
        .or(organization.clone())
        .filter(|requested| organization.as_ref().is_none_or(|own| own == requested));
    if field("organization_id").is_some() && organization.is_none() {
        return Err(EngineError::not_found(
            Resource::Organization,
            field("organization_id").unwrap_or_default(),
        ));
    }
    let topic = topic_for(gateway, field("job_id"), organization.as_deref()).await?;
    match action {
        "subscribe" => {
            realtime
                .connections
                .subscribe(connection_id, &topic, organization.as_deref())
                .await?;
            current_state(gateway, &topic).await
        }
        "unsubscribe" => {
            realtime
                .connections
                .unsubscribe(connection_id, &topic)
                .await?;
            Ok(json!({"type": "unsubscribed", "topic": topic.key()}))
        }
        other => Err(EngineError::invalid_field(
            "action",
            format!("unknown action '{other}' (subscribe or unsubscribe)"),
        )),
    }
}

async fn current_state(gateway: &Gateway, topic: &Topic) -> EngineResult<Value> {
    match topic {
        Topic::Job(id) => {
            let job = gateway
                .jobs
                .get(*id)
                .await?
                .ok_or_else(|| EngineError::not_found(Resource::Job, id))?;
            Ok(update_message(&job, "status_change"))
        }
        Topic::Organization(org) => {
            let mut jobs = Vec::new();
            for status in [JobStatus::Queued, JobStatus::Processing] {
                let query = JobQuery {
                    organization_id: Some(org.clone()),
                    status: Some(status),
                    page_size: SNAPSHOT_SIZE,
                    ..Default::default()
                };
                jobs.extend(gateway.jobs.list(&query).await?.jobs);
            }
            let jobs: Vec<Value> = jobs
                .iter()
                .map(|job| {
                    json!({
                        "job_id": job.id,
                        "status": job.status,
                        "progress": update_message(job, "status_change")["progress"],
                        "service_name": job.service_name,
                        "flavor_name": job.flavor_name,
                        "created_at": job.created_at,
                    })
                })
                .collect();
            Ok(json!({"type": "jobs_snapshot", "organization_id": org, "jobs": jobs}))
        }
    }
}

/// Result of one fan-out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FanOut {
    pub sent: usize,
    pub gone: usize,
}

/// Sends a job update to the job's and its organization's subscribers; gone connections
/// are removed. Errors other than "gone" are returned so the stream record is retried.
pub async fn publish(realtime: &Realtime, job: &Job, message: &Value) -> IoResult<FanOut> {
    let mut topics = vec![Topic::Job(job.id)];
    if let Some(org) = &job.organization_id {
        topics.push(Topic::Organization(org.clone()));
    }
    let mut connections = Vec::new();
    for topic in &topics {
        for connection in realtime.connections.subscribers(topic).await? {
            if !connections.contains(&connection) {
                connections.push(connection);
            }
        }
    }
    let payload = message.to_string().into_bytes();
    let results: Vec<(String, IoResult<Delivery>)> = futures_util::stream::iter(connections)
        .map(|connection| {
            let payload = &payload;
            async move {
                let delivery = realtime.notifier.post(&connection, payload).await;
                (connection, delivery)
            }
        })
        .buffer_unordered(FAN_OUT_CONCURRENCY)
        .collect()
        .await;
    let mut report = FanOut::default();
    for (connection, delivery) in results {
        match delivery? {
            Delivery::Sent => report.sent += 1,
            Delivery::Gone => {
                realtime.connections.remove(&connection).await?;
                report.gone += 1;
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{JobProgress, ProcessingMode, UsageTotals};
    use crate::memory::sample_job;

    fn job(status: JobStatus, step: u32, cursor: u32) -> Job {
        let mut job = sample_job(status, "2026-01-01T00:00:00.000000Z");
        job.id = Uuid::nil();
        job.flavor_name = "iterative".into();
        job.organization_id = Some("org".into());
        job.processing_mode = ProcessingMode::Iterative;
        job.updated_at = "2026-01-01T00:00:01.000000Z".into();
        job.settings.estimated_cost_per_1k_tokens = Some(0.5);
        job.progress = JobProgress {
            step,
            cursor,
            total_turns: 40,
            total_batches: 4,
            phase_step: step,
            phase_total: 4,
            ..JobProgress::default()
        };
        job.usage = UsageTotals {
            prompt_tokens: 1000,
            completion_tokens: 200,
            duration_ms: 10,
            passes: step,
            cost: None,
        };
        job
    }

    #[test]
    fn updates_follow_status_and_progress() {
        let queued = job(JobStatus::Queued, 0, 0);
        let first = job(JobStatus::Processing, 1, 10);
        let second = job(JobStatus::Processing, 2, 20);
        let done = job(JobStatus::Completed, 4, 40);
        assert_eq!(
            job_update(None, &queued).unwrap()["event_type"],
            "status_change"
        );
        assert_eq!(
            job_update(Some(&queued), &first).unwrap()["event_type"],
            "status_change"
        );
        let progress = job_update(Some(&first), &second).unwrap();
        assert_eq!(progress["event_type"], "progress");
        assert_eq!(progress["progress"]["current_batch"], 2);
        assert_eq!(progress["progress"]["percentage"], 50);
        assert_eq!(progress["progress"]["current"], 20);
        assert_eq!(progress["tokens"]["total"], 1200);
        assert_eq!(progress["estimated_cost"], 0.6);
        assert!(progress["result"].is_null());
        assert!(
            job_update(Some(&second), &second.clone()).is_none(),
            "no visible change, no message"
        );
        let complete = job_update(Some(&second), &done).unwrap();
        assert_eq!(complete["event_type"], "complete");
        assert_eq!(
            complete["result"]["url"],
            format!("/api/v1/jobs/{}", Uuid::nil())
        );
        assert_eq!(complete["progress"]["percentage"], 100);
        assert!(
            complete.to_string().len() < 2048,
            "small, whatever the result size"
        );
        assert_eq!(
            job_update(Some(&second), &job(JobStatus::Cancelled, 2, 20)).unwrap()["event_type"],
            "cancelled"
        );
    }
}
