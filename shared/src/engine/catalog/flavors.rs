//! Flavors (`/services/{id}/flavors…`, `/flavors/{id}…`): the flavor record, its
//! validation (prompts, model, failover and fallback targets, failover cycles), the names
//! flavors show, and the flavor routes.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::entity::{
    commit, create_writes, current_json, decode, delete_writes, from_json, list, load,
    load_for_change, merge_patch, new_object, parse_object, record_of, update_writes, Entity,
    Scope, SERVER_FIELDS,
};
use super::prompts::Prompt;
use super::tokenizers::check_available;
use super::validate::{check_placeholders, one_of, text_length};
use crate::domain::{now_timestamp, Flavor, Model, ProcessingMode, Service};
use crate::engine::error::{EngineError, EngineResult, Location, Resource, Rule};
use crate::engine::Gateway;
use crate::engine::JsonResponse;
use crate::ports::{CatalogWrite, Expect, IoResult, RecordKind};
use crate::postprocess::{categorization, extraction};
use crate::text::prompt::placeholder_count;

/// Longest accepted `default_ttl_seconds` (one year).
pub const MAX_TTL_SECONDS: u32 = 31_536_000;

impl Entity for Flavor {
    const KIND: RecordKind = RecordKind::Flavor;
    const RESOURCE: Resource = Resource::Flavor;

    fn id(&self) -> Uuid {
        self.id
    }
    fn parent(&self) -> Option<Uuid> {
        Some(self.service_id)
    }
    /// Flavors follow their service's tenancy, checked through the service.
    fn organization_id(&self) -> Option<&str> {
        None
    }
    fn updated_at(&self) -> &str {
        &self.updated_at
    }

    fn unique_keys(&self) -> Vec<(String, String)> {
        vec![(
            format!(
                "flavor-name:{}:{}",
                self.service_id,
                self.name.trim().to_lowercase()
            ),
            format!(
                "Flavor with name '{}' already exists for this service",
                self.name
            ),
        )]
    }

