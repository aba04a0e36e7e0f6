//! AWS implementations of the ports: DynamoDB (jobs, catalog, WebSocket connections), S3
//! (blobs), SQS FIFO (job steps), KMS (provider secrets), API Gateway management API
//! (WebSocket posts). Clients are built once per execution environment.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use base64::Engine as _;
use uuid::Uuid;

use crate::domain::{Flavor, Job, Model, Provider, QueueLane, Service, StepMessage};
use crate::ports::{
    BlobStore, Catalog, CatalogStore, CatalogWrite, ConnectionStore, Delivery, Expect, IoError,
    IoResult, JobPage, JobQuery, JobQueue, JobStore, Notifier, Record, RecordKind, Secrets, Topic,
    WriteError,
};

/// Maps an AWS SDK error to an [`IoError`] naming the operation, with the whole error
/// chain (the SDKs' own `Display` says only "service error").
fn sdk_error<E: std::error::Error>(operation: &'static str) -> impl FnOnce(E) -> IoError {
    move |error| {
        IoError::new(
            operation,
            aws_sdk_dynamodb::error::DisplayErrorContext(error),
        )
    }
}

/// Resource names, read from the environment (see `docs/local-contract.md`).
#[derive(Debug, Clone)]
pub struct GatewayEnv {
    pub jobs_table: String,
    pub catalog_table: String,
    pub bucket: String,
    pub job_queues: LaneQueueUrls,
    pub kms_key_id: Option<String>,
}

/// URLs of the job queue of each priority lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneQueueUrls {
    pub urgent: String,
    pub standard: String,
    pub bulk: String,
}

impl LaneQueueUrls {
    /// The queue of `lane`.
    pub fn of(&self, lane: QueueLane) -> &str {
        match lane {
            QueueLane::Urgent => &self.urgent,
            QueueLane::Standard => &self.standard,
            QueueLane::Bulk => &self.bulk,
        }
    }
}

impl GatewayEnv {
    /// Reads `GATEWAY_*` variables; the error names the missing one.
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str| {
            std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
        };
        Ok(GatewayEnv {
            jobs_table: var("GATEWAY_JOBS_TABLE")?,
            catalog_table: var("GATEWAY_CATALOG_TABLE")?,
            bucket: var("GATEWAY_BUCKET")?,
            job_queues: LaneQueueUrls {
                urgent: var("GATEWAY_JOB_QUEUE_URGENT_URL")?,
                standard: var("GATEWAY_JOB_QUEUE_URL")?,
                bulk: var("GATEWAY_JOB_QUEUE_BULK_URL")?,
            },
            kms_key_id: std::env::var("GATEWAY_KMS_KEY_ID").ok(),
        })
    }
}

/// SDK clients sharing one configuration (endpoint from `AWS_ENDPOINT_URL` when set).
#[derive(Clone, Debug)]
pub struct AwsClients {
    /// The loaded configuration, for clients built later (e.g. the management API's).
    pub config: aws_config::SdkConfig,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub kms: aws_sdk_kms::Client,
}

impl AwsClients {
    /// Loads the shared AWS configuration and builds every client.
    pub async fn load() -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let local = std::env::var("AWS_ENDPOINT_URL").is_ok();
        let s3_config = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(local)
            .build();
        AwsClients {
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            sqs: aws_sdk_sqs::Client::new(&config),
            kms: aws_sdk_kms::Client::new(&config),
            config,
        }
    }
}

