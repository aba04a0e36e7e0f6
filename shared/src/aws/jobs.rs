//! Jobs in DynamoDB: one item per job, a GSI by organization for listings, opaque
//! page cursors.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use uuid::Uuid;

use super::sdk_error;
use crate::domain::Job;
use crate::ports::{IoError, IoResult, JobPage, JobQuery, JobStore, ListError};

/// Partition key value for jobs without an organization.
const NO_ORGANIZATION: &str = "#none";
const ORG_INDEX: &str = "by_org";
/// Sparse index of the queued and processing jobs by `updated_at` (`active_key` is set
/// only on those), for the sweeper.
const ACTIVITY_INDEX: &str = "by_activity";
const ACTIVE: &str = "active";

fn org_key(organization_id: Option<&str>) -> String {
    organization_id.unwrap_or(NO_ORGANIZATION).to_string()
}

/// Jobs in DynamoDB: one item per job, GSI `by_org` (org_key, created_at).
#[derive(Clone, Debug)]
pub struct DynamoJobStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoJobStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoJobStore {
            client,
            table: table.into(),
        }
    }

    fn item(job: &Job) -> IoResult<HashMap<String, AttributeValue>> {
        let mut item: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(job).map_err(|e| IoError::new("encode job", e))?;
        item.insert(
            "org_key".into(),
            AttributeValue::S(org_key(job.organization_id.as_deref())),
        );
        item.insert(
            "step".into(),
            AttributeValue::N(job.progress.step.to_string()),
        );
        if !job.status.is_terminal() {
            item.insert("active_key".into(), AttributeValue::S(ACTIVE.into()));
        }
        Ok(item)
    }

    fn job(mut item: HashMap<String, AttributeValue>) -> IoResult<Job> {
        item.remove("org_key");
        item.remove("step");
        item.remove("active_key");
        serde_dynamo::from_item(item).map_err(|e| IoError::new("decode job", e))
    }
}

/// The outcome of a conditional write: true when it went through, false when its
/// condition did not hold; any other failure is an [`IoError`].
fn conditional<O, E, R>(
    result: Result<O, SdkError<E, R>>,
    operation: &'static str,
) -> IoResult<bool>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(error)
            if error
                .as_service_error()
                .and_then(ProvideErrorMetadata::code)
                == Some("ConditionalCheckFailedException") =>
        {
            Ok(false)
        }
        Err(error) => Err(sdk_error(operation)(error)),
    }
}

