//! SQS event source mapping: long-polls a queue, invokes a function with real SQS Lambda
//! events and deletes the records the function did not report in `batchItemFailures`.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Map, Value};
use tokio::sync::{watch, OnceCell, Semaphore};
use tokio::task::JoinSet;

use crate::invoke::Invoker;

/// Most messages SQS returns per ReceiveMessage (and accepts per DeleteMessageBatch).
pub const MAX_BATCH_SIZE: i32 = 10;

/// Builds the Lambda SQS event for `messages` received from the queue `queue_arn`,
/// exactly as Lambda's event source mapping shapes it (`{"Records": [...]}` with
/// `messageId`, `receiptHandle`, `body`, `attributes`, `messageAttributes`, `md5OfBody`,
/// `eventSource`, `eventSourceARN`, `awsRegion`).
pub fn sqs_event(messages: &[Message], queue_arn: &str, region: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|message| sqs_record(message, queue_arn, region))
        .collect();
    json!({ "Records": records })
}

fn sqs_record(message: &Message, queue_arn: &str, region: &str) -> Value {
    let attributes: BTreeMap<&str, &str> = message
        .attributes()
        .map(|attributes| {
            attributes
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect()
        })
        .unwrap_or_default();
    let mut message_attributes = Map::new();
    for (name, attribute) in message.message_attributes().into_iter().flatten() {
        let encode =
            |blob: &aws_sdk_sqs::primitives::Blob| Value::String(BASE64.encode(blob.as_ref()));
        message_attributes.insert(
            name.clone(),
            json!({
                "stringValue": attribute.string_value(),
                "binaryValue": attribute.binary_value().map(encode),
                "stringListValues": attribute.string_list_values(),
                "binaryListValues": attribute.binary_list_values().iter().map(encode).collect::<Vec<_>>(),
                "dataType": attribute.data_type(),
            }),
        );
    }
    let mut record = json!({
        "messageId": message.message_id(),
        "receiptHandle": message.receipt_handle(),
        "body": message.body(),
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.md5_of_body(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    });
    if let (Some(digest), Some(fields)) =
        (message.md5_of_message_attributes(), record.as_object_mut())
    {
        fields.insert(
            "md5OfMessageAttributes".to_string(),
            Value::String(digest.to_string()),
        );
    }
    record
}

/// Which records of a batch to delete after a successful invocation, given the
/// function's result. `None` means the whole batch failed (Lambda's rule when a
/// `batchItemFailures` entry is malformed or names no record of the batch).
pub fn records_to_delete<'a>(message_ids: &[&'a str], result: &Value) -> Option<Vec<&'a str>> {
    let failures = match result.get("batchItemFailures") {
        None | Some(Value::Null) => return Some(message_ids.to_vec()),
        Some(Value::Array(failures)) => failures,
        Some(_) => return None,
    };
    let mut failed = HashSet::new();
    for failure in failures {
        let identifier = failure
            .get("itemIdentifier")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())?;
        if !message_ids.contains(&identifier) {
            return None;
        }
        failed.insert(identifier);
    }
    Some(
        message_ids
            .iter()
            .copied()
            .filter(|id| !failed.contains(id))
            .collect(),
    )
}

/// Queues → function mapping. With several queues they are priority lanes, most
/// urgent first: a lane is received from only while every more urgent lane is empty,
/// that is has no visible message and no batch in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqsMapping {
    /// Queue URLs, most urgent first (at least one).
    pub queue_urls: Vec<String>,
    /// Function name to invoke.
    pub function: String,
}

/// What one poll cycle did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PollOutcome {
    /// Messages received.
    pub received: usize,
    /// Messages deleted after the invocation.
    pub deleted: usize,
    /// Whether the invocation failed as a whole (nothing deleted): a function error, an
    /// unreachable Invoke API, or no answer before the messages' visibility timeout.
    pub invoke_failed: bool,
}

/// A batch received from lane `lane`, not yet delivered.
struct Received {
    lane: usize,
    messages: Vec<Message>,
    at: Instant,
    _in_flight: InFlight,
}

/// Counts a batch as in flight on its lane until dropped.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the poller needs to know of a queue, read once with GetQueueAttributes.
#[derive(Clone, Debug)]
struct QueueInfo {
    arn: String,
    /// How long a received message stays invisible; the invocation's deadline.
    visibility_timeout: Option<Duration>,
}

