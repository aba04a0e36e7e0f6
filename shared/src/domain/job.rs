//! Jobs as stored: settings frozen at submission, phases and progress, usage,
//! errors, result versions, and the stored output of one step.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::catalog::{default_output_type, default_priority};
use super::{
    round6, FailoverHop, FailoverPolicy, Flavor, Model, ProcessingMode, Provider, QueueLane,
    Service,
};
use crate::postprocess::categorization::CategorizationContext;
use crate::text::batching::BatchBudget;

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
    /// The flavor's penalties and stop sequences, sent with its own calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<String>,
    /// The flavor's `custom_params` (a JSON object, as text), merged into every request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_params: Option<String>,
    pub prompt_user_content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_system_content: Option<String>,
    pub create_new_turn_after: u32,
    pub summary_turns: u32,
    pub max_new_turns: u32,
    /// Chunks of a `map_reduce` job summarised at once.
    #[serde(default = "one")]
    pub map_concurrency: u32,
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
        let penalty = |value: f64| (value != 0.0).then_some(value as f32);
        self.frequency_penalty = penalty(flavor.frequency_penalty);
        self.presence_penalty = penalty(flavor.presence_penalty);
        self.stop_sequences = flavor.stop_sequences.clone();
        self.custom_params = flavor
            .custom_params
            .as_object()
            .filter(|params| !params.is_empty())
            .map(|params| Value::Object(params.clone()).to_string());
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
    /// An input too large to plan before the 202 is read, counted and cut into turns
    /// (the job's first step, before its first call).
    Planning,
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
            Phase::Planning => "planning",
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
    /// Which revision of the turns the steps read ([`crate::ports::keys::turn_page`]).
    #[serde(default)]
    pub turns_revision: u32,
    /// The first turn index of every page of that revision: a step reads only the
    /// page(s) of its batch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub turn_pages: Vec<u32>,
    /// The chunks of a `map_reduce` job in flight; `step` counts the chunks done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<MapState>,
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

fn one() -> u32 {
    1
}

/// The map phase of a `map_reduce` job: chunk `n` is step `n`; chunks are sent in order,
/// at most `JobSettings::map_concurrency` at once, and the job's `step` counts those done.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MapState {
    /// Chunks sent so far.
    pub sent: u32,
    /// Chunks sent and not done yet.
    pub in_flight: Vec<MapChunk>,
}

/// A chunk in flight: its step and its turns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MapChunk {
    pub step: u32,
    pub turns: std::ops::Range<u32>,
    /// Failed tries of this chunk (each after its in-call retries) and since when.
    #[serde(default)]
    pub failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,
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
    /// Fields extracted just in time for exports, per template and result version
    /// (`{template}:v{n}`; `builtin` for the built-in template): a field asked once is
    /// not asked again (a value the model did not find is kept as null).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub export_extractions: BTreeMap<String, Map<String, Value>>,
    /// The result-cache key of its input and settings (None: submitted with `cache: false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_key: Option<String>,
    /// Answered from the result cache: the completed job whose result it copies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_from: Option<Uuid>,
    /// The upload the input came from, when it was too large to plan before answering:
    /// the first step copies it to the job's input and plans it (`Phase::Planning`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_upload_id: Option<Uuid>,
    /// Set on the job that counts the usage of chat answers (`POST /api/v1/chat/completions`):
    /// one job per answer, or per session. Its `usage.passes` is the number of answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<ChatRecord>,
}

/// What a chat job holds besides its usage.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChatRecord {
    /// The client's `session_id`, when its answers accumulate on this job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Prompt tokens the providers reported as served from their cache, over all answers.
    #[serde(default)]
    pub cached_tokens: u64,
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

pub(super) fn first_version() -> u32 {
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
    /// A queued job of `flavor` on `service`, created now, running with `settings`, its
    /// expiry from the flavor; nothing used, counted or produced yet.
    pub fn new(
        id: Uuid,
        service: &Service,
        flavor: &Flavor,
        organization_id: Option<String>,
        settings: JobSettings,
    ) -> Job {
        let now = super::now_timestamp();
        Job {
            id,
            service_id: service.id,
            service_name: service.name.clone(),
            flavor_id: flavor.id,
            flavor_name: flavor.name.clone(),
            organization_id,
            status: JobStatus::Queued,
            processing_mode: flavor.processing_mode,
            created_at: now.clone(),
            started_at: None,
            completed_at: None,
            updated_at: now,
            input_tokens: 0,
            input_chars: 0,
            context_available: 0,
            settings,
            progress: JobProgress::default(),
            usage: UsageTotals::default(),
            error: None,
            expires_at: flavor.job_expiry(),
            extraction_fields: None,
            context: None,
            extracted_metadata: None,
            categorization: None,
            current_version: first_version(),
            last_edited_at: None,
            versions: Vec::new(),
            failover_chain: Vec::new(),
            fallback: None,
            heartbeat_at: None,
            overflow: false,
            export_extractions: BTreeMap::new(),
            cache_key: None,
            cached_from: None,
            input_upload_id: None,
            chat: None,
        }
    }

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
        match (self.status, self.progress.phase) {
            (JobStatus::Processing, phase) | (JobStatus::Queued, phase @ Phase::Planning) => {
                phase.as_str()
            }
            (status, _) => status.as_str(),
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

/// Kind of an LLM pass, as reported in token metrics.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PassType {
    SinglePass,
    Initial,
    Continuation,
    /// One chunk of a `map_reduce` job.
    Map,
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
