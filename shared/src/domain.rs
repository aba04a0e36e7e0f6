//! Domain types: catalog entities (provider, model, service, flavor), jobs and their
//! progress and metrics, and the queue message of one job step.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::postprocess::categorization::CategorizationContext;
use crate::text::batching::BatchBudget;

/// Chunk size (tokens) above which a turn is split when a flavor leaves it unset.
pub const DEFAULT_CREATE_NEW_TURN_AFTER: u32 = 500;
/// Output lines carried as rolling context when a flavor leaves it unset.
pub const DEFAULT_SUMMARY_TURNS: u32 = 3;
/// New turns per batch when a flavor leaves it unset.
pub const DEFAULT_MAX_NEW_TURNS: u32 = 10;

/// An OpenAI-compatible endpoint. The API key is stored KMS-encrypted, never in clear.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Provider {
    pub id: Uuid,
    pub name: String,
    #[serde(default = "default_provider_type")]
    pub provider_type: String,
    pub api_base_url: String,
    /// Base64 KMS ciphertext of the API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_ciphertext: Option<String>,
    /// 0 public, 1 internal (default), 2 sensitive.
    #[serde(default = "default_security_level")]
    pub security_level: u8,
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    #[serde(default)]
    pub organization_id: Option<String>,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
}

fn default_provider_type() -> String {
    "openai_compatible".to_string()
}

fn default_security_level() -> u8 {
    1
}

/// An empty JSON object (default of `metadata` fields).
pub fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// A model served by a provider, with its limits and prices.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Model {
    pub id: Uuid,
    pub provider_id: Uuid,
    pub model_name: String,
    /// Sent to the provider as `model`.
    pub model_identifier: String,
    pub context_length: u32,
    pub max_generation_length: u32,
    #[serde(default)]
    pub tokenizer_class: Option<String>,
    #[serde(default)]
    pub tokenizer_name: Option<String>,
    #[serde(default = "yes")]
    pub is_active: bool,
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    #[serde(default)]
    pub huggingface_repo: Option<String>,
    #[serde(default)]
    pub security_level: Option<u8>,
    #[serde(default)]
    pub deployment_name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub best_use: Option<String>,
    #[serde(default)]
    pub usage_type: Option<String>,
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// Price per million input (prompt) tokens, in the account's currency.
    #[serde(default)]
    pub input_price_per_million: Option<f64>,
    /// Price per million output (completion) tokens.
    #[serde(default)]
    pub output_price_per_million: Option<f64>,
    #[serde(default = "unknown_health")]
    pub health_status: String,
    #[serde(default)]
    pub health_checked_at: Option<String>,
    #[serde(default)]
    pub health_error: Option<String>,
    /// The provider's organization (models follow their provider's tenancy).
    #[serde(default)]
    pub organization_id: Option<String>,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
}

fn unknown_health() -> String {
    "unknown".to_string()
}

/// A document service (e.g. "summarize"); global when `organization_id` is unset.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Service {
    pub id: Uuid,
    pub name: String,
    /// URL-friendly name, unique per organization (defaults from the name).
    #[serde(default)]
    pub route: String,
    pub service_type: String,
    #[serde(default)]
    pub organization_id: Option<String>,
    #[serde(default = "yes")]
    pub is_active: bool,
    /// Free text or translations (`{"en": ..., "fr": ...}`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub description: Option<serde_json::Value>,
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    #[serde(default)]
    pub service_category: Option<String>,
    #[serde(default)]
    pub default_template_id: Option<Uuid>,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
}

fn yes() -> bool {
    true
}

/// How a job walks through its input.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProcessingMode {
    /// The whole input in one call (one `{}` in the prompt).
    SinglePass,
    /// Batches of turns with rolling context (two `{}`: summary so far, new turns).
    Iterative,
}

impl ProcessingMode {
    /// Placeholders the user prompt must have in this mode.
    pub fn required_placeholders(self) -> usize {
        match self {
            ProcessingMode::SinglePass => 1,
            ProcessingMode::Iterative => 2,
        }
    }
}

