//! The catalog API (providers, models, prompts, prompt and service types, services and
//! flavors, flavor presets) and `/openapi.json`. Routes by API Gateway resource and
//! method; all logic lives in `gateway_core::engine::catalog`.

use gateway_core::engine::catalog::prompts::{PromptFilter, TypeList};
use gateway_core::engine::catalog::{
    entity::not_found, models, presets, prompts, providers, services, PageRequest, Scope,
};
use gateway_core::engine::execute::validate_organization_id;
use gateway_core::engine::Gateway;
use gateway_core::error::{ApiError, JsonResponse};
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use uuid::Uuid;

/// The resources this function serves (API Gateway resource templates).
pub const RESOURCES: &[&str] = &[
    "/api/v1/providers",
    "/api/v1/providers/{id}",
    "/api/v1/providers/{id}/models",
    "/api/v1/providers/{id}/discover-models",
    "/api/v1/models",
    "/api/v1/models/{id}",
    "/api/v1/models/{id}/limits",
    "/api/v1/prompts",
    "/api/v1/prompts/{id}",
    "/api/v1/prompt-types",
    "/api/v1/prompt-types/{id}",
    "/api/v1/service-types",
    "/api/v1/service-types/{id}",
    "/api/v1/flavor-presets",
    "/api/v1/flavor-presets/{id}",
    "/api/v1/flavor-presets/{id}/apply",
    "/api/v1/services",
    "/api/v1/services/{id}",
    "/api/v1/services/{id}/flavors",
    "/api/v1/services/{id}/flavors/{flavor_id}",
    "/api/v1/services/{id}/flavors/{flavor_id}/{action}",
    "/api/v1/flavors/validate-prompt",
    "/api/v1/flavors/{flavor_id}",
    "/api/v1/flavors/{flavor_id}/{action}",
    "/openapi.json",
];

/// Handles one API Gateway request.
pub async fn handle(gateway: &Gateway, request: Request) -> JsonResponse {
    route(gateway, &request).await.into()
}

/// The API Gateway resource template of the request.
fn resource_of(request: &Request) -> String {
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(context)) => {
            context.resource_path.clone().unwrap_or_default()
        }
        _ => String::new(),
    }
}

