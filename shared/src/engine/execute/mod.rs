//! Job submission: validate the request, resolve the flavor, count tokens, choose the
//! plan, store the input and turns, write the job and enqueue its first step. Nothing is
//! written for a rejected request.

mod cache;
mod estimate;
mod finishing;
pub(crate) mod request;
pub mod uploads;

pub use crate::engine::catalog::tokenizers::counter_for;
pub use cache::remember as remember_result;
#[cfg(feature = "documents")]
pub(crate) use cache::sha256_hex;
pub use estimate::dry_run_json;
pub use request::ExecuteRequest;

use finishing::finishing_prompts;
use serde_json::{json, Value};
use uuid::Uuid;

use super::catalog::flavors::flavor_by_id;
use super::catalog::validate::check_placeholders;
use super::turns;
use super::views::with_flavor_choice;
use super::Gateway;
use crate::domain::{
    now_timestamp, FailoverPolicy, Fallback, Flavor, Job, JobProgress, JobSettings, JobStatus,
    Model, Phase, ProcessingMode, Provider, Service, StepMessage, DEFAULT_CREATE_NEW_TURN_AFTER,
    DEFAULT_MAP_CONCURRENCY, DEFAULT_MAX_NEW_TURNS, DEFAULT_SUMMARY_TURNS,
};
use crate::engine::error::{ContextExceeded, EngineError, EngineResult, Location, Resource, Rule};
use crate::ports::keys;
use crate::text::batching::{BatchBudget, MIN_INPUT_TOKENS};
use crate::text::normalize::{normalize_transcript, NormalizedTurn, MAX_BYTES_PER_TOKEN};
use crate::tokens::TokenCounter;

/// Everything the catalog says about a request's target.
pub(crate) struct Target {
    pub(crate) service: Service,
    pub(crate) flavor: Flavor,
    pub(crate) model: Model,
    pub(crate) provider: Provider,
}

/// A job ready to be stored: the queued record and, for iterative jobs planned before
/// the answer, its turns.
pub struct Plan {
    pub job: Job,
    /// The normalised turns (iterative jobs, unless planned by their first step).
    pub turns: Option<Vec<NormalizedTurn>>,
}

/// Checks a request against the catalog and plans its job (flavor, tokens, turns,
/// batches) without writing anything.
pub async fn plan(
    gateway: &Gateway,
    service_id: Uuid,
    request: &ExecuteRequest,
) -> EngineResult<Plan> {
    let target = resolve_target(gateway, service_id, request).await?;
    let original = target.flavor.clone();
    let exceeded = match plan_on(gateway, target, request).await {
        Err(EngineError::ContextExceeded(exceeded))
            if original.processing_mode == ProcessingMode::SinglePass
                && exceeded.input_tokens.is_some() =>
        {
            exceeded
        }
        other => return other,
    };
    let input_tokens = exceeded.input_tokens.unwrap_or_default();
    for (candidate, reason) in fallback_candidates(gateway, &original).await? {
        let name = candidate.flavor.name.clone();
        match plan_on(gateway, candidate, request).await {
            Ok(mut plan) => {
                plan.job.fallback = Some(Fallback {
                    original_flavor_id: original.id,
                    original_flavor_name: original.name.clone(),
                    reason: format!(
                        "the input ({input_tokens} tokens) does not fit flavor '{}' ({} tokens available); {reason} '{name}'",
                        original.name, exceeded.available_tokens
                    ),
                    input_tokens: input_tokens as u32,
                    context_available: exceeded.available_tokens as u32,
                });
                return Ok(plan);
            }
            Err(EngineError::ContextExceeded(_)) => continue,
            Err(other) => return Err(other),
        }
    }
    Err(EngineError::ContextExceeded(exceeded))
}

/// Most `fallback_flavor_id` hops followed from the requested flavor.
const MAX_FALLBACK_HOPS: usize = 3;

/// The flavors to try, in order, when a single-pass input does not fit: the
/// `fallback_flavor_id` chain (bounded, no flavor twice; inactive or incomplete ones
/// skipped), then, when the flavor allows it, the service's active iterative flavors.
async fn fallback_candidates(
    gateway: &Gateway,
    original: &Flavor,
) -> EngineResult<Vec<(Target, &'static str)>> {
    let mut candidates = Vec::new();
    let mut seen = vec![original.id];
    let mut next = original.fallback_flavor_id;
    while let Some(id) = next.filter(|id| !seen.contains(id) && seen.len() <= MAX_FALLBACK_HOPS) {
        seen.push(id);
        let Some(flavor) = flavor_by_id(gateway, id).await? else {
            break;
        };
        next = flavor.fallback_flavor_id;
        if let Some(target) = usable_target(gateway, flavor).await? {
            candidates.push((target, "fell back to fallback_flavor_id"));
        }
    }
    if original.auto_fallback_to_iterative {
        let mut iterative: Vec<Flavor> = gateway
            .catalog
            .flavors(original.service_id)
            .await?
            .into_iter()
            .filter(|f| {
                f.is_active
                    && f.processing_mode == ProcessingMode::Iterative
                    && !seen.contains(&f.id)
            })
            .collect();
        iterative.sort_by_key(|f| (!f.is_default, f.priority, f.name.clone()));
        for flavor in iterative {
            if let Some(target) = usable_target(gateway, flavor).await? {
                candidates.push((target, "fell back automatically to the iterative flavor"));
            }
        }
    }
    Ok(candidates)
}

