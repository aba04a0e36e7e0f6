//! Job submission: validate the request, resolve the flavor, count tokens, choose the
//! plan, store the input and turns, write the job and enqueue its first step. Nothing is
//! written for a rejected request.

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::catalog::validate::{check_placeholders, validate_organization_id};
use super::Gateway;
use crate::domain::{
    now_timestamp, round6, Flavor, Job, JobProgress, JobSettings, JobStatus, Model, ProcessingMode,
    Provider, Service, StepMessage, UsageTotals, DEFAULT_CREATE_NEW_TURN_AFTER,
    DEFAULT_MAX_NEW_TURNS, DEFAULT_SUMMARY_TURNS,
};
use crate::engine::error::{
    BodyProblem, ContextExceeded, EngineError, EngineResult, Resource, Rule,
};
use crate::ports::keys;
use crate::text::batching::{BatchBudget, MIN_INPUT_TOKENS};
use crate::text::normalize::{normalize_transcript, NormalizeLimits};
use crate::text::prompt::template_text;
use crate::tokens::{load_or_default, resolve_tokenizer_name, TokenCounter};

/// Rolling-context size assumed per output line when estimating batches.
const ESTIMATED_TOKENS_PER_CONTEXT_LINE: usize = 40;

/// A validated execute request.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecuteRequest {
    pub input: String,
    pub flavor_id: Option<Uuid>,
    pub flavor_name: Option<String>,
    pub organization_id: Option<String>,
    pub context: Option<Map<String, Value>>,
}

impl ExecuteRequest {
    /// Parses and validates a request body; errors name the field and the problem.
    pub fn parse(body: &[u8], max_input_bytes: usize) -> EngineResult<Self> {
        let text = std::str::from_utf8(body).map_err(|e| {
            EngineError::InvalidBody(BodyProblem::NotUtf8 {
                valid_up_to: e.valid_up_to(),
            })
        })?;
        if text.trim().is_empty() {
            return Err(EngineError::InvalidBody(BodyProblem::Empty));
        }
        let value: Value = serde_json::from_str(text)
            .map_err(|e| EngineError::InvalidBody(BodyProblem::NotJson(e.to_string())))?;
        let Value::Object(mut fields) = value else {
            return Err(EngineError::InvalidBody(BodyProblem::NotObject));
        };
        let input = match fields.remove("input") {
            None | Some(Value::Null) => {
                return Err(EngineError::invalid_field("input", "is required"))
            }
            Some(Value::String(input)) => input,
            Some(_) => return Err(EngineError::invalid_field("input", "must be a string")),
        };
        if input.trim().is_empty() {
            return Err(EngineError::invalid_field("input", "must not be empty"));
        }
        if input.len() > max_input_bytes {
            return Err(EngineError::InvalidBody(BodyProblem::TooLarge {
                field: "input",
                size: input.len(),
                limit: max_input_bytes,
            }));
        }
        let flavor_id = optional_string(&mut fields, "flavor_id")?
            .map(|id| {
                Uuid::parse_str(&id)
                    .map_err(|_| EngineError::invalid_field("flavor_id", "must be a UUID"))
            })
            .transpose()?;
        let flavor_name = optional_string(&mut fields, "flavor_name")?;
        if flavor_name
            .as_deref()
            .is_some_and(|name| name.trim().is_empty())
        {
            return Err(EngineError::invalid_field(
                "flavor_name",
                "must not be empty",
            ));
        }
        let organization_id = optional_string(&mut fields, "organization_id")?;
        if let Some(org) = &organization_id {
            validate_organization_id(org)?;
        }
        let context = match fields.remove("context") {
            None | Some(Value::Null) => None,
            Some(Value::Object(context)) => Some(context),
            Some(_) => {
                return Err(EngineError::invalid_field(
                    "context",
                    "must be a JSON object",
                ))
            }
        };
        Ok(ExecuteRequest {
            input,
            flavor_id,
            flavor_name,
            organization_id,
            context,
        })
    }
}

fn optional_string(fields: &mut Map<String, Value>, name: &str) -> EngineResult<Option<String>> {
    match fields.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(EngineError::invalid_field(name, "must be a string")),
    }
}

/// Everything the catalog says about a request's target.
struct Target {
    service: Service,
    flavor: Flavor,
    model: Model,
    provider: Provider,
}

/// A job ready to be stored: the queued record and, for iterative jobs, its turns.
pub struct Plan {
    pub job: Job,
    /// The normalised turns (JSON), for iterative jobs.
    pub turns_json: Option<Vec<u8>>,
}