/// A configured way of running a service: model, sampling, prompts, chunking, queue
/// priority, fallback and failover. Field names and defaults are the reference's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Flavor {
    pub id: Uuid,
    pub service_id: Uuid,
    pub name: String,
    pub model_id: Uuid,
    #[serde(default)]
    pub is_default: bool,
    #[serde(default = "yes")]
    pub is_active: bool,
    #[serde(default)]
    pub description: Option<String>,
    pub temperature: f64,
    #[serde(default = "default_top_p")]
    pub top_p: f64,
    #[serde(default)]
    pub frequency_penalty: f64,
    #[serde(default)]
    pub presence_penalty: f64,
    #[serde(default)]
    pub stop_sequences: Vec<String>,
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub custom_params: serde_json::Value,
    #[serde(default)]
    pub max_concurrent_requests: Option<u32>,
    #[serde(default = "default_output_type")]
    pub output_type: String,
    #[serde(default = "default_processing_mode")]
    pub processing_mode: ProcessingMode,
    #[serde(default)]
    pub create_new_turn_after: Option<u32>,
    #[serde(default)]
    pub summary_turns: Option<u32>,
    #[serde(default)]
    pub max_new_turns: Option<u32>,
    #[serde(default)]
    pub reduce_summary: bool,
    #[serde(default)]
    pub consolidate_summary: bool,
    #[serde(default)]
    pub prompt_user_content: String,
    #[serde(default)]
    pub prompt_system_content: Option<String>,
    #[serde(default)]
    pub prompt_reduce_content: Option<String>,
    #[serde(default, alias = "system_prompt_template_id")]
    pub system_prompt_id: Option<Uuid>,
    #[serde(default)]
    pub user_prompt_template_id: Option<Uuid>,
    #[serde(default, alias = "reduce_prompt_template_id")]
    pub reduce_prompt_id: Option<Uuid>,
    #[serde(default)]
    pub tokenizer_override: Option<String>,
    #[serde(default)]
    pub estimated_cost_per_1k_tokens: Option<f64>,
    #[serde(default)]
    pub default_ttl_seconds: Option<u32>,
    /// Queue priority, 0 (most urgent) to 9; see [`QueueLane`].
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// Flavor used when the input does not fit a single pass (may be another service's).
    #[serde(default)]
    pub fallback_flavor_id: Option<Uuid>,
    #[serde(default)]
    pub failover_flavor_id: Option<Uuid>,
    #[serde(default)]
    pub failover_enabled: bool,
    #[serde(default = "yes")]
    pub failover_on_timeout: bool,
    #[serde(default = "yes")]
    pub failover_on_rate_limit: bool,
    #[serde(default = "yes")]
    pub failover_on_model_error: bool,
    #[serde(default)]
    pub failover_on_content_filter: bool,
    #[serde(default = "default_max_failover_depth")]
    pub max_failover_depth: u8,
    /// When a single-pass input does not fit and no `fallback_flavor_id` takes it, run
    /// it on an active iterative flavor of the same service instead of refusing it.
    #[serde(default = "yes")]
    pub auto_fallback_to_iterative: bool,
    #[serde(default)]
    pub placeholder_extraction_prompt_id: Option<Uuid>,
    #[serde(default)]
    pub categorization_prompt_id: Option<Uuid>,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
}

fn default_output_type() -> String {
    "text".to_string()
}

fn default_processing_mode() -> ProcessingMode {
    ProcessingMode::Iterative
}

fn default_max_failover_depth() -> u8 {
    3
}

fn default_top_p() -> f64 {
    0.9
}

/// Priority of a flavor that leaves it unset (the reference's default).
pub const DEFAULT_PRIORITY: u8 = 5;

fn default_priority() -> u8 {
    DEFAULT_PRIORITY
}

/// The job queue a job's steps travel on. SQS has no message priority, so priorities are
/// served by separate queues ("lanes"): a consumer takes work from a more urgent lane
/// first (locally, strictly), and on AWS each lane has its own event source mapping, so
/// urgent work never waits behind a backlog of bulk jobs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum QueueLane {
    /// Priorities 0–2.
    Urgent,
    /// Priorities 3–6 (the default 5 included).
    Standard,
    /// Priorities 7–9.
    Bulk,
}

impl QueueLane {
    /// Every lane, most urgent first.
    pub const ALL: [QueueLane; 3] = [QueueLane::Urgent, QueueLane::Standard, QueueLane::Bulk];

