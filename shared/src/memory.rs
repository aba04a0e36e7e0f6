//! In-memory implementations of every port ([`crate::ports`]) and of [`LlmClient`], for
//! unit tests of the engine without the emulator. Each fake keeps the semantics of its
//! AWS adapter in [`crate::aws`] (conditional writes, atomic catalog changes, listing order
//! and cursors), and offers failure injection and inspection to tests.
//!
//! [`MemoryGateway::new`] wires them into an [`engine::Gateway`](crate::engine::Gateway)
//! and keeps typed handles to each fake; [`MemoryGateway::seed`] creates a provider, a
//! model, a service and its two flavors (single-pass and iterative) through
//! [`CatalogStore::write`], as the catalog API does.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde_json::json;
use uuid::Uuid;

use crate::domain::{
    now_timestamp, Flavor, Job, JobStatus, Model, Provider, QueueLane, Service, StepMessage,
};
use crate::engine::catalog::entity::{commit, create_writes, Entity};
use crate::engine::error::EngineError;
use crate::engine::execute::{submit, ExecuteRequest};
use crate::engine::notify::Realtime;
use crate::engine::{Gateway, Limits};
use crate::llm::{ChatCompletion, ChatRequest, Endpoint, LlmClient, LlmError, RetryPolicy};
use crate::ports::{
    BlobStore, Catalog, CatalogStore, CatalogWrite, ConnectionStore, Delivery, Expect, IoError,
    IoResult, JobPage, JobQuery, JobQueue, JobStore, ListError, Notifier, Record, RecordKind,
    Secrets, Topic, WriteError,
};

/// Locks a fake's state; a panic in another test thread never hides the state.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Failures armed for one operation: each makes one matching call fail with an
/// [`IoError`] (target `None` matches every call).
#[derive(Debug, Default)]
struct FailNext {
    armed: Mutex<Vec<(Option<String>, usize)>>,
}

impl FailNext {
    fn arm(&self, target: Option<String>, times: usize) {
        lock(&self.armed).push((target, times));
    }

    /// Fails this call if a failure armed for `target` is left.
    fn trip(&self, operation: &'static str, target: &str) -> IoResult<()> {
        let mut armed = lock(&self.armed);
        let hit = armed.iter_mut().find(|(key, remaining)| {
            *remaining > 0 && key.as_deref().is_none_or(|key| key == target)
        });
        match hit {
            Some((_, remaining)) => {
                *remaining -= 1;
                armed.retain(|(_, remaining)| *remaining > 0);
                Err(IoError::new(operation, "injected failure"))
            }
            None => Ok(()),
        }
    }
}

/// Round-trips a value through JSON, as the adapters do through their stored format.
fn round_trip<T: serde::Serialize + DeserializeOwned>(
    value: &T,
    operation: &'static str,
) -> IoResult<T> {
    serde_json::to_value(value)
        .and_then(serde_json::from_value)
        .map_err(|e| IoError::new(operation, e))
}

// ---------------------------------------------------------------------------------------
// Jobs

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

    /// Makes the next `times` calls of [`JobStore::replace`] fail with an [`IoError`]
    /// (nothing is written).
    pub fn fail_next_replaces(&self, times: usize) {
        self.fail_replace.arm(None, times);
    }

    /// Runs `change` on the stored job inside the next [`JobStore::replace`], before its
    /// condition is checked: what another writer (a second delivery, a cancel) does
    /// between the caller's read and its conditional write.
    pub fn before_next_replace(&self, change: impl FnOnce(&mut Job) + Send + 'static) {
        *lock(&self.before_replace) = Some(Box::new(change));
    }

    /// Every stored job, by id.
    pub fn all(&self) -> Vec<Job> {
        lock(&self.jobs).values().cloned().collect()
    }
}

/// The sort position of a job in a listing (newest first, then by id).
fn listing_key(job: &Job) -> (String, Uuid) {
    (job.created_at.clone(), job.id)
}

/// Encodes a page cursor like the DynamoDB adapter (base64 of the last evaluated key).
fn encode_cursor(job: &Job) -> IoResult<String> {
    let key = json!({
        "id": job.id.to_string(),
        "created_at": job.created_at,
        "org_key": job.organization_id.as_deref().unwrap_or("#none"),
    });
    let bytes = serde_json::to_vec(&key).map_err(|e| IoError::new("encode cursor", e))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Decodes a page cursor into its sort position; malformed ones fail like the adapter's
/// ([`ListError::InvalidCursor`]).
fn decode_cursor(cursor: &str) -> Result<(String, Uuid), ListError> {
    let invalid = || ListError::InvalidCursor;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| invalid())?;
    let key: BTreeMap<String, String> = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    // DynamoDB rejects a start key without the key attributes (not a cursor error).
    let created_at = key.get("created_at").cloned();
    let id = key.get("id").and_then(|id| Uuid::parse_str(id).ok());
    match (created_at, id) {
        (Some(created_at), Some(id)) => Ok((created_at, id)),
        _ => Err(ListError::Io(IoError::new(
            "list jobs",
            "the provided starting key is invalid",
        ))),
    }
}

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
        self.fail_replace.trip("update job", "")?;
        let stored = round_trip(job, "encode job")?;
        let hook = lock(&self.before_replace).take();
        let mut jobs = lock(&self.jobs);
        if let (Some(hook), Some(current)) = (hook, jobs.get_mut(&job.id)) {
            hook(current);
        }
        let holds = jobs.get(&job.id).is_some_and(|current| {
            current.progress.step == expected_step
                && matches!(current.status, JobStatus::Queued | JobStatus::Processing)
        });
        if holds {
            jobs.insert(job.id, stored);
        }
        Ok(holds)
    }

    /// The jobs of the query's organization (no organization: only jobs without one),
    /// newest first, filtered by service and status. Like a DynamoDB query with `Limit`,
    /// a full page has a cursor even when nothing follows (the next page is then empty).
    async fn list(&self, query: &JobQuery) -> Result<JobPage, ListError> {
        let page_size = query.page_size.clamp(1, 100);
        let start = query.cursor.as_deref().map(decode_cursor).transpose()?;
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
            Some(job) if page.len() == page_size => Some(encode_cursor(job)?),
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
}

// ---------------------------------------------------------------------------------------
// Catalog