/// Checks a request against the catalog and plans its job (flavor, tokens, turns,
/// batches) without writing anything.
pub async fn plan(
    gateway: &Gateway,
    service_id: Uuid,
    request: &ExecuteRequest,
) -> EngineResult<Plan> {
    let target = resolve_target(gateway, service_id, request).await?;
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

    let tokenizer_name = resolve_tokenizer_name(
        flavor.tokenizer_override.as_deref(),
        model.tokenizer_name.as_deref(),
        &model.model_identifier,
    );
    let counter = load_or_default(&tokenizer_name);
    let prompt_tokens = counter.count(&template_text(&flavor.prompt_user_content))
        + flavor
            .prompt_system_content
            .as_deref()
            .map_or(0, |system| counter.count(system));
    let input_tokens = counter.count(&request.input);
    let settings = JobSettings {
        provider_id: provider.id,
        provider_name: provider.name.clone(),
        model_identifier: model.model_identifier.clone(),
        context_length: model.context_length,
        max_generation_length: model.max_generation_length,
        tokenizer: counter.name().to_string(),
        temperature: flavor.temperature as f32,
        top_p: flavor.top_p as f32,
        prompt_user_content: flavor.prompt_user_content.clone(),
        prompt_system_content: flavor.prompt_system_content.clone(),
        create_new_turn_after: flavor
            .create_new_turn_after
            .unwrap_or(DEFAULT_CREATE_NEW_TURN_AFTER),
        summary_turns: flavor.summary_turns.unwrap_or(DEFAULT_SUMMARY_TURNS),
        max_new_turns: flavor.max_new_turns.unwrap_or(DEFAULT_MAX_NEW_TURNS),
        prompt_tokens: prompt_tokens as u32,
        estimated_cost_per_1k_tokens: flavor.estimated_cost_per_1k_tokens,
        priority: flavor.priority,
        input_price_per_million: model.input_price_per_million,
        output_price_per_million: model.output_price_per_million,
    };
    let budget = BatchBudget::from(&settings);
    let available = budget.available();

    let job_id = Uuid::new_v4();
    let (progress, turns_blob) = match flavor.processing_mode {
        ProcessingMode::SinglePass => {
            if input_tokens > available {
                return Err(
                    context_exceeded(gateway, &service, &flavor, input_tokens, &budget).await,
                );
            }
            (
                JobProgress {
                    step: 0,
                    cursor: 0,
                    total_turns: 1,
                    total_batches: 1,
                },
                None,
            )
        }
        ProcessingMode::Iterative => {
            let (progress, turns_json) =
                plan_iterative(&request.input, &counter, &settings, &budget, &flavor)?;
            (progress, Some(turns_json))
        }
    };

    let now = now_timestamp();
    let job = Job {
        id: job_id,
        service_id: service.id,
        service_name: service.name.clone(),
        flavor_id: flavor.id,
        flavor_name: flavor.name.clone(),
        organization_id: request.organization_id.clone(),
        status: JobStatus::Queued,
        processing_mode: flavor.processing_mode,
        created_at: now.clone(),
        started_at: None,
        completed_at: None,
        updated_at: now,
        input_tokens: input_tokens as u32,
        input_chars: request.input.chars().count() as u64,
        context_available: available as u32,
        settings,
        progress,
        usage: UsageTotals::default(),
        error: None,
        expires_at: flavor
            .default_ttl_seconds
            .filter(|ttl| *ttl > 0)
            .map(|ttl| chrono::Utc::now().timestamp() + i64::from(ttl)),
    };
    Ok(Plan {
        job,
        turns_json: turns_blob,
    })
}

/// Submits a job: returns it queued, with its first step enqueued.
pub async fn submit(
    gateway: &Gateway,
    service_id: Uuid,
    request: ExecuteRequest,
) -> EngineResult<Job> {
    let Plan {
        job,
        turns_json: turns_blob,
    } = plan(gateway, service_id, &request).await?;
    let job_id = job.id;

    gateway
        .blobs
        .put(
            &keys::input(job_id),
            request.input.into_bytes(),
            "text/plain; charset=utf-8",
        )
        .await?;
    if let Some(turns_json) = turns_blob {
        gateway
            .blobs
            .put(&keys::turns(job_id), turns_json, "application/json")
            .await?;
    }
    gateway.jobs.create(&job).await?;
    let first = StepMessage {
        job_id,
        step: 0,
        context: Vec::new(),
    };
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
    json!({
        "job_id": job.id,
        "status": job.status,
        "service_id": job.service_id,
        "service_name": job.service_name,
        "flavor_id": job.flavor_id,
        "flavor_name": job.flavor_name,
        "organization_id": job.organization_id,
        "processing_mode": job.processing_mode,
        "created_at": job.created_at,
        "input_tokens": job.input_tokens,
        "context_available": job.context_available,
        "tokenizer": job.settings.tokenizer,
        "total_turns": job.progress.total_turns,
        "estimated_batches": job.progress.total_batches,
    })
}

