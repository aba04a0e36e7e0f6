//! `/api/v1/models` and `/api/v1/providers/{id}/models`: models of a provider, their
//! limits and prices.

use serde_json::{json, Value};
use uuid::Uuid;

use super::entity::{
    commit, create_writes, current_json, delete_writes, from_json, list, load, load_for_change,
    merge_patch, new_object, parse_object, update_writes, Entity, Scope, SERVER_FIELDS,
};
use super::page::PageRequest;
use super::tokenizers::check_available;
use super::validate::text_length;
use crate::domain::{now_timestamp, Flavor, Model, Provider};
use crate::engine::error::{EngineError, EngineResult, Location, Resource};
use crate::engine::Gateway;
use crate::engine::JsonResponse;
use crate::ports::RecordKind;

/// Default page size of model lists.
pub const PAGE_SIZE: usize = 50;

/// Health values a model may have.
pub const HEALTH_STATUSES: &[&str] = &["available", "unavailable", "unknown", "error"];

impl Entity for Model {
    const KIND: RecordKind = RecordKind::Model;
    const RESOURCE: Resource = Resource::Model;

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
            format!(
                "model-identifier:{}:{}",
                self.provider_id,
                self.model_identifier.trim()
            ),
            format!(
                "Model with identifier '{}' already exists for this provider",
                self.model_identifier
            ),
        )]
    }

    fn validate(&self) -> EngineResult<()> {
        text_length("model_name", &self.model_name, 1, 200)?;
        text_length("model_identifier", &self.model_identifier, 1, 200)?;
        for (field, value) in [
            ("context_length", self.context_length),
            ("max_generation_length", self.max_generation_length),
        ] {
            if value == 0 {
                return Err(EngineError::validation(
                    Location::Body,
                    field,
                    "must be greater than 0",
                ));
            }
        }
        if self.max_generation_length >= self.context_length {
            return Err(EngineError::validation(
                Location::Body,
                "max_generation_length",
                "must be smaller than context_length",
            ));
        }
        if self.security_level.is_some_and(|level| level > 2) {
            return Err(EngineError::validation(
                Location::Body,
                "security_level",
                "must be 0, 1 or 2",
            ));
        }
        for (field, price) in [
            ("input_price_per_million", self.input_price_per_million),
            ("output_price_per_million", self.output_price_per_million),
        ] {
            if price.is_some_and(|price| !(price >= 0.0 && price.is_finite())) {
                return Err(EngineError::validation(
                    Location::Body,
                    field,
                    "must be a number >= 0",
                ));
            }
        }
        if !HEALTH_STATUSES.contains(&self.health_status.as_str()) {
            return Err(EngineError::validation(
                Location::Body,
                "health_status",
                format!("must be one of {}", HEALTH_STATUSES.join(", ")),
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
}

/// A model's JSON with its provider's name.
fn model_json(model: &Model, provider: Option<&Provider>) -> Value {
    let mut json = model.to_json();
    json["provider_name"] = provider.map_or(Value::Null, |p| json!(p.name));
    json
}

/// Every model of a provider (any organization).
pub async fn models_of_provider(gateway: &Gateway, provider_id: Uuid) -> EngineResult<Vec<Model>> {
    let models: Vec<Model> = list(gateway.records.as_ref(), &Scope::default()).await?;
    Ok(models
        .into_iter()
        .filter(|m| m.provider_id == provider_id)
        .collect())
}

/// 409 when one of `flavors` uses `model` (a model in use cannot be deleted).
pub fn ensure_unused(model: &Model, flavors: &[Flavor]) -> EngineResult<()> {
    let users: Vec<&str> = flavors
        .iter()
        .filter(|flavor| flavor.model_id == model.id)
        .map(|flavor| flavor.name.as_str())
        .collect();
    if users.is_empty() {
        return Ok(());
    }
    Err(EngineError::Conflict(format!(
        "Cannot delete model '{}': it is used by {} flavor(s): {}",
        model.model_name,
        users.len(),
        users.join(", ")
    )))
}

/// `POST /models` (body names `provider_id`) or `POST /providers/{id}/models` → 201.
pub async fn create(
    gateway: &Gateway,
    scope: &Scope,
    provider_id: Option<Uuid>,
    body: &[u8],
) -> EngineResult<JsonResponse> {
    let mut fields = parse_object(body)?;
    if let Some(provider_id) = provider_id {
        fields.insert("provider_id".into(), json!(provider_id));
    }
    for computed in ["provider_name", "health_checked_at", "health_error"] {
        fields.remove(computed);
    }
    let mut fields = new_object(fields, scope, &now_timestamp())?;
    // The provider must exist, be visible, and be changeable by this scope.
    let provider_id = match fields.get("provider_id") {
        Some(Value::String(id)) => Uuid::parse_str(id).map_err(|_| {
            EngineError::validation(Location::Body, "provider_id", "must be a UUID")
        })?,
        _ => {
            return Err(EngineError::validation(
                Location::Body,
                "provider_id",
                "field required",
            ))
        }
    };
    let provider: Provider = load(gateway.records.as_ref(), provider_id, scope).await?;
    scope.check_change(
        Resource::Provider,
        provider.id,
        provider.organization_id.as_deref(),
    )?;
    fields.insert(
        "organization_id".into(),
        provider
            .organization_id
            .clone()
            .map_or(Value::Null, Value::String),
    );
    let model: Model = from_json(Value::Object(fields))?;
    check_available(gateway, "tokenizer_name", model.tokenizer_name.as_deref()).await?;
    commit(
        gateway.records.as_ref(),
        create_writes(&model)?,
        &model.unique_keys(),
    )
    .await?;
    Ok(JsonResponse::new(201, model_json(&model, Some(&provider))))
}

/// `GET /models?provider_id=` or `GET /providers/{id}/models` → a page, newest first.
pub async fn list_page(
    gateway: &Gateway,
    scope: &Scope,
    provider_id: Option<Uuid>,
    page: PageRequest,
) -> EngineResult<JsonResponse> {
    let store = gateway.records.as_ref();
    if let Some(id) = provider_id {
        load::<Provider>(store, id, scope).await?;
    }
    let providers: Vec<Provider> = list(store, &Scope::default()).await?;
    let mut models: Vec<Model> = list(store, scope).await?;
    models.retain(|model| provider_id.is_none_or(|id| model.provider_id == id));
    models.sort_by(|a, b| {
        a.model_name
            .to_lowercase()
            .cmp(&b.model_name.to_lowercase())
    });
    let items = models
        .iter()
        .map(|model| model_json(model, providers.iter().find(|p| p.id == model.provider_id)))
        .collect();
    Ok(JsonResponse::new(200, page.envelope(items)))
}

/// `GET /models/{id}`.
pub async fn get(gateway: &Gateway, scope: &Scope, id: Uuid) -> EngineResult<JsonResponse> {
    let store = gateway.records.as_ref();
    let model: Model = load(store, id, scope).await?;
    let provider: Option<Provider> = load(store, model.provider_id, &Scope::default()).await.ok();
    Ok(JsonResponse::new(
        200,
        model_json(&model, provider.as_ref()),
    ))
}

/// `GET /models/{id}/limits`: the context split, and what is left for input.
pub async fn limits(gateway: &Gateway, scope: &Scope, id: Uuid) -> EngineResult<JsonResponse> {
    let model: Model = load(gateway.records.as_ref(), id, scope).await?;
    Ok(JsonResponse::new(
        200,
        json!({
            "model_id": model.id,
            "model_identifier": model.model_identifier,
            "context_length": model.context_length,
            "max_generation_length": model.max_generation_length,
            "available_for_input": model.context_length.saturating_sub(model.max_generation_length),
            "tokenizer_name": model.tokenizer_name,
        }),
    ))
}

/// `PATCH|PUT /models/{id}`.
pub async fn update(
    gateway: &Gateway,
    scope: &Scope,
    id: Uuid,
    body: &[u8],
) -> EngineResult<JsonResponse> {
    let store = gateway.records.as_ref();
    let old: Model = load_for_change(store, id, scope).await?;
    let fields = parse_object(body)?;
    let current = current_json(&old, &now_timestamp())?;
    let protected = [SERVER_FIELDS, &["provider_id", "provider_name"]].concat();
    let model: Model = from_json(merge_patch(current, fields, &protected))?;
    if model.tokenizer_name != old.tokenizer_name {
        check_available(gateway, "tokenizer_name", model.tokenizer_name.as_deref()).await?;
    }
    commit(store, update_writes(&old, &model)?, &model.unique_keys()).await?;
    let provider: Option<Provider> = load(store, model.provider_id, &Scope::default()).await.ok();
    Ok(JsonResponse::new(
        200,
        model_json(&model, provider.as_ref()),
    ))
}

/// `DELETE /models/{id}` → 204; 409 while a flavor uses it.
pub async fn delete(gateway: &Gateway, scope: &Scope, id: Uuid) -> EngineResult<JsonResponse> {
    let model: Model = load_for_change(gateway.records.as_ref(), id, scope).await?;
    let flavors: Vec<Flavor> = list(gateway.records.as_ref(), &Scope::default()).await?;
    ensure_unused(&model, &flavors)?;
    commit(gateway.records.as_ref(), delete_writes(&model), &[]).await?;
    Ok(JsonResponse::new(204, Value::Null))
}
