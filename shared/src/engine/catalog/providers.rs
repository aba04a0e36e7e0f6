//! `/api/v1/providers`: OpenAI-compatible endpoints. The API key is encrypted with KMS
//! before it is stored and never returned (`api_key_exists` instead).

use serde_json::{Map, Value};
use uuid::Uuid;

use super::entity::{
    commit, create_writes, current_json, delete_writes, from_json, list, load, load_for_change,
    merge_patch, new_object, parse_object, update_writes, Entity, Scope, SERVER_FIELDS,
};
use super::models::models_of_provider;
use super::page::PageRequest;
use super::validate::{http_url, one_of, text_length};
use crate::domain::{now_timestamp, Provider};
use crate::engine::error::{EngineError, EngineResult, Location, Resource};
use crate::engine::Gateway;
use crate::engine::JsonResponse;
use crate::ports::RecordKind;

/// Accepted `provider_type` values: the reference's, plus the self-hosted kinds its
/// discovery knows.
pub const PROVIDER_TYPES: &[&str] = &[
    "openai",
    "anthropic",
    "cohere",
    "openrouter",
    "custom",
    "openai_compatible",
    "vllm",
    "ollama",
];

/// Default page size of provider lists (the reference's).
pub const PAGE_SIZE: usize = 20;

impl Entity for Provider {
    const KIND: RecordKind = RecordKind::Provider;
    const RESOURCE: Resource = Resource::Provider;

    fn id(&self) -> Uuid {
        self.id
    }
    fn organization_id(&self) -> Option<&str> {
        self.organization_id.as_deref()
    }
    fn updated_at(&self) -> &str {
        &self.updated_at
    }

    fn unique_keys(&self) -> Vec<(String, String)> {
        vec![(
            format!("provider-name:{}", self.name.trim().to_lowercase()),
            format!("Provider with name '{}' already exists", self.name),
        )]
    }

    fn validate(&self) -> EngineResult<()> {
        text_length("name", &self.name, 1, 100)?;
        one_of("provider_type", &self.provider_type, PROVIDER_TYPES)?;
        http_url("api_base_url", &self.api_base_url)?;
        if self.security_level > 2 {
            return Err(EngineError::validation(
                Location::Body,
                "security_level",
                "must be 0, 1 or 2",
            ));
        }
        if !self.metadata.is_object() {
            return Err(EngineError::validation(
                Location::Body,
                "metadata",
                "must be an object",
            ));
        }
        Ok(())
    }

    fn to_json(&self) -> Value {
        let mut json = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(fields) = json.as_object_mut() {
            fields.remove("api_key_ciphertext");
            fields.insert(
                "api_key_exists".into(),
                Value::Bool(self.api_key_ciphertext.is_some()),
            );
        }
        json
    }
}

/// Removes `api_key` from a request body: `Some(Some(key))` to set it, `Some(None)` to
/// clear it (explicit null), `None` when absent.
fn take_api_key(fields: &mut Map<String, Value>) -> Result<Option<Option<String>>, EngineError> {
    fields.remove("api_key_ciphertext");
    fields.remove("api_key_exists");
    match fields.remove("api_key") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(key)) if !key.trim().is_empty() && key.len() <= 2000 => {
            Ok(Some(Some(key)))
        }
        Some(_) => Err(EngineError::validation(
            Location::Body,
            "api_key",
            "must be a non-empty string of at most 2000 characters",
        )),
    }
}

/// `POST /providers` → 201.
pub async fn create(gateway: &Gateway, scope: &Scope, body: &[u8]) -> EngineResult<JsonResponse> {
    let mut fields = parse_object(body)?;
    let api_key = take_api_key(&mut fields)?;
    let fields = new_object(fields, scope, &now_timestamp())?;
    let mut provider: Provider = from_json(Value::Object(fields))?;
    provider.validate()?;
    if let Some(Some(key)) = api_key {
        provider.api_key_ciphertext = Some(gateway.secrets.encrypt(&key).await?);
    }
    commit(
        gateway.records.as_ref(),
        create_writes(&provider)?,
        &provider.unique_keys(),
    )
    .await?;
    tracing::info!(provider_id = %provider.id, name = %provider.name, "provider created");
    Ok(JsonResponse::new(201, provider.to_json()))
}

