//! One step of one job per queue message. A job runs its phases in order — processing
//! (one call, or batches of turns with rolling context), reducing (hierarchical when the
//! batch outputs do not fit one call), extracting, categorizing — and every LLM call of
//! every phase is one step. A step calls the LLM (unless its output is already stored),
//! stores the output under a key derived from (job, step), advances the job with a
//! conditional write and enqueues the next step, or finishes the job. Redelivered and
//! stale messages never call the LLM; the step number decides the phase, since the job
//! record holds the phase of its next step.

use std::ops::Range;

use futures_util::{StreamExt, TryStreamExt};
use serde_json::{json, Map, Value};

use super::breaker::{self, Breaker};
use super::{recovery, Gateway};
use crate::domain::{
    now_timestamp, Job, JobError, JobStatus, PassType, Phase, ProcessingMode, ReduceLevel,
    StepMessage, StepOutput,
};
use crate::llm::{chat_with_retries, ChatMessage, ChatRequest, Endpoint, LlmError, LlmFailure};
use crate::ports::{keys, IoError, IoResult};
use crate::postprocess::answer::parse_json_object;
use crate::postprocess::consolidate::consolidate;
use crate::postprocess::reduce::{join_outputs, plan_groups, tidy_answer, MAX_LEVELS};
use crate::postprocess::{categorization, extraction, FINISHING_MAX_TOKENS, FINISHING_TEMPERATURE};
use crate::text::batching::{context_tokens, rolling_context, BatchBudget};
use crate::text::normalize::NormalizedTurn;
use crate::text::prompt::fill;
use crate::tokens::{load_or_default, TokenCounter};

/// What a message led to. Every variant means the message is done (delete it); errors
/// returned as `Err` mean "retry the message later".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// The step ran and the next one is enqueued.
    Advanced { next_step: u32 },
    /// The last step ran and the job is completed.
    Completed,
    /// The job failed (error stored on the job).
    Failed,
    /// Nothing to do: unknown or finished job, or a stale/duplicate message.
    Skipped(&'static str),
    /// The provider failed for now: the message must come back after `delay` on `lane`
    /// (not deleted; the step keeps its place in the job's message group).
    RetryLater {
        delay: std::time::Duration,
        lane: crate::domain::QueueLane,
    },
}

/// Objects fetched or written at once when assembling a result or a reduce level.
const BLOB_CONCURRENCY: usize = 16;

/// What a job does after a step.
enum Next {
    /// Run step `job.progress.step` with this rolling context.
    Step(Vec<String>),
    /// Every phase is done.
    Complete,
    /// The job cannot finish (stored on the job).
    Fail(JobError),
}

/// Processes one step message.
pub async fn process_step(gateway: &Gateway, message: &StepMessage) -> IoResult<StepOutcome> {
    let Some(job) = gateway.jobs.get(message.job_id).await? else {
        return Ok(StepOutcome::Skipped("job not found"));
    };
    tracing::Span::current().record(
        "organization_id",
        job.organization_id.as_deref().unwrap_or(""),
    );
    if job.status.is_terminal() {
        return Ok(StepOutcome::Skipped("job already finished"));
    }
    let job_step = job.progress.step;
    if job_step == message.step + 1 {
        // The job advanced but the worker stopped before enqueueing the next step.
        return resend_next(gateway, &job, message).await;
    }
    if job_step != message.step {
        tracing::warn!(
            job_step,
            message_step = message.step,
            "stale step message dropped"
        );
        return Ok(StepOutcome::Skipped("stale step message"));
    }

    let counter = load_or_default(&job.settings.tokenizer);
    let output = match load_step_output(gateway, &job, message.step).await? {
        Some(stored) => {
            tracing::info!(
                step = message.step,
                "step output already stored; LLM not called again"
            );
            stored
        }
        None => match run_llm_step(gateway, &job, message, &counter).await? {
            Ok(output) => output,
            Err(StepFailure::Fatal(error)) => {
                fail_job(gateway, job, error).await?;
                return Ok(StepOutcome::Failed);
            }
            Err(StepFailure::Provider(failure)) => {
                return recovery::after_provider_failure(gateway, job, message, failure).await;
            }
        },
    };
    advance(gateway, job, message, output, &counter).await
}

