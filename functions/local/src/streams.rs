//! DynamoDB stream event source mapping: reads every shard of a stream in order and
//! invokes a function with real DynamoDB Streams Lambda events, retrying from the first
//! failed record (`batchItemFailures`) with backoff, like Lambda with
//! `MaximumRetryAttempts` and without bisecting.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use aws_sdk_dynamodbstreams::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Map, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::invoke::Invoker;

/// Largest batch per invocation (`--stream-batch-size`, default).
pub const MAX_STREAM_BATCH_SIZE: i32 = 100;

/// Retries of a failing batch before it is logged and skipped.
pub const MAX_RETRY_ATTEMPTS: u32 = 10;

/// How often the stream is described again to find new shards.
const DESCRIBE_INTERVAL: Duration = Duration::from_secs(10);

/// Pause between poll passes that found nothing.
const IDLE_PAUSE: Duration = Duration::from_millis(250);

/// One stream → function mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamMapping {
    /// Stream ARN (a table's `LatestStreamArn`).
    pub stream_arn: String,
    /// Function name to invoke.
    pub function: String,
}

/// An attribute value in DynamoDB JSON (`{"S": "x"}`, `{"N": "1"}`, `{"M": {...}}`, ...);
/// binary values are base64.
pub fn attribute_value_json(value: &AttributeValue) -> Value {
    let blob = |blob: &aws_sdk_dynamodbstreams::primitives::Blob| {
        Value::String(BASE64.encode(blob.as_ref()))
    };
    match value {
        AttributeValue::S(text) => json!({ "S": text }),
        AttributeValue::N(number) => json!({ "N": number }),
        AttributeValue::B(data) => json!({ "B": blob(data) }),
        AttributeValue::Bool(flag) => json!({ "BOOL": flag }),
        AttributeValue::Null(flag) => json!({ "NULL": flag }),
        AttributeValue::Ss(items) => json!({ "SS": items }),
        AttributeValue::Ns(items) => json!({ "NS": items }),
        AttributeValue::Bs(items) => json!({ "BS": items.iter().map(blob).collect::<Vec<_>>() }),
        AttributeValue::L(items) => {
            json!({ "L": items.iter().map(attribute_value_json).collect::<Vec<_>>() })
        }
        AttributeValue::M(map) => json!({ "M": item_json(map) }),
        _ => json!({ "NULL": true }),
    }
}

/// An item (attribute name → value) in DynamoDB JSON.
pub fn item_json(item: &HashMap<String, AttributeValue>) -> Value {
    Value::Object(
        item.iter()
            .map(|(name, value)| (name.clone(), attribute_value_json(value)))
            .collect(),
    )
}

/// Builds the Lambda DynamoDB Streams event for `records` read from `stream_arn`, as
/// Lambda shapes it: `{"Records": [{"eventID", "eventName", "eventVersion": "1.1",
/// "eventSource": "aws:dynamodb", "awsRegion", "dynamodb": {"ApproximateCreationDateTime"
/// (epoch seconds), "Keys", "NewImage", "OldImage" (DynamoDB JSON, present when the record
/// has them), "SequenceNumber", "SizeBytes", "StreamViewType"}, "eventSourceARN",
/// "userIdentity" (TTL deletions)}]}`. `region` is used when a record names none.
pub fn stream_event(records: &[Record], stream_arn: &str, region: &str) -> Value {
    let records: Vec<Value> = records
        .iter()
        .map(|record| stream_record(record, stream_arn, region))
        .collect();
    json!({ "Records": records })
}

