//! Usage analytics in DynamoDB (`P-usage`, pk `series`, sk `bucket`): a finished job's
//! counters are added with `ADD` to each of its aggregates, its records put, and a marker
//! `counted#{job}` created, all in one `TransactWriteItems` conditional on the marker not
//! existing: a replayed stream record is refused whole and counts nothing.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, Select, TransactWriteItem, Update};

use super::sdk_error;
use crate::domain::{JobUsage, UsageCounts, UsageEntry, HISTOGRAM_LEN};
use crate::ports::{IoError, IoResult, UsageStore};

/// How long a job's "counted" marker outlives the stream records that could replay it
/// (a stream keeps records 24 hours).
const MARKER_TTL_SECS: i64 = 7 * 86_400;

/// The counters of an aggregate item, in [`UsageCounts`] order (then `h0..h11`).
const COUNTERS: [&str; 8] = [
    "requests",
    "completed",
    "failed",
    "cancelled",
    "prompt_tokens",
    "completion_tokens",
    "cost_micros",
    "duration_ms",
];

/// Usage aggregates and records in one DynamoDB table.
#[derive(Clone, Debug)]
pub struct DynamoUsage {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoUsage {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoUsage {
            client,
            table: table.into(),
        }
    }

    fn values(counts: &UsageCounts) -> Vec<u64> {
        let mut values = vec![
            counts.requests,
            counts.completed,
            counts.failed,
            counts.cancelled,
            counts.prompt_tokens,
            counts.completion_tokens,
            counts.cost_micros,
            counts.duration_ms,
        ];
        values.extend(counts.histogram);
        values
    }

    fn names() -> Vec<String> {
        COUNTERS
            .iter()
            .map(|name| name.to_string())
            .chain((0..HISTOGRAM_LEN).map(|bucket| format!("h{bucket}")))
            .collect()
    }

