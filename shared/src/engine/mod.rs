//! The step engine: submission (execute), one step per queue message (worker), and the
//! job views returned by the API. Everything goes through the ports in [`crate::ports`].

pub mod catalog;
pub mod error;
pub mod execute;
pub mod health;
pub mod lifecycle;
pub mod notify;
mod response;
pub mod versions;
pub mod views;
pub mod worker;

pub use response::JsonResponse;

use std::sync::Arc;
use std::time::Duration;

use crate::llm::{Endpoint, LlmClient, RetryPolicy};
use crate::ports::{BlobStore, Catalog, CatalogStore, IoResult, JobQueue, JobStore, Secrets};

/// Operational limits, from the environment with safe defaults.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted `input`, in bytes (`GATEWAY_MAX_INPUT_BYTES`).
    pub max_input_bytes: usize,
    /// LLM retries (`GATEWAY_LLM_MAX_ATTEMPTS`, `GATEWAY_LLM_BACKOFF_MS`, `GATEWAY_LLM_MAX_BACKOFF_MS`).
    pub retry: RetryPolicy,
    /// Per-attempt LLM timeout (`GATEWAY_LLM_TIMEOUT_SECS`).
    pub llm_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_input_bytes: 5_000_000,
            retry: RetryPolicy::default(),
            llm_timeout: Duration::from_secs(120),
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
            max_input_bytes: num("GATEWAY_MAX_INPUT_BYTES")
                .map_or(defaults.max_input_bytes, |v| v as usize),
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
