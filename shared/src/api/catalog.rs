//! Routes of the `catalog` function: providers, models, prompts, prompt and service types,
//! flavor presets, services and flavors, and `/openapi.json`.

use uuid::Uuid;

use super::request::ApiRequest;
use super::routes::{route, RouteTable};
use crate::engine::catalog::prompts::{PromptFilter, TypeList};
use crate::engine::catalog::{
    analytics, failover, flavors, live, models, presets, prompts, providers, services, tokenizers,
};
use crate::engine::error::{EngineError, EngineResult, Location, Resource};
use crate::engine::JsonResponse;

/// The catalog function's routes.
pub static TABLE: RouteTable = RouteTable {
    function: "catalog",
    routes: &[
        route!(Get "/api/v1/providers", "List providers (page)", None, 200 => "page:Provider",
            |g, r| providers::list_page(g, &r.scope()?, r.page(providers::PAGE_SIZE)?).await),
        route!(Post "/api/v1/providers", "Create a provider (api_key is KMS-encrypted, never returned)", Some("object"), 201 => "Provider",
            |g, r| providers::create(g, &r.scope()?, r.body()).await),
        route!(Get "/api/v1/providers/{id}", "Get a provider", None, 200 => "Provider",
            |g, r| providers::get(g, &r.scope()?, r.id("id", Resource::Provider)?).await),
        route!(Patch "/api/v1/providers/{id}", "Update a provider", Some("object"), 200 => "Provider",
            |g, r| providers::update(g, &r.scope()?, r.id("id", Resource::Provider)?, r.body()).await),
        route!(Delete "/api/v1/providers/{id}", "Delete a provider and its unused models", None, 204 => "",
            |g, r| providers::delete(g, &r.scope()?, r.id("id", Resource::Provider)?).await),
        route!(Get "/api/v1/providers/{id}/models", "List a provider's models (page)", None, 200 => "page:Model",
            |g, r| models::list_page(g, &r.scope()?, Some(r.id("id", Resource::Provider)?), r.page(models::PAGE_SIZE)?).await),
        route!(Post "/api/v1/providers/{id}/models", "Create a model of the provider", Some("Model"), 201 => "Model",
            |g, r| models::create(g, &r.scope()?, Some(r.id("id", Resource::Provider)?), r.body()).await),
        route!(Get "/api/v1/providers/{id}/discover-models", "Models the provider lists, with limits", None, 200 => "array:object",
            |g, r| providers::discover_models(g, &r.scope()?, r.id("id", Resource::Provider)?).await),
        route!(Post "/api/v1/providers/{id}/models/verify", "Check every model of the provider against its list; unlisted models become inactive", None, 200 => "object",
            |g, r| live::verify_provider_models(g, &r.scope()?, r.id("id", Resource::Provider)?).await),
        route!(Get "/api/v1/models", "List models (page; filter provider_id)", None, 200 => "page:Model",
            |g, r| models::list_page(g, &r.scope()?, provider_filter(r)?, r.page(models::PAGE_SIZE)?).await),
        route!(Post "/api/v1/models", "Create a model", Some("Model"), 201 => "Model",
            |g, r| models::create(g, &r.scope()?, None, r.body()).await),
        route!(Get "/api/v1/models/{id}", "Get a model", None, 200 => "Model",
            |g, r| models::get(g, &r.scope()?, r.id("id", Resource::Model)?).await),
        route!(Patch "/api/v1/models/{id}", "Update a model", Some("object"), 200 => "Model",
            |g, r| models::update(g, &r.scope()?, r.id("id", Resource::Model)?, r.body()).await),
        route!(Delete "/api/v1/models/{id}", "Delete a model no flavor uses", None, 204 => "",
            |g, r| models::delete(g, &r.scope()?, r.id("id", Resource::Model)?).await),
        route!(Get "/api/v1/models/{id}/limits", "Context split of a model", None, 200 => "object",
            |g, r| models::limits(g, &r.scope()?, r.id("id", Resource::Model)?).await),
        route!(Post "/api/v1/models/{id}/verify", "Check that the provider still lists the model (recorded as health_status)", None, 200 => "object",
            |g, r| live::verify_model(g, &r.scope()?, r.id("id", Resource::Model)?).await),
        route!(Get "/api/v1/prompts", "List prompts (page; filters name, service_type, prompt_category, prompt_type)", None, 200 => "page:Prompt",
            |g, r| prompts::list_page(g, &r.scope()?, prompt_filter(r), r.page(prompts::PAGE_SIZE)?).await),
        route!(Post "/api/v1/prompts", "Create a prompt", Some("Prompt"), 201 => "Prompt",
            |g, r| prompts::create(g, &r.scope()?, r.body()).await),
        route!(Get "/api/v1/prompts/templates", "List prompt templates (page; filters category, prompt_type, service_type)", None, 200 => "page:Prompt",
            |g, r| prompts::list_page(g, &r.scope()?, prompt_filter(r), r.page(prompts::TEMPLATE_PAGE_SIZE)?).await),
        route!(Get "/api/v1/prompts/{id}", "Get a prompt", None, 200 => "Prompt",
            |g, r| prompts::get(g, &r.scope()?, r.id("id", Resource::Prompt)?).await),
        route!(Patch "/api/v1/prompts/{id}", "Update a prompt", Some("object"), 200 => "Prompt",
            |g, r| prompts::update(g, &r.scope()?, r.id("id", Resource::Prompt)?, r.body()).await),
        route!(Delete "/api/v1/prompts/{id}", "Delete a prompt no flavor uses", None, 204 => "",
            |g, r| prompts::delete(g, &r.scope()?, r.id("id", Resource::Prompt)?).await),
        route!(Post "/api/v1/prompts/{id}/duplicate", "Copy a prompt under new_name", Some("object"), 201 => "Prompt",
            |g, r| prompts::duplicate(g, &r.scope()?, r.id("id", Resource::Prompt)?, r.body()).await),
        route!(Post "/api/v1/prompts/{id}/save-as-template", "Copy a prompt as a template (template_name, category, prompt_type?, description?)", Some("object"), 201 => "Prompt",
            |g, r| prompts::save_as_template(g, &r.scope()?, r.id("id", Resource::Prompt)?, r.body()).await),
        route!(Get "/api/v1/prompt-types", "List prompt types", None, 200 => "array:TypeEntry",
            |g, r| prompts::list_types(g, TypeList::Prompt, r.flag("active_only")?.unwrap_or(false)).await),
        route!(Post "/api/v1/prompt-types", "Create a prompt type", Some("TypeEntry"), 201 => "TypeEntry",
            |g, r| prompts::create_type(g, TypeList::Prompt, r.body()).await),
        route!(Get "/api/v1/prompt-types/{id}", "Get a prompt type (id or code)", None, 200 => "TypeEntry",
            |g, r| prompts::get_type(g, TypeList::Prompt, r.param("id")).await),
        route!(Patch "/api/v1/prompt-types/{id}", "Update a prompt type", Some("object"), 200 => "TypeEntry",
            |g, r| prompts::update_type(g, TypeList::Prompt, r.param("id"), r.body()).await),
        route!(Delete "/api/v1/prompt-types/{id}", "Delete a non-system prompt type", None, 204 => "",
            |g, r| prompts::delete_type(g, TypeList::Prompt, r.param("id")).await),
        route!(Get "/api/v1/service-types", "List service types", None, 200 => "array:TypeEntry",
            |g, r| prompts::list_types(g, TypeList::Service, r.flag("active_only")?.unwrap_or(false)).await),
        route!(Get "/api/v1/service-types/config/{code}", "A service type's prompt fields and capabilities", None, 200 => "object",
            |g, r| prompts::service_type_config(g, r.param("code")).await),
        route!(Post "/api/v1/service-types", "Create a service type", Some("TypeEntry"), 201 => "TypeEntry",
            |g, r| prompts::create_type(g, TypeList::Service, r.body()).await),
        route!(Get "/api/v1/service-types/{id}", "Get a service type (id or code)", None, 200 => "TypeEntry",
            |g, r| prompts::get_type(g, TypeList::Service, r.param("id")).await),
        route!(Patch "/api/v1/service-types/{id}", "Update a service type", Some("object"), 200 => "TypeEntry",
            |g, r| prompts::update_type(g, TypeList::Service, r.param("id"), r.body()).await),
        route!(Delete "/api/v1/service-types/{id}", "Delete a non-system service type", None, 204 => "",
            |g, r| prompts::delete_type(g, TypeList::Service, r.param("id")).await),
        route!(Get "/api/v1/flavor-presets", "List flavor presets", None, 200 => "array:FlavorPreset",
            |g, r| presets::list_presets(g, &r.scope()?, r.query("service_type"), r.flag("active_only")?.unwrap_or(false)).await),
        route!(Post "/api/v1/flavor-presets", "Create a flavor preset", Some("FlavorPreset"), 201 => "FlavorPreset",
            |g, r| presets::create(g, &r.scope()?, r.body()).await),
        route!(Get "/api/v1/flavor-presets/{id}", "Get a flavor preset", None, 200 => "FlavorPreset",
            |g, r| presets::get(g, &r.scope()?, r.id("id", Resource::FlavorPreset)?).await),
        route!(Patch "/api/v1/flavor-presets/{id}", "Update a flavor preset", Some("object"), 200 => "FlavorPreset",
            |g, r| presets::update(g, &r.scope()?, r.id("id", Resource::FlavorPreset)?, r.body()).await),
        route!(Delete "/api/v1/flavor-presets/{id}", "Delete a non-system preset", None, 204 => "",
            |g, r| presets::delete(g, &r.scope()?, r.id("id", Resource::FlavorPreset)?).await),
        route!(Post "/api/v1/flavor-presets/{id}/apply", "Create a flavor from a preset (service_id, model_id, flavor_name)", Some("object"), 201 => "Flavor",
            |g, r| presets::apply(g, &r.scope()?, r.id("id", Resource::FlavorPreset)?, r.body(), r.is_form()).await),
        route!(Get "/api/v1/services", "List services with their flavors (page)", None, 200 => "page:Service",
            |g, r| services::list_page(g, &r.scope()?, r.query("service_type"), r.flag("is_active")?, r.page(services::PAGE_SIZE)?).await),
        route!(Post "/api/v1/services", "Create a service, optionally with flavors (atomic)", Some("Service"), 201 => "Service",
            |g, r| services::create(g, &r.scope()?, r.body()).await),
        route!(Get "/api/v1/services/{id}", "Get a service with its flavors", None, 200 => "Service",
            |g, r| services::get(g, &r.scope()?, r.id("id", Resource::Service)?).await),
        route!(Patch "/api/v1/services/{id}", "Update a service", Some("object"), 200 => "Service",
            |g, r| services::update(g, &r.scope()?, r.id("id", Resource::Service)?, r.body()).await),
        route!(Delete "/api/v1/services/{id}", "Delete a service and its flavors", None, 204 => "",
            |g, r| services::delete(g, &r.scope()?, r.id("id", Resource::Service)?).await),
        route!(Get "/api/v1/services/{id}/flavors", "List a service's flavors", None, 200 => "object",
            |g, r| flavors::list_flavors(g, &r.scope()?, r.id("id", Resource::Service)?, r.flag("is_active")?).await),
        route!(Post "/api/v1/services/{id}/flavors", "Create a flavor", Some("Flavor"), 201 => "Flavor",
            |g, r| flavors::create_flavor(g, &r.scope()?, r.id("id", Resource::Service)?, r.body()).await),
        route!(Post "/api/v1/flavors/validate-prompt", "Check a prompt's placeholders for a mode", Some("object"), 200 => "object",
            |g, r| flavors::validate_prompt(g, &r.scope()?, r.body()).await),
        route!(Get "/api/v1/services/{id}/flavors/{flavor_id}", "Get a flavor of the service", None, 200 => "Flavor",
            |g, r| { let (service, flavor) = flavor_ids(r)?; flavors::get_flavor(g, &r.scope()?, service, flavor).await }),
        route!(Patch "/api/v1/services/{id}/flavors/{flavor_id}", "Update a flavor of the service", Some("object"), 200 => "Flavor",
            |g, r| { let (service, flavor) = flavor_ids(r)?; flavors::update_flavor(g, &r.scope()?, service, flavor, r.body()).await }),
        route!(Delete "/api/v1/services/{id}/flavors/{flavor_id}", "Delete a flavor of the service", None, 204 => "",
            |g, r| { let (service, flavor) = flavor_ids(r)?; flavors::delete_flavor(g, &r.scope()?, service, flavor).await }),
        route!(Post "/api/v1/services/{id}/flavors/{flavor_id}/set-default", "Make the flavor the service default", None, 200 => "object",
            |g, r| { let (service, flavor) = flavor_ids(r)?; flavors::set_default(g, &r.scope()?, service, flavor).await }),
        route!(Get "/api/v1/services/{id}/flavors/{flavor_id}/failover-chain", "The flavors tried in order on failover", None, 200 => "object",
            |g, r| { let (service, flavor) = flavor_ids(r)?; failover::failover_chain(g, &r.scope()?, service, flavor).await }),
        route!(Get "/api/v1/services/{id}/flavors/{flavor_id}/fallback-available", "Whether the flavor has a fallback, and the candidates", None, 200 => "object",
            |g, r| { let (service, flavor) = flavor_ids(r)?; failover::fallback_available(g, &r.scope()?, service, flavor).await }),
        route!(Post "/api/v1/services/{id}/flavors/{flavor_id}/validate-failover", "Check a failover target for the flavor", Some("object"), 200 => "object",
            |g, r| { let (service, flavor) = flavor_ids(r)?; failover::validate_failover(g, &r.scope()?, service, flavor, r.body()).await }),
        route!(Post "/api/v1/services/{id}/flavors/{flavor_id}/test", "Send a test prompt with the flavor's settings (live call)", Some("object"), 200 => "object",
            |g, r| { let (service, flavor) = flavor_ids(r)?; live::test_flavor(g, &r.scope()?, service, flavor, r.body()).await }),
        route!(Get "/api/v1/flavors/{flavor_id}", "Get a flavor", None, 200 => "Flavor",
            |g, r| { let (service, flavor) = flavor_ids(r)?; flavors::get_flavor(g, &r.scope()?, service, flavor).await }),
        route!(Patch "/api/v1/flavors/{flavor_id}", "Update a flavor", Some("object"), 200 => "Flavor",
            |g, r| { let (service, flavor) = flavor_ids(r)?; flavors::update_flavor(g, &r.scope()?, service, flavor, r.body()).await }),
        route!(Delete "/api/v1/flavors/{flavor_id}", "Delete a flavor", None, 204 => "",
            |g, r| { let (service, flavor) = flavor_ids(r)?; flavors::delete_flavor(g, &r.scope()?, service, flavor).await }),
        route!(Post "/api/v1/flavors/{flavor_id}/set-default", "Make the flavor the service default", None, 200 => "object",
            |g, r| { let (service, flavor) = flavor_ids(r)?; flavors::set_default(g, &r.scope()?, service, flavor).await }),
        route!(Get "/api/v1/flavors/{flavor_id}/failover-chain", "The flavors tried in order on failover", None, 200 => "object",
            |g, r| { let (service, flavor) = flavor_ids(r)?; failover::failover_chain(g, &r.scope()?, service, flavor).await }),
        route!(Get "/api/v1/flavors/{flavor_id}/fallback-available", "Whether the flavor has a fallback, and the candidates", None, 200 => "object",
            |g, r| { let (service, flavor) = flavor_ids(r)?; failover::fallback_available(g, &r.scope()?, service, flavor).await }),
        route!(Post "/api/v1/flavors/{flavor_id}/validate-failover", "Check a failover target for the flavor", Some("object"), 200 => "object",
            |g, r| { let (service, flavor) = flavor_ids(r)?; failover::validate_failover(g, &r.scope()?, service, flavor, r.body()).await }),
        route!(Post "/api/v1/flavors/{flavor_id}/test", "Send a test prompt with the flavor's settings (live call)", Some("object"), 200 => "object",
            |g, r| { let (service, flavor) = flavor_ids(r)?; live::test_flavor(g, &r.scope()?, service, flavor, r.body()).await }),
        route!(Get "/api/v1/services/{id}/stats", "Usage of a service over period=24h|7d|30d|all", None, 200 => "object",
            |g, r| analytics::service_stats(g, &r.scope()?, r.id("id", Resource::Service)?, analytics::parse_period(r.query("period"))?).await),
        route!(Get "/api/v1/services/{id}/flavor-stats", "Usage of each flavor of a service over period=24h|7d|30d|all", None, 200 => "object",
            |g, r| analytics::service_flavor_stats(g, &r.scope()?, r.id("id", Resource::Service)?, analytics::parse_period(r.query("period"))?).await),
        route!(Get "/api/v1/flavors/{flavor_id}/stats", "Usage of a flavor over period=24h|7d|30d|all", None, 200 => "object",
            |g, r| { let (service, flavor) = flavor_ids(r)?; analytics::flavor_stats(g, &r.scope()?, service, flavor, analytics::parse_period(r.query("period"))?).await }),
        route!(Get "/api/v1/flavors/{flavor_id}/usage-history", "A flavor's finished jobs, newest first (period, limit 1-1000, offset)", None, 200 => "object",
            |g, r| analytics::usage_history(g, &r.scope()?, r.id("flavor_id", Resource::Flavor)?, analytics::parse_period(r.query("period").or(Some("all")))?,
                r.number("limit", 1..=analytics::MAX_HISTORY_LIMIT, 100)?, r.number("offset", 0..=usize::MAX, 0)?).await),
        route!(Get "/api/v1/analytics/dashboard", "The last 24 hours: totals, each service's health, recent failures", None, 200 => "object",
            |g, r| analytics::dashboard(g, &r.scope()?).await),
        route!(Get "/api/v1/tokenizers", "Tokenizers available to the deployment: compiled-in encodings and stored HuggingFace files", None, 200 => "object",
            |g, _r| tokenizers::list_tokenizers(g).await),
        route!(Post "/api/v1/tokenizers/preload/{model_id}", "Load a model's tokenizer (checks it is available)", None, 200 => "object",
            |g, r| tokenizers::preload(g, &r.scope()?, r.id("model_id", Resource::Model)?).await),
        route!(Delete "/api/v1/tokenizers/{id}", "Delete a stored tokenizer (owner--name) no model or flavor uses", None, 200 => "object",
            |g, r| tokenizers::delete_tokenizer(g, &r.scope()?, r.param("id")).await),
        route!(Get "/openapi.json", "This document", None, 200 => "object",
            |_g, _r| Ok(JsonResponse::new(200, super::openapi::published()))),
    ],
};

/// The service (for `/services/{id}/flavors/...` paths) and flavor ids of a flavor route.
fn flavor_ids(request: &ApiRequest) -> EngineResult<(Option<Uuid>, Uuid)> {
    let service = match request.param("id") {
        "" => None,
        _ => Some(request.id("id", Resource::Service)?),
    };
    Ok((service, request.id("flavor_id", Resource::Flavor)?))
}

/// The `provider_id` filter of the model listing (422 unless a UUID).
fn provider_filter(request: &ApiRequest) -> EngineResult<Option<Uuid>> {
    request
        .query("provider_id")
        .map(|raw| {
            Uuid::parse_str(raw).map_err(|_| {
                EngineError::validation(Location::Query, "provider_id", "must be a UUID")
            })
        })
        .transpose()
}

/// The filters of the prompt listing (`category` is the reference's alias).
fn prompt_filter(request: &ApiRequest) -> PromptFilter<'_> {
    PromptFilter {
        name: request.query("name"),
        service_type: request.query("service_type"),
        prompt_category: request
            .query("prompt_category")
            .or(request.query("category")),
        prompt_type: request.query("prompt_type"),
    }
}
