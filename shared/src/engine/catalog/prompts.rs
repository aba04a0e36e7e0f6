//! `/api/v1/prompts`: reusable prompt texts with their `{}` placeholder count, and the
//! seeded `/api/v1/prompt-types` and `/api/v1/service-types` they are classified by.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::entity::{
    commit, create_writes, current_json, delete_writes, from_json, list, load, load_for_change,
    merge_patch, new_object, parse_object, scoped_key, update_writes, Entity, Scope, SERVER_FIELDS,
};
use super::page::PageRequest;
use super::validate::{one_of, required_text, text_length, translations};
use crate::domain::{empty_object, now_timestamp, Flavor};
use crate::engine::error::{EngineError, EngineResult, Location, Resource, Rule};
use crate::engine::Gateway;
use crate::engine::JsonResponse;
use crate::ports::RecordKind;
use crate::text::prompt::placeholder_count;

/// Default page size of prompt lists (the reference's).
pub const PAGE_SIZE: usize = 20;

/// Default page size of `/prompts/templates` (the reference's).
pub const TEMPLATE_PAGE_SIZE: usize = 50;

/// A stored prompt.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Prompt {
    pub id: Uuid,
    pub name: String,
    pub content: String,
    /// Translations, e.g. `{"en": ..., "fr": ...}`.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub description: Value,
    pub service_type: String,
    /// `system` or `user`.
    pub prompt_category: String,
    /// Code of a prompt type (`standard`, `reduce`, `field_extraction`, `categorization`).
    #[serde(default = "standard")]
    pub prompt_type: String,
    #[serde(default)]
    pub parent_template_id: Option<Uuid>,
    #[serde(default)]
    pub organization_id: Option<String>,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
}

fn standard() -> String {
    "standard".to_string()
}

impl Entity for Prompt {
    const KIND: RecordKind = RecordKind::Prompt;
    const RESOURCE: Resource = Resource::Prompt;

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
            scoped_key("prompt-name", self.organization_id.as_deref(), &self.name),
            format!("Prompt with name '{}' already exists", self.name),
        )]
    }
    fn validate(&self) -> EngineResult<()> {
        text_length("name", &self.name, 1, 100)?;
        if self.content.is_empty() {
            return Err(EngineError::validation(
                Location::Body,
                "content",
                "must not be empty",
            ));
        }
        one_of(
            "prompt_category",
            &self.prompt_category,
            &["system", "user"],
        )?;
        translations("description", &self.description)
    }
    fn to_json(&self) -> Value {
        let mut json = serde_json::to_value(self).unwrap_or(Value::Null);
        json["placeholder_count"] = json!(placeholder_count(&self.content));
        json
    }
}

/// A seeded classification (service type or prompt type), addressed by `code`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct TypeEntry {
    pub id: Uuid,
    pub code: String,
    /// Translations `{"en": ..., "fr": ...}`.
    #[schema(value_type = Object)]
    pub name: Value,
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub description: Value,
    #[serde(default)]
    pub is_system: bool,
    #[serde(default = "yes")]
    pub is_active: bool,
    #[serde(default)]
    pub display_order: i64,
    /// Service types only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supports_reduce: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supports_chunking: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_processing_mode: Option<String>,
    /// Service types only: the prompt fields a flavor of this type has (by default a
    /// system prompt, a required user prompt, and a reduce prompt when it reduces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub prompts: Option<BTreeMap<String, PromptField>>,
    /// Prompt types only: the service type they belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type_id: Option<Uuid>,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
}

fn yes() -> bool {
    true
}

/// One prompt field of a service type (`GET /service-types/config/{code}`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PromptField {
    #[serde(default)]
    pub required: bool,
    /// `system` or `user`.
    pub prompt_category: String,
    #[serde(default)]
    pub prompt_type: Option<String>,
    /// Translations `{"en": ..., "fr": ...}`.
    #[serde(default = "empty_object")]
    pub description: Value,
}