/// Partition key value for jobs without an organization.
const NO_ORGANIZATION: &str = "#none";
const ORG_INDEX: &str = "by_org";

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
        Ok(item)
    }

    fn job(mut item: HashMap<String, AttributeValue>) -> IoResult<Job> {
        item.remove("org_key");
        item.remove("step");
        serde_dynamo::from_item(item).map_err(|e| IoError::new("decode job", e))
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
        match result {
            Ok(_) => Ok(true),
            Err(error) => {
                let service_error = error.as_service_error();
                if service_error.is_some_and(|e| e.is_conditional_check_failed_exception()) {
                    Ok(false)
                } else {
                    Err(sdk_error("update job")(error))
                }
            }
        }
    }

    async fn list(&self, query: &JobQuery) -> IoResult<JobPage> {
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
        match result {
            Ok(_) => Ok(true),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(error) => Err(sdk_error("delete job")(error)),
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

/// Decodes a page cursor; a malformed one is reported as [`InvalidCursor`] inside the error.
fn decode_cursor(cursor: &str) -> IoResult<HashMap<String, AttributeValue>> {
    let invalid = |_| IoError::new(INVALID_CURSOR, "cursor is not one this API returned");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|e| invalid(e.to_string()))?;
    let plain: HashMap<String, String> =
        serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    Ok(plain
        .into_iter()
        .map(|(k, v)| (k, AttributeValue::S(v)))
        .collect())
}

/// The `operation` of the error returned for a malformed page cursor.
pub const INVALID_CURSOR: &str = "decode cursor";

/// Catalog items in DynamoDB (layout in `docs/local-contract.md`).
#[derive(Clone, Debug)]
pub struct DynamoCatalog {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoCatalog {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoCatalog {
            client,
            table: table.into(),
        }
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        pk: String,
        sk: &str,
    ) -> IoResult<Option<T>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk))
            .key("sk", AttributeValue::S(sk.to_string()))
            .send()
            .await
            .map_err(sdk_error("read catalog"))?;
        output.item.map(decode_catalog_item).transpose()
    }
}

impl DynamoCatalog {
    /// Writes (creates or replaces) a catalog entity under `pk`/`sk`.
    async fn put<T: serde::Serialize>(&self, pk: String, sk: String, entity: &T) -> IoResult<()> {
        let mut item: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(entity).map_err(|e| IoError::new("encode catalog item", e))?;
        let kind = if sk.starts_with("FLAVOR#") {
            "FLAVOR"
        } else {
            pk.split('#').next().unwrap_or_default()
        };
        item.insert("kind".into(), AttributeValue::S(kind.to_string()));
        item.insert("pk".into(), AttributeValue::S(pk));
        item.insert("sk".into(), AttributeValue::S(sk));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(sdk_error("write catalog"))?;
        Ok(())
    }

    /// Writes a service (without its flavors).
    pub async fn put_service(&self, service: &Service) -> IoResult<()> {
        self.put(
            format!("SERVICE#{}", service.id),
            "#SERVICE".into(),
            service,
        )
        .await
    }

    /// Writes a flavor under its service.
    pub async fn put_flavor(&self, flavor: &Flavor) -> IoResult<()> {
        self.put(
            format!("SERVICE#{}", flavor.service_id),
            format!("FLAVOR#{}", flavor.id),
            flavor,
        )
        .await
    }

    /// Writes a model.
    pub async fn put_model(&self, model: &Model) -> IoResult<()> {
        self.put(format!("MODEL#{}", model.id), "#MODEL".into(), model)
            .await
    }

    /// Writes a provider.
    pub async fn put_provider(&self, provider: &Provider) -> IoResult<()> {
        self.put(
            format!("PROVIDER#{}", provider.id),
            "#PROVIDER".into(),
            provider,
        )
        .await
    }
}

fn decode_catalog_item<T: serde::de::DeserializeOwned>(
    mut item: HashMap<String, AttributeValue>,
) -> IoResult<T> {
    item.remove("pk");
    item.remove("sk");
    serde_dynamo::from_item(item).map_err(|e| IoError::new("decode catalog item", e))
}

#[async_trait]
impl Catalog for DynamoCatalog {
    async fn service(&self, id: Uuid) -> IoResult<Option<Service>> {
        self.get(format!("SERVICE#{id}"), "#SERVICE").await
    }

    async fn flavor(&self, service_id: Uuid, flavor_id: Uuid) -> IoResult<Option<Flavor>> {
        self.get(
            format!("SERVICE#{service_id}"),
            &format!("FLAVOR#{flavor_id}"),
        )
        .await
    }