    fn validate(&self) -> EngineResult<()> {
        text_length("name", &self.name, 1, 50)?;
        let range = |field: &str, value: f64, low: f64, high: f64, low_open: bool| {
            let above_low = if low_open { value > low } else { value >= low };
            if above_low && value <= high && value.is_finite() {
                Ok(())
            } else {
                let bracket = if low_open { "(" } else { "[" };
                Err(EngineError::validation(
                    Location::Body,
                    field,
                    format!("must be in {bracket}{low}, {high}]"),
                ))
            }
        };
        range("temperature", self.temperature, 0.0, 2.0, false)?;
        range("top_p", self.top_p, 0.0, 1.0, true)?;
        range("frequency_penalty", self.frequency_penalty, 0.0, 2.0, false)?;
        range("presence_penalty", self.presence_penalty, 0.0, 2.0, false)?;
        let whole = |field: &str, value: Option<u32>, low: u32, high: u32| match value {
            Some(v) if !(low..=high).contains(&v) => Err(EngineError::validation(
                Location::Body,
                field,
                format!("must be from {low} to {high}"),
            )),
            _ => Ok(()),
        };
        whole("summary_turns", self.summary_turns, 1, 20)?;
        whole("max_new_turns", self.max_new_turns, 1, 50)?;
        whole("map_concurrency", self.map_concurrency, 1, 32)?;
        if self.map_concurrency.is_some() && self.processing_mode != ProcessingMode::MapReduce {
            return Err(EngineError::validation(
                Location::Body,
                "map_concurrency",
                "only map_reduce flavors run chunks concurrently",
            ));
        }
        if self.processing_mode == ProcessingMode::MapReduce && self.failover_enabled {
            return Err(EngineError::validation(
                Location::Body,
                "failover_enabled",
                "map_reduce flavors do not fail over (chunks in flight were cut for this model); retries and re-queues still apply",
            ));
        }
        whole(
            "create_new_turn_after",
            self.create_new_turn_after,
            1,
            100_000,
        )?;
        whole(
            "default_ttl_seconds",
            self.default_ttl_seconds,
            1,
            MAX_TTL_SECONDS,
        )?;
        whole(
            "max_concurrent_requests",
            self.max_concurrent_requests,
            1,
            1000,
        )?;
        whole("priority", Some(u32::from(self.priority)), 0, 9)?;
        whole(
            "max_failover_depth",
            Some(u32::from(self.max_failover_depth)),
            1,
            10,
        )?;
        if self.stop_sequences.len() > 4 {
            return Err(EngineError::validation(
                Location::Body,
                "stop_sequences",
                "at most 4 sequences",
            ));
        }
        one_of(
            "output_type",
            &self.output_type,
            &["text", "markdown", "json"],
        )?;
        if self
            .estimated_cost_per_1k_tokens
            .is_some_and(|cost| !(cost > 0.0 && cost.is_finite()))
        {
            return Err(EngineError::validation(
                Location::Body,
                "estimated_cost_per_1k_tokens",
                "must be greater than 0 (or null)",
            ));
        }
        if !self.custom_params.is_object() {
            return Err(EngineError::validation(
                Location::Body,
                "custom_params",
                "must be an object",
            ));
        }
        let reserved = self.custom_params.as_object().and_then(|params| {
            crate::llm::RESERVED_BODY_FIELDS
                .iter()
                .find(|field| params.contains_key(**field))
        });
        if let Some(field) = reserved {
            return Err(EngineError::validation(
                Location::Body,
                "custom_params",
                format!("'{field}' is set by the gateway (from the flavor and model); remove it from custom_params"),
            ));
        }
        if self.failover_flavor_id == Some(self.id) {
            return Err(EngineError::validation(
                Location::Body,
                "failover_flavor_id",
                "a flavor cannot fail over to itself",
            ));
        }
        if self.fallback_flavor_id == Some(self.id) {
            return Err(EngineError::validation(
                Location::Body,
                "fallback_flavor_id",
                "a flavor cannot fall back to itself",
            ));
        }
        if self.reduce_summary {
            match self.prompt_reduce_content.as_deref().map(str::trim) {
                None | Some("") => {
                    return Err(EngineError::validation(
                        Location::Body,
                        "reduce_prompt_id",
                        "reduce_summary needs a reduce prompt: set reduce_prompt_id (or prompt_reduce_content)",
                    ))
                }
                Some(reduce) => {
                    let source = if self.reduce_prompt_id.is_some() {
                        "reduce_prompt_id"
                    } else {
                        "prompt_reduce_content"
                    };
                    check_placeholders(ProcessingMode::SinglePass, reduce, source)?;
                }
            }
        }
        let source = if self.user_prompt_template_id.is_some() {
            "user_prompt_template_id"
        } else {
            "prompt_user_content"
        };
        check_placeholders(self.processing_mode, &self.prompt_user_content, source)
    }
}

/// Names of the objects flavors refer to, for the reference's `*_name` fields and the
/// embedded `model`.
pub struct Names {
    pub(super) prompts: HashMap<Uuid, String>,
    pub(super) flavors: HashMap<Uuid, Flavor>,
    pub(super) services: HashMap<Uuid, String>,
    pub(super) models: HashMap<Uuid, Model>,
    pub(super) providers: HashMap<Uuid, String>,
}

impl Names {
    /// Reads the catalog once.
    pub async fn load(gateway: &Gateway) -> EngineResult<Self> {
        let store = gateway.records.as_ref();
        let all = Scope::default();
        let prompts: Vec<Prompt> = list(store, &all).await?;
        let flavors: Vec<Flavor> = list(store, &all).await?;
        let services: Vec<Service> = list(store, &all).await?;
        let models: Vec<Model> = list(store, &all).await?;
        let providers: Vec<crate::domain::Provider> = list(store, &all).await?;
        Ok(Names {
            prompts: prompts.into_iter().map(|p| (p.id, p.name)).collect(),
            flavors: flavors.into_iter().map(|f| (f.id, f)).collect(),
            services: services.into_iter().map(|s| (s.id, s.name)).collect(),
            models: models.into_iter().map(|m| (m.id, m)).collect(),
            providers: providers.into_iter().map(|p| (p.id, p.name)).collect(),
        })
    }

