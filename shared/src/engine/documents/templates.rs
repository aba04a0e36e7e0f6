//! `/api/v1/document-templates`: Word templates for exports. The `.docx` is checked
//! (a valid document within the size limit) and stored in the blob store under
//! `templates/{id}.docx`; the record keeps its name, scope, size, hash and placeholders.
//! Tenancy as in the catalog: an organization sees its own templates and the system ones
//! (optionally narrowed to a user's), the operator sees all. The system template marked
//! `is_default` is the global default (one at most: a unique key), and a service's
//! `default_template_id` names its own default.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::api::multipart::{Form, UploadedFile};
use crate::documents::{inspect_template, DocumentError, MAX_TEMPLATE_BYTES};
use crate::domain::{now_timestamp, Service};
use crate::engine::catalog::entity::{
    commit, create_writes, current_json, decode, delete_writes, from_json, list, load,
    load_for_change, update_writes, Entity, Scope,
};
use crate::engine::catalog::validate::text_length;
use crate::engine::error::{EngineError, EngineResult, Location, Resource};
use crate::engine::execute::sha256_hex;
use crate::engine::{FileResponse, Gateway, JsonResponse};
use crate::ports::{keys, CatalogWrite, RecordKind};

use super::values::is_standard;

/// The media type of a `.docx`.
pub const DOCX_MEDIA_TYPE: &str =
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
/// The unique key the global default holds (so there is one at most).
const GLOBAL_DEFAULT_KEY: &str = "document-template:global-default";

/// The 409 when two templates become the global default at once.
fn default_conflict() -> Vec<(String, String)> {
    vec![(
        GLOBAL_DEFAULT_KEY.to_string(),
        "another template became the global default at the same time; retry".to_string(),
    )]
}

/// A stored document template (the reference's fields).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DocumentTemplate {
    pub id: Uuid,
    pub name_fr: String,
    #[serde(default)]
    pub name_en: Option<String>,
    #[serde(default)]
    pub description_fr: Option<String>,
    #[serde(default)]
    pub description_en: Option<String>,
    #[serde(default)]
    pub organization_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    pub file_name: String,
    pub file_size: u64,
    pub file_hash: String,
    /// Placeholders as written, `name` or `name: hint`, in document order.
    #[serde(default)]
    pub placeholders: Vec<String>,
    /// The global default (system templates only).
    #[serde(default)]
    pub is_default: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl Entity for DocumentTemplate {
    const KIND: RecordKind = RecordKind::DocumentTemplate;
    const RESOURCE: Resource = Resource::DocumentTemplate;

    fn id(&self) -> Uuid {
        self.id
    }
    fn organization_id(&self) -> Option<&str> {
        self.organization_id.as_deref()
    }
    fn updated_at(&self) -> &str {
        &self.updated_at
    }
    fn validate(&self) -> EngineResult<()> {
        text_length("name_fr", &self.name_fr, 1, 255)?;
        for (field, value) in [("name_en", &self.name_en), ("user_id", &self.user_id)] {
            if let Some(value) = value {
                text_length(field, value, 1, 255)?;
            }
        }
        if self.user_id.is_some() && self.organization_id.is_none() {
            return Err(EngineError::validation(
                Location::Body,
                "user_id",
                "requires organization_id",
            ));
        }
        if self.is_default && self.organization_id.is_some() {
            return Err(EngineError::validation(
                Location::Body,
                "is_default",
                "only a system template (no organization_id) can be the global default",
            ));
        }
        Ok(())
    }
    fn to_json(&self) -> Value {
        let mut body = serde_json::to_value(self).unwrap_or(Value::Null);
        let scope = match (&self.organization_id, &self.user_id) {
            (None, _) => "system",
            (Some(_), None) => "organization",
            (Some(_), Some(_)) => "user",
        };
        body["scope"] = json!(scope);
        body["mime_type"] = json!(DOCX_MEDIA_TYPE);
        body["file_path"] = json!(keys::template(self.id));
        body
    }
}

impl DocumentTemplate {
    /// The name shown in previews (English when there is one).
    pub fn display_name(&self) -> &str {
        self.name_en.as_deref().unwrap_or(&self.name_fr)
    }