impl PromptField {
    fn new(required: bool, category: &str, prompt_type: &str, en: &str, fr: &str) -> Self {
        PromptField {
            required,
            prompt_category: category.to_string(),
            prompt_type: Some(prompt_type.to_string()),
            description: json!({"en": en, "fr": fr}),
        }
    }
}

/// A service type record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct ServiceType(pub TypeEntry);

/// A prompt type record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct PromptType(pub TypeEntry);

macro_rules! type_entity {
    ($type:ty, $kind:expr, $resource:expr, $key:literal) => {
        impl Entity for $type {
            const KIND: RecordKind = $kind;
            const RESOURCE: Resource = $resource;
            fn id(&self) -> Uuid {
                self.0.id
            }
            fn organization_id(&self) -> Option<&str> {
                None
            }
            fn updated_at(&self) -> &str {
                &self.0.updated_at
            }
            fn unique_keys(&self) -> Vec<(String, String)> {
                vec![(
                    format!(concat!($key, ":{}"), self.0.code),
                    format!(
                        "{} with code '{}' already exists",
                        Self::RESOURCE.name(),
                        self.0.code
                    ),
                )]
            }
            fn validate(&self) -> EngineResult<()> {
                validate_type_entry(&self.0)
            }
        }
    };
}
type_entity!(
    ServiceType,
    RecordKind::ServiceType,
    Resource::ServiceType,
    "service-type"
);
type_entity!(
    PromptType,
    RecordKind::PromptType,
    Resource::PromptType,
    "prompt-type"
);

fn validate_type_entry(entry: &TypeEntry) -> EngineResult<()> {
    let code_ok = entry.code.len() <= 50
        && entry.code.starts_with(|c: char| c.is_ascii_lowercase())
        && entry
            .code
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !code_ok {
        return Err(EngineError::validation(
            Location::Body,
            "code",
            "must match ^[a-z][a-z0-9_]*$ (at most 50 characters)",
        ));
    }
    translations("name", &entry.name)?;
    translations("description", &entry.description)?;
    if let Some(mode) = &entry.default_processing_mode {
        one_of(
            "default_processing_mode",
            mode,
            &["single_pass", "iterative", "map_reduce"],
        )?;
    }
    for field in entry.prompts.iter().flat_map(BTreeMap::values) {
        one_of(
            "prompts.prompt_category",
            &field.prompt_category,
            &["system", "user"],
        )?;
        translations("prompts.description", &field.description)?;
    }
    Ok(())
}

/// Codes of the active service types.
async fn service_type_codes(gateway: &Gateway) -> EngineResult<Vec<String>> {
    let types: Vec<ServiceType> = list(gateway.records.as_ref(), &Scope::default()).await?;
    Ok(types.into_iter().map(|t| t.0.code).collect())
}

/// 400 unless `code` is a known service type (the reference's answer).
async fn check_service_type(gateway: &Gateway, code: &str) -> EngineResult<()> {
    let codes = service_type_codes(gateway).await?;
    if codes.iter().any(|known| known == code) {
        return Ok(());
    }
    Err(EngineError::refused(
        Rule::UnknownServiceType,
        format!(
            "Invalid service_type '{code}'. Must be one of: {}",
            codes.join(", ")
        ),
    )
    .about("field", "service_type"))
}

/// The prompt types, after a 400 unless `code` is one of them.
async fn check_prompt_type(gateway: &Gateway, code: &str) -> EngineResult<Vec<PromptType>> {
    let types: Vec<PromptType> = list(gateway.records.as_ref(), &Scope::default()).await?;
    if types.iter().any(|t| t.0.code == code) {
        return Ok(types);
    }
    let codes: Vec<&str> = types.iter().map(|t| t.0.code.as_str()).collect();
    Err(EngineError::refused(
        Rule::UnknownPromptType,
        format!(
            "Invalid prompt_type '{code}'. Must be one of: {}",
            codes.join(", ")
        ),
    )
    .about("field", "prompt_type"))
}