    /// The flavors of a service, as read by [`Names::load`].
    pub fn flavors_of(&self, service_id: Uuid) -> Vec<Flavor> {
        self.flavors
            .values()
            .filter(|flavor| flavor.service_id == service_id)
            .cloned()
            .collect()
    }

    /// A flavor's JSON with the names of what it refers to and its model.
    pub fn flavor_json(&self, flavor: &Flavor) -> Value {
        let mut json = flavor.to_json();
        let prompt = |id: Option<Uuid>| {
            id.and_then(|id| self.prompts.get(&id))
                .map_or(Value::Null, |n| json!(n))
        };
        json["system_prompt_name"] = prompt(flavor.system_prompt_id);
        json["user_prompt_template_name"] = prompt(flavor.user_prompt_template_id);
        json["reduce_prompt_name"] = prompt(flavor.reduce_prompt_id);
        json["placeholder_extraction_prompt_name"] =
            prompt(flavor.placeholder_extraction_prompt_id);
        json["categorization_prompt_name"] = prompt(flavor.categorization_prompt_id);
        for (kind, id) in [
            ("fallback", flavor.fallback_flavor_id),
            ("failover", flavor.failover_flavor_id),
        ] {
            let target = id.and_then(|id| self.flavors.get(&id));
            json[format!("{kind}_flavor_name")] =
                target.map_or(Value::Null, |target| json!(target.name));
            json[format!("{kind}_service_name")] = target
                .and_then(|target| self.services.get(&target.service_id))
                .map_or(Value::Null, |name| json!(name));
        }
        json["model"] = self
            .models
            .get(&flavor.model_id)
            .map_or(Value::Null, |model| {
                json!({
                    "id": model.id,
                    "model_name": model.model_name,
                    "model_identifier": model.model_identifier,
                    "provider_id": model.provider_id,
                    "provider_name": self.providers.get(&model.provider_id),
                    "context_length": model.context_length,
                    "max_generation_length": model.max_generation_length,
                    "security_level": model.security_level,
                })
            });
        json
    }

    /// Flavors as JSON in the reference's order: priority descending, then creation.
    pub fn flavors_json(&self, flavors: &[Flavor]) -> Value {
        let mut sorted: Vec<&Flavor> = flavors.iter().collect();
        sorted.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.created_at.cmp(&b.created_at))
        });
        Value::Array(sorted.into_iter().map(|f| self.flavor_json(f)).collect())
    }
}

/// The route a service gets when none is given: lower case, spaces and `_` as `-`.
pub fn default_route(name: &str) -> String {
    name.trim().to_lowercase().replace([' ', '_'], "-")
}

/// A service's JSON with its flavors.
pub(super) fn service_json(service: &Service, flavors: &[Flavor], names: &Names) -> Value {
    let mut json = service.to_json();
    json["flavors"] = names.flavors_json(flavors);
    json
}

/// The flavors of a service.
pub(super) async fn flavors_of(gateway: &Gateway, service_id: Uuid) -> EngineResult<Vec<Flavor>> {
    let flavors: Vec<Flavor> = list(gateway.records.as_ref(), &Scope::default()).await?;
    Ok(flavors
        .into_iter()
        .filter(|flavor| flavor.service_id == service_id)
        .collect())
}

