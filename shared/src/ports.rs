//! Traits at the I/O edges of the core. Each has one AWS implementation in [`crate::aws`];
//! tests use the same implementations against the emulator.

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::{
    Flavor, Job, JobStatus, JobUsage, Model, Provider, QueueLane, Service, StepMessage, UsageCounts,
};

/// A storage or transport failure (always worth a retry, never the caller's fault).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} failed: {message}")]
pub struct IoError {
    pub operation: &'static str,
    pub message: String,
}

impl IoError {
    /// Wraps any displayable error with the operation that failed.
    pub fn new(operation: &'static str, error: impl std::fmt::Display) -> Self {
        IoError {
            operation,
            message: error.to_string(),
        }
    }
}

/// Result of storage operations.
pub type IoResult<T> = Result<T, IoError>;

/// Filter and page of a job listing.
#[derive(Debug, Clone, Default)]
pub struct JobQuery {
    pub organization_id: Option<String>,
    pub service_id: Option<Uuid>,
    pub status: Option<JobStatus>,
    pub page_size: usize,
    /// Opaque cursor from a previous page.
    pub cursor: Option<String>,
}

/// One page of jobs, newest first.
#[derive(Debug, Clone)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    pub next_cursor: Option<String>,
}

/// Why a job listing failed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The cursor is not one a previous page returned.
    #[error("the cursor is not one this API returned")]
    InvalidCursor,
    #[error(transparent)]
    Io(#[from] IoError),
}

/// Job records.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Writes a new job; fails if the id exists.
    async fn create(&self, job: &Job) -> IoResult<()>;
    /// Reads a job.
    async fn get(&self, id: Uuid) -> IoResult<Option<Job>>;
    /// Replaces a job if it is still at `expected_step` and not terminal. Returns false
    /// when the condition does not hold (another delivery got there first).
    async fn replace(&self, job: &Job, expected_step: u32) -> IoResult<bool>;
    /// Replaces a completed job (its result versions) if it is still completed and its
    /// `updated_at` is still `expected_updated_at`. Returns false when the condition does
    /// not hold (another change got there first, or the job is gone).
    async fn replace_completed(&self, job: &Job, expected_updated_at: &str) -> IoResult<bool>;
    /// Lists jobs newest first.
    async fn list(&self, query: &JobQuery) -> Result<JobPage, ListError>;
    /// Deletes a job record if it is terminal; returns false when it is not (or is gone).
    async fn delete_terminal(&self, id: Uuid) -> IoResult<bool>;
    /// Records that a worker runs step `step` now: sets `heartbeat_at` and `updated_at`
    /// to `at` if the job is still at that step and queued or processing (false if not).
    async fn heartbeat(&self, id: Uuid, step: u32, at: &str) -> IoResult<bool>;
    /// Queued and processing jobs last updated before `before`, oldest first, at most
    /// `limit` (what the sweeper looks at).
    async fn stale_active(&self, before: &str, limit: usize) -> IoResult<Vec<Job>>;
    /// Jobs whose `expires_at` (epoch seconds) is before `now`, at most `limit`.
    async fn expired(&self, now: i64, limit: usize) -> IoResult<Vec<Job>>;
    /// How many jobs of the organization are queued or processing, counted up to `up_to`.
    async fn active_count(&self, organization_id: Option<&str>, up_to: usize) -> IoResult<usize>;
}

/// Catalog reads (services, flavors, models, providers).
#[async_trait]
pub trait Catalog: Send + Sync {
    async fn service(&self, id: Uuid) -> IoResult<Option<Service>>;
    /// A flavor of this service (None when it belongs to another service).
    async fn flavor(&self, service_id: Uuid, flavor_id: Uuid) -> IoResult<Option<Flavor>>;
    async fn flavors(&self, service_id: Uuid) -> IoResult<Vec<Flavor>>;
    async fn model(&self, id: Uuid) -> IoResult<Option<Model>>;
    async fn provider(&self, id: Uuid) -> IoResult<Option<Provider>>;
}