async fn route(gateway: &Gateway, request: &Request) -> Result<JsonResponse, ApiError> {
    let resource = resource_of(request);
    let query = request.query_string_parameters();
    let organization_id = query.first("organization_id");
    if let Some(org) = organization_id {
        validate_organization_id(org)?;
    }
    let scope = &Scope::new(organization_id);
    let params = request.path_parameters();
    let id = |name: &str, what: &str| -> Result<Uuid, ApiError> {
        let raw = params.first(name).unwrap_or_default();
        Uuid::parse_str(raw).map_err(|_| not_found(what, raw))
    };
    let text = |name: &str| params.first(name).unwrap_or_default().to_string();
    let body: &[u8] = request.body().as_ref();
    let page =
        |default: usize| PageRequest::parse(query.first("page"), query.first("page_size"), default);
    let flag = |name: &str| -> Result<Option<bool>, ApiError> {
        match query.first(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(ApiError::validation("query", name, "must be true or false")),
        }
    };
    let method = request.method().as_str();
    let service_scoped = resource.starts_with("/api/v1/services/{id}/flavors/");
    let flavor_service = || service_scoped.then(|| id("id", "service")).transpose();
    match (resource.as_str(), method) {
        ("/openapi.json", "GET") => Ok(JsonResponse::new(
            200,
            gateway_core::engine::openapi::document(),
        )),

        ("/api/v1/providers", "GET") => {
            providers::list_page(gateway, scope, page(providers::PAGE_SIZE)?).await
        }
        ("/api/v1/providers", "POST") => providers::create(gateway, scope, body).await,
        ("/api/v1/providers/{id}", "GET") => {
            providers::get(gateway, scope, id("id", "provider")?).await
        }
        ("/api/v1/providers/{id}", "PATCH" | "PUT") => {
            providers::update(gateway, scope, id("id", "provider")?, body).await
        }
        ("/api/v1/providers/{id}", "DELETE") => {
            providers::delete(gateway, scope, id("id", "provider")?).await
        }
        ("/api/v1/providers/{id}/models", "GET") => {
            models::list_page(
                gateway,
                scope,
                Some(id("id", "provider")?),
                page(models::PAGE_SIZE)?,
            )
            .await
        }
        ("/api/v1/providers/{id}/models", "POST") => {
            models::create(gateway, scope, Some(id("id", "provider")?), body).await
        }
        ("/api/v1/providers/{id}/discover-models", "GET") => {
            providers::discover_models(gateway, scope, id("id", "provider")?).await
        }

        ("/api/v1/models", "GET") => {
            let provider_id = query
                .first("provider_id")
                .map(|raw| {
                    Uuid::parse_str(raw)
                        .map_err(|_| ApiError::validation("query", "provider_id", "must be a UUID"))
                })
                .transpose()?;
            models::list_page(gateway, scope, provider_id, page(models::PAGE_SIZE)?).await
        }
        ("/api/v1/models", "POST") => models::create(gateway, scope, None, body).await,
        ("/api/v1/models/{id}", "GET") => models::get(gateway, scope, id("id", "model")?).await,
        ("/api/v1/models/{id}", "PATCH" | "PUT") => {
            models::update(gateway, scope, id("id", "model")?, body).await
        }
        ("/api/v1/models/{id}", "DELETE") => {
            models::delete(gateway, scope, id("id", "model")?).await
        }
        ("/api/v1/models/{id}/limits", "GET") => {
            models::limits(gateway, scope, id("id", "model")?).await
        }

        ("/api/v1/prompts", "GET") => {
            let filter = PromptFilter {
                name: query.first("name"),
                service_type: query.first("service_type"),
                prompt_category: query.first("prompt_category").or(query.first("category")),
                prompt_type: query.first("prompt_type"),
            };
            prompts::list_page(gateway, scope, filter, page(prompts::PAGE_SIZE)?).await
        }
        ("/api/v1/prompts", "POST") => prompts::create(gateway, scope, body).await,
        ("/api/v1/prompts/{id}", "GET") => prompts::get(gateway, scope, id("id", "prompt")?).await,
        ("/api/v1/prompts/{id}", "PATCH" | "PUT") => {
            prompts::update(gateway, scope, id("id", "prompt")?, body).await
        }
        ("/api/v1/prompts/{id}", "DELETE") => {
            prompts::delete(gateway, scope, id("id", "prompt")?).await
        }

        ("/api/v1/service-types" | "/api/v1/prompt-types", _)
        | ("/api/v1/service-types/{id}" | "/api/v1/prompt-types/{id}", _) => {
            let which = if resource.starts_with("/api/v1/service-types") {
                TypeList::Service
            } else {
                TypeList::Prompt
            };
            match (resource.ends_with("{id}"), method) {
                (false, "GET") => {
                    prompts::list_types(gateway, which, flag("active_only")?.unwrap_or(false)).await
                }
                (false, "POST") => prompts::create_type(gateway, which, body).await,
                (true, "GET") => prompts::get_type(gateway, which, &text("id")).await,
                (true, "PATCH" | "PUT") => {
                    prompts::update_type(gateway, which, &text("id"), body).await
                }
                (true, "DELETE") => prompts::delete_type(gateway, which, &text("id")).await,
                _ => Err(method_not_allowed(method)),
            }
        }

        ("/api/v1/flavor-presets", "GET") => {
            presets::list_presets(
                gateway,
                scope,
                query.first("service_type"),
                flag("active_only")?.unwrap_or(false),
            )
            .await
        }
        ("/api/v1/flavor-presets", "POST") => presets::create(gateway, scope, body).await,
        ("/api/v1/flavor-presets/{id}", "GET") => {
            presets::get(gateway, scope, id("id", "flavor preset")?).await
        }
        ("/api/v1/flavor-presets/{id}", "PATCH" | "PUT") => {
            presets::update(gateway, scope, id("id", "flavor preset")?, body).await
        }
        ("/api/v1/flavor-presets/{id}", "DELETE") => {
            presets::delete(gateway, scope, id("id", "flavor preset")?).await
        }
        ("/api/v1/flavor-presets/{id}/apply", "POST") => {
            let form = request
                .headers()
                .get("content-type")
                .and_then(|value| value.to_str().ok())
                .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
            presets::apply(gateway, scope, id("id", "flavor preset")?, body, form).await
        }

        ("/api/v1/services", "GET") => {
            services::list_page(
                gateway,
                scope,
                query.first("service_type"),
                flag("is_active")?,
                page(services::PAGE_SIZE)?,
            )
            .await
        }
        ("/api/v1/services", "POST") => services::create(gateway, scope, body).await,
        ("/api/v1/services/{id}", "GET") => {
            services::get(gateway, scope, id("id", "service")?).await
        }
        ("/api/v1/services/{id}", "PATCH" | "PUT") => {
            services::update(gateway, scope, id("id", "service")?, body).await
        }
        ("/api/v1/services/{id}", "DELETE") => {
            services::delete(gateway, scope, id("id", "service")?).await
        }
        ("/api/v1/services/{id}/flavors", "GET") => {
            services::list_flavors(gateway, scope, id("id", "service")?, flag("is_active")?).await
        }
        ("/api/v1/services/{id}/flavors", "POST") => {
            services::create_flavor(gateway, scope, id("id", "service")?, body).await
        }

        ("/api/v1/flavors/validate-prompt", "POST") => {
            services::validate_prompt(gateway, scope, body).await
        }
        ("/api/v1/services/{id}/flavors/{flavor_id}" | "/api/v1/flavors/{flavor_id}", _) => {
            let (service_id, flavor_id) = (flavor_service()?, id("flavor_id", "flavor")?);
            match method {
                "GET" => services::get_flavor(gateway, scope, service_id, flavor_id).await,
                "PATCH" | "PUT" => {
                    services::update_flavor(gateway, scope, service_id, flavor_id, body).await
                }
                "DELETE" => services::delete_flavor(gateway, scope, service_id, flavor_id).await,
                _ => Err(method_not_allowed(method)),
            }
        }
        (
            "/api/v1/services/{id}/flavors/{flavor_id}/{action}"
            | "/api/v1/flavors/{flavor_id}/{action}",
            _,
        ) => {
            let (service_id, flavor_id) = (flavor_service()?, id("flavor_id", "flavor")?);
            match (text("action").as_str(), method) {
                ("set-default", "POST") => {
                    services::set_default(gateway, scope, service_id, flavor_id).await
                }
                ("failover-chain", "GET") => {
                    services::failover_chain(gateway, scope, service_id, flavor_id).await
                }
                ("fallback-available", "GET") => {
                    services::fallback_available(gateway, scope, service_id, flavor_id).await
                }
                ("validate-failover", "POST") => {
                    services::validate_failover(gateway, scope, service_id, flavor_id, body).await
                }
                (
                    "set-default" | "failover-chain" | "fallback-available" | "validate-failover",
                    _,
                ) => Err(method_not_allowed(method)),
                (action, _) => Err(ApiError::new(
                    404,
                    "NOT_FOUND",
                    format!("no action '{action}' on flavors"),
                )),
            }
        }
        (known, _) if RESOURCES.contains(&known) => Err(method_not_allowed(method)),
        (unknown, _) => Err(ApiError::new(
            404,
            "NOT_FOUND",
            format!("no catalog route for '{unknown}'"),
        )),
    }
}

fn method_not_allowed(method: &str) -> ApiError {
    ApiError::new(
        405,
        "METHOD_NOT_ALLOWED",
        format!("{method} is not allowed on this path"),
    )
}
