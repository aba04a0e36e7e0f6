//! Catalog entities: providers, models, services and their flavors, with the
//! reference's field names and defaults.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Chunk size (tokens) above which a turn is split when a flavor leaves it unset.
pub const DEFAULT_CREATE_NEW_TURN_AFTER: u32 = 500;

/// Output lines carried as rolling context when a flavor leaves it unset.
pub const DEFAULT_SUMMARY_TURNS: u32 = 3;

/// New turns per batch when a flavor leaves it unset.
pub const DEFAULT_MAX_NEW_TURNS: u32 = 10;
/// Chunks of a `map_reduce` job summarised at once when the flavor does not say.
pub const DEFAULT_MAP_CONCURRENCY: u32 = 4;

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

pub(super) fn yes() -> bool {
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
    /// Chunks of turns summarised independently and concurrently (one `{}`: the chunk),
    /// then reduced.
    MapReduce,
}

impl ProcessingMode {
    /// Placeholders the user prompt must have in this mode.
    pub fn required_placeholders(self) -> usize {
        match self {
            ProcessingMode::SinglePass => 1,
            ProcessingMode::Iterative => 2,
            ProcessingMode::MapReduce => 1,
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
    /// Chunks of a `map_reduce` job summarised at once (1–32; default 4).
    #[serde(default)]
    pub map_concurrency: Option<u32>,
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

impl Flavor {
    /// When a job of this flavor submitted now expires (epoch seconds): its
    /// `default_ttl_seconds` from now, or never.
    pub fn job_expiry(&self) -> Option<i64> {
        self.default_ttl_seconds
            .filter(|ttl| *ttl > 0)
            .map(|ttl| chrono::Utc::now().timestamp() + i64::from(ttl))
    }
}

pub(super) fn default_output_type() -> String {
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

pub(super) fn default_priority() -> u8 {
    DEFAULT_PRIORITY
}