    /// The placeholders as (name, hint), in document order (stored as `name: hint`).
    pub fn placeholder_parts(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.placeholders
            .iter()
            .map(|raw| match raw.split_once(':') {
                Some((name, hint)) => (name.trim(), Some(hint.trim())),
                None => (raw.trim(), None),
            })
    }

    /// The placeholder names, without hints, in document order.
    pub fn placeholder_names(&self) -> impl Iterator<Item = &str> {
        self.placeholder_parts().map(|(name, _)| name)
    }
}

/// The checked file of an upload: 422 naming `file` when it is missing, too large or not
/// a Word document.
fn checked_file(file: Option<&UploadedFile>) -> EngineResult<(&UploadedFile, Vec<String>)> {
    let invalid = |problem: String| EngineError::validation(Location::Body, "file", problem);
    let file = file.ok_or_else(|| invalid("field required: the .docx template".into()))?;
    if file.bytes.len() > MAX_TEMPLATE_BYTES {
        return Err(invalid(format!(
            "is {} bytes; the limit is {MAX_TEMPLATE_BYTES}",
            file.bytes.len()
        )));
    }
    let info =
        inspect_template(&file.bytes).map_err(|error: DocumentError| invalid(error.to_string()))?;
    let placeholders = info
        .placeholders
        .into_iter()
        .map(|p| match p.hint {
            Some(hint) => format!("{}: {hint}", p.name),
            None => p.name,
        })
        .collect();
    Ok((file, placeholders))
}

/// A boolean form field (`true`/`false`, 422 otherwise).
fn form_flag(form: &Form, name: &str) -> EngineResult<Option<bool>> {
    match form.text(name).map(str::to_ascii_lowercase).as_deref() {
        None => Ok(None),
        Some("true" | "1" | "on") => Ok(Some(true)),
        Some("false" | "0" | "off") => Ok(Some(false)),
        Some(_) => Err(EngineError::validation(
            Location::Body,
            name,
            "must be true or false",
        )),
    }
}

/// The organization of a new template: the form's, which must match the caller's scope.
fn owner(form: &Form, scope: &Scope) -> EngineResult<Option<String>> {
    match (
        form.text("organization_id"),
        scope.organization_id.as_deref(),
    ) {
        (Some(body), Some(query)) if body != query => Err(EngineError::validation(
            Location::Body,
            "organization_id",
            "must match the organization_id of the query",
        )),
        (Some(body), _) => Ok(Some(body.to_string())),
        (None, query) => Ok(query.map(str::to_string)),
    }
}

async fn store_file(gateway: &Gateway, id: Uuid, bytes: &[u8]) -> EngineResult<()> {
    gateway
        .blobs
        .put(&keys::template(id), bytes.to_vec(), DOCX_MEDIA_TYPE)
        .await?;
    Ok(())
}

/// `POST /document-templates` (multipart: `file`, `name_fr`, `name_en`, `description_fr`,
/// `description_en`, `organization_id`, `user_id`, `is_default`) → 201 with the template.
pub async fn create(gateway: &Gateway, scope: &Scope, form: &Form) -> EngineResult<JsonResponse> {
    let (file, placeholders) = checked_file(form.files.get("file"))?;
    let now = now_timestamp();
    let template = DocumentTemplate {
        id: Uuid::new_v4(),
        name_fr: form
            .text("name_fr")
            .or_else(|| form.text("name"))
            .ok_or_else(|| EngineError::validation(Location::Body, "name_fr", "field required"))?
            .to_string(),
        name_en: form.text("name_en").map(str::to_string),
        description_fr: form.text("description_fr").map(str::to_string),
        description_en: form.text("description_en").map(str::to_string),
        organization_id: owner(form, scope)?,
        user_id: form.text("user_id").map(str::to_string),
        file_name: file_name(&file.file_name),
        file_size: file.bytes.len() as u64,
        file_hash: sha256_hex(&file.bytes),
        placeholders,
        is_default: form_flag(form, "is_default")?.unwrap_or(false),
        created_at: now.clone(),
        updated_at: now,
    };
    let mut writes = create_writes(&template)?;
    if template.is_default {
        writes.extend(take_global_default(gateway, template.id).await?);
    }
    store_file(gateway, template.id, &file.bytes).await?;
    commit(gateway.records.as_ref(), writes, &default_conflict()).await?;
    tracing::info!(template_id = %template.id, placeholders = template.placeholders.len(), "document template created");
    Ok(JsonResponse::new(201, template.to_json()))
}