    /// The lane's name as serialized (`"urgent"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            QueueLane::Urgent => "urgent",
            QueueLane::Standard => "standard",
            QueueLane::Bulk => "bulk",
        }
    }

    /// The lane of a flavor priority (0 = most urgent; values above 9 count as 9).
    pub fn for_priority(priority: u8) -> Self {
        match priority {
            0..=2 => QueueLane::Urgent,
            3..=6 => QueueLane::Standard,
            _ => QueueLane::Bulk,
        }
    }
}

/// Lifecycle of a job.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Processing,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    /// Completed, failed and cancelled jobs never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    /// The status as stored and returned (`"queued"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Processing => "processing",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a status name.
    pub fn parse(value: &str) -> Option<Self> {
        [
            JobStatus::Queued,
            JobStatus::Processing,
            JobStatus::Completed,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == value)
    }
}

/// Everything a job needs to run, frozen at submission so catalog edits never change a
/// running job.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct JobSettings {
    pub provider_id: Uuid,
    pub provider_name: String,
    pub model_identifier: String,
    pub context_length: u32,
    pub max_generation_length: u32,
    pub tokenizer: String,
    pub temperature: f32,
    pub top_p: f32,
    pub prompt_user_content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_system_content: Option<String>,
    pub create_new_turn_after: u32,
    pub summary_turns: u32,
    pub max_new_turns: u32,
    /// Tokens of the user prompt template without placeholders (plus the system prompt).
    pub prompt_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_cost_per_1k_tokens: Option<f64>,
    /// The flavor's priority at submission (0 = most urgent).
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// The model's prices per million input / output tokens, when the catalog has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_price_per_million: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_price_per_million: Option<f64>,
    /// The flavor's `output_type` (text, markdown, json), reported on the job.
    #[serde(default = "default_output_type")]
    pub output_type: String,
    /// The reduce prompt (one `{}`: the partial outputs), set when the job reduces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reduce_prompt: Option<String>,
    /// Tokens of the reduce prompt without its placeholder (plus the system prompt).
    #[serde(default)]
    pub reduce_prompt_tokens: u32,
    /// Merge consecutive lines of the same speaker in the final output.
    #[serde(default)]
    pub consolidate: bool,
    /// The extraction prompt, set when the job extracts fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extraction_prompt: Option<String>,
    /// The categorisation prompt, set when the job categorises.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categorization_prompt: Option<String>,
    /// Whether the flavor has an extraction prompt (reported as `has_extraction_prompt`).
    #[serde(default)]
    pub has_extraction_prompt: bool,
    /// Failover rules of the flavor now running the job.
    #[serde(default)]
    pub failover: FailoverPolicy,
}

impl From<&JobSettings> for BatchBudget {
    /// The token budget of the job's LLM calls.
    fn from(settings: &JobSettings) -> Self {
        BatchBudget {
            context_length: settings.context_length as usize,
            max_generation: settings.max_generation_length as usize,
            prompt_tokens: settings.prompt_tokens as usize,
            max_new_turns: settings.max_new_turns as usize,
        }
    }
}

impl JobSettings {
    /// Puts the job on `flavor`'s model and provider: sampling, limits, tokenizer and prices
    /// follow them, and the job's prompts are counted with `counter` (the new model's
    /// tokenizer). Used at submission and by a failover; the prompts stay the job's.
    pub fn run_on(
        &mut self,
        flavor: &Flavor,
        model: &Model,
        provider: &Provider,
        counter: &crate::tokens::TokenCounter,
    ) {
        self.provider_id = provider.id;
        self.provider_name = provider.name.clone();
        self.model_identifier = model.model_identifier.clone();
        self.context_length = model.context_length;
        self.max_generation_length = model.max_generation_length;
        self.tokenizer = counter.name().to_string();
        self.temperature = flavor.temperature as f32;
        self.top_p = flavor.top_p as f32;
        self.estimated_cost_per_1k_tokens = flavor.estimated_cost_per_1k_tokens;
        self.input_price_per_million = model.input_price_per_million;
        self.output_price_per_million = model.output_price_per_million;
        let system = self
            .prompt_system_content
            .as_deref()
            .map_or(0, |system| counter.count(system));
        let template = |prompt: &str| counter.count(&crate::text::prompt::template_text(prompt));
        self.prompt_tokens = (template(&self.prompt_user_content) + system) as u32;
        self.reduce_prompt_tokens =
            self.reduce_prompt
                .as_deref()
                .map_or(0, |reduce| template(reduce) + system) as u32;
    }

