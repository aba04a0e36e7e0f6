//! One step of one job per queue message. A step builds its batch from the job's cursor,
//! calls the LLM (unless its output is already stored), stores the output under a key
//! derived from (job, step), advances the job with a conditional write and enqueues the
//! next step — or finishes the job. Redelivered and stale messages never call the LLM.

use futures_util::{StreamExt, TryStreamExt};
use serde_json::json;

use super::Gateway;
use crate::domain::{
    now_timestamp, Job, JobError, JobStatus, PassType, ProcessingMode, StepMessage, StepOutput,
};
use crate::llm::{chat_with_retries, ChatMessage, ChatRequest, Endpoint};
use crate::ports::{keys, IoError, IoResult};
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
}

/// Step outputs fetched at once when assembling the result.
const RESULT_FETCH_CONCURRENCY: usize = 16;

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
            Err(error) => {
                fail_job(gateway, job, error).await?;
                return Ok(StepOutcome::Failed);
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
    let counter = load_or_default(&job.settings.tokenizer);
    let next = next_message(job, message, &previous.output, &counter);
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

/// Builds the prompt of this step, calls the LLM and stores the output. The inner `Err`
/// is a provider failure that fails the job.
async fn run_llm_step(
    gateway: &Gateway,
    job: &Job,
    message: &StepMessage,
    counter: &TokenCounter,
) -> IoResult<Result<StepOutput, JobError>> {
    let (prompt, batch_start, batch_end, pass_type) = match job.processing_mode {
        ProcessingMode::SinglePass => {
            let input = gateway
                .blobs
                .get(&keys::input(job.id))
                .await?
                .ok_or_else(|| IoError::new("read job input", "input object missing"))?;
            let input = String::from_utf8_lossy(&input).into_owned();
            (
                fill(&job.settings.prompt_user_content, &[&input]),
                0,
                1,
                PassType::SinglePass,
            )
        }
        ProcessingMode::Iterative => {
            let turns = load_turns(gateway, job).await?;
            let tokens: Vec<u32> = turns.iter().map(|turn| turn.tokens).collect();
            let cursor = job.progress.cursor as usize;
            let end = BatchBudget::from(&job.settings).next_batch_end(
                &tokens,
                cursor,
                context_tokens(&message.context, counter),
            );
            let batch: Vec<&str> = turns[cursor..end]
                .iter()
                .map(|turn| turn.text.as_str())
                .collect();
            let prompt = fill(
                &job.settings.prompt_user_content,
                &[&message.context.join("\n"), &batch.join("\n")],
            );
            let pass_type = if message.step == 0 {
                PassType::Initial
            } else {
                PassType::Continuation
            };
            (prompt, cursor as u32, end as u32, pass_type)
        }
    };

    let endpoint = match endpoint(gateway, job).await? {
        Ok(endpoint) => endpoint,
        Err(error) => return Ok(Err(error)),
    };
    let mut messages = Vec::with_capacity(2);
    if let Some(system) = job
        .settings
        .prompt_system_content
        .as_deref()
        .filter(|s| !s.trim().is_empty())
    {
        messages.push(ChatMessage::new("system", system));
    }
    messages.push(ChatMessage::new("user", prompt.clone()));
    let request = ChatRequest {
        model: job.settings.model_identifier.clone(),
        messages,
        temperature: job.settings.temperature,
        top_p: job.settings.top_p,
        max_tokens: job.settings.max_generation_length,
    };

    let started_at = now_timestamp();
    let clock = std::time::Instant::now();
    let completion = match chat_with_retries(
        gateway.llm.as_ref(),
        &endpoint,
        &request,
        gateway.limits.retry,
    )
    .await
    {
        Ok(completion) => completion,
        Err(failure) => {
            let code = match failure.last.status() {
                Some(_) => "PROVIDER_ERROR",
                None => "PROVIDER_UNREACHABLE",
            };
            tracing::error!(step = message.step, error = %failure, "LLM call failed");
            return Ok(Err(JobError {
                code: code.into(),
                message: failure.to_string(),
            }));
        }
    };
    let duration_ms = clock.elapsed().as_millis() as u64;
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
        pass_type,
        batch_start,
        batch_end,
        output: completion.content,
        prompt_tokens,
        completion_tokens,
        duration_ms,
        started_at,
        completed_at: now_timestamp(),
        input_chars: prompt.chars().count() as u64,
    };
    let bytes = serde_json::to_vec(&output).map_err(|e| IoError::new("encode step output", e))?;
    gateway
        .blobs
        .put(&keys::step(job.id, message.step), bytes, "application/json")
        .await?;
    tracing::info!(
        step = message.step,
        batch_start,
        batch_end,
        prompt_tokens,
        completion_tokens,
        duration_ms,
        "step done"
    );
    Ok(Ok(output))
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

async fn load_turns(gateway: &Gateway, job: &Job) -> IoResult<Vec<NormalizedTurn>> {
    let bytes = gateway
        .blobs
        .get(&keys::turns(job.id))
        .await?
        .ok_or_else(|| IoError::new("read job turns", "turns object missing"))?;
    serde_json::from_slice(&bytes).map_err(|e| IoError::new("decode job turns", e))
}

fn next_message(
    job: &Job,
    message: &StepMessage,
    output: &str,
    counter: &TokenCounter,
) -> StepMessage {
    let context = rolling_context(
        &message.context,
        output,
        job.settings.summary_turns as usize,
        BatchBudget::from(&job.settings).context_reserve(),
        counter,
    );
    StepMessage {
        job_id: job.id,
        step: message.step + 1,
        context,
    }
}

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
    job.progress.cursor = output.batch_end;
    job.usage.prompt_tokens += u64::from(output.prompt_tokens);
    job.usage.completion_tokens += u64::from(output.completion_tokens);
    job.usage.duration_ms += output.duration_ms;
    job.usage.passes += 1;

    if job.progress.cursor >= job.progress.total_turns {
        finish(gateway, &mut job).await?;
        job.status = JobStatus::Completed;
        job.completed_at = Some(now);
        job.progress.total_batches = job.progress.step;
        return Ok(if gateway.jobs.replace(&job, message.step).await? {
            tracing::info!(
                passes = job.usage.passes,
                prompt_tokens = job.usage.prompt_tokens,
                completion_tokens = job.usage.completion_tokens,
                "job completed"
            );
            StepOutcome::Completed
        } else {
            StepOutcome::Skipped("job advanced concurrently")
        });
    }

    job.progress.total_batches = job.progress.total_batches.max(job.progress.step + 1);
    if !gateway.jobs.replace(&job, message.step).await? {
        return Ok(StepOutcome::Skipped("job advanced concurrently"));
    }
    let next = next_message(&job, message, &output.output, counter);
    gateway.queue.send(&next, job.lane()).await?;
    Ok(StepOutcome::Advanced {
        next_step: next.step,
    })
}