/// `GET /providers` → a page, newest first.
pub async fn list_page(
    gateway: &Gateway,
    scope: &Scope,
    page: PageRequest,
) -> EngineResult<JsonResponse> {
    let mut providers: Vec<Provider> = list(gateway.records.as_ref(), scope).await?;
    providers.sort_by(|a, b| b.created_at.cmp(&a.created_at));
    let items = providers.iter().map(Entity::to_json).collect();
    Ok(JsonResponse::new(200, page.envelope(items)))
}

/// `GET /providers/{id}`.
pub async fn get(gateway: &Gateway, scope: &Scope, id: Uuid) -> EngineResult<JsonResponse> {
    let provider: Provider = load(gateway.records.as_ref(), id, scope).await?;
    Ok(JsonResponse::new(200, provider.to_json()))
}

/// `PATCH|PUT /providers/{id}`: given fields change; `api_key` is re-encrypted, null
/// removes it.
pub async fn update(
    gateway: &Gateway,
    scope: &Scope,
    id: Uuid,
    body: &[u8],
) -> EngineResult<JsonResponse> {
    let old: Provider = load_for_change(gateway.records.as_ref(), id, scope).await?;
    let mut fields = parse_object(body)?;
    let api_key = take_api_key(&mut fields)?;
    let current = current_json(&old, &now_timestamp())?;
    let mut provider: Provider = from_json(merge_patch(current, fields, SERVER_FIELDS))?;
    provider.validate()?;
    match api_key {
        Some(Some(key)) => provider.api_key_ciphertext = Some(gateway.secrets.encrypt(&key).await?),
        Some(None) => provider.api_key_ciphertext = None,
        None => {}
    }
    commit(
        gateway.records.as_ref(),
        update_writes(&old, &provider)?,
        &provider.unique_keys(),
    )
    .await?;
    Ok(JsonResponse::new(200, provider.to_json()))
}

/// `DELETE /providers/{id}` → 204; its models go with it, unless a flavor uses one (409).
pub async fn delete(gateway: &Gateway, scope: &Scope, id: Uuid) -> EngineResult<JsonResponse> {
    let provider: Provider = load_for_change(gateway.records.as_ref(), id, scope).await?;
    let models = models_of_provider(gateway, id).await?;
    let flavors: Vec<crate::domain::Flavor> =
        list(gateway.records.as_ref(), &Scope::default()).await?;
    let mut writes = delete_writes(&provider);
    for model in &models {
        super::models::ensure_unused(model, &flavors)?;
        writes.extend(delete_writes(model));
    }
    commit(gateway.records.as_ref(), writes, &[]).await?;
    tracing::info!(provider_id = %id, models = models.len(), "provider deleted");
    Ok(JsonResponse::new(204, Value::Null))
}

/// Context and generation limits of well-known model families, matched by the longest
/// substring of the model identifier (used when the provider does not report them).
pub const KNOWN_MODEL_LIMITS: &[(&str, u32, u32)] = &[
    ("gpt-4o-mini", 128_000, 16_384),
    ("gpt-4o", 128_000, 16_384),
    ("gpt-4.1", 1_047_576, 32_768),
    ("gpt-4-turbo", 128_000, 4_096),
    ("gpt-4", 8_192, 4_096),
    ("gpt-3.5-turbo", 16_385, 4_096),
    ("o1", 200_000, 100_000),
    ("o3", 200_000, 100_000),
    ("claude-3", 200_000, 4_096),
    ("mistral-large", 128_000, 8_192),
    ("mistral-small", 32_000, 8_192),
    ("mistral-nemo", 128_000, 8_192),
    ("mixtral", 32_768, 8_192),
    ("mistral", 32_768, 8_192),
    ("llama-3.1", 128_000, 4_096),
    ("llama-3.2", 128_000, 4_096),
    ("llama-3.3", 128_000, 4_096),
    ("llama-3", 8_192, 4_096),
    ("qwen2.5", 32_768, 8_192),
    ("gemma-2", 8_192, 4_096),
];