fn file_name(raw: &str) -> String {
    let name = raw.rsplit(['/', '\\']).next().unwrap_or_default().trim();
    if name.is_empty() {
        "template.docx".to_string()
    } else {
        name.chars().take(255).collect()
    }
}

/// The writes that make `new` the global default: the current default (if any) loses
/// its flag and hands over the unique key.
async fn take_global_default(gateway: &Gateway, new: Uuid) -> EngineResult<Vec<CatalogWrite>> {
    let mut writes = Vec::new();
    let mut from = None;
    let all: Vec<DocumentTemplate> = list(gateway.records.as_ref(), &Scope::default()).await?;
    for old in all.into_iter().filter(|t| t.is_default && t.id != new) {
        let mut cleared = old.clone();
        cleared.is_default = false;
        cleared.updated_at = now_timestamp();
        writes.extend(update_writes(&old, &cleared)?);
        from = Some(old.id);
    }
    writes.push(CatalogWrite::Transfer {
        key: GLOBAL_DEFAULT_KEY.to_string(),
        from,
        to: new,
    });
    Ok(writes)
}

/// Which templates a listing returns.
#[derive(Debug, Clone, Default)]
pub struct TemplateFilter {
    pub user_id: Option<String>,
    /// Include system templates (default true).
    pub include_system: bool,
    /// Operator view: every template whatever its scope.
    pub include_all: bool,
}

/// `GET /document-templates` → the visible templates (system ∪ organization ∪ the user's),
/// system first, then by name.
pub async fn list_templates(
    gateway: &Gateway,
    scope: &Scope,
    filter: &TemplateFilter,
) -> EngineResult<JsonResponse> {
    let view = if filter.include_all {
        Scope::default()
    } else {
        scope.clone()
    };
    let mut templates: Vec<DocumentTemplate> = list(gateway.records.as_ref(), &view).await?;
    if !filter.include_all {
        templates.retain(|t| match (&t.organization_id, &t.user_id) {
            (None, _) => filter.include_system,
            (Some(_), None) => true,
            (Some(_), Some(user)) => filter.user_id.as_deref().is_none_or(|u| u == user),
        });
    }
    templates.sort_by(|a, b| {
        (a.organization_id.is_some(), a.display_name())
            .cmp(&(b.organization_id.is_some(), b.display_name()))
    });
    Ok(JsonResponse::new(
        200,
        Value::Array(templates.iter().map(Entity::to_json).collect()),
    ))
}

/// `GET /document-templates/{id}`.
pub async fn get(gateway: &Gateway, scope: &Scope, id: Uuid) -> EngineResult<JsonResponse> {
    let template: DocumentTemplate = load(gateway.records.as_ref(), id, scope).await?;
    Ok(JsonResponse::new(200, template.to_json()))
}

/// `PATCH|PUT /document-templates/{id}`: metadata (JSON, or a multipart form that may also
/// carry a new `file`).
pub async fn update(
    gateway: &Gateway,
    scope: &Scope,
    id: Uuid,
    form: &Form,
) -> EngineResult<JsonResponse> {
    let store = gateway.records.as_ref();
    let old: DocumentTemplate = load_for_change(store, id, scope).await?;
    let mut template = old.clone();
    for (field, slot) in [
        ("name_en", &mut template.name_en),
        ("description_fr", &mut template.description_fr),
        ("description_en", &mut template.description_en),
    ] {
        if let Some(value) = form.fields.get(field) {
            let value = value.trim();
            *slot = (!value.is_empty()).then(|| value.to_string());
        }
    }
    if let Some(name) = form.fields.get("name_fr") {
        template.name_fr = name.trim().to_string();
    }
    if let Some(is_default) = form_flag(form, "is_default")? {
        if scope.organization_id.is_some() && is_default != old.is_default {
            return Err(EngineError::Forbidden(
                "only the operator (no organization_id) sets the global default".into(),
            ));
        }
        template.is_default = is_default;
    }
    let new_file = match form.files.get("file") {
        Some(file) => {
            let (file, placeholders) = checked_file(Some(file))?;
            template.file_name = file_name(&file.file_name);
            template.file_size = file.bytes.len() as u64;
            template.file_hash = sha256_hex(&file.bytes);
            template.placeholders = placeholders;
            Some(file)
        }
        None => None,
    };
    template.updated_at = now_timestamp();
    let mut writes = update_writes(&old, &template)?;
    match (old.is_default, template.is_default) {
        (false, true) => writes.extend(take_global_default(gateway, template.id).await?),
        (true, false) => writes.push(CatalogWrite::Release {
            key: GLOBAL_DEFAULT_KEY.to_string(),
        }),
        _ => {}
    }
    if let Some(file) = new_file {
        store_file(gateway, id, &file.bytes).await?;
    }
    commit(store, writes, &default_conflict()).await?;
    Ok(JsonResponse::new(200, template.to_json()))
}