/// A prompt's JSON with its type expanded to the type object, like the reference.
fn prompt_json(prompt: &Prompt, types: &[PromptType]) -> Value {
    let mut json = prompt.to_json();
    json["prompt_type"] = types
        .iter()
        .find(|t| t.0.code == prompt.prompt_type)
        .map_or_else(|| json!({"code": prompt.prompt_type}), Entity::to_json);
    json
}

/// `POST /prompts` → 201.
pub async fn create(gateway: &Gateway, scope: &Scope, body: &[u8]) -> EngineResult<JsonResponse> {
    let mut fields = new_object(parse_object(body)?, scope, &now_timestamp())?;
    fields.remove("placeholder_count");
    if fields.get("prompt_type") == Some(&Value::Null) {
        fields.remove("prompt_type");
    }
    let prompt: Prompt = from_json(Value::Object(fields))?;
    prompt.validate()?;
    check_service_type(gateway, &prompt.service_type).await?;
    let types = check_prompt_type(gateway, &prompt.prompt_type).await?;
    commit(
        gateway.records.as_ref(),
        create_writes(&prompt)?,
        &prompt.unique_keys(),
    )
    .await?;
    Ok(JsonResponse::new(201, prompt_json(&prompt, &types)))
}

/// Filters of a prompt listing.
#[derive(Debug, Default, Clone)]
pub struct PromptFilter<'a> {
    /// Case-insensitive substring of the name.
    pub name: Option<&'a str>,
    pub service_type: Option<&'a str>,
    pub prompt_category: Option<&'a str>,
    pub prompt_type: Option<&'a str>,
}

/// `GET /prompts` → a page, by name.
pub async fn list_page(
    gateway: &Gateway,
    scope: &Scope,
    filter: PromptFilter<'_>,
    page: PageRequest,
) -> EngineResult<JsonResponse> {
    let mut prompts: Vec<Prompt> = list(gateway.records.as_ref(), scope).await?;
    let name = filter.name.map(str::to_lowercase);
    prompts.retain(|p| {
        name.as_deref()
            .is_none_or(|n| p.name.to_lowercase().contains(n))
            && filter.service_type.is_none_or(|t| p.service_type == t)
            && filter
                .prompt_category
                .is_none_or(|c| p.prompt_category == c)
            && filter.prompt_type.is_none_or(|t| p.prompt_type == t)
    });
    prompts.sort_by_key(|prompt| prompt.name.to_lowercase());
    let types: Vec<PromptType> = list(gateway.records.as_ref(), &Scope::default()).await?;
    let items = prompts.iter().map(|p| prompt_json(p, &types)).collect();
    Ok(JsonResponse::new(200, page.envelope(items)))
}

/// `GET /prompts/{id}`.
pub async fn get(gateway: &Gateway, scope: &Scope, id: Uuid) -> EngineResult<JsonResponse> {
    let prompt: Prompt = load(gateway.records.as_ref(), id, scope).await?;
    let types: Vec<PromptType> = list(gateway.records.as_ref(), &Scope::default()).await?;
    Ok(JsonResponse::new(200, prompt_json(&prompt, &types)))
}

/// `PATCH|PUT /prompts/{id}`.
pub async fn update(
    gateway: &Gateway,
    scope: &Scope,
    id: Uuid,
    body: &[u8],
) -> EngineResult<JsonResponse> {
    let store = gateway.records.as_ref();
    let old: Prompt = load_for_change(store, id, scope).await?;
    let mut fields = parse_object(body)?;
    fields.remove("placeholder_count");
    let current = current_json(&old, &now_timestamp())?;
    let prompt: Prompt = from_json(merge_patch(current, fields, SERVER_FIELDS))?;
    prompt.validate()?;
    if prompt.service_type != old.service_type {
        check_service_type(gateway, &prompt.service_type).await?;
    }
    if prompt.prompt_type != old.prompt_type {
        check_prompt_type(gateway, &prompt.prompt_type).await?;
    }
    commit(store, update_writes(&old, &prompt)?, &prompt.unique_keys()).await?;
    let types: Vec<PromptType> = list(store, &Scope::default()).await?;
    Ok(JsonResponse::new(200, prompt_json(&prompt, &types)))
}