    /// Cost of some tokens: from the model's input and output prices when the catalog has
    /// them, else from the flavor's flat rate per 1k tokens; None without either (or
    /// without tokens).
    pub fn cost_of(&self, prompt_tokens: u64, completion_tokens: u64) -> Option<f64> {
        if prompt_tokens + completion_tokens == 0 {
            return None;
        }
        if let (Some(input), Some(output)) =
            (self.input_price_per_million, self.output_price_per_million)
        {
            return Some(round6(
                (prompt_tokens as f64 * input + completion_tokens as f64 * output) / 1_000_000.0,
            ));
        }
        let rate = self.estimated_cost_per_1k_tokens?;
        Some(round6(
            (prompt_tokens + completion_tokens) as f64 / 1000.0 * rate,
        ))
    }
}

/// The phases of a job, in the order they run. Each LLM call of a phase is one step.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The input, in one call or in batches of turns.
    #[default]
    Processing,
    /// Merging the batch outputs with the reduce prompt (iterative flavors).
    Reducing,
    /// Extracting named fields from the final output.
    Extracting,
    /// Matching the final output against the request's tags.
    Categorizing,
}

impl Phase {
    /// The phase's name as serialized (`"processing"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Processing => "processing",
            Phase::Reducing => "reducing",
            Phase::Extracting => "extracting",
            Phase::Categorizing => "categorizing",
        }
    }
}

/// One level of a hierarchical reduce: `groups` calls, at steps `first_step..`, each over
/// one group of the level's inputs (stored under [`crate::ports::keys::reduce_input`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReduceLevel {
    /// 0 reduces the processing outputs; level n + 1 reduces the answers of level n.
    pub level: u32,
    pub first_step: u32,
    pub groups: u32,
}

/// Why a provider call failed, as failover rules and job errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// No answer in time (client timeout or HTTP 408).
    Timeout,
    /// HTTP 429.
    RateLimit,
    /// HTTP 5xx (and 409).
    ServerError,
    /// HTTP 401/403: the key is refused.
    Auth,
    /// Refused by the provider's content filter.
    ContentFilter,
    /// The request does not fit the model (HTTP 413, or a 4xx saying so).
    ContextLength,
    /// Any other 4xx.
    BadRequest,
    /// No connection could be made.
    Unreachable,
    /// The provider answered 200 with a body that is not a chat completion.
    BadResponse,
}

impl FailureKind {
    /// Whether waiting may cure it (the step is retried later rather than failing the job).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            FailureKind::Timeout
                | FailureKind::RateLimit
                | FailureKind::ServerError
                | FailureKind::Unreachable
                | FailureKind::BadResponse
        )
    }

    /// The name used in failover records (`rate_limit`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::RateLimit => "rate_limit",
            FailureKind::ServerError => "server_error",
            FailureKind::Auth => "auth",
            FailureKind::ContentFilter => "content_filter",
            FailureKind::ContextLength => "context_length",
            FailureKind::BadRequest => "bad_request",
            FailureKind::Unreachable => "unreachable",
            FailureKind::BadResponse => "bad_response",
        }
    }

    /// The `error_code` of a job that fails with it.
    pub fn job_error_code(self) -> &'static str {
        match self {
            FailureKind::Timeout => "PROVIDER_TIMEOUT",
            FailureKind::RateLimit => "PROVIDER_RATE_LIMITED",
            FailureKind::ServerError => "PROVIDER_ERROR",
            FailureKind::Auth => "PROVIDER_AUTH_FAILED",
            FailureKind::ContentFilter => "PROVIDER_CONTENT_FILTERED",
            FailureKind::ContextLength => "PROVIDER_CONTEXT_LENGTH",
            FailureKind::BadRequest => "PROVIDER_BAD_REQUEST",
            FailureKind::Unreachable => "PROVIDER_UNREACHABLE",
            FailureKind::BadResponse => "PROVIDER_BAD_RESPONSE",
        }
    }
}

