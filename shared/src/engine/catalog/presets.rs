//! `/api/v1/flavor-presets`: named flavor configurations, applied to a service to create
//! a flavor. System presets (seeded) cannot be deleted.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::entity::{
    commit, create_writes, delete_writes, from_json, list, load, merge_patch, new_object,
    parse_object, update_writes, Entity, Scope, SERVER_FIELDS,
};
use super::validate::text_length;
use crate::domain::{now_timestamp, Flavor};
use crate::engine::error::{EngineError, EngineResult, Location, Resource, Rule};
use crate::engine::Gateway;
use crate::engine::JsonResponse;
use crate::ports::RecordKind;

/// A stored flavor preset.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct FlavorPreset {
    pub id: Uuid,
    pub name: String,
    #[serde(default = "summary")]
    pub service_type: String,
    #[serde(default)]
    pub description_en: Option<String>,
    #[serde(default)]
    pub description_fr: Option<String>,
    /// Flavor fields (temperature, processing_mode, chunking, prompts, ...).
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
    #[serde(default)]
    pub is_system: bool,
    #[serde(default = "yes")]
    pub is_active: bool,
    #[serde(default)]
    pub organization_id: Option<String>,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
}

fn summary() -> String {
    "summary".to_string()
}

fn yes() -> bool {
    true
}

/// Fields of a flavor a preset cannot set (they come from the apply request).
const NOT_CONFIGURABLE: &[&str] = &[
    "id",
    "service_id",
    "model_id",
    "name",
    "created_at",
    "updated_at",
];

/// Older names of flavor fields that flavors (and so presets) still accept.
const FIELD_ALIASES: &[&str] = &["system_prompt_template_id", "reduce_prompt_template_id"];

impl Entity for FlavorPreset {
    const KIND: RecordKind = RecordKind::Preset;
    const RESOURCE: Resource = Resource::FlavorPreset;

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
            format!("preset-name:{}", self.name.trim().to_lowercase()),
            format!("Preset with name '{}' already exists", self.name),
        )]
    }
    fn validate(&self) -> EngineResult<()> {
        text_length("name", &self.name, 1, 100)?;
        text_length("service_type", &self.service_type, 1, 50)?;
        let flavor = self
            .flavor_from_config(Uuid::nil(), Uuid::nil(), "preset-check")
            .and_then(|flavor| flavor.validate().map(|()| flavor))
            .map_err(|error| EngineError::PresetConfig {
                source: Box::new(error),
            })?;
        // Every key must be a flavor setting a preset may set: never stored and ignored.
        let settings = serde_json::to_value(&flavor).unwrap_or_default();
        for key in self.config.keys() {
            let known = settings.get(key).is_some() || FIELD_ALIASES.contains(&key.as_str());
            if !known || NOT_CONFIGURABLE.contains(&key.as_str()) {
                return Err(EngineError::validation(
                    Location::Body,
                    &format!("config.{key}"),
                    "is not a flavor setting a preset can set",
                ));
            }
        }
        Ok(())
    }
}

impl FlavorPreset {
    /// The flavor this preset makes for `service_id` with `model_id`, named `name`.
    pub fn flavor_from_config(
        &self,
        service_id: Uuid,
        model_id: Uuid,
        name: &str,
    ) -> EngineResult<Flavor> {
        let mut fields: Map<String, Value> = self
            .config
            .iter()
            .filter(|(key, _)| !NOT_CONFIGURABLE.contains(&key.as_str()))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let now = now_timestamp();
        fields.insert("id".into(), json!(Uuid::new_v4()));
        fields.insert("service_id".into(), json!(service_id));
        fields.insert("model_id".into(), json!(model_id));
        fields.insert("name".into(), json!(name));
        fields.insert("is_default".into(), json!(false));
        fields.insert("created_at".into(), json!(now));
        fields.insert("updated_at".into(), json!(now));
        fields.entry("temperature").or_insert(json!(0.7));
        from_json(Value::Object(fields))
    }
}

/// `GET /flavor-presets?service_type=&active_only=`: a plain array by name.
pub async fn list_presets(
    gateway: &Gateway,
    scope: &Scope,
    service_type: Option<&str>,
    active_only: bool,
) -> EngineResult<JsonResponse> {
    let mut presets: Vec<FlavorPreset> = list(gateway.records.as_ref(), scope).await?;
    presets.retain(|p| {
        service_type.is_none_or(|t| p.service_type == t) && (!active_only || p.is_active)
    });
    presets.sort_by_key(|preset| preset.name.to_lowercase());
    Ok(JsonResponse::new(200, json!(presets)))
}