/// The flavor with its service, model and provider, when all exist and are active.
pub(crate) async fn usable_target(
    gateway: &Gateway,
    flavor: Flavor,
) -> EngineResult<Option<Target>> {
    if !flavor.is_active {
        return Ok(None);
    }
    let Some(service) = gateway.catalog.service(flavor.service_id).await? else {
        return Ok(None);
    };
    let Some(model) = gateway
        .catalog
        .model(flavor.model_id)
        .await?
        .filter(|m| m.is_active)
    else {
        return Ok(None);
    };
    let Some(provider) = gateway.catalog.provider(model.provider_id).await? else {
        return Ok(None);
    };
    Ok(service.is_active.then_some(Target {
        service,
        flavor,
        model,
        provider,
    }))
}

/// Plans the job on one target (the requested flavor, or a fallback).
async fn plan_on(
    gateway: &Gateway,
    target: Target,
    request: &ExecuteRequest,
) -> EngineResult<Plan> {
    let Target {
        service,
        flavor,
        model,
        provider,
    } = target;

    check_placeholders(
        flavor.processing_mode,
        &flavor.prompt_user_content,
        "prompt_user_content",
    )?;

    let finishing = finishing_prompts(gateway, &flavor, request).await?;
    let mut settings = JobSettings {
        prompt_user_content: flavor.prompt_user_content.clone(),
        prompt_system_content: flavor.prompt_system_content.clone(),
        create_new_turn_after: flavor
            .create_new_turn_after
            .unwrap_or(DEFAULT_CREATE_NEW_TURN_AFTER),
        summary_turns: flavor.summary_turns.unwrap_or(DEFAULT_SUMMARY_TURNS),
        max_new_turns: flavor.max_new_turns.unwrap_or(DEFAULT_MAX_NEW_TURNS),
        map_concurrency: flavor.map_concurrency.unwrap_or(DEFAULT_MAP_CONCURRENCY),
        priority: flavor.priority,
        output_type: flavor.output_type.clone(),
        reduce_prompt: finishing.reduce,
        consolidate: flavor.consolidate_summary,
        extraction_prompt: finishing.extraction,
        categorization_prompt: finishing.categorization,
        has_extraction_prompt: flavor.placeholder_extraction_prompt_id.is_some(),
        failover: FailoverPolicy::of(&flavor),
        ..JobSettings::default()
    };
    let counter = counter_for(gateway, &flavor, &model).await;
    settings.run_on(&flavor, &model, &provider, &counter);
    let budget = BatchBudget::from(&settings);
    let available = budget.available();
    let input_tokens = match request.deferred_upload {
        // Not read yet: no text has fewer tokens than this, so a single pass that cannot
        // fit is known (and falls back) without reading it.
        Some(bytes) => bytes as usize / MAX_BYTES_PER_TOKEN,
        None => counter.count(&request.input),
    };

    let job_id = Uuid::new_v4();
    let (progress, turns) = match flavor.processing_mode {
        ProcessingMode::SinglePass => {
            if input_tokens > available {
                return Err(
                    context_exceeded(gateway, &service, &flavor, input_tokens, &budget).await,
                );
            }
            if request.deferred_upload.is_some() {
                return Err(EngineError::validation(
                    Location::Body,
                    "input_upload_id",
                    format!(
                        "an upload over {} bytes is planned in the background, which only iterative flavors do; flavor '{}' is single pass",
                        gateway.limits.inline_plan_bytes, flavor.name
                    ),
                ));
            }
            (
                JobProgress {
                    total_turns: 1,
                    total_batches: 1,
                    phase_total: 1,
                    ..JobProgress::default()
                },
                None,
            )
        }
        ProcessingMode::Iterative | ProcessingMode::MapReduce
            if request.deferred_upload.is_some() =>
        {
            check_iterative_room(&budget, &flavor)?;
            let planning = JobProgress {
                phase: Phase::Planning,
                ..JobProgress::default()
            };
            (planning, None)
        }
        ProcessingMode::Iterative | ProcessingMode::MapReduce => plan_iterative(
            &request.input,
            &counter,
            &settings,
            flavor.processing_mode,
            &budget,
            &flavor,
        )?,
    };

    let mut job = Job::new(
        job_id,
        &service,
        &flavor,
        request.organization_id.clone(),
        settings,
    );
    if request.deferred_upload.is_none() {
        job.input_tokens = input_tokens as u32;
    }
    job.input_chars = request.input.chars().count() as u64;
    job.context_available = available as u32;
    job.progress = progress;
    job.extraction_fields = request.extraction_fields.clone();
    job.context = request.context.clone();
    job.input_upload_id = request.deferred_upload.and(request.input_upload_id);
    Ok(Plan { job, turns })
}

