//! Live calls to a provider from the catalog: testing a flavor with a prompt
//! (`POST /flavors/{id}/test`) and checking that models still exist on their provider
//! (`POST /models/{id}/verify`, `POST /providers/{id}/models/verify`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::entity::{commit, list, load, update_writes, Scope};
use super::flavors::load_flavor;
use super::tokenizers::counter_for;
use super::validate::required_text;
use crate::domain::{now_timestamp, JobSettings, Model, Provider};
use crate::engine::error::{EngineError, EngineResult, Location, Resource, Rule};
use crate::engine::Gateway;
use crate::engine::JsonResponse;
use crate::llm::{chat_with_retries, ChatMessage, ChatRequest, Endpoint, RetryPolicy};

/// How long a flavor test may wait for the provider, retries included: under API
/// Gateway's 29 s integration timeout, so a slow provider is our 502 and not its 504.
pub const TEST_DEADLINE: Duration = Duration::from_secs(25);

/// Attempts of a flavor test (a transient failure is retried once).
const TEST_ATTEMPTS: u32 = 2;

/// What a verify records on a model the provider does not list.
const NOT_LISTED: &str = "Model not found in provider API response";

/// `POST /flavors/{id}/test` (or under its service) with `prompt` and optionally
/// `max_tokens`: one live call with the flavor's system prompt, sampling, penalties, stop
/// sequences and custom params, answered in the reference's shape. No job is created.
/// A provider failure (after one retry of a transient one) is a 502 naming it.
pub async fn test_flavor(
    gateway: &Gateway,
    scope: &Scope,
    service_id: Option<Uuid>,
    flavor_id: Uuid,
    body: &[u8],
) -> EngineResult<JsonResponse> {
    let fields = super::entity::parse_object(body)?;
    let prompt = required_text(&fields, "prompt", 1_000_000)?;
    let max_tokens = positive_integer(&fields, "max_tokens")?;
    let (_, flavor) = load_flavor(gateway, scope, service_id, flavor_id).await?;
    if !flavor.is_active {
        return Err(EngineError::refused(
            Rule::FlavorInactive,
            "Cannot test inactive flavor",
        ));
    }
    let model: Model = load(gateway.records.as_ref(), flavor.model_id, &Scope::default())
        .await
        .map_err(|_| {
            EngineError::refused(
                Rule::FlavorModelMissing,
                format!("the model of flavor '{}' no longer exists", flavor.name),
            )
        })?;
    let provider: Provider = load(
        gateway.records.as_ref(),
        model.provider_id,
        &Scope::default(),
    )
    .await
    .map_err(|_| {
        EngineError::refused(
            Rule::FlavorProviderMissing,
            format!(
                "the provider of model '{}' no longer exists",
                model.model_name
            ),
        )
    })?;

    let counter = counter_for(gateway, &flavor, &model).await;
    let mut settings = JobSettings {
        prompt_system_content: flavor.prompt_system_content.clone(),
        ..JobSettings::default()
    };
    settings.run_on(&flavor, &model, &provider, &counter);
    let max_tokens = max_tokens.unwrap_or(model.max_generation_length);
    if max_tokens > model.max_generation_length {
        return Err(EngineError::validation(
            Location::Body,
            "max_tokens",
            format!(
                "must be at most the model's max_generation_length ({})",
                model.max_generation_length
            ),
        ));
    }
    let system = settings
        .prompt_system_content
        .clone()
        .filter(|system| !system.trim().is_empty());
    let input_tokens = counter.count(&prompt) + system.as_deref().map_or(0, |s| counter.count(s));
    if input_tokens + max_tokens as usize > model.context_length as usize {
        return Err(EngineError::validation(
            Location::Body,
            "prompt",
            format!(
                "{input_tokens} tokens plus max_tokens {max_tokens} exceed the model's context of {} tokens",
                model.context_length
            ),
        ));
    }
    let mut messages = Vec::new();
    if let Some(system) = &system {
        messages.push(ChatMessage::new("system", system.clone()));
    }
    messages.push(ChatMessage::new("user", prompt.clone()));
    let request = ChatRequest::for_job(&settings, messages, settings.temperature, max_tokens, true);

    let provider_name = provider.name.clone();
    let endpoint = gateway.endpoint_of(provider).await?;
    let started = Instant::now();
    let policy = RetryPolicy {
        max_attempts: TEST_ATTEMPTS,
        ..RetryPolicy::default()
    };
    let deadline = tokio::time::Instant::now() + TEST_DEADLINE;
    let completion = chat_with_retries(gateway.llm.as_ref(), &endpoint, &request, policy, deadline)
        .await
        .map_err(|failure| {
            tracing::warn!(%flavor_id, provider = %provider_name, error = %failure, "flavor test failed");
            EngineError::Provider(format!("Model inference failed: {failure}"))
        })?;
    let latency_ms = started.elapsed().as_millis() as u64;
    let prompt_tokens = completion
        .prompt_tokens
        .map_or(input_tokens as u64, u64::from);
    let completion_tokens = completion
        .completion_tokens
        .map_or_else(|| counter.count(&completion.content) as u64, u64::from);
    Ok(JsonResponse::new(
        200,
        json!({
            "flavor_id": flavor.id,
            "flavor_name": flavor.name,
            "model": {
                "model_name": model.model_name,
                "model_identifier": model.model_identifier,
                "provider_name": provider_name,
            },
            "request": {
                "prompt": prompt,
                "system_prompt": system,
                "temperature": flavor.temperature,
                "max_tokens": max_tokens,
                "top_p": flavor.top_p,
                "frequency_penalty": flavor.frequency_penalty,
                "presence_penalty": flavor.presence_penalty,
                "stop_sequences": flavor.stop_sequences,
                "custom_params": flavor.custom_params,
            },
            "response": {
                "content": completion.content,
                "finish_reason": completion.finish_reason,
            },
            "metadata": {
                "input_tokens": prompt_tokens,
                "output_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "latency_ms": latency_ms,
                "estimated_cost": settings.cost_of(prompt_tokens, completion_tokens),
                "tokenizer": counter.name(),
            },
            "timestamp": now_timestamp(),
        }),
    ))
}