/// One stored catalog item: a record or a unique-key claim.
#[derive(Debug, Clone)]
enum Item {
    Record(Record),
    Claim { owner: Uuid },
}

/// Most writes DynamoDB accepts in one transaction.
const MAX_TRANSACTION_WRITES: usize = 100;

/// Keys of a record, as in the DynamoDB catalog (flavors under their service).
fn record_key(kind: RecordKind, id: Uuid, parent: Option<Uuid>) -> (String, String) {
    match (kind, parent) {
        (RecordKind::Flavor, Some(service)) => {
            (format!("SERVICE#{service}"), format!("FLAVOR#{id}"))
        }
        _ => (format!("{}#{id}", kind.tag()), format!("#{}", kind.tag())),
    }
}

fn claim_key(key: &str) -> (String, String) {
    (format!("UNIQUE#{key}"), "#UNIQUE".to_string())
}

/// The catalog in memory: [`CatalogStore`] records and the typed [`Catalog`] reads served
/// from the same items, like [`crate::aws::DynamoCatalog`].
#[derive(Debug, Default)]
pub struct MemoryCatalog {
    items: Mutex<BTreeMap<(String, String), Item>>,
}

impl MemoryCatalog {
    /// The owner of a claimed unique key.
    pub fn claim_owner(&self, key: &str) -> Option<Uuid> {
        match lock(&self.items).get(&claim_key(key)) {
            Some(Item::Claim { owner }) => Some(*owner),
            _ => None,
        }
    }

    fn typed<T: DeserializeOwned>(&self, pk: String, sk: String) -> IoResult<Option<T>> {
        match lock(&self.items).get(&(pk, sk)) {
            Some(Item::Record(record)) => serde_json::from_value(record.body.clone())
                .map(Some)
                .map_err(|e| IoError::new("decode catalog item", e)),
            _ => Ok(None),
        }
    }

    /// The key a write targets and whether its condition holds against `items`; `Err` is
    /// the refusal of the whole transaction.
    fn check(
        items: &BTreeMap<(String, String), Item>,
        write: &CatalogWrite,
    ) -> Result<(), WriteError> {
        match write {
            CatalogWrite::Put { record, expect } => {
                let current = items.get(&record_key(record.kind, record.id, record.parent));
                let holds = match expect {
                    Expect::New => current.is_none(),
                    Expect::UpdatedAt(seen) => matches!(
                        current,
                        Some(Item::Record(stored))
                            if stored.body.get("updated_at").and_then(|v| v.as_str()) == Some(seen)
                    ),
                };
                if holds {
                    Ok(())
                } else {
                    Err(WriteError::Stale)
                }
            }
            // `attribute_not_exists(pk) OR #owner = :owner`
            CatalogWrite::Claim { key, owner } => match items.get(&claim_key(key)) {
                None => Ok(()),
                Some(Item::Claim { owner: holder }) if holder == owner => Ok(()),
                Some(_) => Err(WriteError::Taken(key.clone())),
            },
            CatalogWrite::Delete { .. } | CatalogWrite::Release { .. } => Ok(()),
        }
    }
}

fn write_key(write: &CatalogWrite) -> (String, String) {
    match write {
        CatalogWrite::Put { record, .. } => record_key(record.kind, record.id, record.parent),
        CatalogWrite::Delete { kind, id, parent } => record_key(*kind, *id, *parent),
        CatalogWrite::Claim { key, .. } | CatalogWrite::Release { key } => claim_key(key),
    }
}

#[async_trait]
impl Catalog for MemoryCatalog {
    async fn service(&self, id: Uuid) -> IoResult<Option<Service>> {
        let (pk, sk) = record_key(RecordKind::Service, id, None);
        self.typed(pk, sk)
    }

    async fn flavor(&self, service_id: Uuid, flavor_id: Uuid) -> IoResult<Option<Flavor>> {
        let (pk, sk) = record_key(RecordKind::Flavor, flavor_id, Some(service_id));
        self.typed(pk, sk)
    }

    /// The service's flavors in key order (by id), as the partition query returns them.
    async fn flavors(&self, service_id: Uuid) -> IoResult<Vec<Flavor>> {
        let pk = format!("SERVICE#{service_id}");
        lock(&self.items)
            .iter()
            .filter(|((item_pk, sk), _)| *item_pk == pk && sk.starts_with("FLAVOR#"))
            .filter_map(|(_, item)| match item {
                Item::Record(record) => Some(record),
                Item::Claim { .. } => None,
            })
            .map(|record| {
                serde_json::from_value(record.body.clone())
                    .map_err(|e| IoError::new("decode catalog item", e))
            })
            .collect()
    }

    async fn model(&self, id: Uuid) -> IoResult<Option<Model>> {
        let (pk, sk) = record_key(RecordKind::Model, id, None);
        self.typed(pk, sk)
    }

    async fn provider(&self, id: Uuid) -> IoResult<Option<Provider>> {
        let (pk, sk) = record_key(RecordKind::Provider, id, None);
        self.typed(pk, sk)
    }
}

#[async_trait]
impl CatalogStore for MemoryCatalog {
    /// A record by kind and id; a flavor is found by id whatever its service (the
    /// adapter's `by_kind` index).
    async fn record(&self, kind: RecordKind, id: Uuid) -> IoResult<Option<Record>> {
        let items = lock(&self.items);
        if kind != RecordKind::Flavor {
            return Ok(match items.get(&record_key(kind, id, None)) {
                Some(Item::Record(record)) => Some(record.clone()),
                _ => None,
            });
        }
        Ok(items.values().find_map(|item| match item {
            Item::Record(record) if record.kind == kind && record.id == id => Some(record.clone()),
            _ => None,
        }))
    }

    /// Every record of a kind, by id (the order of the `by_kind` index).
    async fn records(&self, kind: RecordKind) -> IoResult<Vec<Record>> {
        let mut records: Vec<Record> = lock(&self.items)
            .values()
            .filter_map(|item| match item {
                Item::Record(record) if record.kind == kind => Some(record.clone()),
                _ => None,
            })
            .collect();
        records.sort_by_key(|record| record.id);
        Ok(records)
    }