/// Submits a job: returns it queued, with its first step enqueued.
pub async fn submit(
    gateway: &Gateway,
    service_id: Uuid,
    request: ExecuteRequest,
) -> EngineResult<Job> {
    let Plan { mut job, turns } = plan(gateway, service_id, &request).await?;
    if request.use_cache && request.deferred_upload.is_none() {
        job.cache_key = Some(cache::cache_key(&job, &request.input));
        if let Some(answered) = cache::answer(gateway, &job).await? {
            return Ok(answered);
        }
    }
    let job_id = job.id;
    // Fair share: past its organization's share of active jobs, a job runs on the bulk
    // lane, so a burst of one organization never holds the lanes other organizations use.
    let share = gateway.limits.organization_share;
    job.overflow = gateway
        .jobs
        .active_count(job.organization_id.as_deref(), share)
        .await?
        >= share;

    // An input planned by the first step is copied from its upload by that step.
    if request.deferred_upload.is_none() {
        gateway
            .blobs
            .put(
                &keys::input(job_id),
                request.input.into_bytes(),
                "text/plain; charset=utf-8",
            )
            .await?;
    }
    if let Some(turns) = turns {
        job.progress.turn_pages = super::turns::store_turns(gateway, job_id, turns).await?;
    }
    gateway.jobs.create(&job).await?;
    let first = StepMessage::of(&job, 0, Vec::new());
    if let Err(error) = gateway.queue.send(&first, job.lane()).await {
        // Never leave a queued job that no message will ever run.
        let mut failed = job.clone();
        failed.status = JobStatus::Failed;
        failed.error = Some(crate::domain::JobError {
            code: "ENQUEUE_FAILED".into(),
            message: error.to_string(),
        });
        failed.completed_at = Some(now_timestamp());
        if let Err(store_error) = gateway.jobs.replace(&failed, 0).await {
            tracing::error!(job_id = %job.id, error = %store_error, "could not mark the unqueued job failed; it stays queued without a message");
        }
        return Err(error.into());
    }
    tracing::info!(job_id = %job.id, organization_id = job.organization_id.as_deref().unwrap_or(""), input_tokens = job.input_tokens, mode = ?job.processing_mode, total_batches = job.progress.total_batches, "job queued");
    Ok(job)
}

/// The 202 answer to a submitted job.
pub fn accepted_json(job: &Job) -> Value {
    let planned = job.progress.phase != Phase::Planning;
    let body = json!({
        "job_id": job.id,
        "status": job.status,
        "service_id": job.service_id,
        "service_name": job.service_name,
        "flavor_id": job.flavor_id,
        "flavor_name": job.flavor_name,
        "organization_id": job.organization_id,
        "processing_mode": job.processing_mode,
        "created_at": job.created_at,
        "input_tokens": planned.then_some(job.input_tokens),
        "context_available": job.context_available,
        "tokenizer": job.settings.tokenizer,
        "total_turns": planned.then_some(job.progress.total_turns),
        "estimated_batches": planned.then_some(job.progress.total_batches),
        // A large upload is read, counted and cut by the job's first step.
        "planning": if planned { "done" } else { "first_step" },
        "estimated_completion_time": null,
    });
    with_flavor_choice(body, job)
}

/// Normalises the transcript into turns and estimates the batches (or chunks); returns the progress
/// and the turns, stored at submission.
fn plan_iterative(
    input: &str,
    counter: &TokenCounter,
    settings: &JobSettings,
    mode: ProcessingMode,
    budget: &BatchBudget,
    flavor: &Flavor,
) -> EngineResult<(JobProgress, Option<Vec<NormalizedTurn>>)> {
    check_iterative_room(budget, flavor)?;
    let turns = normalize_transcript(input, counter, turns::normalize_limits(settings));
    let tokens: Vec<u32> = turns.iter().map(|turn| turn.tokens).collect();
    let total_batches = turns::estimate_batches(settings, mode, &tokens);
    Ok((
        JobProgress {
            total_turns: turns.len() as u32,
            total_batches,
            phase_total: total_batches,
            ..JobProgress::default()
        },
        Some(turns),
    ))
}