/// Builds a flavor of `service` from request fields: server fields set, prompt templates
/// copied in, references checked.
pub(super) async fn build_flavor(
    gateway: &Gateway,
    scope: &Scope,
    service: &Service,
    mut fields: Map<String, Value>,
    field_prefix: &str,
) -> EngineResult<Flavor> {
    fields.insert("service_id".into(), json!(service.id));
    for computed in ["model", "service_name"] {
        fields.remove(computed);
    }
    let flavor: Flavor =
        from_json(Value::Object(fields)).map_err(|error| prefixed(error, field_prefix))?;
    let flavor = resolve_prompts(gateway, scope, flavor)
        .await
        .map_err(|e| prefixed(e, field_prefix))?;
    flavor
        .validate()
        .map_err(|error| prefixed(error, field_prefix))?;
    let model: Model = load(gateway.records.as_ref(), flavor.model_id, scope).await?;
    if !model.is_active {
        return Err(EngineError::validation(
            Location::Body,
            &format!("{field_prefix}model_id"),
            format!("model '{}' is inactive", model.model_name),
        ));
    }
    check_available(
        gateway,
        &format!("{field_prefix}tokenizer_override"),
        flavor.tokenizer_override.as_deref(),
    )
    .await?;
    for (field, id) in [
        ("fallback_flavor_id", flavor.fallback_flavor_id),
        ("failover_flavor_id", flavor.failover_flavor_id),
    ] {
        if let Some(id) = id {
            // It must exist and belong to a service this scope can see; a storage
            // failure is a 503, never the caller's fault.
            match load_flavor(gateway, scope, None, id).await {
                Ok(_) => {}
                Err(EngineError::NotFound { .. }) => {
                    return Err(EngineError::validation(
                        Location::Body,
                        &format!("{field_prefix}{field}"),
                        format!("flavor '{id}' does not exist"),
                    ))
                }
                Err(other) => return Err(other),
            }
        }
    }
    Ok(flavor)
}

/// Re-labels a 422 with the position of the flavor in a service request.
fn prefixed(error: EngineError, prefix: &str) -> EngineError {
    match error {
        EngineError::Validation {
            location,
            field,
            problem,
        } if !prefix.is_empty() => EngineError::Validation {
            location,
            field: format!("{prefix}{field}"),
            problem,
        },
        other => other,
    }
}

/// Copies prompt templates into the content fields: system and reduce always, user only
/// when no inline content was given (the reference's rule).
async fn resolve_prompts(
    gateway: &Gateway,
    scope: &Scope,
    mut flavor: Flavor,
) -> EngineResult<Flavor> {
    let store = gateway.records.as_ref();
    let fetch = |field: &'static str, id: Uuid| async move {
        let prompt: Prompt = load(store, id, scope).await.map_err(|_| {
            EngineError::validation(
                Location::Body,
                field,
                format!("prompt '{id}' does not exist"),
            )
        })?;
        Ok::<String, EngineError>(prompt.content)
    };
    if let Some(id) = flavor.system_prompt_id {
        flavor.prompt_system_content = Some(fetch("system_prompt_id", id).await?);
    }
    if let Some(id) = flavor.reduce_prompt_id {
        flavor.prompt_reduce_content = Some(fetch("reduce_prompt_id", id).await?);
    }
    if let Some(id) = flavor.user_prompt_template_id {
        let content = fetch("user_prompt_template_id", id).await?;
        if flavor.prompt_user_content.is_empty() {
            flavor.prompt_user_content = content;
        }
    }
    type ProblemOf = fn(&str) -> Option<String>;
    let checks: [(&'static str, Option<Uuid>, ProblemOf); 2] = [
        (
            "placeholder_extraction_prompt_id",
            flavor.placeholder_extraction_prompt_id,
            extraction::prompt_problem,
        ),
        (
            "categorization_prompt_id",
            flavor.categorization_prompt_id,
            categorization::prompt_problem,
        ),
    ];
    for (field, id, problem_of) in checks {
        if let Some(id) = id {
            if let Some(problem) = problem_of(&fetch(field, id).await?) {
                return Err(EngineError::validation(
                    Location::Body,
                    field,
                    format!("prompt '{id}' cannot be used here: {problem}"),
                ));
            }
        }
    }
    Ok(flavor)
}