/// Marks a job failed because its step message exhausted its deliveries (dead-letter queue).
pub async fn fail_dead_letter(
    gateway: &Gateway,
    message: &StepMessage,
    receive_count: u32,
) -> IoResult<StepOutcome> {
    let Some(job) = gateway.jobs.get(message.job_id).await? else {
        return Ok(StepOutcome::Skipped("job not found"));
    };
    if job.status.is_terminal() {
        return Ok(StepOutcome::Skipped("job already finished"));
    }
    if job.progress.step != message.step {
        // The job moved on (the step ran after all); the dead letter is stale.
        return Ok(StepOutcome::Skipped("stale dead letter"));
    }
    let error = JobError {
        code: "STEP_RETRIES_EXHAUSTED".into(),
        message: format!(
            "step {} could not be processed after {receive_count} deliveries; see the worker logs for job {}",
            message.step, job.id
        ),
    };
    fail_job(gateway, job, error).await?;
    Ok(StepOutcome::Failed)
}

async fn resend_next(gateway: &Gateway, job: &Job, message: &StepMessage) -> IoResult<StepOutcome> {
    let Some(previous) = load_step_output(gateway, job, message.step).await? else {
        return Ok(StepOutcome::Skipped("stale step message"));
    };
    let context = if job.progress.phase == Phase::Processing {
        let counter = load_or_default(&job.settings.tokenizer);
        next_context(job, message, &previous.output, &counter)
    } else {
        Vec::new()
    };
    let next = StepMessage::of(job, message.step + 1, context);
    gateway.queue.send(&next, job.lane()).await?;
    Ok(StepOutcome::Advanced {
        next_step: next.step,
    })
}

async fn load_step_output(gateway: &Gateway, job: &Job, step: u32) -> IoResult<Option<StepOutput>> {
    match gateway.blobs.get(&keys::step(job.id, step)).await? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| IoError::new("decode step output", e)),
        None => Ok(None),
    }
}

/// Why a step got no answer.
enum StepFailure {
    /// The provider failed after the in-call retries (retry later, fail over, or fail).
    Provider(LlmFailure),
    /// The job cannot run any more (its provider was deleted).
    Fatal(JobError),
}

/// Builds the prompt of this step, calls the LLM and stores the output, all within the
/// step deadline ([`super::Limits::step_deadline`]).
async fn run_llm_step(
    gateway: &Gateway,
    job: &Job,
    message: &StepMessage,
    counter: &TokenCounter,
) -> IoResult<Result<StepOutput, StepFailure>> {
    let deadline = tokio::time::Instant::now() + gateway.limits.step_deadline;
    let call = build_call(gateway, job, message, counter).await?;
    let breaker = breaker::state(gateway, &job.settings).await?;
    if let Breaker::Open { until, wait } = &breaker {
        return Ok(Err(StepFailure::Provider(LlmFailure {
            provider: job.settings.provider_name.clone(),
            attempts: 0,
            last: LlmError::CircuitOpen(until.clone()),
            retry_after: Some(*wait),
        })));
    }
    let endpoint = match endpoint(gateway, job).await? {
        Ok(endpoint) => endpoint,
        Err(error) => return Ok(Err(StepFailure::Fatal(error))),
    };
    let mut messages = Vec::with_capacity(2);
    if let Some(system) = call.system {
        messages.push(ChatMessage::new("system", system));
    }
    messages.push(ChatMessage::new("user", call.prompt.clone()));
    let request = ChatRequest {
        model: job.settings.model_identifier.clone(),
        messages,
        temperature: call.temperature,
        top_p: job.settings.top_p,
        max_tokens: call.max_tokens,
    };

    let started_at = now_timestamp();
    let clock = std::time::Instant::now();
    let attempts = chat_with_retries(
        gateway.llm.as_ref(),
        &endpoint,
        &request,
        gateway.limits.retry,
        deadline,
    );
    let completion = match with_heartbeat(gateway, job.id, message.step, attempts).await {
        Ok(completion) => completion,
        Err(failure) => {
            tracing::warn!(step = message.step, phase = ?job.progress.phase, kind = failure.last.kind().as_str(), error = %failure, "LLM call failed");
            return Ok(Err(StepFailure::Provider(failure)));
        }
    };
    let duration_ms = clock.elapsed().as_millis() as u64;
    breaker::succeeded(gateway, &job.settings, &breaker).await?;
    let prompt_tokens = completion.prompt_tokens.unwrap_or_else(|| {
        request
            .messages
            .iter()
            .map(|m| counter.count(&m.content) as u32)
            .sum()
    });
    let completion_tokens = completion
        .completion_tokens
        .unwrap_or_else(|| counter.count(&completion.content) as u32);
    let output = StepOutput {
        step: message.step,
        pass_type: call.pass_type,
        batch_start: call.batch.start,
        batch_end: call.batch.end,
        output: completion.content,
        prompt_tokens,
        completion_tokens,
        duration_ms,
        started_at,
        completed_at: now_timestamp(),
        input_chars: call.prompt.chars().count() as u64,
        estimated_cost: job
            .settings
            .cost_of(u64::from(prompt_tokens), u64::from(completion_tokens)),
        model: Some(job.settings.model_identifier.clone()),
    };
    let bytes = serde_json::to_vec(&output).map_err(|e| IoError::new("encode step output", e))?;
    gateway
        .blobs
        .put(&keys::step(job.id, message.step), bytes, "application/json")
        .await?;
    tracing::info!(
        step = message.step,
        pass_type = ?output.pass_type,
        batch_start = output.batch_start,
        batch_end = output.batch_end,
        prompt_tokens,
        completion_tokens,
        duration_ms,
        "step done"
    );
    Ok(Ok(output))
}