/// The answer of a dry run whose plan fits: the figures and the estimated cost. Every
/// batch sends its prompt and may generate up to half the generation budget.
pub fn dry_run_json(job: &Job) -> Value {
    let settings = &job.settings;
    let estimated_tokens = u64::from(job.input_tokens)
        + u64::from(job.progress.total_batches)
            * (u64::from(settings.prompt_tokens) + u64::from(settings.max_generation_length) / 2);
    json!({
        "valid": true,
        "service_id": job.service_id,
        "flavor_id": job.flavor_id,
        "flavor_name": job.flavor_name,
        "processing_mode": job.processing_mode,
        "input_tokens": job.input_tokens,
        "context_available": job.context_available,
        "tokenizer": settings.tokenizer,
        "total_turns": job.progress.total_turns,
        "estimated_batches": job.progress.total_batches,
        "estimated_tokens": estimated_tokens,
        "estimated_cost": settings
            .estimated_cost_per_1k_tokens
            .map(|rate| round6(estimated_tokens as f64 / 1000.0 * rate)),
    })
}

/// Normalises the transcript into turns and estimates the batches; returns the progress
/// and the turns as JSON for the blob store.
fn plan_iterative(
    input: &str,
    counter: &TokenCounter,
    settings: &JobSettings,
    budget: &BatchBudget,
    flavor: &Flavor,
) -> EngineResult<(JobProgress, Vec<u8>)> {
    if budget.available() < MIN_INPUT_TOKENS {
        return Err(EngineError::ContextExceeded(Box::new(ContextExceeded {
            flavor_id: flavor.id,
            flavor_name: flavor.name.clone(),
            input_tokens: None,
            available_tokens: budget.available(),
            context_length: budget.context_length,
            max_generation_length: budget.max_generation,
            prompt_tokens: budget.prompt_tokens,
            suggestion:
                "use a model with a larger context, or a shorter prompt or generation length".into(),
        })));
    }
    let turns = normalize_transcript(
        input,
        counter,
        NormalizeLimits {
            create_new_turn_after: settings.create_new_turn_after as usize,
            max_turn_tokens: budget.max_turn_tokens(),
        },
    );
    let tokens: Vec<u32> = turns.iter().map(|turn| turn.tokens).collect();
    let context_estimate = settings.summary_turns as usize * ESTIMATED_TOKENS_PER_CONTEXT_LINE;
    let total_batches = budget.estimate_batches(&tokens, context_estimate) as u32;
    let json = serde_json::to_vec(&turns).map_err(|e| EngineError::internal("encode turns", e))?;
    Ok((
        JobProgress {
            step: 0,
            cursor: 0,
            total_turns: turns.len() as u32,
            total_batches,
        },
        json,
    ))
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
mod tests {
    use super::*;

    fn parse(body: &str) -> EngineResult<ExecuteRequest> {
        ExecuteRequest::parse(body.as_bytes(), 100)
    }

    #[test]
    fn valid_request() {
        let request = parse(
            r#"{"input":"A : hi","flavor_name":"fast","organization_id":"org-1","metadata":{}}"#,
        )
        .unwrap();
        assert_eq!(request.input, "A : hi");
        assert_eq!(request.flavor_name.as_deref(), Some("fast"));
        assert_eq!(request.organization_id.as_deref(), Some("org-1"));
    }

    #[test]
    fn bad_requests_name_the_problem() {
        let cases = [
            ("", "INVALID_JSON", None),
            ("{not json", "INVALID_JSON", None),
            ("[1]", "INVALID_JSON", None),
            ("{}", "INVALID_REQUEST", Some("input")),
            (r#"{"input":"   "}"#, "INVALID_REQUEST", Some("input")),
            (r#"{"input":5}"#, "INVALID_REQUEST", Some("input")),
            (
                r#"{"input":"x","flavor_id":"nope"}"#,
                "INVALID_REQUEST",
                Some("flavor_id"),
            ),
            (
                r#"{"input":"x","flavor_name":""}"#,
                "INVALID_REQUEST",
                Some("flavor_name"),
            ),
            (
                r#"{"input":"x","organization_id":""}"#,
                "INVALID_REQUEST",
                Some("organization_id"),
            ),
            (
                r#"{"input":"x","context":"tags"}"#,
                "INVALID_REQUEST",
                Some("context"),
            ),
        ];
        for (body, code, field) in cases {
            let error = parse(body).unwrap_err();
            assert_eq!(error.status(), 400, "{body}");
            assert_eq!(error.code(), code, "{body}");
            assert_eq!(error.field(), field, "{body}");
        }
        let too_large = parse(&format!(r#"{{"input":"{}"}}"#, "a".repeat(101))).unwrap_err();
        assert_eq!(
            (too_large.status(), too_large.code()),
            (413, "INPUT_TOO_LARGE")
        );
        let not_utf8 = ExecuteRequest::parse(b"{\"input\":\"\xff\xfe\"}", 100).unwrap_err();
        assert_eq!(
            (not_utf8.status(), not_utf8.code()),
            (400, "INVALID_ENCODING")
        );
    }
}