/// Polls a mapping's queues for one function, like Lambda's event source mapping: up to
/// `concurrency` batches are invoked at once (SQS FIFO hands out a message group's next
/// message only once the previous one is deleted or its visibility timeout expired, so a
/// job's steps stay in order and one at a time).
#[derive(Clone, Debug)]
pub struct SqsPoller {
    sqs: aws_sdk_sqs::Client,
    invoker: Invoker,
    mapping: SqsMapping,
    batch_size: i32,
    wait_time_seconds: i32,
    concurrency: usize,
    queues: Arc<Vec<OnceCell<QueueInfo>>>,
    in_flight: Arc<Vec<Arc<AtomicUsize>>>,
}

impl SqsPoller {
    /// Creates a poller receiving up to `batch_size` messages (clamped to 1..=10) per
    /// invocation: short polls on the urgent lanes, then a 1 s long poll on the last one
    /// it may serve. It runs as many batches at once as the invoker allows invocations of
    /// the function ([`Invoker::concurrency`]).
    pub fn new(
        sqs: aws_sdk_sqs::Client,
        invoker: Invoker,
        mapping: SqsMapping,
        batch_size: i32,
    ) -> Self {
        let lanes = mapping.queue_urls.len();
        Self {
            sqs,
            concurrency: invoker.concurrency(),
            invoker,
            queues: Arc::new((0..lanes).map(|_| OnceCell::new()).collect()),
            in_flight: Arc::new((0..lanes).map(|_| Arc::default()).collect()),
            mapping,
            batch_size: batch_size.clamp(1, MAX_BATCH_SIZE),
            wait_time_seconds: 1,
        }
    }

    /// The mapping this poller serves.
    pub fn mapping(&self) -> &SqsMapping {
        &self.mapping
    }

    /// Runs until `shutdown` turns true: whenever fewer than `concurrency` batches are in
    /// flight, receives the next batch (lane rule of [`SqsMapping`]) and invokes the
    /// function with it in the background. Errors are logged and retried after a short
    /// pause. Batches in flight are awaited before it returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let queues = self.mapping.queue_urls.join(",");
        tracing::info!(%queues, function = %self.mapping.function, concurrency = self.concurrency, "sqs poller started");
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let mut batches = JoinSet::new();
        while !*shutdown.borrow() {
            while batches.try_join_next().is_some() {}
            let slot = tokio::select! {
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
                _ = shutdown.changed() => break,
            };
            let received = tokio::select! {
                received = self.receive_next() => received,
                _ = shutdown.changed() => break,
            };
            match received {
                Ok(Some(batch)) => {
                    let poller = self.clone();
                    batches.spawn(async move {
                        let _slot = slot;
                        if let Err(error) = poller.deliver(batch).await {
                            tracing::warn!(function = %poller.mapping.function, %error, "sqs batch not completed");
                        }
                    });
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%queues, %error, "sqs poll failed");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
        while batches.join_next().await.is_some() {}
        tracing::info!(%queues, "sqs poller stopped");
    }

    /// One cycle, in the foreground: receive a batch (lane rule of [`SqsMapping`]), invoke
    /// the function, delete the records it did not report as failed. If the invocation
    /// fails nothing is deleted: the messages come back after their visibility timeout
    /// (and the redrive policy moves poison ones to the DLQ). Errors are SQS API errors
    /// only.
    pub async fn poll_once(&self) -> Result<PollOutcome, String> {
        match self.receive_next().await? {
            Some(batch) => self.deliver(batch).await,
            None => Ok(PollOutcome::default()),
        }
    }

    /// Receives from the most urgent lane that has a visible message. A lane with a batch
    /// in flight ends the search (the lanes after it wait) and gets the long poll, so the
    /// lane's next message (a job's next step, sent before its step is deleted) is taken
    /// as soon as it is deliverable.
    async fn receive_next(&self) -> Result<Option<Received>, String> {
        let lanes = self.mapping.queue_urls.len();
        for lane in 0..lanes {
            let busy = self.in_flight[lane].load(Ordering::SeqCst) > 0;
            let wait_time_seconds = if busy || lane + 1 == lanes {
                self.wait_time_seconds
            } else {
                0
            };
            let messages = self.receive(lane, wait_time_seconds).await?;
            if !messages.is_empty() {
                return Ok(Some(Received {
                    lane,
                    messages,
                    at: Instant::now(),
                    _in_flight: InFlight::new(&self.in_flight[lane]),
                }));
            }
            if busy {
                break;
            }
        }
        Ok(None)
    }

    async fn receive(&self, lane: usize, wait_time_seconds: i32) -> Result<Vec<Message>, String> {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.mapping.queue_urls[lane])
            .max_number_of_messages(self.batch_size)
            .wait_time_seconds(wait_time_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|error| {
                format!(
                    "ReceiveMessage: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(error)
                )
            })?;
        Ok(received.messages.unwrap_or_default())
    }

