//! What happens to a step whose provider failed after its in-call retries: the job fails
//! over to the flavor its policy names (the remaining steps run on the new provider and
//! model, steps already done are kept), or a transient failure puts the step back in the
//! queue with back-off until the step's patience runs out, or the job fails with an error
//! that names every provider tried and why.

use std::time::Duration;

use uuid::Uuid;

use super::breaker;
use super::catalog::flavors::flavor_by_id;
use super::execute::counter_for;
use super::turns::{normalize_limits, recut_turns};
use super::worker::{fail_job, StepOutcome, MAX_WRITE_TRIES};
use super::Gateway;
use crate::domain::{
    now_timestamp, FailoverHop, FailoverPolicy, FailureKind, Job, JobError, Phase, ProcessingMode,
    StepMessage,
};
use crate::llm::LlmFailure;
use crate::ports::{keys, IoError, IoResult};
use crate::text::batching::{BatchBudget, MIN_INPUT_TOKENS};
use crate::tokens::TokenCounter;

/// The kind of a provider failure, counted by the breaker of the job's provider and model
/// when a call was made and the failure is transient.
async fn count_failure(
    gateway: &Gateway,
    job: &Job,
    failure: &LlmFailure,
) -> IoResult<FailureKind> {
    let kind = failure.last.kind();
    if failure.attempts > 0 && kind.is_transient() {
        breaker::failed(gateway, &job.settings).await?;
    }
    Ok(kind)
}

/// Decides the fate of a step whose provider failed.
pub(super) async fn after_provider_failure(
    gateway: &Gateway,
    mut job: Job,
    message: &StepMessage,
    failure: LlmFailure,
) -> IoResult<StepOutcome> {
    let kind = count_failure(gateway, &job, &failure).await?;
    if let Some(target) = job.settings.failover.target_for(kind) {
        if let Some(hop) = fail_over(gateway, &mut job, message, kind, &failure, target).await? {
            if !gateway.jobs.replace(&job, message.step).await? {
                return Ok(StepOutcome::Skipped("job advanced concurrently"));
            }
            tracing::warn!(
                from = %hop.from_flavor_name,
                to = %hop.to_flavor_name,
                reason = kind.as_str(),
                step = message.step,
                "failed over"
            );
            return Ok(StepOutcome::RetryLater {
                delay: Duration::ZERO,
                lane: job.lane(),
            });
        }
    }

    job.heartbeat_at = None;
    if kind.is_transient() && within_patience(gateway, job.progress.failing_since.as_deref()) {
        job.progress.failures += 1;
        job.progress.failing_since = Some(
            job.progress
                .failing_since
                .take()
                .unwrap_or_else(now_timestamp),
        );
        job.updated_at = now_timestamp();
        if !gateway.jobs.replace(&job, message.step).await? {
            return Ok(StepOutcome::Skipped("job advanced concurrently"));
        }
        let delay = requeue_delay(gateway, job.progress.failures, failure.retry_after);
        tracing::warn!(
            step = message.step,
            failures = job.progress.failures,
            delay_ms = delay.as_millis() as u64,
            reason = kind.as_str(),
            "step re-queued"
        );
        return Ok(StepOutcome::RetryLater {
            delay,
            lane: job.lane(),
        });
    }

    let error = final_error(&job, kind, &failure);
    fail_job(gateway, job, error).await?;
    Ok(StepOutcome::Failed)
}

/// Whether a step failing since `failing_since` (None: it just failed) may still be
/// retried.
fn within_patience(gateway: &Gateway, failing_since: Option<&str>) -> bool {
    let now = chrono::Utc::now();
    let since = failing_since
        .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
        .map_or(now, |at| at.with_timezone(&chrono::Utc));
    let patience =
        chrono::Duration::from_std(gateway.limits.step_patience).unwrap_or(chrono::Duration::MAX);
    now - since < patience
}

