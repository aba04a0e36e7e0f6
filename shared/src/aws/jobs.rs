//! Jobs in DynamoDB: one item per job, a GSI by organization for listings, opaque
//! page cursors.

use std::collections::{BTreeMap, HashMap};

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
/// Sparse index of the queued and processing jobs (only they carry `active_org`, their
/// organization key) by `updated_at`: an organization's active jobs (fair lanes) and,
/// scanned, every active job (the sweeper).
const ACTIVITY_INDEX: &str = "by_activity";

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
            item.insert(
                "active_org".into(),
                AttributeValue::S(org_key(job.organization_id.as_deref())),
            );
        }
        Ok(item)
    }

    /// The jobs of a filtered scan of the table or of `index` (`filter`: the expression, its
    /// one value's name and the value), every page, or until `limit` are found.
    async fn scan_jobs(
        &self,
        index: Option<&str>,
        (expression, name, value): (&str, &str, AttributeValue),
        limit: Option<usize>,
    ) -> IoResult<Vec<Job>> {
        let mut jobs = Vec::new();
        let mut start_key = None;
        loop {
            let output = self
                .client
                .scan()
                .table_name(&self.table)
                .set_index_name(index.map(str::to_string))
                .filter_expression(expression)
                .expression_attribute_values(name, value.clone())
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(sdk_error("scan jobs"))?;
            for item in output.items.unwrap_or_default() {
                jobs.push(Self::job(item)?);
            }
            start_key = output.last_evaluated_key;
            let enough = limit.is_some_and(|limit| jobs.len() >= limit);
            if start_key.is_none() || enough {
                jobs.truncate(limit.unwrap_or(usize::MAX));
                return Ok(jobs);
            }
        }
    }

    fn job(mut item: HashMap<String, AttributeValue>) -> IoResult<Job> {
        item.remove("org_key");
        item.remove("step");
        item.remove("active_org");
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
            Some(cursor) => Some(decode_cursor(cursor, query)?),
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
        let next_cursor = start_key
            .map(|key| encode_cursor(&key, query))
            .transpose()?;
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
        // The sparse index holds only the active jobs; all are read, so the oldest come first.
        let before = AttributeValue::S(before.to_string());
        let filter = ("updated_at < :before", ":before", before);
        let mut jobs = self.scan_jobs(Some(ACTIVITY_INDEX), filter, None).await?;
        jobs.sort_by(|a, b| a.updated_at.cmp(&b.updated_at));
        jobs.truncate(limit);
        Ok(jobs)
    }

    async fn active_count(&self, organization_id: Option<&str>, up_to: usize) -> IoResult<usize> {
        let mut counted = 0usize;
        let mut start_key = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(ACTIVITY_INDEX)
                .key_condition_expression("active_org = :org")
                .expression_attribute_values(":org", AttributeValue::S(org_key(organization_id)))
                .select(aws_sdk_dynamodb::types::Select::Count)
                .set_exclusive_start_key(start_key)
                .limit(up_to.clamp(1, 1000) as i32)
                .send()
                .await
                .map_err(sdk_error("count active jobs"))?;
            counted += output.count.max(0) as usize;
            start_key = output.last_evaluated_key;
            if start_key.is_none() || counted >= up_to {
                return Ok(counted.min(up_to));
            }
        }
    }

    async fn expired(&self, now: i64, limit: usize) -> IoResult<Vec<Job>> {
        // A scan: DynamoDB's TTL deletes expired items by itself within days; this finds
        // the ones still there (so their S3 objects go with them), a bounded batch a call.
        let filter = (
            "expires_at < :now",
            ":now",
            AttributeValue::N(now.to_string()),
        );
        self.scan_jobs(None, filter, Some(limit)).await
    }
}

/// The attributes of a `by_org` start key: the table key and the index key.
const CURSOR_KEY: [&str; 3] = ["created_at", "id", "org_key"];

/// A page cursor: the last evaluated key and the query it continues (its organization is
/// in the key; its filters beside it), so that it is refused with any other query before
/// DynamoDB sees it.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Cursor {
    key: BTreeMap<String, String>,
    service_id: Option<String>,
    status: Option<String>,
}

impl Cursor {
    fn filters(query: &JobQuery) -> (Option<String>, Option<String>) {
        (
            query.service_id.map(|id| id.to_string()),
            query.status.map(|status| status.as_str().to_string()),
        )
    }
}

