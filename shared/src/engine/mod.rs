//! The step engine: submission (execute), one step per queue message (worker), and the
//! job views returned by the API. Everything goes through the ports in [`crate::ports`].

mod breaker;
pub mod catalog;
pub mod chat;
#[cfg(feature = "documents")]
pub mod documents;
pub mod error;
pub mod execute;
pub mod health;
pub mod lifecycle;
pub mod notify;
mod recovery;
mod response;
pub mod sweeper;
pub mod turns;
pub mod versions;
pub mod views;
pub mod worker;

pub use response::{FileResponse, HttpBody, JsonResponse};

use std::sync::Arc;
use std::time::Duration;

use crate::llm::{Endpoint, LlmClient, RetryPolicy};
use crate::ports::{
    BlobStore, Breakers, Catalog, CatalogStore, IoResult, JobQueue, JobStore, Secrets, UsageStore,
};

/// The largest request body a REST function accepts. API Gateway sends every body
/// base64-encoded (the template declares `BinaryMediaTypes: */*` so that non-UTF-8 input
/// reaches the handler), and the event must stay under Lambda's synchronous request
/// payload of 6,291,556 bytes: 4,500,000 bytes encode to 6,000,000, which leaves room for
/// the headers and request context. Larger inputs go by `POST /api/v1/uploads`.
pub const MAX_REQUEST_BODY_BYTES: usize = 4_500_000;

/// Operational limits, from the environment with safe defaults.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted `input`, in bytes (`GATEWAY_MAX_INPUT_BYTES`; at most, and by
    /// default, [`MAX_REQUEST_BODY_BYTES`]).
    pub max_input_bytes: usize,
    /// Largest uploaded input (`POST /api/v1/uploads`, `GATEWAY_MAX_UPLOAD_BYTES`).
    pub max_upload_bytes: usize,
    /// Largest upload that execute reads and plans before answering; a larger one is
    /// planned by the job's first step, streamed from S3 (`GATEWAY_INLINE_PLAN_BYTES`).
    pub inline_plan_bytes: usize,
    /// How long an execution environment keeps provider and model records and decrypted
    /// provider keys (`GATEWAY_CATALOG_CACHE_SECS`; 0 turns the caches off).
    pub catalog_cache_ttl: Duration,
    /// LLM retries (`GATEWAY_LLM_MAX_ATTEMPTS`, `GATEWAY_LLM_BACKOFF_MS`, `GATEWAY_LLM_MAX_BACKOFF_MS`).
    pub retry: RetryPolicy,
    /// Per-attempt LLM timeout (`GATEWAY_LLM_TIMEOUT_SECS`).
    pub llm_timeout: Duration,
    /// Largest result returned inline by the job view; larger ones are given as a
    /// presigned URL so a response never nears Lambda's 6 MB limit
    /// (`GATEWAY_RESULT_INLINE_BYTES`).
    pub result_inline_bytes: usize,
    /// The longest a step may spend on its LLM call and in-call retries; below the worker
    /// timeout and the queues' visibility timeout (`GATEWAY_STEP_DEADLINE_SECS`).
    pub step_deadline: Duration,
    /// How long a step whose provider keeps failing for now (429, 5xx, timeouts, bad
    /// bodies) is retried before its job fails (`GATEWAY_STEP_PATIENCE_SECS`).
    pub step_patience: Duration,
    /// Back-off of a re-queued step: the first wait, doubled each time up to the
    /// largest (`GATEWAY_REQUEUE_BASE_MS`, `GATEWAY_REQUEUE_MAX_MS`).
    pub requeue_base: Duration,
    pub requeue_max: Duration,
    /// How often a running step records a heartbeat (`GATEWAY_HEARTBEAT_SECS`).
    pub heartbeat_every: Duration,
    /// A step whose heartbeat is older than this has lost its worker: the sweeper sends
    /// it again (`GATEWAY_SILENT_AFTER_SECS`).
    pub silent_after: Duration,
    /// A queued step that no worker picked up for this long is sent again (its message
    /// may be lost; `GATEWAY_LOST_AFTER_SECS`).
    pub lost_after: Duration,
    /// Re-sends of one step before its job fails as stalled (`GATEWAY_MAX_RESENDS`).
    pub max_resends: u32,
    /// A provider and model's circuit breaker opens after this many failed steps within
    /// the window, for the cool-down (`GATEWAY_BREAKER_FAILURES`,
    /// `GATEWAY_BREAKER_WINDOW_SECS`, `GATEWAY_BREAKER_COOL_DOWN_SECS`).
    pub breaker_failures: u32,
    pub breaker_window: Duration,
    pub breaker_cool_down: Duration,
    /// Active jobs an organization may have on its flavors' lanes; its further jobs run on
    /// the bulk lane (`GATEWAY_ORGANIZATION_SHARE`).
    pub organization_share: usize,
    /// The longest a chat answer may take to its first token, retries and failover
    /// included; then the client gets an error event (`GATEWAY_CHAT_FIRST_TOKEN_SECS`).
    pub chat_first_token: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_input_bytes: MAX_REQUEST_BODY_BYTES,
            max_upload_bytes: 200_000_000,
            inline_plan_bytes: 2_000_000,
            catalog_cache_ttl: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            llm_timeout: Duration::from_secs(120),
            result_inline_bytes: 1_000_000,
            step_deadline: Duration::from_secs(240),
            step_patience: Duration::from_secs(900),
            requeue_base: Duration::from_secs(5),
            requeue_max: Duration::from_secs(120),
            heartbeat_every: Duration::from_secs(15),
            silent_after: Duration::from_secs(60),
            lost_after: Duration::from_secs(1800),
            max_resends: 3,
            breaker_failures: 5,
            breaker_window: Duration::from_secs(60),
            breaker_cool_down: Duration::from_secs(30),
            organization_share: 20,
            chat_first_token: Duration::from_secs(60),
        }
    }
}