fn stream_record(record: &Record, stream_arn: &str, region: &str) -> Value {
    let mut change = Map::new();
    if let Some(stream) = record.dynamodb() {
        let created = stream
            .approximate_creation_date_time()
            .map(|time| time.secs())
            .unwrap_or_else(|| chrono::Utc::now().timestamp());
        change.insert("ApproximateCreationDateTime".into(), json!(created));
        change.insert(
            "Keys".into(),
            stream.keys().map(item_json).unwrap_or_else(|| json!({})),
        );
        if let Some(image) = stream.new_image() {
            change.insert("NewImage".into(), item_json(image));
        }
        if let Some(image) = stream.old_image() {
            change.insert("OldImage".into(), item_json(image));
        }
        change.insert("SequenceNumber".into(), json!(stream.sequence_number()));
        change.insert("SizeBytes".into(), json!(stream.size_bytes().unwrap_or(0)));
        if let Some(view) = stream.stream_view_type() {
            change.insert("StreamViewType".into(), json!(view.as_str()));
        }
    } else {
        change.insert(
            "ApproximateCreationDateTime".into(),
            json!(chrono::Utc::now().timestamp()),
        );
        change.insert("Keys".into(), json!({}));
        change.insert("SizeBytes".into(), json!(0));
    }
    let region = record
        .aws_region()
        .filter(|region| !region.is_empty())
        .unwrap_or(region);
    let mut value = json!({
        "eventID": record.event_id().unwrap_or_default(),
        "eventName": record.event_name().map(|name| name.as_str()).unwrap_or_default(),
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": change,
        "eventSourceARN": stream_arn,
    });
    if let (Some(identity), Some(fields)) = (record.user_identity(), value.as_object_mut()) {
        fields.insert(
            "userIdentity".into(),
            json!({"type": identity.r#type(), "principalId": identity.principal_id()}),
        );
    }
    value
}

/// Where to resume after an invocation of a batch whose records have `sequence_numbers`:
/// `None` when every record succeeded, else the index of the first record to retry.
/// As in Lambda, a malformed `batchItemFailures` (not a list, an entry without a
/// non-empty `itemIdentifier`, or one naming no record of the batch) fails the whole
/// batch, and several failures resume from the lowest one.
pub fn first_failed_record(sequence_numbers: &[&str], result: &Value) -> Option<usize> {
    let failures = match result.get("batchItemFailures") {
        None | Some(Value::Null) => return None,
        Some(Value::Array(failures)) => failures,
        Some(_) => return Some(0),
    };
    let mut first: Option<usize> = None;
    for failure in failures {
        let index = failure
            .get("itemIdentifier")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .and_then(|id| sequence_numbers.iter().position(|seq| *seq == id));
        let Some(index) = index else {
            return Some(0);
        };
        first = Some(first.map_or(index, |first| first.min(index)));
    }
    first
}

/// Retry delay before attempt `attempt` (1-based): 500 ms doubling, at most 10 s.
fn backoff(attempt: u32) -> Duration {
    let millis = 500u64.saturating_mul(1u64 << attempt.saturating_sub(1).min(10));
    Duration::from_millis(millis.min(10_000))
}

/// Where a shard is read from next.
#[derive(Clone, Debug)]
enum Position {
    Latest,
    TrimHorizon,
    After(String),
}

#[derive(Debug)]
struct Shard {
    parent: Option<String>,
    position: Position,
    iterator: Option<String>,
    /// Records read but not yet successfully processed, in order.
    pending: VecDeque<Record>,
    /// The shard is closed and everything in it was read.
    exhausted: bool,
    attempts: u32,
    retry_at: Option<Instant>,
}

impl Shard {
    fn new(parent: Option<String>, position: Position) -> Self {
        Self {
            parent,
            position,
            iterator: None,
            pending: VecDeque::new(),
            exhausted: false,
            attempts: 0,
            retry_at: None,
        }
    }

    fn finished(&self) -> bool {
        self.exhausted && self.pending.is_empty()
    }
}

/// What one poll pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamPollOutcome {
    /// Records read from the stream.
    pub read: usize,
    /// Records processed successfully.
    pub delivered: usize,
    /// Records skipped after [`MAX_RETRY_ATTEMPTS`] failed retries (logged as errors).
    pub skipped: usize,
    /// Invocations that failed or reported failures (to be retried).
    pub failed_invocations: usize,
}

/// Polls one stream for one function.
#[derive(Debug)]
pub struct StreamPoller {
    client: aws_sdk_dynamodbstreams::Client,
    invoker: Invoker,
    mapping: StreamMapping,
    batch_size: i32,
    region: String,
    shards: BTreeMap<String, Shard>,
    described_at: Option<Instant>,
    retry_base: Option<Duration>,
}

impl StreamPoller {
    /// Creates a poller invoking with up to `batch_size` records (clamped to 1..=100).
    /// Shards present at the first pass are read from LATEST, shards found later from
    /// TRIM_HORIZON (after their parent shard is finished).
    pub fn new(
        client: aws_sdk_dynamodbstreams::Client,
        invoker: Invoker,
        mapping: StreamMapping,
        batch_size: i32,
    ) -> Self {
        let region = client
            .config()
            .region()
            .map(|region| region.to_string())
            .unwrap_or_else(|| "us-east-1".to_string());
        Self {
            client,
            invoker,
            mapping,
            batch_size: batch_size.clamp(1, MAX_STREAM_BATCH_SIZE),
            region,
            shards: BTreeMap::new(),
            described_at: None,
            retry_base: None,
        }
    }

    /// Uses a fixed retry delay instead of the 500 ms..10 s exponential backoff (tests).
    pub fn with_retry_delay(mut self, delay: Duration) -> Self {
        self.retry_base = Some(delay);
        self
    }

    /// The mapping this poller serves.
    pub fn mapping(&self) -> &StreamMapping {
        &self.mapping
    }

    /// Runs poll passes until `shutdown` turns true, pausing ~250 ms when idle; errors are
    /// logged and retried.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(stream = %self.mapping.stream_arn, function = %self.mapping.function, "dynamodb stream poller started");
        while !*shutdown.borrow() {
            let pause = match self.poll_once().await {
                Ok(outcome) if outcome.read > 0 || outcome.delivered > 0 => None,
                Ok(_) => Some(IDLE_PAUSE),
                Err(error) => {
                    tracing::warn!(stream = %self.mapping.stream_arn, %error, "dynamodb stream poll failed");
                    Some(Duration::from_secs(2))
                }
            };
            if let Some(pause) = pause {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        let undelivered: usize = self.shards.values().map(|shard| shard.pending.len()).sum();
        if undelivered > 0 {
            tracing::warn!(stream = %self.mapping.stream_arn, undelivered, "dynamodb stream poller stopped with records not yet processed");
        }
        tracing::info!(stream = %self.mapping.stream_arn, "dynamodb stream poller stopped");
    }

    /// One pass: describes the stream when due (the first pass always, finding the
    /// shards read from LATEST), then for every readable shard reads a batch when it has
    /// nothing pending and invokes the function with what is pending (unless in backoff).
    /// Errors are DynamoDB Streams API errors of the describe call only; per-shard
    /// errors are logged and retried next pass.
    pub async fn poll_once(&mut self) -> Result<StreamPollOutcome, String> {
        let due = self
            .described_at
            .is_none_or(|at| at.elapsed() >= DESCRIBE_INTERVAL);
        if due {
            self.describe().await?;
        }
        let mut outcome = StreamPollOutcome::default();
        let ids: Vec<String> = self.shards.keys().cloned().collect();
        for id in ids {
            let ready = match self.shards.get(&id) {
                Some(shard) if shard.finished() => false,
                Some(shard) => shard
                    .parent
                    .as_ref()
                    .and_then(|parent| self.shards.get(parent))
                    .is_none_or(Shard::finished),
                None => false,
            };
            if !ready {
                continue;
            }
            if let Err(error) = self.read_shard(&id, &mut outcome).await {
                tracing::warn!(stream = %self.mapping.stream_arn, shard = %id, %error, "reading shard failed");
            }
            self.deliver_shard(&id, &mut outcome).await;
        }
        Ok(outcome)
    }

    /// DescribeStream (all pages): adds new shards, forgets shards no longer listed.
    async fn describe(&mut self) -> Result<(), String> {
        let first = self.described_at.is_none();
        let mut listed = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let described = self
                .client
                .describe_stream()
                .stream_arn(&self.mapping.stream_arn)
                .set_exclusive_start_shard_id(start.clone())
                .send()
                .await
                .map_err(|error| format!("DescribeStream: {}", DisplayErrorContext(error)))?;
            let Some(description) = described.stream_description() else {
                break;
            };
            for shard in description.shards() {
                if let Some(id) = shard.shard_id() {
                    listed.push((id.to_string(), shard.parent_shard_id().map(str::to_owned)));
                }
            }
            start = description
                .last_evaluated_shard_id()
                .map(str::to_owned)
                .filter(|last| Some(last) != start.as_ref());
            if start.is_none() {
                break;
            }
        }
        let listed_ids: Vec<&String> = listed.iter().map(|(id, _)| id).collect();
        self.shards.retain(|id, shard| {
            // Keep a shard until it is gone from the stream and nothing of it is pending.
            listed_ids.contains(&id) || !shard.pending.is_empty()
        });
        for (id, parent) in listed {
            if !self.shards.contains_key(&id) {
                let position = if first {
                    Position::Latest
                } else {
                    Position::TrimHorizon
                };
                tracing::info!(stream = %self.mapping.stream_arn, shard = %id, ?position, "reading shard");
                self.shards.insert(id, Shard::new(parent, position));
            }
        }
        self.described_at = Some(Instant::now());
        Ok(())
    }

    /// Reads one batch into the shard's pending records when none are pending.
    async fn read_shard(
        &mut self,
        id: &str,
        outcome: &mut StreamPollOutcome,
    ) -> Result<(), String> {
        let Some(shard) = self.shards.get_mut(id) else {
            return Ok(());
        };
        if !shard.pending.is_empty() || shard.exhausted {
            return Ok(());
        }
        let iterator = match shard.iterator.clone() {
            Some(iterator) => iterator,
            None => {
                let request = self
                    .client
                    .get_shard_iterator()
                    .stream_arn(&self.mapping.stream_arn)
                    .shard_id(id);
                let request = match &shard.position {
                    Position::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
                    Position::TrimHorizon => {
                        request.shard_iterator_type(ShardIteratorType::TrimHorizon)
                    }
                    Position::After(sequence) => request
                        .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                        .sequence_number(sequence),
                };
                let answer = request
                    .send()
                    .await
                    .map_err(|error| format!("GetShardIterator: {}", DisplayErrorContext(error)))?;
                match answer.shard_iterator() {
                    Some(iterator) => iterator.to_string(),
                    None => {
                        shard.exhausted = true;
                        return Ok(());
                    }
                }
            }
        };
        let answer = self
            .client
            .get_records()
            .shard_iterator(&iterator)
            .limit(self.batch_size)
            .send()
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                let code = error.code().unwrap_or_default().to_string();
                // Get a fresh iterator next time; an expired one resumes where we were.
                shard.iterator = None;
                if code == "TrimmedDataAccessException" {
                    tracing::error!(stream = %self.mapping.stream_arn, shard = %id, "records were trimmed before they were read; resuming from TRIM_HORIZON");
                    shard.position = Position::TrimHorizon;
                }
                return Err(format!("GetRecords: {}", DisplayErrorContext(error)));
            }
        };
        let records = answer.records().to_vec();
        outcome.read += records.len();
        if let Some(last) = records
            .last()
            .and_then(Record::dynamodb)
            .and_then(|stream| stream.sequence_number())
        {
            shard.position = Position::After(last.to_string());
        }
        shard.pending.extend(records);
        match answer.next_shard_iterator() {
            Some(next) => shard.iterator = Some(next.to_string()),
            None => {
                shard.iterator = None;
                shard.exhausted = true;
            }
        }
        Ok(())
    }

    /// Invokes the function with the shard's pending records (up to the batch size).
    async fn deliver_shard(&mut self, id: &str, outcome: &mut StreamPollOutcome) {
        let Some(shard) = self.shards.get_mut(id) else {
            return;
        };
        if shard.pending.is_empty() || shard.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let take = shard.pending.len().min(self.batch_size as usize);
        let batch: Vec<Record> = shard.pending.iter().take(take).cloned().collect();
        let event = stream_event(&batch, &self.mapping.stream_arn, &self.region);
        let sequence_numbers: Vec<&str> = batch
            .iter()
            .map(|record| {
                record
                    .dynamodb()
                    .and_then(|stream| stream.sequence_number())
                    .unwrap_or_default()
            })
            .collect();
        let function = &self.mapping.function;
        let failed_from = match self.invoker.invoke(function, &event).await {
            Err(error) => {
                tracing::error!(%function, stream = %self.mapping.stream_arn, shard = %id, records = batch.len(), %error, "stream batch invocation failed");
                Some(0)
            }
            Ok(result) => {
                let failed_from = first_failed_record(&sequence_numbers, &result);
                if let Some(index) = failed_from {
                    tracing::warn!(%function, shard = %id, first_failed = sequence_numbers[index], %result, "stream batch reported failures");
                }
                failed_from
            }
        };
        let Some(index) = failed_from else {
            shard.pending.drain(..take);
            shard.attempts = 0;
            shard.retry_at = None;
            outcome.delivered += take;
            tracing::info!(%function, shard = %id, records = take, "stream batch processed");
            return;
        };
        outcome.failed_invocations += 1;
        outcome.delivered += index;
        shard.pending.drain(..index);
        if index > 0 {
            shard.attempts = 0;
        }
        shard.attempts += 1;
        if shard.attempts > MAX_RETRY_ATTEMPTS {
            let skipped = take - index;
            tracing::error!(
                %function,
                stream = %self.mapping.stream_arn,
                shard = %id,
                skipped,
                first_sequence_number = sequence_numbers[index],
                last_sequence_number = sequence_numbers[take - 1],
                attempts = MAX_RETRY_ATTEMPTS + 1,
                "stream records skipped after exhausting retries"
            );
            shard.pending.drain(..skipped);
            shard.attempts = 0;
            shard.retry_at = None;
            outcome.skipped += skipped;
            return;
        }
        let delay = self.retry_base.unwrap_or_else(|| backoff(shard.attempts));
        shard.retry_at = Some(Instant::now() + delay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::dynamodb::{Event, StreamViewType};
    use aws_sdk_dynamodbstreams::primitives::{Blob, DateTime};
    use aws_sdk_dynamodbstreams::types::{
        Identity, OperationType, StreamRecord, StreamViewType as SdkViewType,
    };

    fn record(
        sequence: &str,
        name: OperationType,
        old: Option<HashMap<String, AttributeValue>>,
        new: Option<HashMap<String, AttributeValue>>,
    ) -> Record {
        let stream = StreamRecord::builder()
            .approximate_creation_date_time(DateTime::from_secs(1_700_000_000))
            .keys("id", AttributeValue::S("job-1".into()))
            .set_old_image(old)
            .set_new_image(new)
            .sequence_number(sequence)
            .size_bytes(42)
            .stream_view_type(SdkViewType::NewAndOldImages)
            .build();
        Record::builder()
            .event_id(format!("event-{sequence}"))
            .event_name(name)
            .event_version("1.1")
            .event_source("aws:dynamodb")
            .aws_region("us-east-1")
            .dynamodb(stream)
            .build()
    }

    fn image(status: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("id".to_string(), AttributeValue::S("job-1".into())),
            ("status".to_string(), AttributeValue::S(status.into())),
            ("count".to_string(), AttributeValue::N("3".into())),
            ("done".to_string(), AttributeValue::Bool(false)),
            ("nothing".to_string(), AttributeValue::Null(true)),
            (
                "raw".to_string(),
                AttributeValue::B(Blob::new(vec![1, 2, 3])),
            ),
            (
                "tags".to_string(),
                AttributeValue::Ss(vec!["a".into(), "b".into()]),
            ),
            ("sizes".to_string(), AttributeValue::Ns(vec!["1".into()])),
            (
                "blobs".to_string(),
                AttributeValue::Bs(vec![Blob::new(vec![255])]),
            ),
            (
                "steps".to_string(),
                AttributeValue::L(vec![
                    AttributeValue::S("x".into()),
                    AttributeValue::M(HashMap::from([(
                        "n".to_string(),
                        AttributeValue::N("1".into()),
                    )])),
                ]),
            ),
        ])
    }

    #[test]
    fn stream_event_has_lambda_shape_and_parses_as_dynamodb_event() {
        let arn = "arn:aws:dynamodb:us-east-1:123456789012:table/llmgw-jobs/stream/2024-01-01T00:00:00.000";
        let mut remove = record("300", OperationType::Remove, Some(image("done")), None);
        remove.user_identity = Some(
            Identity::builder()
                .r#type("Service")
                .principal_id("dynamodb.amazonaws.com")
                .build(),
        );
        let records = vec![
            record("100", OperationType::Insert, None, Some(image("queued"))),
            record(
                "200",
                OperationType::Modify,
                Some(image("queued")),
                Some(image("running")),
            ),
            remove,
        ];
        let event = stream_event(&records, arn, "eu-west-1");
        let insert = &event["Records"][0];
        assert_eq!(insert["eventID"], "event-100");
        assert_eq!(insert["eventName"], "INSERT");
        assert_eq!(insert["eventVersion"], "1.1");
        assert_eq!(insert["eventSource"], "aws:dynamodb");
        assert_eq!(insert["awsRegion"], "us-east-1");
        assert_eq!(insert["eventSourceARN"], arn);
        let change = &insert["dynamodb"];
        assert_eq!(change["ApproximateCreationDateTime"], 1_700_000_000);
        assert_eq!(change["Keys"], json!({"id": {"S": "job-1"}}));
        assert_eq!(change["SequenceNumber"], "100");
        assert_eq!(change["SizeBytes"], 42);
        assert_eq!(change["StreamViewType"], "NEW_AND_OLD_IMAGES");
        assert!(change.get("OldImage").is_none());
        let new_image = &change["NewImage"];
        assert_eq!(new_image["status"], json!({"S": "queued"}));
        assert_eq!(new_image["count"], json!({"N": "3"}));
        assert_eq!(new_image["done"], json!({"BOOL": false}));
        assert_eq!(new_image["nothing"], json!({"NULL": true}));
        assert_eq!(new_image["raw"], json!({"B": "AQID"}));
        assert_eq!(new_image["tags"], json!({"SS": ["a", "b"]}));
        assert_eq!(new_image["sizes"], json!({"NS": ["1"]}));
        assert_eq!(new_image["blobs"], json!({"BS": ["/w=="]}));
        assert_eq!(
            new_image["steps"],
            json!({"L": [{"S": "x"}, {"M": {"n": {"N": "1"}}}]})
        );
        assert_eq!(
            event["Records"][1]["dynamodb"]["OldImage"]["status"],
            json!({"S": "queued"})
        );
        assert_eq!(event["Records"][2]["eventName"], "REMOVE");
        assert!(event["Records"][2]["dynamodb"].get("NewImage").is_none());
        assert_eq!(
            event["Records"][2]["userIdentity"],
            json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"})
        );

        let parsed: Event = serde_json::from_value(event).expect("the runtime can read the event");
        assert_eq!(parsed.records.len(), 3);
        let modify = &parsed.records[1];
        assert_eq!(modify.event_name, "MODIFY");
        assert_eq!(modify.event_source_arn.as_deref(), Some(arn));
        assert_eq!(modify.change.sequence_number.as_deref(), Some("200"));
        assert_eq!(modify.change.size_bytes, 42);
        assert_eq!(
            modify.change.stream_view_type,
            Some(StreamViewType::NewAndOldImages)
        );
        assert_eq!(
            modify.change.approximate_creation_date_time.timestamp(),
            1_700_000_000
        );
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Job {
            id: String,
            status: String,
            count: u32,
        }
        let old: Job = serde_dynamo::from_item(modify.change.old_image.clone()).expect("old image");
        let new: Job = serde_dynamo::from_item(modify.change.new_image.clone()).expect("new image");
        assert_eq!(
            (old.status.as_str(), new.status.as_str()),
            ("queued", "running")
        );
        assert_eq!((new.id.as_str(), new.count), ("job-1", 3));
        assert!(parsed.records[0].change.old_image.is_empty());
        assert_eq!(
            parsed.records[2]
                .user_identity
                .as_ref()
                .map(|identity| identity.type_.as_str()),
            Some("Service")
        );
    }

    #[test]
    fn region_falls_back_to_the_pollers() {
        let mut bare = record("1", OperationType::Insert, None, Some(image("queued")));
        bare.aws_region = None;
        let event = stream_event(&[bare], "arn", "eu-west-1");
        assert_eq!(event["Records"][0]["awsRegion"], "eu-west-1");
    }

    #[test]
    fn failures_resume_from_the_first_failed_record() {
        let seqs = ["1", "2", "3"];
        assert_eq!(first_failed_record(&seqs, &Value::Null), None);
        assert_eq!(
            first_failed_record(&seqs, &json!({"statusCode": 200})),
            None
        );
        assert_eq!(
            first_failed_record(&seqs, &json!({"batchItemFailures": []})),
            None
        );
        assert_eq!(
            first_failed_record(
                &seqs,
                &json!({"batchItemFailures": [{"itemIdentifier": "3"}, {"itemIdentifier": "2"}]})
            ),
            Some(1)
        );
        for malformed in [
            json!({"batchItemFailures": [{"itemIdentifier": "9"}]}),
            json!({"batchItemFailures": [{"itemIdentifier": ""}]}),
            json!({"batchItemFailures": [{"itemIdentifier": null}]}),
            json!({"batchItemFailures": [{}]}),
            json!({"batchItemFailures": "2"}),
        ] {
            assert_eq!(
                first_failed_record(&seqs, &malformed),
                Some(0),
                "{malformed}"
            );
        }
    }

    #[test]
    fn backoff_doubles_up_to_ten_seconds() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(5), Duration::from_secs(8));
        assert_eq!(backoff(6), Duration::from_secs(10));
        assert_eq!(backoff(40), Duration::from_secs(10));
    }
}
