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

pub(crate) mod call;
mod map;
mod phases;

use call::{
    build_call, categorization_prompt, extraction_prompt, finishing_max_tokens, read_text,
    reduce_step, Call,
};
use phases::{
    after_processing, enter_finishing, finish_output, load_outputs, note, plan_reduce_level,
    write_metrics,
};

use super::breaker::{self, Breaker};
use super::turns::plan_stored_input;
use super::{recovery, Gateway};
use crate::domain::{
    now_timestamp, Job, JobError, JobStatus, PassType, Phase, ProcessingMode, ReduceLevel,
    StepMessage, StepOutput,
};
use crate::engine::catalog::tokenizers::counter_or_default;
use crate::llm::{chat_with_retries, ChatMessage, ChatRequest, Endpoint, LlmError, LlmFailure};
use crate::ports::{keys, IoError, IoResult};
use crate::postprocess::answer::parse_json_object;
use crate::postprocess::consolidate::consolidate;
use crate::postprocess::reduce::{join_outputs, plan_groups, tidy_answer, MAX_LEVELS};
use crate::postprocess::{categorization, extraction, FINISHING_MAX_TOKENS, FINISHING_TEMPERATURE};
use crate::text::batching::{context_tokens, rolling_context, BatchBudget};
use crate::text::prompt::fill;
use crate::tokens::TokenCounter;

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