    fn add(&self, series: &str, bucket: &str, counts: &UsageCounts) -> IoResult<TransactWriteItem> {
        let names = Self::names();
        let expression = names
            .iter()
            .enumerate()
            .map(|(index, name)| format!("{name} :v{index}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("series", s(series))
            .key("bucket", s(bucket))
            .update_expression(format!("ADD {expression}"));
        for (index, value) in Self::values(counts).into_iter().enumerate() {
            update = update.expression_attribute_values(format!(":v{index}"), n(value));
        }
        let update = update.build().map_err(|e| IoError::new("add usage", e))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    fn put(
        &self,
        item: HashMap<String, AttributeValue>,
        only_new: bool,
    ) -> IoResult<TransactWriteItem> {
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
        if only_new {
            put = put.condition_expression("attribute_not_exists(series)");
        }
        let put = put.build().map_err(|e| IoError::new("record usage", e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn counts_of(item: &HashMap<String, AttributeValue>) -> UsageCounts {
        let number = |name: &str| -> u64 {
            item.get(name)
                .and_then(|value| value.as_n().ok())
                .and_then(|text| text.parse().ok())
                .unwrap_or(0)
        };
        let mut histogram = [0; HISTOGRAM_LEN];
        for (bucket, count) in histogram.iter_mut().enumerate() {
            *count = number(&format!("h{bucket}"));
        }
        UsageCounts {
            requests: number("requests"),
            completed: number("completed"),
            failed: number("failed"),
            cancelled: number("cancelled"),
            prompt_tokens: number("prompt_tokens"),
            completion_tokens: number("completion_tokens"),
            cost_micros: number("cost_micros"),
            duration_ms: number("duration_ms"),
            histogram,
        }
    }

    /// A query of `series` with the bucket condition `condition` (`:from`/`:to` values).
    async fn query(
        &self,
        series: &str,
        condition: Option<(&str, Vec<(&str, String)>)>,
        newest_first: bool,
        limit: Option<usize>,
        count_only: bool,
    ) -> IoResult<(Vec<HashMap<String, AttributeValue>>, u64)> {
        let mut items = Vec::new();
        let mut counted = 0;
        let mut start = None;
        loop {
            let mut key_condition = "series = :series".to_string();
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .expression_attribute_values(":series", s(series))
                .scan_index_forward(!newest_first)
                .set_exclusive_start_key(start.take());
            if let Some((bucket_condition, values)) = &condition {
                key_condition.push_str(" AND ");
                key_condition.push_str(bucket_condition);
                for (name, value) in values {
                    query = query.expression_attribute_values(*name, s(value));
                }
            }
            if count_only {
                query = query.select(Select::Count);
            }
            if let Some(limit) = limit {
                query = query.limit((limit - items.len()).min(1_000) as i32);
            }
            let output = query
                .key_condition_expression(key_condition)
                .send()
                .await
                .map_err(sdk_error("query usage"))?;
            counted += output.count.max(0) as u64;
            items.extend(output.items.unwrap_or_default());
            start = output.last_evaluated_key;
            let full = limit.is_some_and(|limit| items.len() >= limit);
            if start.is_none() || full {
                return Ok((items, counted));
            }
        }
    }
}

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_string())
}

fn n(number: impl ToString) -> AttributeValue {
    AttributeValue::N(number.to_string())
}

fn since_condition(since: Option<&str>) -> Option<(&'static str, Vec<(&'static str, String)>)> {
    since.map(|since| ("bucket >= :from", vec![(":from", since.to_string())]))
}

#[async_trait]
impl UsageStore for DynamoUsage {
    async fn record(&self, usage: &JobUsage) -> IoResult<bool> {
        let counts = usage.counts();
        let record = serde_json::to_string(usage).map_err(|e| IoError::new("record usage", e))?;
        let marker = HashMap::from([
            (
                "series".to_string(),
                s(&format!("counted#{}", usage.counted_key())),
            ),
            ("bucket".to_string(), s("#")),
            (
                "expires_at".to_string(),
                n(chrono::Utc::now().timestamp() + MARKER_TTL_SECS),
            ),
        ]);
        let mut items = vec![self.put(marker, true)?];
        for entry in usage.entries() {
            items.push(match entry {
                UsageEntry::Add { series, bucket } => self.add(&series, &bucket, &counts)?,
                UsageEntry::Record { series, bucket } => self.put(
                    HashMap::from([
                        ("series".to_string(), s(&series)),
                        ("bucket".to_string(), s(&bucket)),
                        ("record".to_string(), s(&record)),
                    ]),
                    false,
                )?,
            });
        }
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(error) => {
                // The marker is the first item: its condition failing means counted before.
                let counted_before = matches!(
                    error.as_service_error(),
                    Some(TransactWriteItemsError::TransactionCanceledException(cancelled))
                        if cancelled.cancellation_reasons().first().and_then(|reason| reason.code())
                            == Some("ConditionalCheckFailed")
                );
                if counted_before {
                    return Ok(false);
                }
                Err(sdk_error("record usage")(error))
            }
        }
    }

    async fn aggregates(
        &self,
        series: &str,
        from: &str,
        to: &str,
    ) -> IoResult<Vec<(String, UsageCounts)>> {
        let condition = (
            "bucket BETWEEN :from AND :to",
            vec![
                (":from", from.to_string()),
                (":to", format!("{to}\u{10FFFF}")),
            ],
        );
        let (items, _) = self
            .query(series, Some(condition), false, None, false)
            .await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let bucket = item.get("bucket")?.as_s().ok()?.clone();
                Some((bucket, Self::counts_of(item)))
            })
            .collect())
    }

    async fn records(
        &self,
        series: &str,
        since: Option<&str>,
        limit: usize,
    ) -> IoResult<Vec<JobUsage>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (items, _) = self
            .query(series, since_condition(since), true, Some(limit), false)
            .await?;
        Ok(items
            .iter()
            .filter_map(|item| item.get("record")?.as_s().ok())
            .filter_map(|record| serde_json::from_str(record).ok())
            .take(limit)
            .collect())
    }

    async fn count_records(&self, series: &str, since: Option<&str>) -> IoResult<u64> {
        let (_, counted) = self
            .query(series, since_condition(since), false, None, true)
            .await?;
        Ok(counted)
    }
}