/// The optional integer field `name`, which must be greater than 0 (422 otherwise).
fn positive_integer(fields: &Map<String, Value>, name: &str) -> EngineResult<Option<u32>> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .filter(|&n| n > 0)
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                EngineError::validation(Location::Body, name, "must be an integer greater than 0")
            }),
    }
}

/// The model identifiers `provider` lists, and how long listing took. A provider that
/// cannot list them is a 502 naming it.
async fn listed_models(
    gateway: &Gateway,
    provider: Provider,
) -> EngineResult<(HashSet<String>, u64)> {
    let name = provider.name.clone();
    let endpoint: Endpoint = gateway.endpoint_of(provider).await?;
    let started = Instant::now();
    let entries = gateway.llm.models(&endpoint).await.map_err(|error| {
        EngineError::Provider(format!(
            "Provider API unreachable: provider '{name}' did not list its models: {error}"
        ))
    })?;
    let identifiers = entries
        .iter()
        .filter_map(|entry| entry.get("id").or_else(|| entry.get("name")))
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    Ok((identifiers, started.elapsed().as_millis() as u64))
}

/// Records a verification on `model`: its health and check time, and with `activate` its
/// `is_active`.
async fn record_health(
    gateway: &Gateway,
    model: &Model,
    available: bool,
    activate: bool,
    now: &str,
) -> EngineResult<Model> {
    let mut checked = model.clone();
    checked.health_status = if available {
        "available"
    } else {
        "unavailable"
    }
    .to_string();
    checked.health_error = (!available).then(|| NOT_LISTED.to_string());
    checked.health_checked_at = Some(now.to_string());
    if activate {
        checked.is_active = available;
    }
    checked.updated_at = now.to_string();
    commit(
        gateway.records.as_ref(),
        update_writes(model, &checked)?,
        &[],
    )
    .await?;
    Ok(checked)
}

/// `POST /models/{id}/verify`: whether the provider still lists the model, recorded as
/// the model's `health_status` (`available` or `unavailable`; `is_active` is left as it
/// is) → `{model_id, health_status, checked_at, error, details{latency_ms}}`.
pub async fn verify_model(
    gateway: &Gateway,
    scope: &Scope,
    id: Uuid,
) -> EngineResult<JsonResponse> {
    let store = gateway.records.as_ref();
    let model: Model = load(store, id, scope).await?;
    scope.check_change(Resource::Model, id, model.organization_id.as_deref())?;
    let provider: Provider = load(store, model.provider_id, &Scope::default()).await?;
    let (listed, latency_ms) = listed_models(gateway, provider).await?;
    let available = listed.contains(&model.model_identifier);
    let now = now_timestamp();
    let checked = record_health(gateway, &model, available, false, &now).await?;
    Ok(JsonResponse::new(
        200,
        json!({
            "model_id": checked.id,
            "model_identifier": checked.model_identifier,
            "health_status": checked.health_status,
            "checked_at": now,
            "error": checked.health_error,
            "details": {"latency_ms": latency_ms},
        }),
    ))
}

/// `POST /providers/{id}/models/verify`: every model of the provider is checked against
/// the provider's list; listed models become active and `available`, the others inactive
/// and `unavailable` (the reference's rule, so jobs stop choosing a withdrawn model) →
/// `{provider_id, total_models, verified_count, failed_count, results[], verified_at}`.
pub async fn verify_provider_models(
    gateway: &Gateway,
    scope: &Scope,
    provider_id: Uuid,
) -> EngineResult<JsonResponse> {
    let store = gateway.records.as_ref();
    let provider: Provider = load(store, provider_id, scope).await?;
    scope.check_change(
        Resource::Provider,
        provider_id,
        provider.organization_id.as_deref(),
    )?;
    let models: Vec<Model> = list::<Model>(store, &Scope::default())
        .await?
        .into_iter()
        .filter(|model| model.provider_id == provider_id)
        .collect();
    let now = now_timestamp();
    let mut results = Vec::with_capacity(models.len());
    if !models.is_empty() {
        let (listed, _) = listed_models(gateway, provider).await?;
        for model in &models {
            let available = listed.contains(&model.model_identifier);
            record_health(gateway, model, available, true, &now).await?;
            results.push(json!({
                "model_id": model.id,
                "model_identifier": model.model_identifier,
                "status": if available { "available" } else { "unavailable" },
                "error_message": (!available).then_some(NOT_LISTED),
            }));
        }
    }
    let verified = results
        .iter()
        .filter(|result| result["status"] == "available")
        .count();
    Ok(JsonResponse::new(
        200,
        json!({
            "provider_id": provider_id,
            "total_models": models.len(),
            "verified_count": verified,
            "failed_count": models.len() - verified,
            "results": results,
            "verified_at": now,
        }),
    ))
}

#[cfg(test)]
#[path = "live_tests.rs"]
mod tests;