/// What a flavor says about failing over to another flavor when its provider fails,
/// frozen into the job (the reference's `failover_*` fields).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct FailoverPolicy {
    pub enabled: bool,
    pub target: Option<Uuid>,
    pub on_timeout: bool,
    pub on_rate_limit: bool,
    /// Server errors, bad answers, unreachable providers, refused keys, context length.
    pub on_model_error: bool,
    pub on_content_filter: bool,
    /// Most hops a job may make (the original flavor's `max_failover_depth`).
    pub max_depth: u8,
}

impl FailoverPolicy {
    /// The policy of a flavor.
    pub fn of(flavor: &Flavor) -> Self {
        FailoverPolicy {
            enabled: flavor.failover_enabled,
            target: flavor.failover_flavor_id,
            on_timeout: flavor.failover_on_timeout,
            on_rate_limit: flavor.failover_on_rate_limit,
            on_model_error: flavor.failover_on_model_error,
            on_content_filter: flavor.failover_on_content_filter,
            max_depth: flavor.max_failover_depth,
        }
    }

    /// The flavor to fail over to after a failure of `kind`, if the policy allows it. A
    /// bad request is the caller's problem and never fails over.
    pub fn target_for(&self, kind: FailureKind) -> Option<Uuid> {
        let allowed = match kind {
            FailureKind::Timeout => self.on_timeout,
            FailureKind::RateLimit => self.on_rate_limit,
            FailureKind::ContentFilter => self.on_content_filter,
            FailureKind::BadRequest => false,
            FailureKind::ServerError
            | FailureKind::Auth
            | FailureKind::ContextLength
            | FailureKind::Unreachable
            | FailureKind::BadResponse => self.on_model_error,
        };
        self.target.filter(|_| self.enabled && allowed)
    }
}

/// One failover of a running job: from which flavor to which, why, and when.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FailoverHop {
    pub from_flavor: Uuid,
    pub from_flavor_name: String,
    pub from_provider: String,
    pub to_flavor: Uuid,
    pub to_flavor_name: String,
    pub to_provider: String,
    /// The failure kind (`rate_limit`, `server_error`, ...).
    pub reason: FailureKind,
    /// The provider's last error.
    pub error: String,
    /// The step that failed and runs again on the new flavor.
    pub at_step: u32,
    pub at: String,
}

/// Progress of a job as stored: the cursor of the step engine.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobProgress {
    /// Next step to run (0-based); also the number of LLM passes done.
    pub step: u32,
    /// Index of the next turn to process.
    pub cursor: u32,
    pub total_turns: u32,
    /// Batches estimated at submission; exact once the job completes.
    pub total_batches: u32,
    /// The phase the next step belongs to.
    #[serde(default)]
    pub phase: Phase,
    /// Calls done in the current phase.
    #[serde(default)]
    pub phase_step: u32,
    /// Calls known in the current phase (processing: the batches; reducing: the calls
    /// done plus those of the current level).
    #[serde(default)]
    pub phase_total: u32,
    /// The current reduce level, while reducing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reduce: Option<ReduceLevel>,
    /// Failed tries of the current step (each after its in-call retries).
    #[serde(default)]
    pub failures: u32,
    /// When the current step first failed; the step is retried until the patience runs out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,
    /// Which turns object the steps read ([`crate::ports::keys::turns_revision`]).
    #[serde(default)]
    pub turns_revision: u32,
    /// Times the sweeper re-sent the current step after its worker went silent.
    #[serde(default)]
    pub sweeps: u32,
    /// The job's SQS message group generation. A FIFO group is blocked while a message of
    /// it is in flight, and a dead worker's message stays in flight until its visibility
    /// timeout; so the sweeper moves the job to a new group (generation + 1) and its
    /// messages from then on travel there.
    #[serde(default)]
    pub generation: u32,
}

/// Token and time totals of the passes done so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct UsageTotals {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub duration_ms: u64,
    pub passes: u32,
    /// The sum of the passes' costs, each at its own model's prices (None until a pass
    /// has a price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
}

/// Why a job failed: a stable code and a message that names the cause.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobError {
    pub code: String,
    pub message: String,
}