/// Limits when neither the provider nor the known table says.
pub const DEFAULT_MODEL_LIMITS: (u32, u32) = (4_096, 2_048);

/// `(context_length, max_generation_length)` of a model identifier from the known table.
pub fn known_limits(identifier: &str) -> (u32, u32) {
    let lower = identifier.to_lowercase();
    KNOWN_MODEL_LIMITS
        .iter()
        .filter(|(pattern, _, _)| lower.contains(pattern))
        .max_by_key(|(pattern, _, _)| pattern.len())
        .map_or(DEFAULT_MODEL_LIMITS, |(_, context, generation)| {
            (*context, *generation)
        })
}

/// A discovered model in the reference's `DiscoveredModel` shape, from one entry of the
/// provider's model list. Limits reported by the provider (`context_length`,
/// `max_model_len` (vLLM), `context_window`, `max_tokens`...) win over the known table.
pub fn discovered_model(entry: &Value) -> Option<Value> {
    let identifier = entry
        .get("id")
        .or_else(|| entry.get("name"))
        .or_else(|| entry.get("model"))
        .and_then(Value::as_str)?;
    let number = |names: &[&str]| {
        names
            .iter()
            .find_map(|name| entry.get(*name).and_then(Value::as_u64))
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
    };
    let (known_context, known_generation) = known_limits(identifier);
    let context = number(&[
        "context_length",
        "max_model_len",
        "context_window",
        "max_context_length",
    ])
    .unwrap_or(known_context);
    let generation = number(&[
        "max_generation_length",
        "max_output_tokens",
        "max_completion_tokens",
        "max_tokens",
    ])
    .unwrap_or(known_generation)
    .min(context / 2);
    Some(serde_json::json!({
        "model_identifier": identifier,
        "model_name": identifier,
        "context_length": context,
        "max_generation_length": generation,
        "tokenizer_class": Value::Null,
        "tokenizer_name": Value::Null,
        "available": true,
        "description": entry.get("description").cloned().unwrap_or(Value::Null),
        "metadata": {"owned_by": entry.get("owned_by").cloned().unwrap_or(Value::Null)},
    }))
}

/// `GET /providers/{id}/discover-models`: the provider's models with their limits, as
/// `DiscoveredModel[]`. A provider that fails answers 502 naming it.
pub async fn discover_models(
    gateway: &Gateway,
    scope: &Scope,
    id: Uuid,
) -> EngineResult<JsonResponse> {
    let provider: Provider = load(gateway.records.as_ref(), id, scope).await?;
    let name = provider.name.clone();
    let endpoint = gateway.endpoint_of(provider).await?;
    let entries = gateway.llm.models(&endpoint).await.map_err(|error| {
        EngineError::Provider(format!(
            "provider '{name}' did not list its models: {error}"
        ))
    })?;
    let models: Vec<Value> = entries.iter().filter_map(discovered_model).collect();
    Ok(JsonResponse::new(200, Value::Array(models)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn limits_come_from_the_provider_then_the_longest_known_name() {
        assert_eq!(known_limits("gpt-4o-mini-2024"), (128_000, 16_384));
        assert_eq!(
            known_limits("meta-llama/Llama-3.1-8B-Instruct"),
            (128_000, 4_096)
        );
        assert_eq!(known_limits("something-new"), DEFAULT_MODEL_LIMITS);
        let vllm =
            discovered_model(&json!({"id": "mistral-small-24b", "max_model_len": 16000})).unwrap();
        assert_eq!(vllm["context_length"], 16000);
        assert_eq!(
            vllm["max_generation_length"], 8000,
            "never more than half the context"
        );
        assert!(discovered_model(&json!({"object": "model"})).is_none());
    }

    #[test]
    fn urls_must_be_http_with_a_host() {
        assert!(http_url("u", "https://api.example.com/v1").is_ok());
        for bad in ["ftp://x/v1", "http://", "not a url", "file:///etc/passwd"] {
            assert_eq!(http_url("u", bad).unwrap_err().status(), 422, "{bad}");
        }
    }
}