/// Decides the fate of a chunk of a `map_reduce` job whose provider failed: re-queued
/// with back-off while the failure is transient and the chunk's patience lasts (its own
/// failure count, recorded on the chunk), else the job fails. Map-reduce flavors do not
/// fail over.
pub(super) async fn after_chunk_failure(
    gateway: &Gateway,
    mut job: Job,
    message: &StepMessage,
    failure: LlmFailure,
) -> IoResult<StepOutcome> {
    let kind = count_failure(gateway, &job, &failure).await?;
    for _ in 0..MAX_WRITE_TRIES {
        let expected = job.progress.step;
        let lane = job.lane();
        let Some(chunk) = job
            .progress
            .map
            .as_mut()
            .and_then(|map| map.in_flight.iter_mut().find(|c| c.step == message.step))
        else {
            return Ok(StepOutcome::Skipped("chunk already counted"));
        };
        if !(kind.is_transient() && within_patience(gateway, chunk.failing_since.as_deref())) {
            let error = final_error(&job, kind, &failure);
            fail_job(gateway, job, error).await?;
            return Ok(StepOutcome::Failed);
        }
        chunk.failures += 1;
        chunk.failing_since.get_or_insert_with(now_timestamp);
        let failures = chunk.failures;
        job.updated_at = now_timestamp();
        if gateway.jobs.replace(&job, expected).await? {
            let delay = requeue_delay(gateway, failures, failure.retry_after);
            tracing::warn!(
                chunk = message.step,
                failures,
                delay_ms = delay.as_millis() as u64,
                reason = kind.as_str(),
                "chunk re-queued"
            );
            return Ok(StepOutcome::RetryLater { delay, lane });
        }
        match gateway.jobs.get(job.id).await? {
            Some(current) if !current.status.is_terminal() => job = current,
            _ => return Ok(StepOutcome::Skipped("job finished meanwhile")),
        }
    }
    Err(IoError::new("re-queue chunk", "the job kept changing"))
}

/// The wait before a re-queued step runs again: the back-off for its `failures`-th
/// failure, but at least what the provider asked for (capped at the step patience).
fn requeue_delay(gateway: &Gateway, failures: u32, provider_wait: Option<Duration>) -> Duration {
    let limits = &gateway.limits;
    let backoff = limits
        .requeue_base
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1)))
        .min(limits.requeue_max);
    backoff.max(provider_wait.unwrap_or_default().min(limits.step_patience))
}

/// The error of a job that no provider could serve: every failover hop and the last
/// failure, each with its provider and reason.
fn final_error(job: &Job, kind: FailureKind, failure: &LlmFailure) -> JobError {
    provider_failure_error(
        &job.failover_chain,
        &job.settings.provider_name,
        job.final_flavor().1,
        kind,
        failure,
    )
}

/// The error of a call no provider could serve: the last failure, of `provider` on
/// `flavor_name`, with its kind's code; after failovers (`chain`), `ALL_PROVIDERS_FAILED`
/// naming every provider tried and why.
pub(super) fn provider_failure_error(
    chain: &[FailoverHop],
    provider: &str,
    flavor_name: &str,
    kind: FailureKind,
    failure: &LlmFailure,
) -> JobError {
    let last = format!(
        "provider '{provider}' ({flavor_name}): {}: {failure}",
        kind.as_str(),
    );
    if chain.is_empty() {
        return JobError {
            code: kind.job_error_code().into(),
            message: last,
        };
    }
    let tried: Vec<String> = chain
        .iter()
        .map(|hop| {
            format!(
                "provider '{}' ({}): {}: {}",
                hop.from_provider,
                hop.from_flavor_name,
                hop.reason.as_str(),
                hop.error
            )
        })
        .chain(std::iter::once(last))
        .collect();
    JobError {
        code: "ALL_PROVIDERS_FAILED".into(),
        message: format!("every provider failed: {}", tried.join("; ")),
    }
}