/// 400 when following `failover_flavor_id` from `flavor` comes back to a flavor already
/// seen (a cycle), using `pending` for flavors being written in the same change.
pub(super) async fn check_failover_cycle(
    gateway: &Gateway,
    flavor: &Flavor,
    pending: &[Flavor],
) -> EngineResult<()> {
    let mut seen = HashSet::from([flavor.id]);
    let mut next = flavor.failover_flavor_id;
    while let Some(id) = next {
        if !seen.insert(id) {
            return Err(EngineError::refused(
                Rule::FailoverCycle,
                format!("failover_flavor_id would create a cycle through flavor '{id}'"),
            )
            .about("field", "failover_flavor_id"));
        }
        next = match pending.iter().find(|f| f.id == id) {
            Some(flavor) => flavor.failover_flavor_id,
            None => match gateway.records.record(RecordKind::Flavor, id).await? {
                Some(record) => decode::<Flavor>(record)?.failover_flavor_id,
                None => None,
            },
        };
    }
    Ok(())
}

/// Writes that unset `is_default` on the other flavors of the service.
pub(super) fn unset_other_defaults(
    flavors: &[Flavor],
    keep: Uuid,
    now: &str,
) -> EngineResult<Vec<CatalogWrite>> {
    let mut writes = Vec::new();
    for other in flavors.iter().filter(|f| f.is_default && f.id != keep) {
        let mut changed = other.clone();
        changed.is_default = false;
        changed.updated_at = now.to_string();
        writes.push(CatalogWrite::Put {
            record: record_of(&changed)?,
            expect: Expect::UpdatedAt(other.updated_at.clone()),
        });
    }
    Ok(writes)
}

pub(super) fn conflicts_of(service: Option<&Service>, flavors: &[Flavor]) -> Vec<(String, String)> {
    let mut conflicts: Vec<(String, String)> = service.map(Entity::unique_keys).unwrap_or_default();
    conflicts.extend(flavors.iter().flat_map(Entity::unique_keys));
    conflicts
}

/// A flavor and its service, visible to `scope`; `service_id` (when the route names one)
/// must be the flavor's.
pub(crate) async fn load_flavor(
    gateway: &Gateway,
    scope: &Scope,
    service_id: Option<Uuid>,
    flavor_id: Uuid,
) -> EngineResult<(Service, Flavor)> {
    let store = gateway.records.as_ref();
    let flavor: Flavor = load(store, flavor_id, &Scope::default()).await?;
    if service_id.is_some_and(|id| id != flavor.service_id) {
        return Err(EngineError::not_found(Resource::Flavor, flavor_id));
    }
    // A service this scope cannot see hides its flavors; a storage failure stays a 503.
    let service: Service =
        load(store, flavor.service_id, scope)
            .await
            .map_err(|error| match error {
                EngineError::NotFound { .. } => EngineError::not_found(Resource::Flavor, flavor_id),
                other => other,
            })?;
    Ok((service, flavor))
}

/// A flavor by id alone, whatever its service and tenancy (None when it does not exist or
/// is unreadable): the fallback and failover targets a job follows.
pub async fn flavor_by_id(gateway: &Gateway, flavor_id: Uuid) -> IoResult<Option<Flavor>> {
    let Some(record) = gateway
        .records
        .record(RecordKind::Flavor, flavor_id)
        .await?
    else {
        return Ok(None);
    };
    Ok(serde_json::from_value(record.body)
        .inspect_err(|error| tracing::error!(%flavor_id, %error, "stored flavor unreadable"))
        .ok())
}

/// Like [`load_flavor`], for a change: the scope must own the flavor's service (403 for a
/// global one).
async fn load_flavor_for_change(
    gateway: &Gateway,
    scope: &Scope,
    service_id: Option<Uuid>,
    flavor_id: Uuid,
) -> EngineResult<(Service, Flavor)> {
    let (service, flavor) = load_flavor(gateway, scope, service_id, flavor_id).await?;
    scope.check_change(
        Resource::Service,
        service.id,
        service.organization_id.as_deref(),
    )?;
    Ok((service, flavor))
}