/// Refuses an iterative flavor that leaves less than [`MIN_INPUT_TOKENS`] for input.
fn check_iterative_room(budget: &BatchBudget, flavor: &Flavor) -> EngineResult<()> {
    if budget.available() >= MIN_INPUT_TOKENS {
        return Ok(());
    }
    Err(EngineError::ContextExceeded(Box::new(ContextExceeded {
        flavor_id: flavor.id,
        flavor_name: flavor.name.clone(),
        input_tokens: None,
        available_tokens: budget.available(),
        context_length: budget.context_length,
        max_generation_length: budget.max_generation,
        prompt_tokens: budget.prompt_tokens,
        suggestion: "use a model with a larger context, or a shorter prompt or generation length"
            .into(),
    })))
}

async fn resolve_target(
    gateway: &Gateway,
    service_id: Uuid,
    request: &ExecuteRequest,
) -> EngineResult<Target> {
    let service = gateway
        .catalog
        .service(service_id)
        .await?
        .filter(|service| {
            service.organization_id.is_none() || service.organization_id == request.organization_id
        })
        .ok_or_else(|| EngineError::not_found(Resource::Service, service_id))?;
    if !service.is_active {
        return Err(EngineError::refused(
            Rule::ServiceInactive,
            format!("service '{}' is inactive", service.name),
        ));
    }
    let flavor = if let Some(name) = &request.flavor_name {
        let flavors = gateway.catalog.flavors(service_id).await?;
        flavors
            .into_iter()
            .find(|flavor| &flavor.name == name)
            .ok_or_else(|| EngineError::not_found_by(Resource::Flavor, name, "flavor_name"))?
    } else if let Some(flavor_id) = request.flavor_id {
        gateway
            .catalog
            .flavor(service_id, flavor_id)
            .await?
            .ok_or_else(|| EngineError::not_found_by(Resource::Flavor, flavor_id, "flavor_id"))?
    } else {
        let flavors = gateway.catalog.flavors(service_id).await?;
        flavors
            .into_iter()
            .find(|flavor| flavor.is_default)
            .ok_or_else(|| {
                EngineError::refused(
                    Rule::NoDefaultFlavor,
                    format!(
                        "service '{}' has no default flavor; pass flavor_id or flavor_name",
                        service.name
                    ),
                )
            })?
    };
    target_of(gateway, service, flavor).await
}

/// The target of a request for `flavor` of `service` (already checked: visible and
/// active): the flavor must be active, its model exist and be active, its provider exist.
pub(crate) async fn target_of(
    gateway: &Gateway,
    service: Service,
    flavor: Flavor,
) -> EngineResult<Target> {
    if !flavor.is_active {
        return Err(EngineError::refused(
            Rule::FlavorInactive,
            format!("flavor '{}' is inactive", flavor.name),
        )
        .about("flavor_id", flavor.id));
    }
    let model = gateway
        .catalog
        .model(flavor.model_id)
        .await?
        .ok_or_else(|| {
            EngineError::refused(
                Rule::FlavorModelMissing,
                format!(
                    "flavor '{}' uses model {} which does not exist",
                    flavor.name, flavor.model_id
                ),
            )
        })?;
    if !model.is_active {
        return Err(EngineError::refused(
            Rule::ModelInactive,
            format!("model '{}' is inactive", model.model_name),
        ));
    }
    let provider = gateway
        .catalog
        .provider(model.provider_id)
        .await?
        .ok_or_else(|| {
            EngineError::refused(
                Rule::FlavorProviderMissing,
                format!(
                    "model '{}' uses provider {} which does not exist",
                    model.model_name, model.provider_id
                ),
            )
        })?;
    Ok(Target {
        service,
        flavor,
        model,
        provider,
    })
}

async fn context_exceeded(
    gateway: &Gateway,
    service: &Service,
    flavor: &Flavor,
    input_tokens: usize,
    budget: &BatchBudget,
) -> EngineError {
    let flavors = match gateway.catalog.flavors(service.id).await {
        Ok(flavors) => flavors,
        Err(error) => return error.into(),
    };
    let iterative = flavors
        .into_iter()
        .find(|other| other.is_active && other.processing_mode == ProcessingMode::Iterative);
    let suggestion = match &iterative {
        Some(other) => format!(
            "use the iterative flavor '{}' (flavor_id {}), which processes long inputs in batches",
            other.name, other.id
        ),
        None => "shorten the input or use an iterative flavor".into(),
    };
    EngineError::ContextExceeded(Box::new(ContextExceeded {
        flavor_id: flavor.id,
        flavor_name: flavor.name.clone(),
        input_tokens: Some(input_tokens),
        available_tokens: budget.available(),
        context_length: budget.context_length,
        max_generation_length: budget.max_generation,
        prompt_tokens: budget.prompt_tokens,
        suggestion,
    }))
}

#[cfg(test)]
mod cache_tests;
#[cfg(test)]
#[path = "tests.rs"]
mod submission_tests;