/// Joins every step's output (in order, blank lines dropped) into the result and stores it
/// with the per-pass metrics.
async fn finish(gateway: &Gateway, job: &mut Job) -> IoResult<()> {
    let steps = job.progress.step;
    let outputs: Vec<StepOutput> = futures_util::stream::iter(0..steps)
        .map(|step| {
            let job = &*job;
            async move {
                load_step_output(gateway, job, step).await?.ok_or_else(|| {
                    IoError::new("read step output", format!("step {step} output missing"))
                })
            }
        })
        .buffered(RESULT_FETCH_CONCURRENCY)
        .try_collect()
        .await?;
    let result: Vec<&str> = outputs
        .iter()
        .flat_map(|output| output.output.lines())
        .map(str::trim_end)
        .filter(|line| !line.trim().is_empty())
        .collect();
    let result = result.join("\n");
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
                "estimated_cost": job.settings.cost_of(
                    u64::from(output.prompt_tokens),
                    u64::from(output.completion_tokens),
                ),
            })
        })
        .collect();
    let metrics = serde_json::to_vec(&passes).map_err(|e| IoError::new("encode metrics", e))?;
    gateway
        .blobs
        .put(&keys::metrics(job.id), metrics, "application/json")
        .await?;
    gateway
        .blobs
        .put(
            &keys::result(job.id),
            result.into_bytes(),
            "text/plain; charset=utf-8",
        )
        .await?;
    Ok(())
}

/// Marks the job failed with `error` (re-reading once if it moved meanwhile).
async fn fail_job(gateway: &Gateway, mut job: Job, error: JobError) -> IoResult<()> {
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