    /// Invokes the function with a received batch and deletes the successes. The
    /// invocation's deadline is what is left of the messages' visibility timeout: past it
    /// they are back in the queue anyway, and a runtime that died mid-invocation (which
    /// `cargo lambda watch` never reports) holds a slot no longer than that.
    async fn deliver(&self, batch: Received) -> Result<PollOutcome, String> {
        let Received {
            lane, messages, at, ..
        } = &batch;
        let messages = messages.as_slice();
        let queue = self.queue_info(*lane).await?;
        let queue_url = &self.mapping.queue_urls[*lane];
        let region = self
            .sqs
            .config()
            .region()
            .map(|region| region.to_string())
            .unwrap_or_default();
        let event = sqs_event(messages, &queue.arn, &region);
        let message_ids: Vec<&str> = messages.iter().filter_map(Message::message_id).collect();
        let function = &self.mapping.function;
        let mut outcome = PollOutcome {
            received: messages.len(),
            ..PollOutcome::default()
        };
        let deadline = queue
            .visibility_timeout
            .map_or(self.invoker.timeout(), |visibility| {
                visibility.saturating_sub(at.elapsed())
            });
        let to_delete = match self.invoker.invoke_within(function, &event, deadline).await {
            Err(error) => {
                tracing::error!(%function, queue = %queue_url, %error, "sqs batch invocation failed; messages will be retried");
                None
            }
            Ok(result) => {
                let to_delete = records_to_delete(&message_ids, &result);
                if to_delete.is_none() {
                    tracing::error!(%function, %result, "malformed batchItemFailures; the whole batch will be retried");
                }
                to_delete
            }
        };
        let Some(to_delete) = to_delete else {
            outcome.invoke_failed = true;
            return Ok(outcome);
        };
        let entries: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .filter(|message| {
                message
                    .message_id()
                    .is_some_and(|id| to_delete.contains(&id))
            })
            .filter_map(|message| message.receipt_handle())
            .enumerate()
            .filter_map(|(index, receipt_handle)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(receipt_handle)
                    .build()
                    .ok()
            })
            .collect();
        tracing::info!(
            %function,
            queue = %queue_url,
            received = messages.len(),
            deleting = entries.len(),
            retrying = messages.len() - entries.len(),
            "sqs batch processed"
        );
        if entries.is_empty() {
            return Ok(outcome);
        }
        let requested = entries.len();
        let deleted = self
            .sqs
            .delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|error| {
                format!(
                    "DeleteMessageBatch: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(error)
                )
            })?;
        for failure in deleted.failed() {
            tracing::warn!(entry = failure.id(), code = failure.code(), message = ?failure.message(), "message not deleted");
        }
        outcome.deleted = requested - deleted.failed().len();
        // The batch stops counting as in flight only now, once its messages are deleted.
        drop(batch);
        Ok(outcome)
    }

    /// The ARN and visibility timeout of queue `lane`, fetched once.
    async fn queue_info(&self, lane: usize) -> Result<QueueInfo, String> {
        let queue_url = &self.mapping.queue_urls[lane];
        self.queues[lane]
            .get_or_try_init(|| async {
                let attributes = self
                    .sqs
                    .get_queue_attributes()
                    .queue_url(queue_url)
                    .attribute_names(QueueAttributeName::QueueArn)
                    .attribute_names(QueueAttributeName::VisibilityTimeout)
                    .send()
                    .await
                    .map_err(|error| {
                        format!(
                            "GetQueueAttributes: {}",
                            aws_sdk_sqs::error::DisplayErrorContext(error)
                        )
                    })?;
                let attributes = attributes.attributes();
                let attribute =
                    |name: QueueAttributeName| attributes.and_then(|all| all.get(&name)).cloned();
                let arn = attribute(QueueAttributeName::QueueArn)
                    .ok_or_else(|| format!("queue {queue_url} has no QueueArn attribute"))?;
                let visibility_timeout = attribute(QueueAttributeName::VisibilityTimeout)
                    .and_then(|seconds| seconds.parse().ok())
                    .map(Duration::from_secs);
                Ok(QueueInfo {
                    arn,
                    visibility_timeout,
                })
            })
            .await
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::sqs::SqsEvent;
    use aws_sdk_sqs::primitives::Blob;
    use aws_sdk_sqs::types::MessageAttributeValue;

    fn message(id: &str) -> Message {
        Message::builder()
            .message_id(id)
            .receipt_handle(format!("handle-{id}"))
            .body(format!("body-{id}"))
            .md5_of_body("d41d8cd98f00b204e9800998ecf8427e")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "2")
            .attributes(MessageSystemAttributeName::MessageGroupId, "job-1")
            .attributes(
                MessageSystemAttributeName::MessageDeduplicationId,
                "job-1:0",
            )
            .attributes(MessageSystemAttributeName::SentTimestamp, "1700000000000")
            .attributes(
                MessageSystemAttributeName::SequenceNumber,
                "18849496460467696128",
            )
            .message_attributes(
                "kind",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("step")
                    .build()
                    .expect("valid"),
            )
            .message_attributes(
                "raw",
                MessageAttributeValue::builder()
                    .data_type("Binary")
                    .binary_value(Blob::new(vec![1, 2, 3]))
                    .build()
                    .expect("valid"),
            )
            .build()
    }

    #[test]
    fn event_has_lambda_shape_and_parses_as_sqs_event() {
        let arn = "arn:aws:sqs:us-east-1:123456789012:llmgw-jobs.fifo";
        let event = sqs_event(&[message("m1"), message("m2")], arn, "us-east-1");
        let record = &event["Records"][0];
        assert_eq!(record["messageId"], "m1");
        assert_eq!(record["receiptHandle"], "handle-m1");
        assert_eq!(record["body"], "body-m1");
        assert_eq!(record["eventSource"], "aws:sqs");
        assert_eq!(record["eventSourceARN"], arn);
        assert_eq!(record["awsRegion"], "us-east-1");
        assert_eq!(record["attributes"]["ApproximateReceiveCount"], "2");
        assert_eq!(record["attributes"]["MessageGroupId"], "job-1");
        assert_eq!(record["attributes"]["MessageDeduplicationId"], "job-1:0");
        assert_eq!(
            record["attributes"]["SequenceNumber"],
            "18849496460467696128"
        );
        assert_eq!(record["messageAttributes"]["kind"]["stringValue"], "step");
        assert_eq!(record["messageAttributes"]["kind"]["dataType"], "String");
        assert_eq!(record["messageAttributes"]["raw"]["binaryValue"], "AQID");

        let parsed: SqsEvent =
            serde_json::from_value(event).expect("the runtime can read the event");
        assert_eq!(parsed.records.len(), 2);
        assert_eq!(parsed.records[1].message_id.as_deref(), Some("m2"));
        assert_eq!(
            parsed.records[0]
                .attributes
                .get("MessageGroupId")
                .map(String::as_str),
            Some("job-1")
        );
        assert_eq!(parsed.records[0].event_source_arn.as_deref(), Some(arn));
    }

    #[test]
    fn deletes_all_but_reported_failures() {
        let ids = ["a", "b", "c"];
        assert_eq!(
            records_to_delete(&ids, &Value::Null),
            Some(vec!["a", "b", "c"])
        );
        assert_eq!(
            records_to_delete(&ids, &json!({"batchItemFailures": []})),
            Some(vec!["a", "b", "c"])
        );
        assert_eq!(
            records_to_delete(
                &ids,
                &json!({"batchItemFailures": [{"itemIdentifier": "b"}]})
            ),
            Some(vec!["a", "c"])
        );
    }

    #[test]
    fn malformed_failures_fail_the_whole_batch() {
        let ids = ["a", "b"];
        assert_eq!(
            records_to_delete(
                &ids,
                &json!({"batchItemFailures": [{"itemIdentifier": "zzz"}]})
            ),
            None
        );
        assert_eq!(
            records_to_delete(
                &ids,
                &json!({"batchItemFailures": [{"itemIdentifier": ""}]})
            ),
            None
        );
        assert_eq!(
            records_to_delete(&ids, &json!({"batchItemFailures": [{}]})),
            None
        );
        assert_eq!(
            records_to_delete(&ids, &json!({"batchItemFailures": "b"})),
            None
        );
    }
}