/// Runs `call` while recording a heartbeat on the job every
/// [`super::Limits::heartbeat_every`] (the first at once), so the sweeper can tell a
/// running step from one whose worker died.
async fn with_heartbeat<T>(
    gateway: &Gateway,
    job_id: uuid::Uuid,
    step: u32,
    call: impl std::future::Future<Output = T>,
) -> T {
    let beat = async {
        let mut ticker = tokio::time::interval(gateway.limits.heartbeat_every);
        loop {
            ticker.tick().await;
            if let Err(error) = gateway.jobs.heartbeat(job_id, step, &now_timestamp()).await {
                tracing::warn!(%error, "heartbeat not recorded");
            }
        }
    };
    tokio::pin!(call);
    tokio::select! {
        result = &mut call => result,
        () = beat => call.await,
    }
}

/// The rolling context of the job's current step, rebuilt from the stored outputs of the
/// steps before it (as each step's message carried it); empty outside processing.
pub(super) async fn context_for_step(
    gateway: &Gateway,
    job: &Job,
    counter: &TokenCounter,
) -> IoResult<Vec<String>> {
    if job.progress.phase != Phase::Processing || job.processing_mode != ProcessingMode::Iterative {
        return Ok(Vec::new());
    }
    let outputs = load_outputs(gateway, job, 0..job.progress.step).await?;
    let mut context = Vec::new();
    for output in outputs {
        let message = StepMessage::new(job.id, output.step, context);
        context = next_context(job, &message, &output.output, counter);
    }
    Ok(context)
}

async fn endpoint(gateway: &Gateway, job: &Job) -> IoResult<Result<Endpoint, JobError>> {
    let Some(provider) = gateway.catalog.provider(job.settings.provider_id).await? else {
        return Ok(Err(JobError {
            code: "PROVIDER_NOT_FOUND".into(),
            message: format!("provider '{}' was deleted", job.settings.provider_name),
        }));
    };
    Ok(Ok(gateway.endpoint_of(provider).await?))
}

pub(super) async fn load_turns(gateway: &Gateway, job: &Job) -> IoResult<Vec<NormalizedTurn>> {
    let bytes = gateway
        .blobs
        .get(&keys::turns_revision(job.id, job.progress.turns_revision))
        .await?
        .ok_or_else(|| IoError::new("read job turns", "turns object missing"))?;
    serde_json::from_slice(&bytes).map_err(|e| IoError::new("decode job turns", e))
}

/// The rolling context of the processing step after `message`.
fn next_context(
    job: &Job,
    message: &StepMessage,
    output: &str,
    counter: &TokenCounter,
) -> Vec<String> {
    rolling_context(
        &message.context,
        output,
        job.settings.summary_turns as usize,
        BatchBudget::from(&job.settings).context_reserve(),
        counter,
    )
}

/// What one step sends to the LLM.
struct Call {
    prompt: String,
    system: Option<String>,
    temperature: f32,
    max_tokens: u32,
    pass_type: PassType,
    /// Processing: the turns of the batch; reducing: the group of the level.
    batch: Range<u32>,
}