/// Kinds of catalog records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    Provider,
    Model,
    Prompt,
    PromptType,
    ServiceType,
    Service,
    /// Stored under its service (the record's `parent`).
    Flavor,
    Preset,
    /// A Word template for exports (its file is in the blob store).
    DocumentTemplate,
}

impl RecordKind {
    /// The stored tag (`kind` attribute and key prefix).
    pub fn tag(self) -> &'static str {
        match self {
            RecordKind::Provider => "PROVIDER",
            RecordKind::Model => "MODEL",
            RecordKind::Prompt => "PROMPT",
            RecordKind::PromptType => "PROMPT_TYPE",
            RecordKind::ServiceType => "SERVICE_TYPE",
            RecordKind::Service => "SERVICE",
            RecordKind::Flavor => "FLAVOR",
            RecordKind::Preset => "PRESET",
            RecordKind::DocumentTemplate => "DOCUMENT_TEMPLATE",
        }
    }
}

/// One catalog record: its kind, id, parent (a flavor's service) and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub kind: RecordKind,
    pub id: Uuid,
    pub parent: Option<Uuid>,
    pub body: serde_json::Value,
}

/// What a put expects of the stored record.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// The record must not exist yet.
    New,
    /// The record must still have this `updated_at` (optimistic concurrency).
    UpdatedAt(String),
}

/// One write of an atomic catalog change.
#[derive(Debug, Clone, PartialEq)]
pub enum CatalogWrite {
    Put {
        record: Record,
        expect: Expect,
    },
    Delete {
        kind: RecordKind,
        id: Uuid,
        parent: Option<Uuid>,
    },
    /// Reserves a unique key (e.g. a name within its scope) for `owner`; fails with
    /// [`WriteError::Taken`] when another owner holds it.
    Claim {
        key: String,
        owner: Uuid,
    },
    /// Frees a unique key.
    Release {
        key: String,
    },
    /// Hands a unique key from `from` (None: nobody holds it) to `to`; fails with
    /// [`WriteError::Taken`] when someone else holds it by then.
    Transfer {
        key: String,
        from: Option<Uuid>,
        to: Uuid,
    },
}

/// Why an atomic catalog change was refused.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("unique key {0} is taken")]
    Taken(String),
    #[error("the record changed concurrently")]
    Stale,
    #[error(transparent)]
    Io(#[from] IoError),
}

/// Catalog records for the catalog API: typed reads for the job engine are [`Catalog`].
#[async_trait]
pub trait CatalogStore: Send + Sync {
    /// A record by kind and id (flavors by id alone).
    async fn record(&self, kind: RecordKind, id: Uuid) -> IoResult<Option<Record>>;
    /// Every record of a kind.
    async fn records(&self, kind: RecordKind) -> IoResult<Vec<Record>>;
    /// Applies the writes atomically (all or none).
    async fn write(&self, writes: Vec<CatalogWrite>) -> Result<(), WriteError>;
}

/// Usage analytics kept from the jobs stream: aggregates per organization, service, flavor,
/// hour and day, and a record per finished job (`domain::usage`).
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Applies a finished job's [`JobUsage::entries`] atomically and once: `false` (and
    /// nothing written) when this job was counted before, so a replayed stream record
    /// counts once.
    async fn record(&self, usage: &JobUsage) -> IoResult<bool>;
    /// The aggregates of `series` whose bucket is in `from..=to`, in bucket order.
    async fn aggregates(
        &self,
        series: &str,
        from: &str,
        to: &str,
    ) -> IoResult<Vec<(String, UsageCounts)>>;
    /// The job records of `series` whose bucket is at least `since` (all without it),
    /// newest first, at most `limit`.
    async fn records(
        &self,
        series: &str,
        since: Option<&str>,
        limit: usize,
    ) -> IoResult<Vec<JobUsage>>;
    /// How many job records of `series` have a bucket at least `since`.
    async fn count_records(&self, series: &str, since: Option<&str>) -> IoResult<u64>;
}