    /// All or nothing, like a DynamoDB transaction: at most 100 writes and one per item
    /// (else an [`IoError`]); the first write (in order) whose condition fails refuses the
    /// change, [`WriteError::Taken`] for a claim and [`WriteError::Stale`] otherwise.
    /// A put's body must be a JSON object; its `id` is the record's.
    async fn write(&self, writes: Vec<CatalogWrite>) -> Result<(), WriteError> {
        if writes.is_empty() {
            return Ok(());
        }
        if writes.len() > MAX_TRANSACTION_WRITES {
            return Err(IoError::new(
                "write catalog",
                "ValidationException: too many items in one transaction",
            )
            .into());
        }
        let mut targets = HashSet::new();
        for write in &writes {
            if let CatalogWrite::Put { record, .. } = write {
                if !record.body.is_object() {
                    return Err(IoError::new("encode catalog item", "body is not an object").into());
                }
            }
            if !targets.insert(write_key(write)) {
                return Err(IoError::new(
                    "write catalog",
                    "ValidationException: multiple operations on one item",
                )
                .into());
            }
        }
        let mut items = lock(&self.items);
        for write in &writes {
            Self::check(&items, write)?;
        }
        for write in writes {
            let key = write_key(&write);
            match write {
                CatalogWrite::Put { mut record, .. } => {
                    // Only a flavor's key holds its parent; the stored body carries the id.
                    if record.kind != RecordKind::Flavor {
                        record.parent = None;
                    }
                    if let Some(body) = record.body.as_object_mut() {
                        body.insert("id".into(), json!(record.id));
                        body.remove("kind");
                    }
                    items.insert(key, Item::Record(record));
                }
                CatalogWrite::Claim { owner, .. } => {
                    items.insert(key, Item::Claim { owner });
                }
                CatalogWrite::Delete { .. } | CatalogWrite::Release { .. } => {
                    items.remove(&key);
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Blobs, queue, secrets

/// [`BlobStore`] in memory: objects by key with their content type.
#[derive(Debug, Default)]
pub struct MemoryBlobs {
    objects: Mutex<BTreeMap<String, (Vec<u8>, String)>>,
    fail_put: FailNext,
}

impl MemoryBlobs {
    /// Makes the next `times` calls of [`BlobStore::put`] fail (nothing is written).
    pub fn fail_next_puts(&self, times: usize) {
        self.fail_put.arm(None, times);
    }

    /// Makes the next `times` puts of `key` fail; other keys are written.
    pub fn fail_next_puts_of(&self, key: &str, times: usize) {
        self.fail_put.arm(Some(key.to_string()), times);
    }

    /// Every stored key, in order.
    pub fn keys(&self) -> Vec<String> {
        lock(&self.objects).keys().cloned().collect()
    }

    /// The content type an object was stored with.
    pub fn content_type(&self, key: &str) -> Option<String> {
        lock(&self.objects)
            .get(key)
            .map(|(_, content_type)| content_type.clone())
    }
}

#[async_trait]
impl BlobStore for MemoryBlobs {
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> IoResult<()> {
        self.fail_put.trip("write blob", key)?;
        lock(&self.objects).insert(key.to_string(), (body, content_type.to_string()));
        Ok(())
    }

    async fn get(&self, key: &str) -> IoResult<Option<Vec<u8>>> {
        Ok(lock(&self.objects).get(key).map(|(body, _)| body.clone()))
    }

    async fn delete_prefix(&self, prefix: &str) -> IoResult<usize> {
        let mut objects = lock(&self.objects);
        let before = objects.len();
        objects.retain(|key, _| !key.starts_with(prefix));
        Ok(before - objects.len())
    }
}

/// [`JobQueue`] in memory: every sent message with its lane, in order. SQS FIFO
/// deduplication (same job and step within 5 minutes) is not modelled: every send is kept.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    sent: Mutex<VecDeque<(StepMessage, QueueLane)>>,
    fail_send: FailNext,
}

impl MemoryQueue {
    /// Makes the next `times` calls of [`JobQueue::send`] fail (nothing is enqueued).
    pub fn fail_next_sends(&self, times: usize) {
        self.fail_send.arm(None, times);
    }

    /// The messages sent and not drained yet, oldest first.
    pub fn sent(&self) -> Vec<(StepMessage, QueueLane)> {
        lock(&self.sent).iter().cloned().collect()
    }

    /// Takes every message sent so far, oldest first.
    pub fn drain(&self) -> Vec<(StepMessage, QueueLane)> {
        lock(&self.sent).drain(..).collect()
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn send(&self, message: &StepMessage, lane: QueueLane) -> IoResult<()> {
        self.fail_send.trip("enqueue step", "")?;
        let message = round_trip(message, "encode step message")?;
        lock(&self.sent).push_back((message, lane));
        Ok(())
    }

    async fn pending(&self, lane: QueueLane) -> IoResult<u64> {
        Ok(lock(&self.sent).iter().filter(|(_, l)| *l == lane).count() as u64)
    }
}

/// What [`MemorySecrets`] ciphertexts start with once decoded.
const SECRET_MARKER: &str = "memory-kms:";

/// [`Secrets`] that "encrypts" reversibly: base64 of a marker and the secret. Decryption
/// refuses anything else with an [`IoError`], as KMS refuses foreign ciphertexts.
#[derive(Debug, Default)]
pub struct MemorySecrets;

#[async_trait]
impl Secrets for MemorySecrets {
    async fn decrypt(&self, ciphertext_b64: &str) -> IoResult<String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(ciphertext_b64.trim())
            .map_err(|e| IoError::new("decode secret", e))?;
        String::from_utf8(bytes)
            .ok()
            .and_then(|plain| plain.strip_prefix(SECRET_MARKER).map(str::to_string))
            .ok_or_else(|| IoError::new("decrypt secret", "InvalidCiphertextException"))
    }

    async fn encrypt(&self, secret: &str) -> IoResult<String> {
        Ok(base64::engine::general_purpose::STANDARD.encode(format!("{SECRET_MARKER}{secret}")))
    }
}

// ---------------------------------------------------------------------------------------
// WebSocket connections

/// [`ConnectionStore`] in memory (no expiry): each connection's organization and its
/// subscriptions, like [`crate::aws::DynamoConnectionStore`].
#[derive(Debug, Default)]
pub struct MemoryConnections {
    /// Connection id → the organization it gave when it first subscribed.
    connections: Mutex<BTreeMap<String, Option<String>>>,
    /// (topic key, connection id), ordered like the `by_topic` index.
    subscriptions: Mutex<BTreeSet<(String, String)>>,
}

#[async_trait]
impl ConnectionStore for MemoryConnections {
    async fn subscribe(
        &self,
        connection_id: &str,
        topic: &Topic,
        organization_id: Option<&str>,
    ) -> IoResult<()> {
        lock(&self.connections)
            .entry(connection_id.to_string())
            .or_insert_with(|| organization_id.map(str::to_string));
        lock(&self.subscriptions).insert((topic.key(), connection_id.to_string()));
        Ok(())
    }

    async fn unsubscribe(&self, connection_id: &str, topic: &Topic) -> IoResult<()> {
        lock(&self.subscriptions).remove(&(topic.key(), connection_id.to_string()));
        Ok(())
    }

    async fn remove(&self, connection_id: &str) -> IoResult<()> {
        lock(&self.connections).remove(connection_id);
        lock(&self.subscriptions).retain(|(_, connection)| connection != connection_id);
        Ok(())
    }

    async fn subscribers(&self, topic: &Topic) -> IoResult<Vec<String>> {
        let key = topic.key();
        Ok(lock(&self.subscriptions)
            .iter()
            .filter(|(topic, _)| *topic == key)
            .map(|(_, connection)| connection.clone())
            .collect())
    }

    async fn organization_of(&self, connection_id: &str) -> IoResult<Option<Option<String>>> {
        Ok(lock(&self.connections).get(connection_id).cloned())
    }
}

/// [`Notifier`] in memory: records what was posted; connections marked gone answer
/// [`Delivery::Gone`] (HTTP 410) and receive nothing.
#[derive(Debug, Default)]
pub struct MemoryNotifier {
    posts: Mutex<Vec<(String, Vec<u8>)>>,
    gone: Mutex<HashSet<String>>,
}

impl MemoryNotifier {
    /// Makes posts to `connection_id` answer [`Delivery::Gone`] from now on.
    pub fn mark_gone(&self, connection_id: &str) {
        lock(&self.gone).insert(connection_id.to_string());
    }

    /// Every delivered post (connection id, payload), in order.
    pub fn posts(&self) -> Vec<(String, Vec<u8>)> {
        lock(&self.posts).clone()
    }
}

#[async_trait]
impl Notifier for MemoryNotifier {
    async fn post(&self, connection_id: &str, payload: &[u8]) -> IoResult<Delivery> {
        if lock(&self.gone).contains(connection_id) {
            return Ok(Delivery::Gone);
        }
        lock(&self.posts).push((connection_id.to_string(), payload.to_vec()));
        Ok(Delivery::Sent)
    }
}

// ---------------------------------------------------------------------------------------
// LLM

/// One call received by [`MemoryLlm`].
#[derive(Debug, Clone)]
pub struct LlmCall {
    /// Where the call went (base URL, decrypted API key, provider name).
    pub endpoint: Endpoint,
    /// What was asked.
    pub request: ChatRequest,
}

/// A scripted [`LlmClient`]: answers with [`MemoryLlm::answer_for`] unless a scripted
/// answer or failure is queued, and records every call (failed attempts included).
#[derive(Debug, Default)]
pub struct MemoryLlm {
    calls: Mutex<Vec<LlmCall>>,
    script: Mutex<VecDeque<Result<ChatCompletion, LlmError>>>,
    models: Mutex<Vec<serde_json::Value>>,
}

/// Whitespace-separated words: the fake's token count.
fn words(text: &str) -> u32 {
    text.split_whitespace().count() as u32
}

impl MemoryLlm {
    /// The default answer to a request: one line naming the prompt's size and its last
    /// non-empty line (the newest turn of a batch), with usage counted in words.
    pub fn answer_for(request: &ChatRequest) -> ChatCompletion {
        let prompt = request
            .messages
            .last()
            .map_or("", |message| message.content.as_str());
        let last_line = prompt
            .lines()
            .rev()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .unwrap_or_default();
        let gist: String = last_line.chars().take(60).collect();
        let content = format!("summary of {} words: {gist}", words(prompt));
        ChatCompletion {
            prompt_tokens: Some(request.messages.iter().map(|m| words(&m.content)).sum()),
            completion_tokens: Some(words(&content)),
            content,
        }
    }

    /// Makes the next `times` calls fail with `error` (use `retry_after: None`: the retry
    /// policy waits at least that long).
    pub fn fail_next(&self, times: usize, error: LlmError) {
        let mut script = lock(&self.script);
        script.extend(std::iter::repeat_n(Err(error), times));
    }

    /// Makes the next call (after those already scripted) answer `completion`.
    pub fn respond_next(&self, completion: ChatCompletion) {
        lock(&self.script).push_back(Ok(completion));
    }

    /// The model list [`LlmClient::models`] returns (empty until set).
    pub fn set_models(&self, models: Vec<serde_json::Value>) {
        *lock(&self.models) = models;
    }

    /// Number of chat calls received.
    pub fn call_count(&self) -> usize {
        lock(&self.calls).len()
    }

    /// Every chat call received, in order.
    pub fn calls(&self) -> Vec<LlmCall> {
        lock(&self.calls).clone()
    }
}

#[async_trait]
impl LlmClient for MemoryLlm {
    async fn chat(
        &self,
        endpoint: &Endpoint,
        request: &ChatRequest,
    ) -> Result<ChatCompletion, LlmError> {
        lock(&self.calls).push(LlmCall {
            endpoint: endpoint.clone(),
            request: request.clone(),
        });
        match lock(&self.script).pop_front() {
            Some(scripted) => scripted,
            None => Ok(Self::answer_for(request)),
        }
    }

    async fn models(&self, _endpoint: &Endpoint) -> Result<Vec<serde_json::Value>, LlmError> {
        Ok(lock(&self.models).clone())
    }
}

// ---------------------------------------------------------------------------------------
// Gateway and seeds

/// API key of the seeded provider (stored encrypted with [`MemorySecrets`]).
pub const SEEDED_API_KEY: &str = "sk-memory-test";
/// User prompt of the seeded single-pass flavor (one `{}`: the input).
pub const SINGLE_PASS_PROMPT: &str = "Summarize this transcript:\n{}";
/// User prompt of the seeded iterative flavor (`{}` summary so far, `{}` new turns).
pub const ITERATIVE_PROMPT: &str = "Summary so far:\n{}\n\nNew turns:\n{}";

/// Limits for tests: 3 LLM attempts with millisecond backoff.
pub fn test_limits() -> Limits {
    Limits {
        max_input_bytes: 1_000_000,
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
        },
        llm_timeout: Duration::from_secs(5),
    }
}

/// The catalog objects [`MemoryGateway::seed`] creates.
#[derive(Debug, Clone)]
pub struct Seeded {
    /// `memory`, its API key [`SEEDED_API_KEY`] stored encrypted.
    pub provider: Provider,
    /// `memory-model`: context 8192, generation 1024, cl100k_base, with prices.
    pub model: Model,
    /// The global `summarize` service.
    pub service: Service,
    /// Default flavor, [`SINGLE_PASS_PROMPT`], priority 5 ([`QueueLane::Standard`]).
    pub single_pass: Flavor,
    /// [`ITERATIVE_PROMPT`], 2 new turns per batch, 2 context lines, priority 8
    /// ([`QueueLane::Bulk`]).
    pub iterative: Flavor,
}

/// A [`Gateway`] (and [`Realtime`]) over the in-memory fakes, with typed handles to each.
pub struct MemoryGateway {
    /// The engine's ports, each one of the fakes below.
    pub gateway: Gateway,
    /// WebSocket subscriptions and posts over [`Self::connections`] and [`Self::notifier`].
    pub realtime: Realtime,
    /// `gateway.jobs`.
    pub jobs: Arc<MemoryJobStore>,
    /// `gateway.catalog` and `gateway.records` (one store).
    pub catalog: Arc<MemoryCatalog>,
    /// `gateway.blobs`.
    pub blobs: Arc<MemoryBlobs>,
    /// `gateway.queue`.
    pub queue: Arc<MemoryQueue>,
    /// `gateway.secrets`.
    pub secrets: Arc<MemorySecrets>,
    /// `gateway.llm`.
    pub llm: Arc<MemoryLlm>,
    /// `realtime.connections`.
    pub connections: Arc<MemoryConnections>,
    /// `realtime.notifier`.
    pub notifier: Arc<MemoryNotifier>,
}

impl Default for MemoryGateway {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryGateway {
    /// Empty fakes and [`test_limits`].
    pub fn new() -> Self {
        let jobs = Arc::new(MemoryJobStore::default());
        let catalog = Arc::new(MemoryCatalog::default());
        let blobs = Arc::new(MemoryBlobs::default());
        let queue = Arc::new(MemoryQueue::default());
        let secrets = Arc::new(MemorySecrets);
        let llm = Arc::new(MemoryLlm::default());
        let connections = Arc::new(MemoryConnections::default());
        let notifier = Arc::new(MemoryNotifier::default());
        MemoryGateway {
            gateway: Gateway {
                jobs: jobs.clone(),
                catalog: catalog.clone(),
                records: catalog.clone(),
                blobs: blobs.clone(),
                queue: queue.clone(),
                secrets: secrets.clone(),
                llm: llm.clone(),
                limits: test_limits(),
            },
            realtime: Realtime {
                connections: connections.clone(),
                notifier: notifier.clone(),
            },
            jobs,
            catalog,
            blobs,
            queue,
            secrets,
            llm,
            connections,
            notifier,
        }
    }

    /// Creates a catalog object with its unique-name claims in one atomic write, as the
    /// catalog API does (validated first; a taken name is a 409).
    pub async fn insert<T: Entity>(&self, entity: &T) -> Result<(), EngineError> {
        commit(
            self.catalog.as_ref(),
            create_writes(entity)?,
            &entity.unique_keys(),
        )
        .await
    }

    /// Seeds a provider (its API key encrypted), a model, a global `summarize` service and
    /// its two flavors; see [`Seeded`].
    ///
    /// # Panics
    /// When the catalog already holds these names (seed once per gateway).
    pub async fn seed(&self) -> Seeded {
        let now = now_timestamp();
        let api_key_ciphertext = self
            .secrets
            .encrypt(SEEDED_API_KEY)
            .await
            .expect("the fake encrypts");
        let provider: Provider = serde_json::from_value(json!({
            "id": Uuid::new_v4(),
            "name": "memory",
            "api_base_url": "http://llm.memory.test/v1",
            "api_key_ciphertext": api_key_ciphertext,
            "created_at": now,
            "updated_at": now,
        }))
        .expect("valid provider");
        let model: Model = serde_json::from_value(json!({
            "id": Uuid::new_v4(),
            "provider_id": provider.id,
            "model_name": "Memory model",
            "model_identifier": "memory-model",
            "context_length": 8192,
            "max_generation_length": 1024,
            "tokenizer_name": "cl100k_base",
            "input_price_per_million": 1.0,
            "output_price_per_million": 2.0,
            "created_at": now,
            "updated_at": now,
        }))
        .expect("valid model");
        let service: Service = serde_json::from_value(json!({
            "id": Uuid::new_v4(),
            "name": "summarize",
            "route": "summarize",
            "service_type": "summary",
            "created_at": now,
            "updated_at": now,
        }))
        .expect("valid service");
        let flavor = |name: &str, mode: &str, prompt: &str, extra: serde_json::Value| {
            let mut body = json!({
                "id": Uuid::new_v4(),
                "service_id": service.id,
                "name": name,
                "model_id": model.id,
                "temperature": 0.2,
                "processing_mode": mode,
                "prompt_user_content": prompt,
                "created_at": now,
                "updated_at": now,
            });
            if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
                body.extend(extra.clone());
            }
            serde_json::from_value::<Flavor>(body).expect("valid flavor")
        };
        let single_pass = flavor(
            "single-pass",
            "single_pass",
            SINGLE_PASS_PROMPT,
            json!({"is_default": true}),
        );
        let iterative = flavor(
            "iterative",
            "iterative",
            ITERATIVE_PROMPT,
            json!({"max_new_turns": 2, "summary_turns": 2, "priority": 8}),
        );
        for result in [
            self.insert(&provider).await,
            self.insert(&model).await,
            self.insert(&service).await,
            self.insert(&single_pass).await,
            self.insert(&iterative).await,
        ] {
            result.expect("seeding the memory catalog");
        }
        Seeded {
            provider,
            model,
            service,
            single_pass,
            iterative,
        }
    }

    /// Submits `input` to `flavor` through [`submit`] (the real job record, input and
    /// turns objects, first message).
    pub async fn submit(&self, flavor: &Flavor, input: &str) -> Result<Job, EngineError> {
        let request = ExecuteRequest {
            input: input.to_string(),
            flavor_id: Some(flavor.id),
            flavor_name: None,
            organization_id: None,
            context: None,
        };
        submit(&self.gateway, flavor.service_id, request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{JobProgress, JobSettings, ProcessingMode, UsageTotals};
    use crate::engine::notify::publish;
    use crate::llm::ChatMessage;

    fn job(organization: Option<&str>, created_at: &str, status: JobStatus) -> Job {
        Job {
            id: Uuid::new_v4(),
            service_id: Uuid::nil(),
            service_name: "s".into(),
            flavor_id: Uuid::nil(),
            flavor_name: "f".into(),
            organization_id: organization.map(str::to_string),
            status,
            processing_mode: ProcessingMode::SinglePass,
            created_at: created_at.into(),
            started_at: None,
            completed_at: None,
            updated_at: created_at.into(),
            input_tokens: 1,
            input_chars: 1,
            context_available: 100,
            settings: JobSettings {
                provider_id: Uuid::nil(),
                provider_name: "p".into(),
                model_identifier: "m".into(),
                context_length: 1000,
                max_generation_length: 100,
                tokenizer: "cl100k_base".into(),
                temperature: 0.2,
                top_p: 0.9,
                prompt_user_content: "{}".into(),
                prompt_system_content: None,
                create_new_turn_after: 500,
                summary_turns: 3,
                max_new_turns: 10,
                prompt_tokens: 1,
                estimated_cost_per_1k_tokens: None,
                priority: 5,
                input_price_per_million: None,
                output_price_per_million: None,
            },
            progress: JobProgress {
                step: 0,
                cursor: 0,
                total_turns: 1,
                total_batches: 1,
            },
            usage: UsageTotals::default(),
            error: None,
            expires_at: None,
        }
    }

    fn record(kind: RecordKind, parent: Option<Uuid>, updated_at: &str) -> Record {
        let id = Uuid::new_v4();
        Record {
            kind,
            id,
            parent,
            body: json!({"id": id, "name": "x", "updated_at": updated_at}),
        }
    }

    #[tokio::test]
    async fn create_refuses_an_existing_id_and_replace_checks_step_and_status() {
        let store = MemoryJobStore::default();
        let mut stored = job(None, "2026-01-01T00:00:00.000000Z", JobStatus::Queued);
        store.create(&stored).await.unwrap();
        let error = store.create(&stored).await.unwrap_err();
        assert_eq!(error.operation, "create job");

        stored.progress.step = 1;
        assert!(
            !store.replace(&stored, 1).await.unwrap(),
            "stored step is 0"
        );
        assert!(store.replace(&stored, 0).await.unwrap());
        assert_eq!(
            store.get(stored.id).await.unwrap().unwrap().progress.step,
            1
        );

        stored.status = JobStatus::Cancelled;
        assert!(
            store.replace(&stored, 1).await.unwrap(),
            "processing → cancelled"
        );
        stored.status = JobStatus::Processing;
        assert!(
            !store.replace(&stored, 1).await.unwrap(),
            "a terminal job never changes, even at the expected step"
        );
        assert_eq!(
            store.get(stored.id).await.unwrap().unwrap().status,
            JobStatus::Cancelled
        );

        let missing = job(None, "2026-01-01T00:00:00.000000Z", JobStatus::Queued);
        assert!(!store.replace(&missing, 0).await.unwrap());
        assert!(store.get(missing.id).await.unwrap().is_none(), "no upsert");

        store.fail_next_replaces(1);
        let mut queued = job(None, "2026-01-02T00:00:00.000000Z", JobStatus::Queued);
        store.create(&queued).await.unwrap();
        queued.status = JobStatus::Processing;
        assert_eq!(
            store.replace(&queued, 0).await.unwrap_err().operation,
            "update job"
        );
        assert!(store.replace(&queued, 0).await.unwrap(), "one failure only");
    }

    #[tokio::test]
    async fn delete_terminal_only_deletes_finished_jobs() {
        let store = MemoryJobStore::default();
        let running = job(None, "2026-01-01T00:00:00.000000Z", JobStatus::Processing);
        let done = job(None, "2026-01-01T00:00:00.000000Z", JobStatus::Completed);
        store.create(&running).await.unwrap();
        store.create(&done).await.unwrap();
        assert!(!store.delete_terminal(running.id).await.unwrap());
        assert!(store.delete_terminal(done.id).await.unwrap());
        assert!(
            !store.delete_terminal(done.id).await.unwrap(),
            "already gone"
        );
        assert_eq!(store.all(), vec![running]);
    }

    #[tokio::test]
    async fn list_pages_newest_first_within_the_organization_with_filters() {
        let store = MemoryJobStore::default();
        let mut created = Vec::new();
        for day in 1..=5 {
            let status = if day % 2 == 0 {
                JobStatus::Failed
            } else {
                JobStatus::Queued
            };
            let job = job(
                Some("org"),
                &format!("2026-01-0{day}T00:00:00.000000Z"),
                status,
            );
            store.create(&job).await.unwrap();
            created.push(job);
        }
        let other = job(
            Some("other"),
            "2026-02-01T00:00:00.000000Z",
            JobStatus::Queued,
        );
        let global = job(None, "2026-02-01T00:00:00.000000Z", JobStatus::Queued);
        store.create(&other).await.unwrap();
        store.create(&global).await.unwrap();

        let mut query = JobQuery {
            organization_id: Some("org".into()),
            page_size: 2,
            ..JobQuery::default()
        };
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let page = store.list(&query).await.unwrap();
            pages += 1;
            seen.extend(page.jobs.iter().map(|job| job.id));
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => break,
            }
        }
        let newest_first: Vec<Uuid> = created.iter().rev().map(|job| job.id).collect();
        assert_eq!(seen, newest_first);
        assert_eq!(pages, 3, "2 + 2 + 1");

        let no_org = store
            .list(&JobQuery {
                page_size: 10,
                ..JobQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(
            no_org.jobs.iter().map(|job| job.id).collect::<Vec<_>>(),
            [global.id],
            "no organization lists only jobs without one"
        );

        // A filtered full page has a cursor even when nothing matching follows.
        let failed = JobQuery {
            organization_id: Some("org".into()),
            status: Some(JobStatus::Failed),
            page_size: 2,
            ..JobQuery::default()
        };
        let first = store.list(&failed).await.unwrap();
        assert_eq!(
            first.jobs.iter().map(|job| job.id).collect::<Vec<_>>(),
            [created[3].id, created[1].id]
        );
        let rest = store
            .list(&JobQuery {
                cursor: first.next_cursor,
                ..failed
            })
            .await
            .unwrap();
        assert!(rest.jobs.is_empty() && rest.next_cursor.is_none());

        let bad = store
            .list(&JobQuery {
                cursor: Some("not a cursor!".into()),
                page_size: 2,
                ..JobQuery::default()
            })
            .await
            .unwrap_err();
        assert!(matches!(bad, ListError::InvalidCursor));
    }

    #[tokio::test]
    async fn catalog_writes_are_all_or_nothing_with_claims_and_staleness() {
        let catalog = MemoryCatalog::default();
        let first = record(RecordKind::Provider, None, "t1");
        let owner = first.id;
        catalog
            .write(vec![
                CatalogWrite::Put {
                    record: first.clone(),
                    expect: Expect::New,
                },
                CatalogWrite::Claim {
                    key: "provider-name:x".into(),
                    owner,
                },
            ])
            .await
            .unwrap();
        assert_eq!(catalog.claim_owner("provider-name:x"), Some(owner));

        // Another owner's claim refuses the whole change: its put is not applied.
        let second = record(RecordKind::Provider, None, "t1");
        let taken = catalog
            .write(vec![
                CatalogWrite::Put {
                    record: second.clone(),
                    expect: Expect::New,
                },
                CatalogWrite::Claim {
                    key: "provider-name:x".into(),
                    owner: second.id,
                },
            ])
            .await
            .unwrap_err();
        assert!(matches!(taken, WriteError::Taken(key) if key == "provider-name:x"));
        assert!(catalog
            .record(RecordKind::Provider, second.id)
            .await
            .unwrap()
            .is_none());

        // The owner may claim its key again; a stale updated_at refuses, a fresh one passes.
        let mut update = first.clone();
        update.body["updated_at"] = json!("t2");
        let stale = catalog
            .write(vec![
                CatalogWrite::Claim {
                    key: "provider-name:x".into(),
                    owner,
                },
                CatalogWrite::Put {
                    record: update.clone(),
                    expect: Expect::UpdatedAt("t0".into()),
                },
            ])
            .await
            .unwrap_err();
        assert!(matches!(stale, WriteError::Stale));
        catalog
            .write(vec![
                CatalogWrite::Claim {
                    key: "provider-name:x".into(),
                    owner,
                },
                CatalogWrite::Put {
                    record: update.clone(),
                    expect: Expect::UpdatedAt("t1".into()),
                },
            ])
            .await
            .unwrap();
        assert_eq!(
            catalog.record(RecordKind::Provider, owner).await.unwrap(),
            Some(update.clone())
        );
        let again = catalog
            .write(vec![CatalogWrite::Put {
                record: update.clone(),
                expect: Expect::New,
            }])
            .await
            .unwrap_err();
        assert!(
            matches!(again, WriteError::Stale),
            "Expect::New on an existing record"
        );

        // Two writes on one item are refused like DynamoDB does; release frees the key.
        let twice = catalog
            .write(vec![
                CatalogWrite::Release {
                    key: "provider-name:x".into(),
                },
                CatalogWrite::Claim {
                    key: "provider-name:x".into(),
                    owner: second.id,
                },
            ])
            .await
            .unwrap_err();
        assert!(matches!(twice, WriteError::Io(_)));
        catalog
            .write(vec![
                CatalogWrite::Delete {
                    kind: RecordKind::Provider,
                    id: owner,
                    parent: None,
                },
                CatalogWrite::Release {
                    key: "provider-name:x".into(),
                },
            ])
            .await
            .unwrap();
        assert_eq!(catalog.claim_owner("provider-name:x"), None);
        assert!(catalog
            .records(RecordKind::Provider)
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn typed_reads_come_from_the_records_and_flavors_live_under_their_service() {
        let memory = MemoryGateway::new();
        let seeded = memory.seed().await;
        let catalog = memory.catalog.as_ref();
        assert_eq!(
            catalog.service(seeded.service.id).await.unwrap(),
            Some(seeded.service.clone())
        );
        assert_eq!(
            catalog
                .flavor(seeded.service.id, seeded.iterative.id)
                .await
                .unwrap(),
            Some(seeded.iterative.clone())
        );
        assert_eq!(
            catalog
                .flavor(Uuid::new_v4(), seeded.iterative.id)
                .await
                .unwrap(),
            None,
            "not a flavor of that service"
        );
        let flavor_ids: Vec<Uuid> = catalog
            .flavors(seeded.service.id)
            .await
            .unwrap()
            .iter()
            .map(|flavor| flavor.id)
            .collect();
        let mut expected = vec![seeded.single_pass.id, seeded.iterative.id];
        expected.sort();
        assert_eq!(flavor_ids, expected, "in key order");

        let record = CatalogStore::record(catalog, RecordKind::Flavor, seeded.single_pass.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.parent, Some(seeded.service.id));
        assert_eq!(
            CatalogStore::records(catalog, RecordKind::Flavor)
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            catalog.claim_owner(&format!("flavor-name:{}:iterative", seeded.service.id)),
            Some(seeded.iterative.id)
        );
        // A duplicate name is refused through the same claims as the catalog API.
        let mut duplicate = seeded.iterative.clone();
        duplicate.id = Uuid::new_v4();
        assert_eq!(memory.insert(&duplicate).await.unwrap_err().status(), 409);

        // Typed reads see record writes at once (one store behind both traits).
        let mut renamed = seeded.service.clone();
        renamed.name = "renamed".into();
        memory
            .catalog
            .write(vec![CatalogWrite::Put {
                record: Record {
                    kind: RecordKind::Service,
                    id: renamed.id,
                    parent: None,
                    body: serde_json::to_value(&renamed).unwrap(),
                },
                expect: Expect::UpdatedAt(seeded.service.updated_at.clone()),
            }])
            .await
            .unwrap();
        assert_eq!(
            catalog.service(renamed.id).await.unwrap().unwrap().name,
            "renamed"
        );
    }

    #[tokio::test]
    async fn blobs_queue_and_secrets() {
        let blobs = MemoryBlobs::default();
        blobs
            .put("jobs/a/1", b"one".to_vec(), "text/plain")
            .await
            .unwrap();
        blobs.fail_next_puts_of("jobs/a/2", 1);
        blobs
            .put("jobs/b/1", b"x".to_vec(), "text/plain")
            .await
            .unwrap();
        assert!(blobs.put("jobs/a/2", b"two".to_vec(), "t").await.is_err());
        blobs
            .put("jobs/a/2", b"two".to_vec(), "application/json")
            .await
            .unwrap();
        assert_eq!(
            blobs.content_type("jobs/a/2").as_deref(),
            Some("application/json")
        );
        assert_eq!(blobs.delete_prefix("jobs/a/").await.unwrap(), 2);
        assert_eq!(blobs.keys(), ["jobs/b/1"]);
        assert_eq!(blobs.get("jobs/a/1").await.unwrap(), None);
        blobs.fail_next_puts(2);
        assert!(blobs.put("jobs/b/1", b"y".to_vec(), "t").await.is_err());
        assert!(blobs.put("jobs/c/1", b"z".to_vec(), "t").await.is_err());
        blobs.put("jobs/c/1", b"z".to_vec(), "t").await.unwrap();
        assert_eq!(blobs.get("jobs/b/1").await.unwrap().unwrap(), b"x", "kept");

        let queue = MemoryQueue::default();
        let message = |step| StepMessage {
            job_id: Uuid::nil(),
            step,
            context: vec![],
        };
        queue.fail_next_sends(1);
        assert!(queue.send(&message(0), QueueLane::Bulk).await.is_err());
        queue.send(&message(0), QueueLane::Bulk).await.unwrap();
        queue.send(&message(1), QueueLane::Urgent).await.unwrap();
        assert_eq!(queue.sent().len(), 2);
        assert_eq!(
            queue.drain(),
            [
                (message(0), QueueLane::Bulk),
                (message(1), QueueLane::Urgent)
            ]
        );
        assert!(queue.sent().is_empty());

        let secrets = MemorySecrets;
        let ciphertext = secrets.encrypt("sk-1").await.unwrap();
        assert!(!ciphertext.contains("sk-1"));
        assert_eq!(secrets.decrypt(&ciphertext).await.unwrap(), "sk-1");
        let foreign = base64::engine::general_purpose::STANDARD.encode("sk-1");
        assert_eq!(
            secrets.decrypt(&foreign).await.unwrap_err().operation,
            "decrypt secret"
        );
        assert!(secrets.decrypt("%%%").await.is_err());
    }

    #[tokio::test]
    async fn llm_answers_deterministically_and_follows_its_script() {
        let llm = MemoryLlm::default();
        let endpoint = Endpoint {
            base_url: "http://x".into(),
            api_key: None,
            provider_name: "p".into(),
        };
        let request = ChatRequest {
            model: "m".into(),
            messages: vec![
                ChatMessage::new("system", "be brief"),
                ChatMessage::new("user", "first line\nJohn : hello there\n"),
            ],
            temperature: 0.0,
            top_p: 1.0,
            max_tokens: 10,
        };
        let answer = llm.chat(&endpoint, &request).await.unwrap();
        assert_eq!(answer.content, "summary of 6 words: John : hello there");
        assert_eq!(answer.prompt_tokens, Some(8), "words of every message");
        assert_eq!(answer.completion_tokens, Some(8));
        assert_eq!(answer, MemoryLlm::answer_for(&request));

        let refused = LlmError::Status {
            status: 401,
            message: "no".into(),
            retry_after: None,
        };
        llm.fail_next(1, refused.clone());
        llm.respond_next(ChatCompletion {
            content: "scripted".into(),
            prompt_tokens: None,
            completion_tokens: None,
        });
        assert_eq!(llm.chat(&endpoint, &request).await.unwrap_err(), refused);
        assert_eq!(
            llm.chat(&endpoint, &request).await.unwrap().content,
            "scripted"
        );
        assert_eq!(llm.call_count(), 3);
        assert_eq!(llm.calls()[0].request, request);

        assert!(llm.models(&endpoint).await.unwrap().is_empty());
        llm.set_models(vec![json!({"id": "m"})]);
        assert_eq!(llm.models(&endpoint).await.unwrap(), [json!({"id": "m"})]);
    }

    #[tokio::test]
    async fn connections_and_notifier_drop_gone_connections_on_publish() {
        let memory = MemoryGateway::new();
        let update = job(
            Some("org"),
            "2026-01-01T00:00:00.000000Z",
            JobStatus::Processing,
        );
        let connections = memory.connections.as_ref();
        connections
            .subscribe("a", &Topic::Job(update.id), Some("org"))
            .await
            .unwrap();
        connections
            .subscribe("a", &Topic::Organization("org".into()), Some("other"))
            .await
            .unwrap();
        connections
            .subscribe("b", &Topic::Organization("org".into()), None)
            .await
            .unwrap();
        assert_eq!(
            connections.organization_of("a").await.unwrap(),
            Some(Some("org".into())),
            "the first subscription's organization is kept"
        );
        assert_eq!(connections.organization_of("b").await.unwrap(), Some(None));
        assert_eq!(connections.organization_of("c").await.unwrap(), None);

        memory.notifier.mark_gone("b");
        let report = publish(&memory.realtime, &update, &json!({"type": "job_update"}))
            .await
            .unwrap();
        assert_eq!((report.sent, report.gone), (1, 1));
        let posts = memory.notifier.posts();
        assert_eq!(posts.len(), 1, "a once, though it follows both topics");
        assert_eq!(posts[0].0, "a");
        assert_eq!(posts[0].1, br#"{"type":"job_update"}"#);
        assert_eq!(connections.organization_of("b").await.unwrap(), None);
        assert_eq!(
            connections
                .subscribers(&Topic::Organization("org".into()))
                .await
                .unwrap(),
            ["a"]
        );
        connections
            .unsubscribe("a", &Topic::Job(update.id))
            .await
            .unwrap();
        assert!(connections
            .subscribers(&Topic::Job(update.id))
            .await
            .unwrap()
            .is_empty());
        assert!(connections.organization_of("a").await.unwrap().is_some());
    }
}
