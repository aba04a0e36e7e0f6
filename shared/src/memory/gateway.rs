//! The engine's gateway over the fakes, and the catalog seed tests use.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use crate::domain::{
    now_timestamp, Flavor, Job, JobStatus, Model, Provider, QueueLane, Service, StepMessage,
};
use crate::engine::catalog::entity::{commit, create_writes, Entity};
use crate::engine::error::EngineError;
use crate::engine::execute::{submit, ExecuteRequest};
use crate::engine::notify::Realtime;
use crate::engine::worker::{process_step, StepOutcome};
use crate::engine::{Gateway, Limits};
use crate::llm::RetryPolicy;
use crate::ports::Secrets;

use super::catalog::MemoryCatalog;
use super::jobs::MemoryJobStore;
use super::llm::MemoryLlm;
use super::realtime::{MemoryConnections, MemoryNotifier};
use super::stores::{MemoryBlobs, MemoryBreakers, MemoryQueue, MemorySecrets};
use super::usage::MemoryUsage;

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
        step_deadline: Duration::from_secs(10),
        step_patience: Duration::from_secs(60),
        requeue_base: Duration::from_millis(10),
        requeue_max: Duration::from_millis(80),
        ..Limits::default()
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
    /// `gateway.usage`.
    pub usage: Arc<MemoryUsage>,
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
        let secrets = Arc::new(MemorySecrets::default());
        let llm = Arc::new(MemoryLlm::default());
        let usage = Arc::new(MemoryUsage::default());
        let connections = Arc::new(MemoryConnections::default());
        let notifier = Arc::new(MemoryNotifier::default());
        MemoryGateway {
            gateway: Gateway {
                jobs: jobs.clone(),
                catalog: catalog.clone(),
                records: catalog.clone(),
                blobs: blobs.clone(),
                breakers: Arc::new(MemoryBreakers::default()),
                usage: usage.clone(),
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
            usage,
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
            ..Default::default()
        };
        submit(&self.gateway, flavor.service_id, request).await
    }

    /// Delivers queued messages to the worker until the queue is empty; every message,
    /// its lane and outcome, in order.
    pub async fn run_queue(&self) -> Vec<(StepMessage, QueueLane, StepOutcome)> {
        self.run_queue_with(Vec::new()).await
    }

    /// [`Self::run_queue`], delivering `first` (messages taken from the queue before)
    /// ahead of what is queued.
    pub async fn run_queue_with(
        &self,
        first: Vec<StepMessage>,
    ) -> Vec<(StepMessage, QueueLane, StepOutcome)> {
        let mut delivered = Vec::new();
        let mut first: Vec<(StepMessage, QueueLane)> = first
            .into_iter()
            .map(|message| (message, QueueLane::Standard))
            .collect();
        for _ in 0..50 {
            let mut sent = std::mem::take(&mut first);
            sent.extend(self.queue.drain());
            if sent.is_empty() {
                return delivered;
            }
            for (message, lane) in sent {
                let outcome = process_step(&self.gateway, &message)
                    .await
                    .expect("step processed");
                delivered.push((message, lane, outcome));
            }
        }
        panic!("the queue never drained");
    }
}

/// A job record for tests of code that only reads jobs: single pass, one turn, created
/// at `created_at`, with `status`; adjust the fields a test needs.
pub fn sample_job(status: JobStatus, created_at: &str) -> Job {
    serde_json::from_value(json!({
        "id": Uuid::new_v4(),
        "service_id": Uuid::nil(), "service_name": "summarize",
        "flavor_id": Uuid::nil(), "flavor_name": "single-pass",
        "status": status, "processing_mode": "single_pass",
        "created_at": created_at, "updated_at": created_at,
        "input_tokens": 1, "input_chars": 1, "context_available": 100,
        "settings": {
            "provider_id": Uuid::nil(), "provider_name": "p", "model_identifier": "m",
            "context_length": 1000, "max_generation_length": 100, "tokenizer": "cl100k_base",
            "temperature": 0.2, "top_p": 0.9, "prompt_user_content": "{}",
            "create_new_turn_after": 500, "summary_turns": 3, "max_new_turns": 10,
            "prompt_tokens": 1
        },
        "progress": {"step": 0, "cursor": 0, "total_turns": 1, "total_batches": 1},
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "duration_ms": 0, "passes": 0}
    }))
    .expect("a valid job")
}