/// `POST /services/{id}/flavors` → 201.
pub async fn create_flavor(
    gateway: &Gateway,
    scope: &Scope,
    service_id: Uuid,
    body: &[u8],
) -> EngineResult<JsonResponse> {
    let store = gateway.records.as_ref();
    let service: Service = load_for_change(store, service_id, scope).await?;
    let now = now_timestamp();
    let fields = new_object(
        parse_object(body)?,
        &Scope::new(service.organization_id.as_deref()),
        &now,
    )?;
    let flavor = build_flavor(gateway, scope, &service, fields, "").await?;
    check_failover_cycle(gateway, &flavor, &[]).await?;
    let mut writes = create_writes(&flavor)?;
    if flavor.is_default {
        writes.extend(unset_other_defaults(
            &flavors_of(gateway, service_id).await?,
            flavor.id,
            &now,
        )?);
    }
    commit(store, writes, &flavor.unique_keys()).await?;
    Ok(JsonResponse::new(
        201,
        Names::load(gateway).await?.flavor_json(&flavor),
    ))
}

/// `GET /services/{id}/flavors?is_active=` → `{items, total}`.
pub async fn list_flavors(
    gateway: &Gateway,
    scope: &Scope,
    service_id: Uuid,
    is_active: Option<bool>,
) -> EngineResult<JsonResponse> {
    load::<Service>(gateway.records.as_ref(), service_id, scope).await?;
    let names = Names::load(gateway).await?;
    let mut flavors = names.flavors_of(service_id);
    flavors.retain(|f| is_active.is_none_or(|active| f.is_active == active));
    let items = names.flavors_json(&flavors);
    Ok(JsonResponse::new(
        200,
        json!({"items": items, "total": flavors.len()}),
    ))
}

/// `GET /flavors/{id}` or `/services/{sid}/flavors/{id}`.
pub async fn get_flavor(
    gateway: &Gateway,
    scope: &Scope,
    service_id: Option<Uuid>,
    flavor_id: Uuid,
) -> EngineResult<JsonResponse> {
    let (_, flavor) = load_flavor(gateway, scope, service_id, flavor_id).await?;
    Ok(JsonResponse::new(
        200,
        Names::load(gateway).await?.flavor_json(&flavor),
    ))
}

/// `PATCH|PUT /flavors/{id}` (or under its service).
pub async fn update_flavor(
    gateway: &Gateway,
    scope: &Scope,
    service_id: Option<Uuid>,
    flavor_id: Uuid,
    body: &[u8],
) -> EngineResult<JsonResponse> {
    let (service, old) = load_flavor_for_change(gateway, scope, service_id, flavor_id).await?;
    let patch = parse_object(body)?;
    let now = now_timestamp();
    let current = current_json(&old, &now)?;
    let protected = [SERVER_FIELDS, &["service_id"]].concat();
    let Value::Object(fields) = merge_patch(current, patch, &protected) else {
        return Err(EngineError::Internal("flavor is not an object".into()));
    };
    let flavor = build_flavor(gateway, scope, &service, fields, "").await?;
    check_failover_cycle(gateway, &flavor, &[]).await?;
    let names = Names::load(gateway).await?;
    let siblings = names.flavors_of(service.id);
    if old.is_default
        && !flavor.is_default
        && siblings.iter().all(|f| f.id == flavor.id || !f.is_default)
    {
        return Err(EngineError::refused(
            Rule::DefaultFlavorRequired,
            "cannot unset the default flavor: set another flavor as default instead",
        ));
    }
    let mut writes = update_writes(&old, &flavor)?;
    if flavor.is_default {
        writes.extend(unset_other_defaults(&siblings, flavor.id, &now)?);
    }
    commit(gateway.records.as_ref(), writes, &flavor.unique_keys()).await?;
    Ok(JsonResponse::new(200, names.flavor_json(&flavor)))
}