    async fn flavors(&self, service_id: Uuid) -> IoResult<Vec<Flavor>> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :flavor)")
            .expression_attribute_values(":pk", AttributeValue::S(format!("SERVICE#{service_id}")))
            .expression_attribute_values(":flavor", AttributeValue::S("FLAVOR#".into()))
            .send()
            .await
            .map_err(sdk_error("list flavors"))?;
        output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(decode_catalog_item)
            .collect()
    }

    async fn model(&self, id: Uuid) -> IoResult<Option<Model>> {
        self.get(format!("MODEL#{id}"), "#MODEL").await
    }

    async fn provider(&self, id: Uuid) -> IoResult<Option<Provider>> {
        self.get(format!("PROVIDER#{id}"), "#PROVIDER").await
    }
}

/// GSI of the catalog table listing records by kind: hash `kind`, range `id`.
const KIND_INDEX: &str = "by_kind";

/// Keys of a catalog record: `{KIND}#{id}` / `#{KIND}`; flavors live in their service's
/// partition, `SERVICE#{service}` / `FLAVOR#{id}`.
fn record_key(kind: RecordKind, id: Uuid, parent: Option<Uuid>) -> (String, String) {
    match (kind, parent) {
        (RecordKind::Flavor, Some(service)) => {
            (format!("SERVICE#{service}"), format!("FLAVOR#{id}"))
        }
        _ => (format!("{}#{id}", kind.tag()), format!("#{}", kind.tag())),
    }
}

fn key_map(pk: String, sk: String) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_string(), AttributeValue::S(pk)),
        ("sk".to_string(), AttributeValue::S(sk)),
    ])
}

fn claim_key(key: &str) -> HashMap<String, AttributeValue> {
    key_map(format!("UNIQUE#{key}"), "#UNIQUE".to_string())
}

fn record_from_item(kind: RecordKind, item: HashMap<String, AttributeValue>) -> IoResult<Record> {
    let parent = match item.get("sk") {
        Some(AttributeValue::S(sk)) if sk.starts_with("FLAVOR#") => match item.get("pk") {
            Some(AttributeValue::S(pk)) => pk
                .strip_prefix("SERVICE#")
                .and_then(|id| Uuid::parse_str(id).ok()),
            _ => None,
        },
        _ => None,
    };
    let mut body: serde_json::Value = decode_catalog_item(item)?;
    if let Some(fields) = body.as_object_mut() {
        fields.remove("kind");
    }
    let id = body
        .get("id")
        .and_then(serde_json::Value::as_str)
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| IoError::new("decode catalog item", "record without a valid id"))?;
    Ok(Record {
        kind,
        id,
        parent,
        body,
    })
}

impl DynamoCatalog {
    fn transact_item(&self, write: CatalogWrite) -> IoResult<TransactWriteItem> {
        let built = match write {
            CatalogWrite::Put { record, expect } => {
                let (pk, sk) = record_key(record.kind, record.id, record.parent);
                let mut item: HashMap<String, AttributeValue> = serde_dynamo::to_item(&record.body)
                    .map_err(|e| IoError::new("encode catalog item", e))?;
                item.insert("kind".into(), AttributeValue::S(record.kind.tag().into()));
                item.insert("id".into(), AttributeValue::S(record.id.to_string()));
                item.extend(key_map(pk, sk));
                let put = Put::builder().table_name(&self.table).set_item(Some(item));
                let put = match expect {
                    Expect::New => put.condition_expression("attribute_not_exists(pk)"),
                    Expect::UpdatedAt(updated_at) => put
                        .condition_expression("updated_at = :seen")
                        .expression_attribute_values(":seen", AttributeValue::S(updated_at)),
                };
                TransactWriteItem::builder().put(
                    put.build()
                        .map_err(|e| IoError::new("encode catalog item", e))?,
                )
            }
            CatalogWrite::Delete { kind, id, parent } => {
                let (pk, sk) = record_key(kind, id, parent);
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(key_map(pk, sk)))
                    .build()
                    .map_err(|e| IoError::new("encode catalog delete", e))?;
                TransactWriteItem::builder().delete(delete)
            }
            CatalogWrite::Claim { key, owner } => {
                let mut item = claim_key(&key);
                item.insert("owner".into(), AttributeValue::S(owner.to_string()));
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(pk) OR #owner = :owner")
                    .expression_attribute_names("#owner", "owner")
                    .expression_attribute_values(":owner", AttributeValue::S(owner.to_string()))
                    .build()
                    .map_err(|e| IoError::new("encode unique key", e))?;
                TransactWriteItem::builder().put(put)
            }
            CatalogWrite::Release { key } => {
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(claim_key(&key)))
                    .build()
                    .map_err(|e| IoError::new("encode unique key", e))?;
                TransactWriteItem::builder().delete(delete)
            }
        };
        Ok(built.build())
    }
}