/// A job as stored in the job table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Job {
    pub id: Uuid,
    pub service_id: Uuid,
    pub service_name: String,
    pub flavor_id: Uuid,
    pub flavor_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
    pub status: JobStatus,
    pub processing_mode: ProcessingMode,
    /// RFC 3339 UTC with microseconds (fixed width, so it sorts as text).
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    pub updated_at: String,
    pub input_tokens: u32,
    pub input_chars: u64,
    /// Tokens available for input in one call (context − generation − prompt).
    pub context_available: u32,
    pub settings: JobSettings,
    pub progress: JobProgress,
    pub usage: UsageTotals,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    /// Epoch seconds after which the job expires (DynamoDB TTL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Fields to extract from the result (`name → hint`), from the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extraction_fields: Option<BTreeMap<String, String>>,
    /// The categorisation context of the request (tags to match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<CategorizationContext>,
    /// Extracted fields, or `_extraction_error` / `_extraction_warning`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extracted_metadata: Option<Map<String, Value>>,
    /// The categorisation result, or `_categorization_error` / `_categorization_warning`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categorization: Option<Value>,
    /// The version of the result that is current (1 = the job's own output).
    #[serde(default = "first_version")]
    pub current_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_edited_at: Option<String>,
    /// The stored versions once the result was edited (empty before: v1 is the output).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<ResultVersion>,
    /// Every failover of the job, in order (empty: it ran on its own flavor).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover_chain: Vec<FailoverHop>,
    /// Set when the input did not fit the requested flavor and another one runs the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
    /// Last sign of life of a worker running the current step (None: no worker has it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_at: Option<String>,
    /// Submitted while its organization already had its share of active jobs: it runs on
    /// the bulk lane, so other organizations' jobs are not starved.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overflow: bool,
}

/// Why a job runs on another flavor than the one requested (the reference's `fallback_*`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Fallback {
    pub original_flavor_id: Uuid,
    pub original_flavor_name: String,
    pub reason: String,
    /// The input's tokens and the room the requested flavor had.
    pub input_tokens: u32,
    pub context_available: u32,
}

fn first_version() -> u32 {
    1
}

/// One stored version of a job's result; the content is in the blob store under `key`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResultVersion {
    pub version_number: u32,
    pub created_at: String,
    /// `system` for v1 (the job's output), `user` for edits and restores.
    pub created_by: String,
    /// Characters of the content.
    pub content_length: u64,
    pub key: String,
}

impl Job {
    /// Percentage of turns processed, 100 only once the job is completed (the phases
    /// after processing stay at 99).
    pub fn percentage(&self) -> u32 {
        if self.status == JobStatus::Completed {
            return 100;
        }
        let total = self.progress.total_turns.max(1) as u64;
        ((self.progress.cursor as u64 * 100) / total).min(99) as u32
    }

    /// The phase shown to clients: the status of a queued or finished job, else the phase
    /// of its next step.
    pub fn phase_name(&self) -> &'static str {
        match self.status {
            JobStatus::Processing => self.progress.phase.as_str(),
            status => status.as_str(),
        }
    }

    /// Estimated cost of the passes so far, each at the prices of the model that ran it.
    pub fn estimated_cost(&self) -> Option<f64> {
        self.usage.cost.map(round6).or_else(|| {
            self.settings
                .cost_of(self.usage.prompt_tokens, self.usage.completion_tokens)
        })
    }

    /// The flavor running the job now: the last failover's target, else its own.
    pub fn final_flavor(&self) -> (Uuid, &str) {
        match self.failover_chain.last() {
            Some(hop) => (hop.to_flavor, hop.to_flavor_name.as_str()),
            None => (self.flavor_id, self.flavor_name.as_str()),
        }
    }

    /// The queue lane of this job's steps: its flavor's priority, or the bulk lane when
    /// it overflowed its organization's share ([`Job::overflow`]).
    pub fn lane(&self) -> QueueLane {
        if self.overflow {
            QueueLane::Bulk
        } else {
            QueueLane::for_priority(self.settings.priority)
        }
    }
}

/// Rounds to 6 decimals (cost figures).
pub fn round6(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}

/// Kind of an LLM pass, as reported in token metrics.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PassType {
    SinglePass,
    Initial,
    Continuation,
    Reduce,
    Extraction,
    Categorization,
}