/// `DELETE /prompts/{id}` → 204; 409 while a flavor uses it.
pub async fn delete(gateway: &Gateway, scope: &Scope, id: Uuid) -> EngineResult<JsonResponse> {
    let store = gateway.records.as_ref();
    let prompt: Prompt = load_for_change(store, id, scope).await?;
    let flavors: Vec<Flavor> = list(store, &Scope::default()).await?;
    let users: Vec<&str> = flavors
        .iter()
        .filter(|f| {
            [
                f.system_prompt_id,
                f.user_prompt_template_id,
                f.reduce_prompt_id,
                f.placeholder_extraction_prompt_id,
                f.categorization_prompt_id,
            ]
            .contains(&Some(id))
        })
        .map(|f| f.name.as_str())
        .collect();
    if !users.is_empty() {
        return Err(EngineError::Conflict(format!(
            "Cannot delete prompt '{}': it is used by flavor(s): {}",
            prompt.name,
            users.join(", ")
        )));
    }
    commit(store, delete_writes(&prompt), &[]).await?;
    Ok(JsonResponse::new(204, Value::Null))
}

/// `POST /prompts/{id}/duplicate` with `new_name` (and optionally `organization_id`) →
/// 201: a copy of the prompt under a new name.
pub async fn duplicate(
    gateway: &Gateway,
    scope: &Scope,
    id: Uuid,
    body: &[u8],
) -> EngineResult<JsonResponse> {
    let body = parse_object(body)?;
    let name = required_text(&body, "new_name", 100)?;
    let mut fields = serde_json::Map::new();
    fields.insert("name".into(), Value::String(name));
    copy_optional(&body, &mut fields, &["organization_id"]);
    copy_prompt(gateway, scope, id, fields).await
}

/// `POST /prompts/{id}/save-as-template` with `template_name`, `category` (system or
/// user), optionally `prompt_type` and `description` → 201: a copy of the prompt whose
/// `parent_template_id` is the source.
pub async fn save_as_template(
    gateway: &Gateway,
    scope: &Scope,
    id: Uuid,
    body: &[u8],
) -> EngineResult<JsonResponse> {
    let body = parse_object(body)?;
    let name = required_text(&body, "template_name", 100)?;
    let category = required_text(&body, "category", 10)?;
    one_of("category", &category, &["system", "user"])?;
    let mut fields = serde_json::Map::new();
    fields.insert("name".into(), Value::String(name));
    fields.insert("prompt_category".into(), Value::String(category));
    fields.insert("parent_template_id".into(), json!(id));
    copy_optional(
        &body,
        &mut fields,
        &["prompt_type", "description", "organization_id"],
    );
    copy_prompt(gateway, scope, id, fields).await
}

/// Copies the `names` fields of `body` that have a value (not null, not `{}`).
fn copy_optional(
    body: &serde_json::Map<String, Value>,
    fields: &mut serde_json::Map<String, Value>,
    names: &[&str],
) {
    for &name in names {
        match body.get(name) {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) if map.is_empty() => {}
            Some(value) => {
                fields.insert(name.into(), value.clone());
            }
        }
    }
}

/// Creates a copy of prompt `id` with `changes` applied. Without an `organization_id`
/// in the changes the copy goes to the scope's organization, or for the operator to the
/// source's own.
async fn copy_prompt(
    gateway: &Gateway,
    scope: &Scope,
    id: Uuid,
    changes: serde_json::Map<String, Value>,
) -> EngineResult<JsonResponse> {
    let source: Prompt = load(gateway.records.as_ref(), id, scope).await?;
    let Value::Object(mut fields) = source.to_json() else {
        return Err(EngineError::internal("copy prompt", "not an object"));
    };
    fields.remove("placeholder_count");
    if scope.organization_id.is_some() {
        fields.remove("organization_id");
    }
    fields.extend(changes);
    create(gateway, scope, Value::Object(fields).to_string().as_bytes()).await
}