#[async_trait]
impl CatalogStore for DynamoCatalog {
    async fn record(&self, kind: RecordKind, id: Uuid) -> IoResult<Option<Record>> {
        if kind != RecordKind::Flavor {
            let (pk, sk) = record_key(kind, id, None);
            let output = self
                .client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(key_map(pk, sk)))
                .consistent_read(true)
                .send()
                .await
                .map_err(sdk_error("read catalog"))?;
            return output
                .item
                .map(|item| record_from_item(kind, item))
                .transpose();
        }
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(KIND_INDEX)
            .key_condition_expression("kind = :kind AND id = :id")
            .expression_attribute_values(":kind", AttributeValue::S(kind.tag().into()))
            .expression_attribute_values(":id", AttributeValue::S(id.to_string()))
            .send()
            .await
            .map_err(sdk_error("find flavor"))?;
        output
            .items
            .unwrap_or_default()
            .into_iter()
            .next()
            .map(|item| record_from_item(kind, item))
            .transpose()
    }

    async fn records(&self, kind: RecordKind) -> IoResult<Vec<Record>> {
        let mut records = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(KIND_INDEX)
                .key_condition_expression("kind = :kind")
                .expression_attribute_values(":kind", AttributeValue::S(kind.tag().into()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error("list catalog"))?;
            for item in output.items.unwrap_or_default() {
                records.push(record_from_item(kind, item)?);
            }
            start = output.last_evaluated_key;
            if start.is_none() {
                return Ok(records);
            }
        }
    }

    async fn write(&self, writes: Vec<CatalogWrite>) -> Result<(), WriteError> {
        if writes.is_empty() {
            return Ok(());
        }
        let items = writes
            .iter()
            .cloned()
            .map(|write| self.transact_item(write))
            .collect::<IoResult<Vec<_>>>()?;
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let error = match result {
            Ok(_) => return Ok(()),
            Err(error) => error,
        };
        let reasons = error.as_service_error().and_then(|service| match service {
            TransactWriteItemsError::TransactionCanceledException(cancelled) => {
                Some(cancelled.cancellation_reasons().to_vec())
            }
            _ => None,
        });
        if let Some(reasons) = reasons {
            for (write, reason) in writes.iter().zip(reasons) {
                if reason.code() != Some("ConditionalCheckFailed") {
                    continue;
                }
                return Err(match write {
                    CatalogWrite::Claim { key, .. } => WriteError::Taken(key.clone()),
                    _ => WriteError::Stale,
                });
            }
        }
        Err(WriteError::Io(sdk_error("write catalog")(error)))
    }
}

/// Blobs in one S3 bucket.
#[derive(Clone, Debug)]
pub struct S3Blobs {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Blobs {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        S3Blobs {
            client,
            bucket: bucket.into(),
        }
    }
}

#[async_trait]
impl BlobStore for S3Blobs {
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> IoResult<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(body.into())
            .send()
            .await
            .map_err(sdk_error("write blob"))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> IoResult<Option<Vec<u8>>> {
        let output = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None)
            }
            Err(error) => return Err(sdk_error("read blob")(error)),
        };
        let bytes = output
            .body
            .collect()
            .await
            .map_err(|e| IoError::new("read blob", e))?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }

    async fn delete_prefix(&self, prefix: &str) -> IoResult<usize> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        let mut deleted = 0;
        loop {
            // Deleting what was listed makes the next listing start over with what is left.
            let listing = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .send()
                .await
                .map_err(sdk_error("list blobs"))?;
            let objects: Vec<ObjectIdentifier> = listing
                .contents()
                .iter()
                .filter_map(|object| object.key())
                .filter_map(|key| ObjectIdentifier::builder().key(key).build().ok())
                .collect();
            if objects.is_empty() {
                return Ok(deleted);
            }
            deleted += objects.len();
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| IoError::new("delete blobs", e))?;
            self.client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(sdk_error("delete blobs"))?;
        }
    }
}