/// Large text and artefacts, by key.
#[async_trait]
pub trait BlobStore: Send + Sync {
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> IoResult<()>;
    /// None when the key does not exist.
    async fn get(&self, key: &str) -> IoResult<Option<Vec<u8>>>;
    /// Up to `len` bytes from `offset` (fewer at the end of the object, none past it);
    /// None when the key does not exist. How large objects are read in pieces.
    async fn get_range(&self, key: &str, offset: u64, len: u64) -> IoResult<Option<Vec<u8>>>;
    /// The object's size in bytes; None when the key does not exist.
    async fn size(&self, key: &str) -> IoResult<Option<u64>>;
    /// Copies an object inside the store (no bytes travel through the caller).
    async fn copy(&self, from: &str, to: &str) -> IoResult<()>;
    /// Deletes one object (a missing key is not an error).
    async fn delete(&self, key: &str) -> IoResult<()>;
    /// Deletes every object whose key starts with `prefix`; returns how many.
    async fn delete_prefix(&self, prefix: &str) -> IoResult<usize>;
    /// Every object whose key starts with `prefix`, with its size, in key order.
    async fn list(&self, prefix: &str) -> IoResult<Vec<(String, u64)>>;
    /// A URL that reads the object without credentials until `expires_in` has passed.
    async fn presigned_get(&self, key: &str, expires_in: std::time::Duration) -> IoResult<String>;
    /// A URL that writes the object (HTTP PUT) without credentials until `expires_in`.
    async fn presigned_put(&self, key: &str, expires_in: std::time::Duration) -> IoResult<String>;
}

/// The job step queues (FIFO per job), one per priority lane.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Enqueues one step of a job on the job's lane.
    async fn send(&self, message: &StepMessage, lane: QueueLane) -> IoResult<()>;
    /// About how many messages wait on a lane (a read that proves the queue answers).
    async fn pending(&self, lane: QueueLane) -> IoResult<u64>;
    /// Makes a received message (by its receipt handle) visible again after `delay`
    /// instead of its visibility timeout: how a step is retried later.
    async fn postpone(
        &self,
        lane: QueueLane,
        receipt_handle: &str,
        delay: std::time::Duration,
    ) -> IoResult<()>;
}

/// Circuit breakers shared by every worker, one per provider and model (`key`). Times
/// are RFC 3339 UTC with microseconds, which compare as text.
#[async_trait]
pub trait Breakers: Send + Sync {
    /// Until when the breaker of `key` was opened, if it was.
    async fn open_until(&self, key: &str) -> IoResult<Option<String>>;
    /// Counts a failure at `now` in the current window (a window that started before
    /// `window_cutoff` is over: a new one starts at `now`); returns the window's count.
    async fn record_failure(&self, key: &str, now: &str, window_cutoff: &str) -> IoResult<u32>;
    /// Opens the breaker until `until`.
    async fn open(&self, key: &str, until: &str) -> IoResult<()>;
    /// Claims the half-open probe: moves `open_until` from `seen` to `lease` if no other
    /// worker did first. True for the one caller that won.
    async fn claim_probe(&self, key: &str, seen: &str, lease: &str) -> IoResult<bool>;
    /// Closes the breaker and forgets its failures.
    async fn close(&self, key: &str) -> IoResult<()>;
}

/// Decrypts provider secrets.
#[async_trait]
pub trait Secrets: Send + Sync {
    /// Decrypts base64 ciphertext into the secret.
    async fn decrypt(&self, ciphertext_b64: &str) -> IoResult<String>;
    /// Encrypts a secret into base64 ciphertext.
    async fn encrypt(&self, secret: &str) -> IoResult<String>;
}

/// Keys of a job's objects in the blob store, all derived from the job id.
pub mod keys {
    use uuid::Uuid;

    /// Prefix of the HuggingFace tokenizer files ([`tokenizer`]).
    pub const TOKENIZERS_PREFIX: &str = "tokenizers/";

