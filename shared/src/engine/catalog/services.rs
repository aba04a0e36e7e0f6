//! `/api/v1/services`: services with their flavors. A service created with its flavors is
//! one atomic write: an invalid flavor leaves nothing behind.

use std::collections::HashSet;

use serde_json::{json, Value};
use uuid::Uuid;

use super::entity::{
    commit, create_writes, current_json, delete_writes, from_json, list, load, load_for_change,
    merge_patch, new_object, parse_object, scoped_key, update_writes, Entity, Scope, SERVER_FIELDS,
};
use super::flavors::{
    build_flavor, check_failover_cycle, conflicts_of, default_route, flavors_of, service_json,
    Names,
};
use super::page::PageRequest;
use super::validate::text_length;
use crate::domain::{now_timestamp, Service};
use crate::engine::error::{EngineError, EngineResult, Location, Resource};
use crate::engine::Gateway;
use crate::engine::JsonResponse;
use crate::ports::RecordKind;

/// Default page size of service lists.
pub const PAGE_SIZE: usize = 50;
/// Most flavors a service may be created with in one request (one atomic write).
pub const MAX_FLAVORS_PER_REQUEST: usize = 30;

impl Entity for Service {
    const KIND: RecordKind = RecordKind::Service;
    const RESOURCE: Resource = Resource::Service;

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
        let org = self.organization_id.as_deref();
        vec![
            (
                scoped_key("service-name", org, &self.name),
                format!("Service with name '{}' already exists", self.name),
            ),
            (
                scoped_key("service-route", org, &self.route),
                format!("Service with route '{}' already exists", self.route),
            ),
        ]
    }

    fn validate(&self) -> EngineResult<()> {
        text_length("name", &self.name, 1, 100)?;
        text_length("route", &self.route, 1, 100)?;
        if !self
            .route
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(EngineError::validation(
                Location::Body,
                "route",
                "may hold only letters, digits, '-' and '_'",
            ));
        }
        text_length("service_type", &self.service_type, 1, 50)?;
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

/// `POST /services` (optionally with `flavors`) → 201 with the service and its flavors.
pub async fn create(gateway: &Gateway, scope: &Scope, body: &[u8]) -> EngineResult<JsonResponse> {
    let now = now_timestamp();
    let mut fields = new_object(parse_object(body)?, scope, &now)?;
    let flavor_fields = match fields.remove("flavors") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.len() <= MAX_FLAVORS_PER_REQUEST => items,
        Some(Value::Array(_)) => {
            return Err(EngineError::validation(
                Location::Body,
                "flavors",
                format!("at most {MAX_FLAVORS_PER_REQUEST} flavors per request"),
            ))
        }
        Some(_) => {
            return Err(EngineError::validation(
                Location::Body,
                "flavors",
                "must be a list",
            ))
        }
    };
    fields.remove("flavor_count");
    if matches!(fields.get("route"), None | Some(Value::Null)) {
        let name = fields
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        fields.insert("route".into(), json!(default_route(name)));
    }
    let service: Service = from_json(Value::Object(fields))?;
    check_default_template(gateway, &service).await?;
    let mut writes = create_writes(&service)?;
    let mut flavors = Vec::new();
    for (index, item) in flavor_fields.into_iter().enumerate() {
        let prefix = format!("flavors.{index}.");
        let Value::Object(item) = item else {
            return Err(EngineError::validation(
                Location::Body,
                &format!("flavors.{index}"),
                "must be an object",
            ));
        };
        let item = new_object(item, &Scope::new(service.organization_id.as_deref()), &now)?;
        flavors.push(build_flavor(gateway, scope, &service, item, &prefix).await?);
    }
    if flavors.iter().filter(|f| f.is_default).count() > 1 {
        return Err(EngineError::validation(
            Location::Body,
            "flavors",
            "at most one flavor may be the default",
        ));
    }
    let mut names = HashSet::new();
    for flavor in &flavors {
        if !names.insert(flavor.name.trim().to_lowercase()) {
            return Err(EngineError::Conflict(format!(
                "Flavor with name '{}' already exists for this service",
                flavor.name
            )));
        }
        check_failover_cycle(gateway, flavor, &flavors).await?;
        writes.extend(create_writes(flavor)?);
    }
    commit(
        gateway.records.as_ref(),
        writes,
        &conflicts_of(Some(&service), &flavors),
    )
    .await?;
    tracing::info!(service_id = %service.id, flavors = flavors.len(), "service created");
    let names = Names::load(gateway).await?;
    Ok(JsonResponse::new(
        201,
        service_json(&service, &flavors, &names),
    ))
}