/// The FIFO job queues (one per lane): group = job id, deduplication id = job:step.
#[derive(Clone, Debug)]
pub struct SqsJobQueue {
    client: aws_sdk_sqs::Client,
    queues: LaneQueueUrls,
}

impl SqsJobQueue {
    pub fn new(client: aws_sdk_sqs::Client, queues: LaneQueueUrls) -> Self {
        SqsJobQueue { client, queues }
    }
}

#[async_trait]
impl JobQueue for SqsJobQueue {
    async fn send(&self, message: &StepMessage, lane: QueueLane) -> IoResult<()> {
        let body =
            serde_json::to_string(message).map_err(|e| IoError::new("encode step message", e))?;
        self.client
            .send_message()
            .queue_url(self.queues.of(lane))
            .message_body(body)
            .message_group_id(message.job_id.to_string())
            .message_deduplication_id(message.deduplication_id())
            .send()
            .await
            .map_err(sdk_error("enqueue step"))?;
        Ok(())
    }
}

/// KMS encryption and decryption of provider API keys.
#[derive(Clone, Debug)]
pub struct KmsSecrets {
    client: aws_sdk_kms::Client,
    /// Key that encrypts new secrets (decryption needs none: the ciphertext names it).
    key_id: Option<String>,
}

impl KmsSecrets {
    pub fn new(client: aws_sdk_kms::Client, key_id: Option<String>) -> Self {
        KmsSecrets { client, key_id }
    }
}

#[async_trait]
impl Secrets for KmsSecrets {
    async fn decrypt(&self, ciphertext_b64: &str) -> IoResult<String> {
        let blob = base64::engine::general_purpose::STANDARD
            .decode(ciphertext_b64.trim())
            .map_err(|e| IoError::new("decode secret", e))?;
        let output = self
            .client
            .decrypt()
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(blob))
            .send()
            .await
            .map_err(sdk_error("decrypt secret"))?;
        let plaintext = output
            .plaintext
            .ok_or_else(|| IoError::new("decrypt secret", "no plaintext"))?;
        String::from_utf8(plaintext.into_inner()).map_err(|e| IoError::new("decrypt secret", e))
    }

    async fn encrypt(&self, secret: &str) -> IoResult<String> {
        let key_id = self
            .key_id
            .as_deref()
            .ok_or_else(|| IoError::new("encrypt secret", "GATEWAY_KMS_KEY_ID is not set"))?;
        let output = self
            .client
            .encrypt()
            .key_id(key_id)
            .plaintext(aws_sdk_kms::primitives::Blob::new(secret.as_bytes()))
            .send()
            .await
            .map_err(sdk_error("encrypt secret"))?;
        let ciphertext = output
            .ciphertext_blob
            .ok_or_else(|| IoError::new("encrypt secret", "no ciphertext"))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(ciphertext.into_inner()))
    }
}

/// Sort key of the item recording a connection itself (its organization).
const CONNECTION_ITEM: &str = "#connection";
/// API Gateway closes WebSocket connections after 2 hours; items expire then too.
const CONNECTION_LIFETIME_SECS: i64 = 2 * 60 * 60;
const TOPIC_INDEX: &str = "by_topic";

/// WebSocket subscriptions in DynamoDB: pk `connection_id`, sk the topic key (or
/// `#connection`), sparse GSI `by_topic` (topic, connection_id), TTL `expires_at`.
#[derive(Clone, Debug)]
pub struct DynamoConnectionStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoConnectionStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoConnectionStore {
            client,
            table: table.into(),
        }
    }

    async fn put(
        &self,
        connection_id: &str,
        sort_key: &str,
        topic: Option<&str>,
        organization_id: Option<&str>,
    ) -> IoResult<()> {
        let expires_at = chrono::Utc::now().timestamp() + CONNECTION_LIFETIME_SECS;
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(
                "connection_id",
                AttributeValue::S(connection_id.to_string()),
            )
            .item("sk", AttributeValue::S(sort_key.to_string()))
            .item("expires_at", AttributeValue::N(expires_at.to_string()));
        if let Some(topic) = topic {
            request = request.item("topic", AttributeValue::S(topic.to_string()));
        }
        if let Some(org) = organization_id {
            request = request.item("organization_id", AttributeValue::S(org.to_string()));
        }
        request
            .send()
            .await
            .map_err(sdk_error("write connection"))?;
        Ok(())
    }

    async fn delete(&self, connection_id: &str, sort_key: &str) -> IoResult<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(
                "connection_id",
                AttributeValue::S(connection_id.to_string()),
            )
            .key("sk", AttributeValue::S(sort_key.to_string()))
            .send()
            .await
            .map_err(sdk_error("delete connection"))?;
        Ok(())
    }
}