    /// Prefix of every object of a job.
    pub fn job_prefix(job: Uuid) -> String {
        format!("jobs/{job}/")
    }
    /// The raw input text.
    pub fn input(job: Uuid) -> String {
        format!("jobs/{job}/input.txt")
    }
    /// Page `page` of the normalised turns of revision `revision` (JSON). Revision 0 is
    /// cut at planning; a failover to another model writes the next revision (the turns
    /// not done yet, cut again for the new model).
    pub fn turn_page(job: Uuid, revision: u32, page: u32) -> String {
        format!("jobs/{job}/turns/{revision:02}/{page:06}.json")
    }
    /// The output of one step (JSON), written once.
    pub fn step(job: Uuid, step: u32) -> String {
        format!("jobs/{job}/steps/{step:06}.json")
    }
    /// The final result text (version 1: the job's own output).
    pub fn result(job: Uuid) -> String {
        format!("jobs/{job}/result/v1.txt")
    }
    /// The input of one reduce call: group `group` of reduce level `level` (text).
    pub fn reduce_input(job: Uuid, level: u32, group: u32) -> String {
        format!("jobs/{job}/reduce/{level:02}/{group:06}.txt")
    }
    /// An edited version of the result (text). `token` makes the key unique per write, so
    /// two concurrent edits never overwrite each other's content.
    pub fn result_version(job: Uuid, version: u32, token: Uuid) -> String {
        format!("jobs/{job}/result/v{version}-{token}.txt")
    }
    /// The per-pass token metrics of a completed job (JSON).
    pub fn metrics(job: Uuid) -> String {
        format!("jobs/{job}/metrics.json")
    }
    /// What is known of an upload: its organization and lifetime (JSON).
    pub fn upload_meta(upload: Uuid) -> String {
        format!("uploads/{upload}/meta.json")
    }
    /// The uploaded file itself, written by the client through a presigned URL.
    pub fn upload_data(upload: Uuid) -> String {
        format!("uploads/{upload}/data")
    }
    /// A result-cache entry: the completed job answering a cache key (JSON).
    pub fn cache_entry(key: &str) -> String {
        format!("cache/{key}.json")
    }
    /// A HuggingFace `tokenizer.json` by repo id (`owner/name`), which the counting of
    /// every function loads from here (never from HuggingFace at run time).
    pub fn tokenizer(repo: &str) -> String {
        format!(
            "{TOKENIZERS_PREFIX}{}/tokenizer.json",
            repo.replacen('/', "--", 1)
        )
    }
    /// The `.docx` file of a document template.
    pub fn template(template: Uuid) -> String {
        format!("templates/{template}.docx")
    }
    /// An export of a job's result delivered by URL (`file_name` is already safe). The
    /// bucket expires `exports/` after a day.
    pub fn export(job: Uuid, token: Uuid, file_name: &str) -> String {
        format!("exports/{job}/{token}/{file_name}")
    }
}

/// What a WebSocket connection follows: one job, or every job of an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic {
    Job(Uuid),
    Organization(String),
}

impl Topic {
    /// The stored form (`job#<id>`, `org#<id>`).
    pub fn key(&self) -> String {
        match self {
            Topic::Job(id) => format!("job#{id}"),
            Topic::Organization(org) => format!("org#{org}"),
        }
    }
}

/// WebSocket subscriptions (connection id × topic), expiring with API Gateway's 2-hour
/// connection limit.
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Records that `connection_id` follows `topic`.
    async fn subscribe(
        &self,
        connection_id: &str,
        topic: &Topic,
        organization_id: Option<&str>,
    ) -> IoResult<()>;
    /// Stops following `topic`.
    async fn unsubscribe(&self, connection_id: &str, topic: &Topic) -> IoResult<()>;
    /// Forgets the connection and all its subscriptions.
    async fn remove(&self, connection_id: &str) -> IoResult<()>;
    /// Connections following `topic`.
    async fn subscribers(&self, topic: &Topic) -> IoResult<Vec<String>>;
    /// The organization a connection gave when it connected (None: no org, or unknown).
    async fn organization_of(&self, connection_id: &str) -> IoResult<Option<Option<String>>>;
}

/// Whether a message reached its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// The connection no longer exists (HTTP 410).
    Gone,
}

/// Posts messages to WebSocket connections (API Gateway management API).
#[async_trait]
pub trait Notifier: Send + Sync {
    async fn post(&self, connection_id: &str, payload: &[u8]) -> IoResult<Delivery>;
}