/// `GET /service-types/config/{code}`: the type's prompt fields and capabilities, in the
/// reference's flat shape (`name_en`, `description_fr`, ...). 404 for an unknown code.
pub async fn service_type_config(gateway: &Gateway, code: &str) -> EngineResult<JsonResponse> {
    let entries = type_entries(gateway, TypeList::Service).await?;
    let entry = entries
        .into_iter()
        .find(|t| t.code == code)
        .ok_or_else(|| EngineError::not_found(Resource::ServiceType, code))?;
    Ok(JsonResponse::new(200, type_config_json(&entry)))
}

/// A service type's configuration (see [`service_type_config`]).
fn type_config_json(entry: &TypeEntry) -> Value {
    let text = |value: &Value, language: &str| value.get(language).cloned().unwrap_or(json!(""));
    let prompts = entry
        .prompts
        .clone()
        .unwrap_or_else(|| default_prompt_fields(entry.supports_reduce.unwrap_or(false)));
    let prompts: serde_json::Map<String, Value> = prompts
        .into_iter()
        .map(|(key, field)| {
            let config = json!({
                "required": field.required,
                "prompt_category": field.prompt_category,
                "prompt_type": field.prompt_type,
                "description_en": text(&field.description, "en"),
                "description_fr": text(&field.description, "fr"),
            });
            (key, config)
        })
        .collect();
    json!({
        "type": entry.code,
        "name_en": text(&entry.name, "en"),
        "name_fr": text(&entry.name, "fr"),
        "description_en": text(&entry.description, "en"),
        "description_fr": text(&entry.description, "fr"),
        "prompts": prompts,
        "supports_reduce": entry.supports_reduce.unwrap_or(false),
        "supports_chunking": entry.supports_chunking.unwrap_or(false),
        "default_processing_mode": entry.default_processing_mode.as_deref().unwrap_or("single_pass"),
    })
}

/// The prompt fields of a service type that does not list its own: an optional system
/// prompt, a required user prompt, and an optional reduce prompt when the type reduces.
fn default_prompt_fields(supports_reduce: bool) -> BTreeMap<String, PromptField> {
    let mut fields = BTreeMap::from([
        (
            "system_prompt".to_string(),
            PromptField::new(
                false,
                "system",
                "standard",
                "System instructions for the model",
                "Instructions système pour le modèle",
            ),
        ),
        (
            "user_prompt".to_string(),
            PromptField::new(
                true,
                "user",
                "standard",
                "Main prompt template",
                "Modèle de prompt principal",
            ),
        ),
    ]);
    if supports_reduce {
        fields.insert(
            "reduce_prompt".to_string(),
            PromptField::new(
                false,
                "user",
                "reduce",
                "Prompt merging the partial results (optional)",
                "Prompt de fusion des résultats partiels (optionnel)",
            ),
        );
    }
    fields
}

/// Which type list a `/service-types` or `/prompt-types` request is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeList {
    Service,
    Prompt,
}

/// Every entry of one type list.
async fn type_entries(gateway: &Gateway, which: TypeList) -> EngineResult<Vec<TypeEntry>> {
    let store = gateway.records.as_ref();
    Ok(match which {
        TypeList::Service => list::<ServiceType>(store, &Scope::default())
            .await?
            .into_iter()
            .map(|t| t.0)
            .collect(),
        TypeList::Prompt => list::<PromptType>(store, &Scope::default())
            .await?
            .into_iter()
            .map(|t| t.0)
            .collect(),
    })
}