/// Builds the call of the job's next step from its phase.
async fn build_call(
    gateway: &Gateway,
    job: &Job,
    message: &StepMessage,
    counter: &TokenCounter,
) -> IoResult<Call> {
    let settings = &job.settings;
    let system = settings
        .prompt_system_content
        .clone()
        .filter(|s| !s.trim().is_empty());
    let flavor_call = |prompt: String, pass_type: PassType, batch: Range<u32>| Call {
        prompt,
        system: system.clone(),
        temperature: settings.temperature,
        max_tokens: settings.max_generation_length,
        pass_type,
        batch,
    };
    let finishing_call = |prompt: String, pass_type: PassType| Call {
        prompt,
        system: None,
        temperature: FINISHING_TEMPERATURE,
        max_tokens: finishing_max_tokens(job),
        pass_type,
        batch: 0..0,
    };
    Ok(match (job.progress.phase, job.processing_mode) {
        (Phase::Processing, ProcessingMode::SinglePass) => {
            let input = read_text(gateway, &keys::input(job.id), "read job input").await?;
            flavor_call(
                fill(&settings.prompt_user_content, &[&input]),
                PassType::SinglePass,
                0..1,
            )
        }
        (Phase::Processing, ProcessingMode::Iterative) => {
            let turns = load_turns(gateway, job).await?;
            let tokens: Vec<u32> = turns.iter().map(|turn| turn.tokens).collect();
            let cursor = job.progress.cursor as usize;
            let end = BatchBudget::from(settings).next_batch_end(
                &tokens,
                cursor,
                context_tokens(&message.context, counter),
            );
            let batch: Vec<&str> = turns[cursor..end]
                .iter()
                .map(|turn| turn.text.as_str())
                .collect();
            let prompt = fill(
                &settings.prompt_user_content,
                &[&message.context.join("\n"), &batch.join("\n")],
            );
            let pass_type = if message.step == 0 {
                PassType::Initial
            } else {
                PassType::Continuation
            };
            flavor_call(prompt, pass_type, cursor as u32..end as u32)
        }
        (Phase::Reducing, _) => {
            let (level, reduce) = reduce_step(job)?;
            let group = message.step - level.first_step;
            let key = keys::reduce_input(job.id, level.level, group);
            let text = read_text(gateway, &key, "read reduce input").await?;
            flavor_call(fill(reduce, &[&text]), PassType::Reduce, group..group + 1)
        }
        (Phase::Extracting, _) => {
            let result = read_text(gateway, &keys::result(job.id), "read result").await?;
            let prompt = extraction_prompt(job, &result)
                .ok_or_else(|| IoError::new("plan extraction", "job has no extraction prompt"))?;
            finishing_call(prompt, PassType::Extraction)
        }
        (Phase::Categorizing, _) => {
            let result = read_text(gateway, &keys::result(job.id), "read result").await?;
            let prompt = categorization_prompt(job, &result).ok_or_else(|| {
                IoError::new("plan categorization", "job has no categorization prompt")
            })?;
            finishing_call(prompt, PassType::Categorization)
        }
    })
}

/// The current reduce level and the reduce prompt of a reducing job.
fn reduce_step(job: &Job) -> IoResult<(ReduceLevel, &str)> {
    match (job.progress.reduce, job.settings.reduce_prompt.as_deref()) {
        (Some(level), Some(prompt)) => Ok((level, prompt)),
        _ => Err(IoError::new(
            "plan reduce step",
            "the job is reducing without a reduce level or prompt",
        )),
    }
}

fn finishing_max_tokens(job: &Job) -> u32 {
    FINISHING_MAX_TOKENS.min(u64::from(job.settings.max_generation_length)) as u32
}

fn extraction_prompt(job: &Job, result: &str) -> Option<String> {
    let template = job.settings.extraction_prompt.as_deref()?;
    let fields = job.extraction_fields.as_ref()?;
    Some(extraction::fill_prompt(template, fields, result))
}

fn categorization_prompt(job: &Job, result: &str) -> Option<String> {
    let template = job.settings.categorization_prompt.as_deref()?;
    let context = job.context.as_ref()?;
    Some(categorization::fill_prompt(template, context, result))
}