/// The form of a JSON metadata update: its string and boolean fields as text.
pub fn form_of_json(fields: Map<String, Value>) -> EngineResult<Form> {
    let mut form = Form::default();
    for (name, value) in fields {
        let text = match value {
            Value::Null => String::new(),
            Value::String(text) => text,
            Value::Bool(flag) => flag.to_string(),
            _ => {
                return Err(EngineError::validation(
                    Location::Body,
                    &name,
                    "must be a string or a boolean",
                ))
            }
        };
        form.fields.insert(name, text);
    }
    Ok(form)
}

/// Services whose default template is `id`.
async fn services_using(gateway: &Gateway, id: Uuid) -> EngineResult<Vec<Service>> {
    let services: Vec<Service> = list(gateway.records.as_ref(), &Scope::default()).await?;
    Ok(services
        .into_iter()
        .filter(|service| service.default_template_id == Some(id))
        .collect())
}

/// `DELETE /document-templates/{id}` → 204; 409 while it is the global default or a
/// service's default. The file goes with the record.
pub async fn delete(gateway: &Gateway, scope: &Scope, id: Uuid) -> EngineResult<JsonResponse> {
    let template: DocumentTemplate = load_for_change(gateway.records.as_ref(), id, scope).await?;
    if template.is_default {
        return Err(EngineError::Conflict(format!(
            "template '{id}' is the global default; set another default first"
        )));
    }
    if let Some(service) = services_using(gateway, id).await?.first() {
        return Err(EngineError::Conflict(format!(
            "template '{id}' is the default of service '{}' ({}); change the service's default first",
            service.name, service.id
        )));
    }
    commit(gateway.records.as_ref(), delete_writes(&template), &[]).await?;
    gateway.blobs.delete(&keys::template(id)).await?;
    Ok(JsonResponse::new(204, Value::Null))
}

/// `GET /document-templates/{id}/download`: the `.docx` as uploaded.
pub async fn download(gateway: &Gateway, scope: &Scope, id: Uuid) -> EngineResult<JsonResponse> {
    let template: DocumentTemplate = load(gateway.records.as_ref(), id, scope).await?;
    let bytes = gateway
        .blobs
        .get(&keys::template(id))
        .await?
        .ok_or_else(|| EngineError::Internal(format!("the file of template '{id}' is missing")))?;
    Ok(JsonResponse::file(FileResponse {
        content_type: DOCX_MEDIA_TYPE.to_string(),
        file_name: template.file_name.clone(),
        bytes,
    }))
}

/// `GET /document-templates/{id}/placeholders` → `[{name, description, is_standard}]`.
pub async fn placeholders(
    gateway: &Gateway,
    scope: &Scope,
    id: Uuid,
) -> EngineResult<JsonResponse> {
    let template: DocumentTemplate = load(gateway.records.as_ref(), id, scope).await?;
    let items = template
        .placeholder_parts()
        .map(|(name, hint)| {
            json!({"name": name, "description": hint, "is_standard": is_standard(name)})
        })
        .collect();
    Ok(JsonResponse::new(200, Value::Array(items)))
}

/// `POST /document-templates/{id}/set-default?service_id=` → 204: the service's exports
/// use this template. The service must be the caller's to change and see the template.
pub async fn set_default(
    gateway: &Gateway,
    scope: &Scope,
    id: Uuid,
    service_id: Uuid,
) -> EngineResult<JsonResponse> {
    let store = gateway.records.as_ref();
    let service: Service = load_for_change(store, service_id, scope).await?;
    let template: DocumentTemplate = load(store, id, scope).await?;
    // A service may use a system template or one of its own organization.
    if template.organization_id.is_some() && template.organization_id != service.organization_id {
        return Err(EngineError::not_found(Resource::DocumentTemplate, id));
    }
    let mut body = current_json(&service, &now_timestamp())?;
    body["default_template_id"] = json!(id);
    let changed: Service = from_json(body)?;
    commit(
        store,
        update_writes(&service, &changed)?,
        &changed.unique_keys(),
    )
    .await?;
    Ok(JsonResponse::new(204, Value::Null))
}