/// The stored outcome of one step: written once, reused on redelivery.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepOutput {
    pub step: u32,
    pub pass_type: PassType,
    pub batch_start: u32,
    pub batch_end: u32,
    pub output: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub duration_ms: u64,
    pub started_at: String,
    pub completed_at: String,
    pub input_chars: u64,
    /// The pass's cost at the prices of the model that ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_cost: Option<f64>,
    /// The model that ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// The queue message for one step of one job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepMessage {
    pub job_id: Uuid,
    pub step: u32,
    /// Rolling context: the last output lines before this step.
    #[serde(default)]
    pub context: Vec<String>,
    /// The job's message group generation ([`JobProgress::generation`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u32,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

impl StepMessage {
    /// The message of step `step` of job `job_id` in its first message group.
    pub fn new(job_id: Uuid, step: u32, context: Vec<String>) -> Self {
        StepMessage {
            job_id,
            step,
            context,
            generation: 0,
        }
    }

    /// The message of step `step` of `job`, in the job's current message group.
    pub fn of(job: &Job, step: u32, context: Vec<String>) -> Self {
        StepMessage {
            generation: job.progress.generation,
            ..StepMessage::new(job.id, step, context)
        }
    }

    /// SQS FIFO deduplication id: one message per (job, step, generation).
    pub fn deduplication_id(&self) -> String {
        match self.generation {
            0 => format!("{}:{}", self.job_id, self.step),
            n => format!("{}:{}:g{n}", self.job_id, self.step),
        }
    }

    /// SQS FIFO message group: the job (one message in flight at a time), per generation.
    pub fn group_id(&self) -> String {
        match self.generation {
            0 => self.job_id.to_string(),
            n => format!("{}:g{n}", self.job_id),
        }
    }
}

/// Current time as RFC 3339 UTC with microseconds (fixed width).
pub fn now_timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_uses_model_prices_then_the_flavor_rate() {
        let mut settings: JobSettings = serde_json::from_value(serde_json::json!({
            "provider_id": Uuid::nil(), "provider_name": "p", "model_identifier": "m",
            "context_length": 8192, "max_generation_length": 2048, "tokenizer": "cl100k_base",
            "temperature": 0.2, "top_p": 0.9, "prompt_user_content": "{}",
            "create_new_turn_after": 500, "summary_turns": 3, "max_new_turns": 10,
            "prompt_tokens": 5, "estimated_cost_per_1k_tokens": 0.002
        }))
        .unwrap();
        assert_eq!(settings.cost_of(0, 0), None);
        assert_eq!(
            settings.cost_of(1500, 500),
            Some(0.004),
            "flat rate on 2,000 tokens"
        );
        settings.input_price_per_million = Some(2.5);
        settings.output_price_per_million = Some(10.0);
        assert_eq!(settings.cost_of(1_000_000, 100_000), Some(3.5));
        settings.estimated_cost_per_1k_tokens = None;
        settings.output_price_per_million = None;
        assert_eq!(
            settings.cost_of(10, 10),
            None,
            "half a price list is no price"
        );
    }

    #[test]
    fn priorities_map_to_lanes_zero_most_urgent() {
        let lanes: Vec<QueueLane> = (0..=10).map(QueueLane::for_priority).collect();
        use QueueLane::*;
        assert_eq!(
            lanes,
            [
                Urgent, Urgent, Urgent, Standard, Standard, Standard, Standard, Bulk, Bulk, Bulk,
                Bulk
            ]
        );
        assert_eq!(QueueLane::for_priority(DEFAULT_PRIORITY), Standard);
    }

    #[test]
    fn status_round_trip_and_terminal() {
        for status in [
            JobStatus::Queued,
            JobStatus::Processing,
            JobStatus::Completed,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ] {
            assert_eq!(JobStatus::parse(status.as_str()), Some(status));
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        assert!(JobStatus::Failed.is_terminal() && !JobStatus::Processing.is_terminal());
        assert!(JobStatus::Cancelled.is_terminal());
        assert_eq!(JobStatus::parse("canceled"), None);
        for lane in QueueLane::ALL {
            assert_eq!(serde_json::to_value(lane).unwrap(), lane.as_str());
        }
    }

    #[test]
    fn timestamps_are_fixed_width() {
        let a = now_timestamp();
        assert_eq!(a.len(), "2026-01-01T00:00:00.000000Z".len());
        assert!(a.ends_with('Z'));
    }
}