impl Limits {
    /// Reads the limits from the environment; unset or unparsable values keep defaults.
    pub fn from_env() -> Self {
        fn num(name: &str) -> Option<u64> {
            std::env::var(name).ok()?.trim().parse().ok()
        }
        let defaults = Limits::default();
        Limits {
            max_input_bytes: num("GATEWAY_MAX_INPUT_BYTES").map_or(defaults.max_input_bytes, |v| {
                (v as usize).min(MAX_REQUEST_BODY_BYTES)
            }),
            max_upload_bytes: num("GATEWAY_MAX_UPLOAD_BYTES")
                .map_or(defaults.max_upload_bytes, |v| v as usize),
            inline_plan_bytes: num("GATEWAY_INLINE_PLAN_BYTES")
                .map_or(defaults.inline_plan_bytes, |v| v as usize),
            catalog_cache_ttl: num("GATEWAY_CATALOG_CACHE_SECS")
                .map_or(defaults.catalog_cache_ttl, Duration::from_secs),
            retry: RetryPolicy {
                max_attempts: num("GATEWAY_LLM_MAX_ATTEMPTS")
                    .map_or(defaults.retry.max_attempts, |v| v.max(1) as u32),
                base_delay: num("GATEWAY_LLM_BACKOFF_MS")
                    .map_or(defaults.retry.base_delay, Duration::from_millis),
                max_delay: num("GATEWAY_LLM_MAX_BACKOFF_MS")
                    .map_or(defaults.retry.max_delay, Duration::from_millis),
            },
            llm_timeout: num("GATEWAY_LLM_TIMEOUT_SECS")
                .map_or(defaults.llm_timeout, Duration::from_secs),
            result_inline_bytes: num("GATEWAY_RESULT_INLINE_BYTES")
                .map_or(defaults.result_inline_bytes, |v| v as usize),
            step_deadline: num("GATEWAY_STEP_DEADLINE_SECS")
                .map_or(defaults.step_deadline, Duration::from_secs),
            step_patience: num("GATEWAY_STEP_PATIENCE_SECS")
                .map_or(defaults.step_patience, Duration::from_secs),
            requeue_base: num("GATEWAY_REQUEUE_BASE_MS")
                .map_or(defaults.requeue_base, Duration::from_millis),
            requeue_max: num("GATEWAY_REQUEUE_MAX_MS")
                .map_or(defaults.requeue_max, Duration::from_millis),
            heartbeat_every: num("GATEWAY_HEARTBEAT_SECS")
                .map_or(defaults.heartbeat_every, |v| Duration::from_secs(v.max(1))),
            silent_after: num("GATEWAY_SILENT_AFTER_SECS")
                .map_or(defaults.silent_after, Duration::from_secs),
            lost_after: num("GATEWAY_LOST_AFTER_SECS")
                .map_or(defaults.lost_after, Duration::from_secs),
            max_resends: num("GATEWAY_MAX_RESENDS").map_or(defaults.max_resends, |v| v as u32),
            breaker_failures: num("GATEWAY_BREAKER_FAILURES")
                .map_or(defaults.breaker_failures, |v| v.max(1) as u32),
            breaker_window: num("GATEWAY_BREAKER_WINDOW_SECS")
                .map_or(defaults.breaker_window, Duration::from_secs),
            breaker_cool_down: num("GATEWAY_BREAKER_COOL_DOWN_SECS")
                .map_or(defaults.breaker_cool_down, Duration::from_secs),
            organization_share: num("GATEWAY_ORGANIZATION_SHARE")
                .map_or(defaults.organization_share, |v| v.max(1) as usize),
            chat_first_token: num("GATEWAY_CHAT_FIRST_TOKEN_SECS")
                .map_or(defaults.chat_first_token, |v| Duration::from_secs(v.max(1))),
        }
    }
}

/// All ports the engine uses; built once per execution environment.
#[derive(Clone)]
pub struct Gateway {
    pub jobs: Arc<dyn JobStore>,
    pub catalog: Arc<dyn Catalog>,
    /// The catalog's records, for the catalog API.
    pub records: Arc<dyn CatalogStore>,
    pub blobs: Arc<dyn BlobStore>,
    /// Circuit breakers per provider and model, shared by every worker.
    pub breakers: Arc<dyn Breakers>,
    /// Usage aggregates and records (analytics), kept from the jobs stream.
    pub usage: Arc<dyn UsageStore>,
    pub queue: Arc<dyn JobQueue>,
    pub secrets: Arc<dyn Secrets>,
    pub llm: Arc<dyn LlmClient>,
    pub limits: Limits,
}

impl Gateway {
    /// The endpoint of a provider, its API key decrypted with KMS (kept in memory only).
    pub async fn endpoint_of(&self, provider: crate::domain::Provider) -> IoResult<Endpoint> {
        let api_key = match &provider.api_key_ciphertext {
            Some(ciphertext) => Some(self.secrets.decrypt(ciphertext).await?),
            None => None,
        };
        Ok(Endpoint {
            base_url: provider.api_base_url,
            api_key,
            provider_name: provider.name,
        })
    }
}
