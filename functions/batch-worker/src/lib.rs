//! SQS consumer: one step of one job per message, with partial batch failures. Messages
//! of one job (message group) run in order and a failure holds back the rest of its
//! group; different jobs in a batch run concurrently. Records from the dead-letter queue
//! fail their job with a clear error.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use gateway_core::domain::StepMessage;
use gateway_core::engine::worker::{fail_dead_letter, process_step, StepOutcome};
use gateway_core::engine::Gateway;
use gateway_core::logging::job_span;
use gateway_core::ports::IoError;
use lambda_runtime::LambdaEvent;
use tracing::Instrument;

/// Handles one SQS batch. `dead_letter_queue` is the name of the DLQ (last path segment of
/// its URL); records from it fail their job instead of running.
pub async fn handle(
    gateway: &Gateway,
    event: LambdaEvent<SqsEvent>,
    dead_letter_queue: Option<&str>,
) -> SqsBatchResponse {
    let mut groups: Vec<(String, Vec<SqsMessage>)> = Vec::new();
    for record in event.payload.records {
        let group = record
            .attributes
            .get("MessageGroupId")
            .cloned()
            .unwrap_or_default();
        match groups.iter_mut().find(|(name, _)| *name == group) {
            Some((_, records)) => records.push(record),
            None => groups.push((group, vec![record])),
        }
    }
    let failures = futures_util::future::join_all(
        groups
            .into_iter()
            .map(|(_, records)| process_group(gateway, records, dead_letter_queue)),
    )
    .await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures
        .into_iter()
        .flatten()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}

/// Runs one group's records in order; returns the ids to retry (the failed record and
/// every later one of the group).
async fn process_group(
    gateway: &Gateway,
    records: Vec<SqsMessage>,
    dead_letter_queue: Option<&str>,
) -> Vec<String> {
    let mut failed = Vec::new();
    for record in records {
        let id = record.message_id.clone().unwrap_or_default();
        if !failed.is_empty() {
            failed.push(id);
            continue;
        }
        match process_record(gateway, &record, dead_letter_queue).await {
            Ok(Disposition::Done) => {}
            Ok(Disposition::Postponed) => failed.push(id),
            Err(error) => {
                tracing::warn!(message_id = %id, %error, "step will be retried");
                failed.push(id);
            }
        }
    }
    failed
}

/// What became of a record that did not fail.
enum Disposition {
    /// Done with: delete it.
    Done,
    /// Its visibility was changed so that it comes back later: keep it.
    Postponed,
}

async fn process_record(
    gateway: &Gateway,
    record: &SqsMessage,
    dead_letter_queue: Option<&str>,
) -> Result<Disposition, IoError> {
    let body = record.body.as_deref().unwrap_or_default();
    let message: StepMessage = match serde_json::from_str(body) {
        Ok(message) => message,
        Err(error) => {
            // A malformed message can never succeed: drop it instead of retrying.
            tracing::error!(message_id = record.message_id.as_deref().unwrap_or(""), %error, "malformed step message dropped");
            return Ok(Disposition::Done);
        }
    };
    let from_dead_letter_queue = dead_letter_queue.is_some_and(|dlq| {
        record
            .event_source_arn
            .as_deref()
            .and_then(|arn| arn.rsplit(':').next())
            == Some(dlq)
    });
    let span = job_span(&message.job_id, None);
    async {
        let outcome = if from_dead_letter_queue {
            let receives = record
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|count| count.parse().ok())
                .unwrap_or(0);
            fail_dead_letter(gateway, &message, receives).await?
        } else {
            process_step(gateway, &message).await?
        };
        match outcome {
            StepOutcome::Skipped(reason) => {
                tracing::info!(step = message.step, reason, "step message skipped")
            }
            StepOutcome::RetryLater { delay, lane } => {
                let receipt = record.receipt_handle.as_deref().unwrap_or_default();
                gateway.queue.postpone(lane, receipt, delay).await?;
                tracing::info!(
                    step = message.step,
                    delay_ms = delay.as_millis() as u64,
                    "step postponed"
                );
                return Ok(Disposition::Postponed);
            }
            outcome => tracing::info!(step = message.step, ?outcome, "step message processed"),
        }
        Ok(Disposition::Done)
    }
    .instrument(span)
    .await
}

/// The dead-letter queue's name from `GATEWAY_JOB_DLQ_URL`, if set.
pub fn dead_letter_queue_from_env() -> Option<String> {
    let url = std::env::var("GATEWAY_JOB_DLQ_URL").ok()?;
    url.trim_end_matches('/')
        .rsplit('/')
        .next()
        .map(str::to_string)
}