#[async_trait]
impl ConnectionStore for DynamoConnectionStore {
    async fn subscribe(
        &self,
        connection_id: &str,
        topic: &Topic,
        organization_id: Option<&str>,
    ) -> IoResult<()> {
        if self.organization_of(connection_id).await?.is_none() {
            self.put(connection_id, CONNECTION_ITEM, None, organization_id)
                .await?;
        }
        let key = topic.key();
        self.put(connection_id, &key, Some(&key), organization_id)
            .await
    }

    async fn unsubscribe(&self, connection_id: &str, topic: &Topic) -> IoResult<()> {
        self.delete(connection_id, &topic.key()).await
    }

    async fn remove(&self, connection_id: &str) -> IoResult<()> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("connection_id = :c")
            .expression_attribute_values(":c", AttributeValue::S(connection_id.to_string()))
            .send()
            .await
            .map_err(sdk_error("read connection"))?;
        for item in output.items.unwrap_or_default() {
            if let Some(AttributeValue::S(sort_key)) = item.get("sk") {
                self.delete(connection_id, sort_key).await?;
            }
        }
        Ok(())
    }

    async fn subscribers(&self, topic: &Topic) -> IoResult<Vec<String>> {
        let mut connections = Vec::new();
        let mut start_key = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(TOPIC_INDEX)
                .key_condition_expression("topic = :t")
                .expression_attribute_values(":t", AttributeValue::S(topic.key()))
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(sdk_error("read subscribers"))?;
            connections.extend(
                output
                    .items
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|item| match item.get("connection_id") {
                        Some(AttributeValue::S(id)) => Some(id.clone()),
                        _ => None,
                    }),
            );
            start_key = output.last_evaluated_key;
            if start_key.is_none() {
                return Ok(connections);
            }
        }
    }

    async fn organization_of(&self, connection_id: &str) -> IoResult<Option<Option<String>>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(
                "connection_id",
                AttributeValue::S(connection_id.to_string()),
            )
            .key("sk", AttributeValue::S(CONNECTION_ITEM.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error("read connection"))?;
        Ok(output.item.map(|item| match item.get("organization_id") {
            Some(AttributeValue::S(org)) => Some(org.clone()),
            _ => None,
        }))
    }
}

/// Posts to WebSocket connections through the API Gateway management API.
#[derive(Clone, Debug)]
pub struct ApiGatewayNotifier {
    client: aws_sdk_apigatewaymanagement::Client,
}

impl ApiGatewayNotifier {
    /// A notifier for the management endpoint `https://{api}.execute-api.{region}.amazonaws.com/{stage}`
    /// (locally, functions/local's WebSocket port).
    pub fn new(config: &aws_config::SdkConfig, endpoint: &str) -> Self {
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(config)
            .endpoint_url(endpoint)
            .build();
        ApiGatewayNotifier {
            client: aws_sdk_apigatewaymanagement::Client::from_conf(config),
        }
    }
}

#[async_trait]
impl Notifier for ApiGatewayNotifier {
    async fn post(&self, connection_id: &str, payload: &[u8]) -> IoResult<Delivery> {
        let result = self
            .client
            .post_to_connection()
            .connection_id(connection_id)
            .data(aws_sdk_apigatewaymanagement::primitives::Blob::new(
                payload.to_vec(),
            ))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Delivery::Sent),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_gone_exception()) =>
            {
                Ok(Delivery::Gone)
            }
            Err(error) => Err(sdk_error("post to connection")(error)),
        }
    }
}