/// `GET /flavor-presets/{id}`.
pub async fn get(gateway: &Gateway, scope: &Scope, id: Uuid) -> EngineResult<JsonResponse> {
    let preset: FlavorPreset = load(gateway.records.as_ref(), id, scope).await?;
    Ok(JsonResponse::new(200, preset.to_json()))
}

/// `POST /flavor-presets` → 201 (never a system preset).
pub async fn create(gateway: &Gateway, scope: &Scope, body: &[u8]) -> EngineResult<JsonResponse> {
    let mut fields = new_object(parse_object(body)?, scope, &now_timestamp())?;
    fields.insert("is_system".into(), Value::Bool(false));
    let preset: FlavorPreset = from_json(Value::Object(fields))?;
    commit(
        gateway.records.as_ref(),
        create_writes(&preset)?,
        &preset.unique_keys(),
    )
    .await?;
    Ok(JsonResponse::new(201, preset.to_json()))
}

/// `PATCH|PUT /flavor-presets/{id}`.
pub async fn update(
    gateway: &Gateway,
    scope: &Scope,
    id: Uuid,
    body: &[u8],
) -> EngineResult<JsonResponse> {
    let store = gateway.records.as_ref();
    let old: FlavorPreset = super::entity::load_for_change(store, id, scope).await?;
    let fields = parse_object(body)?;
    let mut current = json!(old);
    current["updated_at"] = Value::String(now_timestamp());
    let protected = [SERVER_FIELDS, &["is_system"]].concat();
    let preset: FlavorPreset = from_json(merge_patch(current, fields, &protected))?;
    commit(store, update_writes(&old, &preset)?, &preset.unique_keys()).await?;
    Ok(JsonResponse::new(200, preset.to_json()))
}

/// `DELETE /flavor-presets/{id}` → 204; system presets → 400 (the reference's answer).
pub async fn delete(gateway: &Gateway, scope: &Scope, id: Uuid) -> EngineResult<JsonResponse> {
    let store = gateway.records.as_ref();
    let preset: FlavorPreset = super::entity::load_for_change(store, id, scope).await?;
    if preset.is_system {
        return Err(EngineError::refused(
            Rule::SystemPreset,
            "Cannot delete system preset",
        ));
    }
    commit(store, delete_writes(&preset), &[]).await?;
    Ok(JsonResponse::new(204, Value::Null))
}

/// `POST /flavor-presets/{id}/apply` with `service_id`, `model_id`, `flavor_name` (form
/// or JSON) → 201 with the new flavor.
pub async fn apply(
    gateway: &Gateway,
    scope: &Scope,
    id: Uuid,
    body: &[u8],
    form_encoded: bool,
) -> EngineResult<JsonResponse> {
    let preset: FlavorPreset = load(gateway.records.as_ref(), id, scope).await?;
    let fields: Map<String, Value> = if form_encoded {
        form_fields(body)
    } else {
        parse_object(body)?
    };
    let text = |name: &str| -> EngineResult<String> {
        fields
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| EngineError::validation(Location::Body, name, "field required"))
    };
    let uuid = |name: &str| -> EngineResult<Uuid> {
        Uuid::parse_str(&text(name)?)
            .map_err(|_| EngineError::validation(Location::Body, name, "must be a UUID"))
    };
    let (service_id, model_id, name) =
        (uuid("service_id")?, uuid("model_id")?, text("flavor_name")?);
    let flavor = preset.flavor_from_config(service_id, model_id, &name)?;
    let body = serde_json::to_vec(&flavor)
        .map_err(|error| EngineError::internal("encode flavor", error))?;
    super::flavors::create_flavor(gateway, scope, service_id, &body).await
}

/// Decodes an `application/x-www-form-urlencoded` body into string fields.
fn form_fields(body: &[u8]) -> Map<String, Value> {
    form_urlencoded::parse(body)
        .map(|(key, value)| (key.into_owned(), Value::String(value.into_owned())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preset(config: Value) -> FlavorPreset {
        serde_json::from_value(json!({
            "id": Uuid::new_v4(), "name": "p", "config": config,
        }))
        .unwrap()
    }

    #[test]
    fn config_keys_must_be_settings_a_preset_can_set() {
        let valid = preset(json!({"temperature": 0.3, "processing_mode": "iterative",
                                  "auto_fallback_to_iterative": false, "system_prompt_template_id": null}));
        assert!(valid.validate().is_ok());
        for (config, field) in [
            (json!({"temperatur": 0.3}), "config.temperatur"),
            (json!({"model_id": Uuid::nil()}), "config.model_id"),
            (json!({"name": {"BOOL": false}}), "config.name"),
        ] {
            let error = preset(config).validate().unwrap_err();
            assert_eq!((error.status(), error.field()), (422, Some(field)));
        }
    }
}