async fn read_text(gateway: &Gateway, key: &str, operation: &'static str) -> IoResult<String> {
    let bytes = gateway
        .blobs
        .get(key)
        .await?
        .ok_or_else(|| IoError::new(operation, format!("object {key} missing")))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Applies a step's output to the job and moves it on: the next step of the phase, the
/// next phase, or completion. The job is written with a condition on its step, so a
/// concurrent delivery or a cancel wins and nothing is sent.
async fn advance(
    gateway: &Gateway,
    mut job: Job,
    message: &StepMessage,
    output: StepOutput,
    counter: &TokenCounter,
) -> IoResult<StepOutcome> {
    let now = now_timestamp();
    job.status = JobStatus::Processing;
    job.started_at
        .get_or_insert_with(|| output.started_at.clone());
    job.updated_at = now.clone();
    job.progress.step = message.step + 1;
    job.progress.phase_step += 1;
    job.usage.prompt_tokens += u64::from(output.prompt_tokens);
    job.usage.completion_tokens += u64::from(output.completion_tokens);
    job.usage.duration_ms += output.duration_ms;
    job.usage.passes += 1;
    if let Some(cost) = output.estimated_cost {
        job.usage.cost = Some(job.usage.cost.unwrap_or(0.0) + cost);
    }
    job.progress.failures = 0;
    job.progress.failing_since = None;
    job.progress.sweeps = 0;
    job.heartbeat_at = None;

    let next = match job.progress.phase {
        Phase::Processing => {
            job.progress.cursor = output.batch_end;
            if job.progress.cursor < job.progress.total_turns {
                job.progress.total_batches =
                    job.progress.total_batches.max(job.progress.phase_step + 1);
                job.progress.phase_total = job.progress.total_batches;
                Next::Step(next_context(&job, message, &output.output, counter))
            } else {
                job.progress.total_batches = job.progress.phase_step;
                job.progress.phase_total = job.progress.phase_step;
                after_processing(gateway, &mut job, counter).await?
            }
        }
        Phase::Reducing => {
            let (level, _) = reduce_step(&job)?;
            let level_end = level.first_step + level.groups;
            if job.progress.step < level_end {
                Next::Step(Vec::new())
            } else if level.groups == 1 {
                finish_output(gateway, &mut job, output.output.trim().to_string(), counter).await?
            } else {
                plan_reduce_level(
                    gateway,
                    &mut job,
                    level.level + 1,
                    level.first_step..level_end,
                    counter,
                )
                .await?
            }
        }
        Phase::Extracting => {
            let fields = job.extraction_fields.clone().unwrap_or_default();
            job.extracted_metadata = Some(match parse_json_object(&output.output) {
                Ok(answer) => extraction::select_fields(&answer, &fields),
                Err(error) => note("_extraction_error", error.to_string()),
            });
            let result = read_text(gateway, &keys::result(job.id), "read result").await?;
            enter_finishing(&mut job, Phase::Categorizing, &result, counter)
        }
        Phase::Categorizing => {
            job.categorization = Some(match (parse_json_object(&output.output), &job.context) {
                (Ok(answer), Some(context)) => {
                    serde_json::to_value(categorization::enforce(&answer, context))
                        .map_err(|e| IoError::new("encode categorization", e))?
                }
                (Err(error), _) => Value::Object(note("_categorization_error", error.to_string())),
                (Ok(_), None) => Value::Object(note(
                    "_categorization_error",
                    "the job has no categorisation context".into(),
                )),
            });
            Next::Complete
        }
    };

    match next {
        Next::Step(context) => {
            if !gateway.jobs.replace(&job, message.step).await? {
                return Ok(StepOutcome::Skipped("job advanced concurrently"));
            }
            let next = StepMessage::of(&job, job.progress.step, context);
            gateway.queue.send(&next, job.lane()).await?;
            Ok(StepOutcome::Advanced {
                next_step: next.step,
            })
        }
        Next::Complete => {
            write_metrics(gateway, &job).await?;
            job.status = JobStatus::Completed;
            job.completed_at = Some(now);
            job.progress.reduce = None;
            Ok(if gateway.jobs.replace(&job, message.step).await? {
                tracing::info!(
                    passes = job.usage.passes,
                    prompt_tokens = job.usage.prompt_tokens,
                    completion_tokens = job.usage.completion_tokens,
                    "job completed"
                );
                StepOutcome::Completed
            } else {
                StepOutcome::Skipped("job advanced concurrently")
            })
        }
        Next::Fail(error) => {
            // The step's output and usage count; the job keeps its step so the write
            // holds only if nothing else moved it.
            job.progress.step = message.step;
            fail_job(gateway, job, error).await?;
            Ok(StepOutcome::Failed)
        }
    }
}

/// A one-key object recording why a finishing phase gave no result.
fn note(key: &str, message: String) -> Map<String, Value> {
    Map::from_iter([(key.to_string(), Value::String(message))])
}

/// After the last processing step: reduce the outputs (when the job reduces), else join
/// them into the output.
async fn after_processing(
    gateway: &Gateway,
    job: &mut Job,
    counter: &TokenCounter,
) -> IoResult<Next> {
    let steps = 0..job.progress.step;
    if job.settings.reduce_prompt.is_some() {
        return plan_reduce_level(gateway, job, 0, steps, counter).await;
    }
    let outputs = load_outputs(gateway, job, steps).await?;
    let output = match job.processing_mode {
        ProcessingMode::SinglePass => outputs
            .first()
            .map(|output| tidy_answer(&output.output))
            .unwrap_or_default(),
        ProcessingMode::Iterative => join_outputs(outputs.iter().map(|o| o.output.as_str())),
    };
    finish_output(gateway, job, output, counter).await
}

/// Plans reduce level `level` over the outputs of `inputs` (steps): groups that each fit
/// one call, stored as the inputs of the next steps. A level must need fewer calls than
/// the one before, so a reduce always ends.
async fn plan_reduce_level(
    gateway: &Gateway,
    job: &mut Job,
    level: u32,
    inputs: Range<u32>,
    counter: &TokenCounter,
) -> IoResult<Next> {
    let input_count = inputs.len() as u32;
    let outputs = load_outputs(gateway, job, inputs).await?;
    let texts: Vec<&str> = outputs
        .iter()
        .map(|output| output.output.as_str())
        .collect();
    let settings = &job.settings;
    let budget = (settings.context_length as usize)
        .saturating_sub(settings.max_generation_length as usize)
        .saturating_sub(settings.reduce_prompt_tokens as usize);
    let groups = plan_groups(&texts, budget, counter);
    if groups.is_empty() {
        return finish_output(gateway, job, String::new(), counter).await;
    }
    let group_count = groups.len() as u32;
    if level > 0 && (group_count >= input_count || level >= MAX_LEVELS) {
        return Ok(Next::Fail(JobError {
            code: "REDUCE_NOT_CONVERGING".into(),
            message: format!(
                "reduce level {level} would need {group_count} calls for the {input_count} answers of level {}: \
                 the model's answers are too long for the {budget} tokens of input a reduce call can take; \
                 use a model with a larger context or a shorter max_generation_length",
                level - 1
            ),
        }));
    }
    let job_id = job.id;
    futures_util::stream::iter(groups.into_iter().enumerate())
        .map(|(group, text)| async move {
            gateway
                .blobs
                .put(
                    &keys::reduce_input(job_id, level, group as u32),
                    text.into_bytes(),
                    "text/plain; charset=utf-8",
                )
                .await
        })
        .buffer_unordered(BLOB_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    tracing::info!(level, groups = group_count, budget, "reduce level planned");
    if job.progress.phase != Phase::Reducing {
        job.progress.phase = Phase::Reducing;
        job.progress.phase_step = 0;
        job.progress.phase_total = 0;
    }
    job.progress.phase_total = job.progress.phase_step + group_count;
    job.progress.reduce = Some(ReduceLevel {
        level,
        first_step: job.progress.step,
        groups: group_count,
    });
    Ok(Next::Step(Vec::new()))
}

/// Stores the job's output (consolidated when the flavor asks) as the result, then moves
/// to extraction, categorisation or completion.
async fn finish_output(
    gateway: &Gateway,
    job: &mut Job,
    output: String,
    counter: &TokenCounter,
) -> IoResult<Next> {
    let output = if job.settings.consolidate {
        consolidate(&output)
    } else {
        output
    };
    gateway
        .blobs
        .put(
            &keys::result(job.id),
            output.as_bytes().to_vec(),
            "text/plain; charset=utf-8",
        )
        .await?;
    job.progress.reduce = None;
    Ok(enter_finishing(job, Phase::Extracting, &output, counter))
}

/// Moves the job to the first finishing phase from `from` on that it runs. A phase whose
/// prompt would not fit the model is skipped with a warning on the job, never failing it.
fn enter_finishing(job: &mut Job, from: Phase, result: &str, counter: &TokenCounter) -> Next {
    let context_length = job.settings.context_length as usize;
    let answer_tokens = finishing_max_tokens(job) as usize;
    let candidates = [
        (
            Phase::Extracting,
            extraction_prompt(job, result),
            "_extraction_warning",
        ),
        (
            Phase::Categorizing,
            categorization_prompt(job, result),
            "_categorization_warning",
        ),
    ];
    for (phase, prompt, warning_key) in candidates {
        let Some(prompt) = prompt.filter(|_| phase >= from) else {
            continue;
        };
        let prompt_tokens = counter.count(&prompt);
        if prompt_tokens + answer_tokens <= context_length {
            job.progress.phase = phase;
            job.progress.phase_step = 0;
            job.progress.phase_total = 1;
            return Next::Step(Vec::new());
        }
        let warning = note(
            warning_key,
            format!(
                "skipped: the prompt with the result is {prompt_tokens} tokens, and with {answer_tokens} for the answer it exceeds the model's context of {context_length}"
            ),
        );
        tracing::warn!(
            ?phase,
            prompt_tokens,
            context_length,
            "finishing phase skipped: too large"
        );
        match phase {
            Phase::Extracting => job.extracted_metadata = Some(warning),
            _ => job.categorization = Some(Value::Object(warning)),
        }
    }
    Next::Complete
}

/// Reads the outputs of `steps`, in order.
async fn load_outputs(
    gateway: &Gateway,
    job: &Job,
    steps: Range<u32>,
) -> IoResult<Vec<StepOutput>> {
    futures_util::stream::iter(steps)
        .map(|step| async move {
            load_step_output(gateway, job, step).await?.ok_or_else(|| {
                IoError::new("read step output", format!("step {step} output missing"))
            })
        })
        .buffered(BLOB_CONCURRENCY)
        .try_collect()
        .await
}

/// Stores the per-pass token metrics of every step of the job.
async fn write_metrics(gateway: &Gateway, job: &Job) -> IoResult<()> {
    let outputs = load_outputs(gateway, job, 0..job.progress.step).await?;
    let passes: Vec<_> = outputs
        .iter()
        .map(|output| {
            let total = output.prompt_tokens + output.completion_tokens;
            json!({
                "pass_number": output.step + 1,
                "pass_type": output.pass_type,
                "started_at": output.started_at,
                "completed_at": output.completed_at,
                "duration_ms": output.duration_ms,
                "prompt_tokens": output.prompt_tokens,
                "completion_tokens": output.completion_tokens,
                "total_tokens": total,
                "input_chars": output.input_chars,
                "output_chars": output.output.chars().count(),
                "batch_start": output.batch_start,
                "batch_end": output.batch_end,
                "estimated_cost": output.estimated_cost.or_else(|| job.settings.cost_of(
                    u64::from(output.prompt_tokens),
                    u64::from(output.completion_tokens),
                )),
                "model": output.model,
            })
        })
        .collect();
    let metrics = serde_json::to_vec(&passes).map_err(|e| IoError::new("encode metrics", e))?;
    gateway
        .blobs
        .put(&keys::metrics(job.id), metrics, "application/json")
        .await
}

/// Marks the job failed with `error` (re-reading once if it moved meanwhile).
pub(super) async fn fail_job(gateway: &Gateway, mut job: Job, error: JobError) -> IoResult<()> {
    for _ in 0..3 {
        let expected = job.progress.step;
        job.status = JobStatus::Failed;
        job.error = Some(error.clone());
        job.completed_at = Some(now_timestamp());
        job.updated_at = now_timestamp();
        if gateway.jobs.replace(&job, expected).await? {
            tracing::error!(code = %error.code, error = %error.message, "job failed");
            return Ok(());
        }
        match gateway.jobs.get(job.id).await? {
            Some(current) if !current.status.is_terminal() => job = current,
            _ => return Ok(()),
        }
    }
    Err(IoError::new("fail job", "job kept changing"))
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "worker_phase_tests.rs"]
mod phase_tests;

#[cfg(test)]
#[path = "worker_recovery_tests.rs"]
mod recovery_tests;