/// `GET /services` → a page (filters `service_type`, `is_active`), newest first.
pub async fn list_page(
    gateway: &Gateway,
    scope: &Scope,
    service_type: Option<&str>,
    is_active: Option<bool>,
    page: PageRequest,
) -> EngineResult<JsonResponse> {
    let store = gateway.records.as_ref();
    let mut services: Vec<Service> = list(store, scope).await?;
    services.retain(|s| {
        service_type.is_none_or(|t| s.service_type == t)
            && is_active.is_none_or(|a| s.is_active == a)
    });
    services.sort_by(|a, b| b.created_at.cmp(&a.created_at));
    let names = Names::load(gateway).await?;
    let items = services
        .iter()
        .map(|service| service_json(service, &names.flavors_of(service.id), &names))
        .collect();
    Ok(JsonResponse::new(200, page.envelope(items)))
}

/// `GET /services/{id}` with its flavors.
pub async fn get(gateway: &Gateway, scope: &Scope, id: Uuid) -> EngineResult<JsonResponse> {
    let service: Service = load(gateway.records.as_ref(), id, scope).await?;
    let names = Names::load(gateway).await?;
    Ok(JsonResponse::new(
        200,
        service_json(&service, &names.flavors_of(id), &names),
    ))
}

/// `PATCH|PUT /services/{id}` (service fields only; flavors have their own routes).
pub async fn update(
    gateway: &Gateway,
    scope: &Scope,
    id: Uuid,
    body: &[u8],
) -> EngineResult<JsonResponse> {
    let store = gateway.records.as_ref();
    let old: Service = load_for_change(store, id, scope).await?;
    let mut fields = parse_object(body)?;
    if fields.contains_key("flavors") {
        return Err(EngineError::validation(
            Location::Body,
            "flavors",
            "change flavors through /services/{id}/flavors",
        ));
    }
    let current = current_json(&old, &now_timestamp())?;
    if fields.get("route") == Some(&Value::Null) {
        fields.remove("route");
    }
    let service: Service = from_json(merge_patch(current, fields, SERVER_FIELDS))?;
    if service.default_template_id != old.default_template_id {
        check_default_template(gateway, &service).await?;
    }
    commit(
        store,
        update_writes(&old, &service)?,
        &service.unique_keys(),
    )
    .await?;
    let names = Names::load(gateway).await?;
    Ok(JsonResponse::new(
        200,
        service_json(&service, &names.flavors_of(id), &names),
    ))
}

/// 422 naming `default_template_id` unless it names a document template the service's
/// organization can see.
async fn check_default_template(gateway: &Gateway, service: &Service) -> EngineResult<()> {
    let Some(id) = service.default_template_id else {
        return Ok(());
    };
    let owner = match gateway
        .records
        .record(RecordKind::DocumentTemplate, id)
        .await?
    {
        Some(record) => record.body["organization_id"].as_str().map(str::to_string),
        None => return Err(unknown_template(id)),
    };
    // A service may use a system template or one of its own organization.
    if owner.is_some() && owner != service.organization_id {
        return Err(unknown_template(id));
    }
    Ok(())
}

fn unknown_template(id: Uuid) -> EngineError {
    EngineError::validation(
        Location::Body,
        "default_template_id",
        format!("document template '{id}' does not exist"),
    )
}

/// `DELETE /services/{id}` → 204, with its flavors. Jobs keep their frozen settings.
pub async fn delete(gateway: &Gateway, scope: &Scope, id: Uuid) -> EngineResult<JsonResponse> {
    let service: Service = load_for_change(gateway.records.as_ref(), id, scope).await?;
    let mut writes = delete_writes(&service);
    for flavor in flavors_of(gateway, id).await? {
        writes.extend(delete_writes(&flavor));
    }
    commit(gateway.records.as_ref(), writes, &[]).await?;
    Ok(JsonResponse::new(204, Value::Null))
}