/// `POST /flavors/{id}/set-default`: 400 for an inactive flavor.
pub async fn set_default(
    gateway: &Gateway,
    scope: &Scope,
    service_id: Option<Uuid>,
    flavor_id: Uuid,
) -> EngineResult<JsonResponse> {
    let (service, old) = load_flavor_for_change(gateway, scope, service_id, flavor_id).await?;
    if !old.is_active {
        return Err(EngineError::refused(
            Rule::FlavorInactive,
            "Cannot set inactive flavor as default",
        ));
    }
    let now = now_timestamp();
    let mut flavor = old.clone();
    flavor.is_default = true;
    flavor.updated_at = now.clone();
    let mut writes = update_writes(&old, &flavor)?;
    writes.extend(unset_other_defaults(
        &flavors_of(gateway, service.id).await?,
        flavor.id,
        &now,
    )?);
    commit(gateway.records.as_ref(), writes, &[]).await?;
    Ok(JsonResponse::new(
        200,
        json!({"message": "Flavor set as default successfully", "flavor_id": flavor.id, "service_id": flavor.service_id}),
    ))
}

/// `DELETE /flavors/{id}` → 204; the default flavor cannot be deleted (400) while the
/// service has others, and a flavor another flavor fails over or falls back to is a 409.
pub async fn delete_flavor(
    gateway: &Gateway,
    scope: &Scope,
    service_id: Option<Uuid>,
    flavor_id: Uuid,
) -> EngineResult<JsonResponse> {
    let (service, flavor) = load_flavor_for_change(gateway, scope, service_id, flavor_id).await?;
    let all: Vec<Flavor> = list(gateway.records.as_ref(), &Scope::default()).await?;
    let siblings = all.iter().filter(|f| f.service_id == service.id).count();
    if flavor.is_default && siblings > 1 {
        return Err(EngineError::refused(
            Rule::DefaultFlavorDelete,
            "Cannot delete default flavor. Set another flavor as default first.",
        ));
    }
    if let Some(user) = all.iter().find(|f| {
        f.id != flavor.id
            && (f.failover_flavor_id == Some(flavor.id) || f.fallback_flavor_id == Some(flavor.id))
    }) {
        return Err(EngineError::Conflict(format!(
            "Cannot delete flavor '{}': flavor '{}' uses it as failover or fallback",
            flavor.name, user.name
        )));
    }
    commit(gateway.records.as_ref(), delete_writes(&flavor), &[]).await?;
    Ok(JsonResponse::new(204, Value::Null))
}

/// `POST /flavors/validate-prompt` `{processing_mode, prompt_content | user_prompt_template_id}`.
pub async fn validate_prompt(
    gateway: &Gateway,
    scope: &Scope,
    body: &[u8],
) -> EngineResult<JsonResponse> {
    let fields = parse_object(body)?;
    let template = match fields
        .get("user_prompt_template_id")
        .and_then(Value::as_str)
    {
        Some(id) => {
            let id = Uuid::parse_str(id).map_err(|_| {
                EngineError::validation(Location::Body, "user_prompt_template_id", "must be a UUID")
            })?;
            let prompt: Prompt =
                load(gateway.records.as_ref(), id, scope)
                    .await
                    .map_err(|error| match error {
                        EngineError::NotFound { .. } => {
                            EngineError::not_found(Resource::PromptTemplate, id)
                        }
                        other => other,
                    })?;
            Some(prompt.content)
        }
        None => None,
    };
    let prompt = match (
        fields.get("prompt_content").and_then(Value::as_str),
        &template,
    ) {
        (Some(content), _) => content,
        (None, Some(content)) => content.as_str(),
        (None, None) => {
            return Err(EngineError::invalid_field(
                "prompt_content",
                "Must provide prompt_content or user_prompt_template_id",
            ))
        }
    };
    let mode: ProcessingMode = from_json(
        fields
            .get("processing_mode")
            .cloned()
            .unwrap_or(json!("iterative")),
    )
    .map_err(|_| {
        EngineError::validation(
            Location::Body,
            "processing_mode",
            "must be single_pass or iterative",
        )
    })?;
    let error = check_placeholders(mode, prompt, "prompt_content").err();
    Ok(JsonResponse::new(
        200,
        json!({
            "valid": error.is_none(),
            "placeholder_count": placeholder_count(prompt),
            "processing_mode": mode,
            "required_placeholders": mode.required_placeholders(),
            "error": error.map(|_| format!(
                "Expected {} placeholder(s), found {}",
                mode.required_placeholders(),
                placeholder_count(prompt)
            )),
        }),
    ))
}