/// `GET /service-types` or `/prompt-types`: a plain array by display order.
pub async fn list_types(
    gateway: &Gateway,
    which: TypeList,
    active_only: bool,
) -> EngineResult<JsonResponse> {
    let mut entries = type_entries(gateway, which).await?;
    entries.retain(|t| !active_only || t.is_active);
    entries.sort_by(|a, b| {
        a.display_order
            .cmp(&b.display_order)
            .then(a.code.cmp(&b.code))
    });
    Ok(JsonResponse::new(200, json!(entries)))
}

/// `GET /service-types/{id or code}` or `/prompt-types/{id or code}`.
pub async fn get_type(gateway: &Gateway, which: TypeList, key: &str) -> EngineResult<JsonResponse> {
    let found = find_type(gateway, which, key).await?;
    Ok(JsonResponse::new(200, json!(found)))
}

async fn find_type(gateway: &Gateway, which: TypeList, key: &str) -> EngineResult<TypeEntry> {
    let entries = type_entries(gateway, which).await?;
    let what = match which {
        TypeList::Service => Resource::ServiceType,
        TypeList::Prompt => Resource::PromptType,
    };
    entries
        .into_iter()
        .find(|t| t.code == key || t.id.to_string() == key)
        .ok_or_else(|| EngineError::not_found(what, key))
}

/// `POST /service-types` or `/prompt-types` → 201 (never a system type).
pub async fn create_type(
    gateway: &Gateway,
    which: TypeList,
    body: &[u8],
) -> EngineResult<JsonResponse> {
    let mut fields = new_object(parse_object(body)?, &Scope::default(), &now_timestamp())?;
    fields.insert("is_system".into(), Value::Bool(false));
    fields.remove("organization_id");
    let store = gateway.records.as_ref();
    let entry = match which {
        TypeList::Service => {
            let entry: ServiceType = from_json(Value::Object(fields))?;
            commit(store, create_writes(&entry)?, &entry.unique_keys()).await?;
            entry.0
        }
        TypeList::Prompt => {
            let entry: PromptType = from_json(Value::Object(fields))?;
            commit(store, create_writes(&entry)?, &entry.unique_keys()).await?;
            entry.0
        }
    };
    Ok(JsonResponse::new(201, json!(entry)))
}

/// `PATCH|PUT /service-types/{id}` or `/prompt-types/{id}` (code and is_system fixed).
pub async fn update_type(
    gateway: &Gateway,
    which: TypeList,
    key: &str,
    body: &[u8],
) -> EngineResult<JsonResponse> {
    let old = find_type(gateway, which, key).await?;
    let fields = parse_object(body)?;
    let mut current = json!(old);
    current["updated_at"] = Value::String(now_timestamp());
    let protected = [SERVER_FIELDS, &["code", "is_system"]].concat();
    let merged = merge_patch(current, fields, &protected);
    let store = gateway.records.as_ref();
    let entry = match which {
        TypeList::Service => {
            let (old, new): (ServiceType, ServiceType) = (ServiceType(old), from_json(merged)?);
            commit(store, update_writes(&old, &new)?, &[]).await?;
            new.0
        }
        TypeList::Prompt => {
            let (old, new): (PromptType, PromptType) = (PromptType(old), from_json(merged)?);
            commit(store, update_writes(&old, &new)?, &[]).await?;
            new.0
        }
    };
    Ok(JsonResponse::new(200, json!(entry)))
}

/// `DELETE /service-types/{id}` or `/prompt-types/{id}` → 204; system types → 403.
pub async fn delete_type(
    gateway: &Gateway,
    which: TypeList,
    key: &str,
) -> EngineResult<JsonResponse> {
    let entry = find_type(gateway, which, key).await?;
    if entry.is_system {
        return Err(EngineError::refused(
            Rule::SystemType,
            "Cannot delete a system type",
        ));
    }
    let writes = match which {
        TypeList::Service => delete_writes(&ServiceType(entry)),
        TypeList::Prompt => delete_writes(&PromptType(entry)),
    };
    commit(gateway.records.as_ref(), writes, &[]).await?;
    Ok(JsonResponse::new(204, Value::Null))
}