/// `POST /document-templates/{id}/set-global-default` → 204 (operator only; system
/// templates only): exports without a template or service default use it.
pub async fn set_global_default(
    gateway: &Gateway,
    scope: &Scope,
    id: Uuid,
) -> EngineResult<JsonResponse> {
    if scope.organization_id.is_some() {
        return Err(EngineError::Forbidden(
            "only the operator (no organization_id) sets the global default".into(),
        ));
    }
    let store = gateway.records.as_ref();
    let old: DocumentTemplate = load(store, id, scope).await?;
    if old.organization_id.is_some() {
        return Err(EngineError::invalid_field(
            "template_id",
            "only a system template (no organization_id) can be the global default",
        ));
    }
    if old.is_default {
        return Ok(JsonResponse::new(204, Value::Null));
    }
    let mut template = old.clone();
    template.is_default = true;
    template.updated_at = now_timestamp();
    let mut writes = update_writes(&old, &template)?;
    writes.extend(take_global_default(gateway, id).await?);
    commit(store, writes, &default_conflict()).await?;
    Ok(JsonResponse::new(204, Value::Null))
}

/// The template an export of a job of `service_id` uses, with its bytes: `template_id`
/// (404 naming it when unknown or invisible), else the service's default, else the global
/// default, else the built-in one. A template whose file is gone falls back to the
/// built-in template. None for the built-in template.
pub async fn resolve(
    gateway: &Gateway,
    scope: &Scope,
    template_id: Option<Uuid>,
    service_id: Uuid,
) -> EngineResult<(Option<DocumentTemplate>, Vec<u8>)> {
    let store = gateway.records.as_ref();
    let chosen: Option<DocumentTemplate> = match template_id {
        Some(id) => Some(load(store, id, scope).await.map_err(|error| match error {
            EngineError::NotFound { .. } => {
                EngineError::not_found_by(Resource::DocumentTemplate, id, "template_id")
            }
            other => other,
        })?),
        None => default_for(gateway, scope, service_id).await?,
    };
    if let Some(template) = chosen {
        if let Some(bytes) = gateway.blobs.get(&keys::template(template.id)).await? {
            return Ok((Some(template), bytes));
        }
        tracing::warn!(template_id = %template.id, "template file missing; using the built-in template");
    }
    Ok((None, crate::documents::builtin_template().to_vec()))
}

async fn default_for(
    gateway: &Gateway,
    scope: &Scope,
    service_id: Uuid,
) -> EngineResult<Option<DocumentTemplate>> {
    let store = gateway.records.as_ref();
    let service = match store.record(RecordKind::Service, service_id).await? {
        Some(record) => decode::<Service>(record).ok(),
        None => None,
    };
    if let Some(id) = service.and_then(|service| service.default_template_id) {
        match load::<DocumentTemplate>(store, id, scope).await {
            Ok(template) => return Ok(Some(template)),
            Err(EngineError::NotFound { .. }) => {}
            Err(other) => return Err(other),
        }
    }
    let all: Vec<DocumentTemplate> = list(store, &Scope::default()).await?;
    Ok(all
        .into_iter()
        .find(|t| t.is_default && t.organization_id.is_none()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeded_template_lists_the_placeholders_of_its_file() {
        let seeds: Vec<Value> =
            serde_json::from_str(include_str!("../../../../seeds/document-templates.json"))
                .unwrap();
        for seed in seeds {
            let file = seed["file"].as_str().unwrap();
            let bytes =
                std::fs::read(format!("{}/../seeds/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
            let (_, placeholders) = checked_file(Some(&UploadedFile {
                file_name: file.to_string(),
                content_type: None,
                bytes: bytes.clone(),
            }))
            .unwrap();
            assert_eq!(seed["placeholders"], json!(placeholders), "{file}");
            assert_eq!(
                bytes,
                crate::documents::builtin_template(),
                "the built-in template is the seed"
            );
        }
    }
}