#[async_trait]
impl JobStore for DynamoJobStore {
    async fn create(&self, job: &Job) -> IoResult<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::item(job)?))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await
            .map_err(sdk_error("create job"))?;
        Ok(())
    }

    async fn get(&self, id: Uuid) -> IoResult<Option<Job>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error("get job"))?;
        output.item.map(Self::job).transpose()
    }

    async fn replace(&self, job: &Job, expected_step: u32) -> IoResult<bool> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::item(job)?))
            .condition_expression("#step = :step AND #status IN (:queued, :processing)")
            .expression_attribute_names("#step", "step")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":step", AttributeValue::N(expected_step.to_string()))
            .expression_attribute_values(":queued", AttributeValue::S("queued".into()))
            .expression_attribute_values(":processing", AttributeValue::S("processing".into()))
            .send()
            .await;
        conditional(result, "update job")
    }

    async fn replace_completed(&self, job: &Job, expected_updated_at: &str) -> IoResult<bool> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::item(job)?))
            .condition_expression("#status = :completed AND #updated_at = :updated_at")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#updated_at", "updated_at")
            .expression_attribute_values(":completed", AttributeValue::S("completed".into()))
            .expression_attribute_values(
                ":updated_at",
                AttributeValue::S(expected_updated_at.to_string()),
            )
            .send()
            .await;
        conditional(result, "update completed job")
    }

    async fn list(&self, query: &JobQuery) -> Result<JobPage, ListError> {
        let page_size = query.page_size.clamp(1, 100);
        let mut start_key = match &query.cursor {
            Some(cursor) => Some(decode_cursor(cursor)?),
            None => None,
        };
        let mut jobs = Vec::new();
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(ORG_INDEX)
                .key_condition_expression("org_key = :org")
                .expression_attribute_values(
                    ":org",
                    AttributeValue::S(org_key(query.organization_id.as_deref())),
                )
                .scan_index_forward(false)
                .limit((page_size - jobs.len()) as i32)
                .set_exclusive_start_key(start_key.take());
            let mut filters = Vec::new();
            if let Some(service_id) = query.service_id {
                filters.push("service_id = :service");
                request = request.expression_attribute_values(
                    ":service",
                    AttributeValue::S(service_id.to_string()),
                );
            }
            if let Some(status) = query.status {
                filters.push("#status = :status");
                request = request
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(
                        ":status",
                        AttributeValue::S(status.as_str().into()),
                    );
            }
            if !filters.is_empty() {
                request = request.filter_expression(filters.join(" AND "));
            }
            let output = request.send().await.map_err(sdk_error("list jobs"))?;
            for item in output.items.unwrap_or_default() {
                jobs.push(Self::job(item)?);
            }
            start_key = output.last_evaluated_key;
            if jobs.len() >= page_size || start_key.is_none() {
                break;
            }
        }
        let next_cursor = start_key.map(|key| encode_cursor(&key)).transpose()?;
        Ok(JobPage { jobs, next_cursor })
    }

    async fn delete_terminal(&self, id: Uuid) -> IoResult<bool> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.to_string()))
            .condition_expression("#status IN (:completed, :failed, :cancelled)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":completed", AttributeValue::S("completed".into()))
            .expression_attribute_values(":failed", AttributeValue::S("failed".into()))
            .expression_attribute_values(":cancelled", AttributeValue::S("cancelled".into()))
            .send()
            .await;
        conditional(result, "delete job")
    }

    async fn heartbeat(&self, id: Uuid, step: u32, at: &str) -> IoResult<bool> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.to_string()))
            .update_expression("SET heartbeat_at = :at, updated_at = :at")
            .condition_expression("#step = :step AND #status IN (:queued, :processing)")
            .expression_attribute_names("#step", "step")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":at", AttributeValue::S(at.to_string()))
            .expression_attribute_values(":step", AttributeValue::N(step.to_string()))
            .expression_attribute_values(":queued", AttributeValue::S("queued".into()))
            .expression_attribute_values(":processing", AttributeValue::S("processing".into()))
            .send()
            .await;
        conditional(result, "record heartbeat")
    }

    async fn stale_active(&self, before: &str, limit: usize) -> IoResult<Vec<Job>> {
        let mut jobs = Vec::new();
        let mut start_key = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(ACTIVITY_INDEX)
                .key_condition_expression("active_key = :active AND updated_at < :before")
                .expression_attribute_values(":active", AttributeValue::S(ACTIVE.into()))
                .expression_attribute_values(":before", AttributeValue::S(before.to_string()))
                .set_exclusive_start_key(start_key)
                .limit(limit.clamp(1, 1000) as i32)
                .send()
                .await
                .map_err(sdk_error("list stale jobs"))?;
            for item in output.items.unwrap_or_default() {
                jobs.push(Self::job(item)?);
            }
            start_key = output.last_evaluated_key;
            if start_key.is_none() || jobs.len() >= limit {
                jobs.truncate(limit);
                return Ok(jobs);
            }
        }
    }

    async fn expired(&self, now: i64, limit: usize) -> IoResult<Vec<Job>> {
        // A scan: DynamoDB's TTL deletes expired items by itself within days; this finds
        // the ones still there (so their S3 objects go with them), a bounded batch a call.
        let mut jobs = Vec::new();
        let mut start_key = None;
        loop {
            let output = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("expires_at < :now")
                .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(sdk_error("list expired jobs"))?;
            for item in output.items.unwrap_or_default() {
                jobs.push(Self::job(item)?);
            }
            start_key = output.last_evaluated_key;
            if start_key.is_none() || jobs.len() >= limit {
                jobs.truncate(limit);
                return Ok(jobs);
            }
        }
    }
}

fn encode_cursor(key: &HashMap<String, AttributeValue>) -> IoResult<String> {
    let plain: HashMap<&str, &str> = key
        .iter()
        .filter_map(|(name, value)| value.as_s().ok().map(|s| (name.as_str(), s.as_str())))
        .collect();
    let json = serde_json::to_vec(&plain).map_err(|e| IoError::new("encode cursor", e))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json))
}

/// Decodes a page cursor (base64 of the plain key attributes).
fn decode_cursor(cursor: &str) -> Result<HashMap<String, AttributeValue>, ListError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| ListError::InvalidCursor)?;
    let plain: HashMap<String, String> =
        serde_json::from_slice(&bytes).map_err(|_| ListError::InvalidCursor)?;
    Ok(plain
        .into_iter()
        .map(|(k, v)| (k, AttributeValue::S(v)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let key = HashMap::from([
            ("id".to_string(), AttributeValue::S("j1".into())),
            ("org_key".to_string(), AttributeValue::S(org_key(None))),
            (
                "created_at".to_string(),
                AttributeValue::S("2026-01-01T00:00:00.000000Z".into()),
            ),
        ]);
        let cursor = encode_cursor(&key).unwrap();
        assert_eq!(decode_cursor(&cursor).unwrap(), key);
        for foreign in ["not base64!", "bm90IGpzb24", ""] {
            assert!(
                matches!(decode_cursor(foreign), Err(ListError::InvalidCursor)),
                "{foreign}"
            );
        }
    }

    #[test]
    fn jobs_without_organization_share_one_partition() {
        assert_eq!(org_key(None), NO_ORGANIZATION);
        assert_eq!(org_key(Some("org-1")), "org-1");
    }
}