/// Moves the job to the `target` flavor's provider and model when it can take the job
/// over (it exists and is active, is not already in the chain, the depth allows it, and
/// the remaining work fits its model); returns the hop, or None to fall back to retries.
async fn fail_over(
    gateway: &Gateway,
    job: &mut Job,
    message: &StepMessage,
    kind: FailureKind,
    failure: &LlmFailure,
    target: Uuid,
) -> IoResult<Option<FailoverHop>> {
    let depth = job.failover_chain.len();
    let visited =
        target == job.flavor_id || job.failover_chain.iter().any(|hop| hop.to_flavor == target);
    if depth >= usize::from(job.settings.failover.max_depth) || visited {
        return Ok(None);
    }
    let Some(flavor) = flavor_by_id(gateway, target).await? else {
        return Ok(None);
    };
    let Some(model) = gateway.catalog.model(flavor.model_id).await? else {
        return Ok(None);
    };
    let Some(provider) = gateway.catalog.provider(model.provider_id).await? else {
        return Ok(None);
    };
    if !flavor.is_active || !model.is_active {
        return Ok(None);
    }
    let counter = counter_for(gateway, &flavor, &model).await;
    let (from_flavor, from_flavor_name) = job.final_flavor();
    let from_flavor_name = from_flavor_name.to_string();
    let from_provider = job.settings.provider_name.clone();
    let mut moved = job.clone();
    moved.settings.run_on(&flavor, &model, &provider, &counter);
    moved.settings.failover = FailoverPolicy {
        max_depth: job.settings.failover.max_depth,
        ..FailoverPolicy::of(&flavor)
    };
    if !remaining_work_fits(gateway, &mut moved, &counter).await? {
        tracing::warn!(to = %flavor.name, "failover target too small for the remaining work");
        return Ok(None);
    }
    let hop = FailoverHop {
        from_flavor,
        from_flavor_name,
        from_provider,
        to_flavor: flavor.id,
        to_flavor_name: flavor.name.clone(),
        to_provider: provider.name.clone(),
        reason: kind,
        error: failure.to_string(),
        at_step: message.step,
        at: now_timestamp(),
    };
    moved.failover_chain.push(hop.clone());
    moved.progress.failures = 0;
    moved.progress.failing_since = None;
    moved.updated_at = now_timestamp();
    *job = moved;
    Ok(Some(hop))
}

/// Checks the work left fits the job's (new) model, re-cutting the turns still to
/// process for its context and tokenizer: the turns already done are kept as they are,
/// the rest is normalised again and the batches re-estimated. Single-pass input must fit
/// in one call; a reduce level already planned must fit the new budget.
async fn remaining_work_fits(
    gateway: &Gateway,
    job: &mut Job,
    counter: &TokenCounter,
) -> IoResult<bool> {
    let budget = BatchBudget::from(&job.settings);
    if budget.available() < MIN_INPUT_TOKENS {
        return Ok(false);
    }
    match (job.progress.phase, job.processing_mode) {
        (Phase::Processing, ProcessingMode::SinglePass) => {
            let input = gateway
                .blobs
                .get(&keys::input(job.id))
                .await?
                .ok_or_else(|| IoError::new("read job input", "input object missing"))?;
            Ok(counter.count(&String::from_utf8_lossy(&input)) <= budget.available())
        }
        (Phase::Processing, ProcessingMode::Iterative) => {
            let cursor = job.progress.cursor;
            // A new revision, so the job's current turns stay valid until the job is written.
            let revision = job.progress.turns_revision + 1;
            let limits = normalize_limits(&job.settings);
            let stored = recut_turns(gateway, job, cursor, revision, counter, limits).await?;
            let remaining =
                budget.estimate_batches(&stored.tokens, budget.context_reserve() / 2) as u32;
            let progress = &mut job.progress;
            progress.total_turns = cursor + stored.tokens.len() as u32;
            progress.total_batches = progress.phase_step + remaining;
            progress.phase_total = progress.total_batches;
            progress.turns_revision = revision;
            progress.turn_pages = stored.pages;
            Ok(true)
        }
        (Phase::Reducing, _) => {
            // Groups were cut for the old budget; they must fit the new one.
            let reduce_budget = (job.settings.context_length as usize)
                .saturating_sub(job.settings.max_generation_length as usize)
                .saturating_sub(job.settings.reduce_prompt_tokens as usize);
            let Some(level) = job.progress.reduce else {
                return Ok(false);
            };
            for group in (job.progress.step - level.first_step)..level.groups {
                let key = keys::reduce_input(job.id, level.level, group);
                let text = gateway.blobs.get(&key).await?.unwrap_or_default();
                if counter.count(&String::from_utf8_lossy(&text)) > reduce_budget {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        (Phase::Planning | Phase::Extracting | Phase::Categorizing, _) => Ok(true),
        // Chunks in flight were cut for the old model; map_reduce flavors do not fail over.
        (Phase::Processing, ProcessingMode::MapReduce) => Ok(false),
    }
}