/// Conditional writes of a job tried, re-reading it after each lost one, before the
/// message is left for redelivery (the chunks of a map phase compete for the job).
pub(crate) const MAX_WRITE_TRIES: usize = 32;

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
    if job.processing_mode == ProcessingMode::MapReduce
        && matches!(job.progress.phase, Phase::Planning | Phase::Processing)
    {
        return map::process(gateway, job, message).await;
    }
    if message.chunk {
        return Ok(StepOutcome::Skipped("chunk of a map phase already over"));
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

    let counter = counter_or_default(gateway, &job.settings.tokenizer).await;
    let job = match plan_if_needed(gateway, job, message.step, &counter).await? {
        Ok(job) => job,
        Err(outcome) => return Ok(outcome),
    };
    // Independent reads at once: the stored output (a redelivery) and what the call needs.
    let (stored, call) = tokio::join!(
        load_step_output(gateway, &job, message.step),
        build_call(gateway, &job, message, &counter)
    );
    let output = match stored? {
        Some(stored) => {
            tracing::info!(
                step = message.step,
                "step output already stored; LLM not called again"
            );
            stored
        }
        None => match run_llm_step(gateway, &job, message, call?, &counter).await? {
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

/// Plans a job in `Phase::Planning` (its input too large to plan before the answer) and
/// stores it: the planned job, or the outcome when it cannot go on.
async fn plan_if_needed(
    gateway: &Gateway,
    job: Job,
    step: u32,
    counter: &TokenCounter,
) -> IoResult<Result<Job, StepOutcome>> {
    if job.progress.phase != Phase::Planning {
        return Ok(Ok(job));
    }
    match plan_stored_input(gateway, job.clone(), counter).await? {
        Ok(mut planned) => {
            planned.updated_at = now_timestamp();
            if !gateway.jobs.replace(&planned, step).await? {
                return Ok(Err(StepOutcome::Skipped(
                    "job changed while it was planned",
                )));
            }
            tracing::info!(
                input_tokens = planned.input_tokens,
                total_turns = planned.progress.total_turns,
                pages = planned.progress.turn_pages.len(),
                "input planned"
            );
            Ok(Ok(planned))
        }
        Err(error) => {
            fail_job(gateway, job, error).await?;
            Ok(Err(StepOutcome::Failed))
        }
    }
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
    let stale = if message.chunk {
        map::chunk_turns(&job, message.step).is_err()
    } else {
        job.progress.step != message.step
    };
    if stale {
        // The job moved on (the step ran after all); the dead letter is stale.
        return Ok(StepOutcome::Skipped("stale dead letter"));
    }
    let error = JobError {
        code: "STEP_RETRIES_EXHAUSTED".into(),
        message: format!(
            "{} {} could not be processed after {receive_count} deliveries; see the worker logs for job {}",
            if message.chunk { "chunk" } else { "step" },
            message.step,
            job.id
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
        let counter = counter_or_default(gateway, &job.settings.tokenizer).await;
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
    call: Call,
    counter: &TokenCounter,
) -> IoResult<Result<StepOutput, StepFailure>> {
    let deadline = tokio::time::Instant::now() + gateway.limits.step_deadline;
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
    let request = ChatRequest::for_job(
        &job.settings,
        messages,
        call.temperature,
        call.max_tokens,
        call.flavor_call,
    );

    let started_at = now_timestamp();
    let clock = std::time::Instant::now();
    let attempts = chat_with_retries(
        gateway.llm.as_ref(),
        &endpoint,
        &request,
        gateway.limits.retry,
        deadline,
    );
    // A chunk's heartbeat holds while no other chunk of its job is counted.
    let beat_step = if message.chunk {
        job.progress.step
    } else {
        message.step
    };
    let completion = match with_heartbeat(gateway, job.id, beat_step, attempts).await {
        Ok(completion) => completion,
        Err(failure) => {
            tracing::warn!(step = message.step, phase = ?job.progress.phase, kind = failure.last.kind().as_str(), error = %failure, "LLM call failed");
            breaker::call_ended(gateway, &job.settings, &breaker, false).await?;
            return Ok(Err(StepFailure::Provider(failure)));
        }
    };
    let duration_ms = clock.elapsed().as_millis() as u64;
    breaker::call_ended(gateway, &job.settings, &breaker, true).await?;
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
    count_output(&mut job, &output);
    job.progress.step = message.step + 1;
    let next = match job.progress.phase {
        Phase::Planning => return Err(IoError::new("advance", "the job was not planned")),
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

    Ok(commit_next(gateway, job, message.step, next)
        .await?
        .unwrap_or(StepOutcome::Skipped("job advanced concurrently")))
}

/// Adds a step's output to the job's usage and counts the call in its phase.
fn count_output(job: &mut Job, output: &StepOutput) {
    job.status = JobStatus::Processing;
    job.started_at
        .get_or_insert_with(|| output.started_at.clone());
    job.updated_at = now_timestamp();
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
}

/// Writes the job moved on by a step (its step was `expected_step` in the store) and
/// does what comes next: sends the next step, completes the job or fails it. None when
/// the write found the job changed (another delivery or a cancel got there first).
async fn commit_next(
    gateway: &Gateway,
    mut job: Job,
    expected_step: u32,
    next: Next,
) -> IoResult<Option<StepOutcome>> {
    match next {
        Next::Step(context) => {
            if !gateway.jobs.replace(&job, expected_step).await? {
                return Ok(None);
            }
            let next = StepMessage::of(&job, job.progress.step, context);
            gateway.queue.send(&next, job.lane()).await?;
            Ok(Some(StepOutcome::Advanced {
                next_step: next.step,
            }))
        }
        Next::Complete => {
            write_metrics(gateway, &job).await?;
            job.status = JobStatus::Completed;
            job.completed_at = Some(now_timestamp());
            job.progress.reduce = None;
            if !gateway.jobs.replace(&job, expected_step).await? {
                return Ok(None);
            }
            super::execute::remember_result(gateway, &job).await;
            tracing::info!(
                passes = job.usage.passes,
                prompt_tokens = job.usage.prompt_tokens,
                completion_tokens = job.usage.completion_tokens,
                "job completed"
            );
            Ok(Some(StepOutcome::Completed))
        }
        Next::Fail(error) => {
            // The step's output and usage count; the job keeps its step so the write
            // holds only if nothing else moved it.
            job.progress.step = expected_step;
            fail_job(gateway, job, error).await?;
            Ok(Some(StepOutcome::Failed))
        }
    }
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
#[path = "tests.rs"]
mod tests;

#[cfg(test)]
#[path = "phase_tests.rs"]
mod phase_tests;

#[cfg(test)]
#[path = "recovery_tests.rs"]
mod recovery_tests;

#[cfg(test)]
#[path = "map_tests.rs"]
mod map_tests;