/// Encodes a page cursor for `query`: base64 of [`Cursor`] JSON.
fn encode_cursor(key: &HashMap<String, AttributeValue>, query: &JobQuery) -> IoResult<String> {
    let (service_id, status) = Cursor::filters(query);
    let cursor = Cursor {
        key: key
            .iter()
            .filter_map(|(name, value)| value.as_s().ok().map(|s| (name.clone(), s.clone())))
            .collect(),
        service_id,
        status,
    };
    let json = serde_json::to_vec(&cursor).map_err(|e| IoError::new("encode cursor", e))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json))
}

/// Decodes a page cursor of `query`; [`ListError::InvalidCursor`] unless it is one this
/// adapter returned for the same organization and filters.
fn decode_cursor(
    cursor: &str,
    query: &JobQuery,
) -> Result<HashMap<String, AttributeValue>, ListError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| ListError::InvalidCursor)?;
    let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| ListError::InvalidCursor)?;
    let names: Vec<&str> = cursor.key.keys().map(String::as_str).collect();
    let organization = org_key(query.organization_id.as_deref());
    if names != CURSOR_KEY
        || cursor.key.get("org_key") != Some(&organization)
        || (cursor.service_id.clone(), cursor.status.clone()) != Cursor::filters(query)
    {
        return Err(ListError::InvalidCursor);
    }
    Ok(cursor
        .key
        .into_iter()
        .map(|(k, v)| (k, AttributeValue::S(v)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn query(organization_id: Option<&str>) -> JobQuery {
        JobQuery {
            organization_id: organization_id.map(str::to_string),
            page_size: 10,
            ..JobQuery::default()
        }
    }

    fn key(org: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("id".to_string(), AttributeValue::S("j1".into())),
            ("org_key".to_string(), AttributeValue::S(org.into())),
            (
                "created_at".to_string(),
                AttributeValue::S("2026-01-01T00:00:00.000000Z".into()),
            ),
        ])
    }

    fn encoded(json: serde_json::Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
    }

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let global = query(None);
        let cursor = encode_cursor(&key(&org_key(None)), &global).unwrap();
        assert_eq!(
            decode_cursor(&cursor, &global).unwrap(),
            key(&org_key(None))
        );
        let mut filtered = query(Some("org-1"));
        filtered.service_id = Some(Uuid::nil());
        filtered.status = Some(crate::domain::JobStatus::Failed);
        let cursor = encode_cursor(&key("org-1"), &filtered).unwrap();
        assert_eq!(decode_cursor(&cursor, &filtered).unwrap(), key("org-1"));
        for foreign in ["not base64!", "bm90IGpzb24", ""] {
            assert!(
                matches!(
                    decode_cursor(foreign, &global),
                    Err(ListError::InvalidCursor)
                ),
                "{foreign}"
            );
        }
    }

    #[test]
    fn a_cursor_of_another_query_is_refused() {
        let org_1 = query(Some("org-1"));
        let cursor = encode_cursor(&key("org-1"), &org_1).unwrap();
        let mut other_filters = query(Some("org-1"));
        other_filters.status = Some(crate::domain::JobStatus::Completed);
        for other in [query(Some("org-2")), query(None), other_filters] {
            assert!(
                matches!(
                    decode_cursor(&cursor, &other),
                    Err(ListError::InvalidCursor)
                ),
                "{other:?}"
            );
        }
        // Well-formed JSON that is not a whole start key of this query's partition.
        let id = "00000000-0000-0000-0000-000000000000";
        for forged in [
            json!({"key": {"id": id, "org_key": "org-1"}, "service_id": null, "status": null}),
            json!({"key": {"id": id, "org_key": "org-1", "created_at": "x", "extra": "y"}, "service_id": null, "status": null}),
            json!({"key": {"id": 1, "org_key": "org-1", "created_at": "x"}}),
            json!({"id": id, "org_key": "org-1", "created_at": "x"}),
        ] {
            assert!(
                matches!(
                    decode_cursor(&encoded(forged.clone()), &org_1),
                    Err(ListError::InvalidCursor)
                ),
                "{forged}"
            );
        }
    }

    #[test]
    fn jobs_without_organization_share_one_partition() {
        assert_eq!(org_key(None), NO_ORGANIZATION);
        assert_eq!(org_key(Some("org-1")), "org-1");
    }
}
