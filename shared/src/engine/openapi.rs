//! The OpenAPI 3 document of the REST API, built with utoipa from the operation table
//! below and the `ToSchema` derives of the domain types. A test checks the table covers
//! every resource of every function.

use serde_json::Value;
use utoipa::openapi::path::{Operation, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, HttpMethod, InfoBuilder, ObjectBuilder, OpenApiBuilder,
    PathItem, PathsBuilder, Ref, RefOr, Required, ResponseBuilder, Schema, Type,
};
use utoipa::{PartialSchema, ToSchema};

use crate::domain::{Flavor, Model, ProcessingMode, Provider, Service};
use crate::engine::catalog::presets::FlavorPreset;
use crate::engine::catalog::prompts::{Prompt, TypeEntry};

/// One REST operation.
#[derive(Debug, Clone, Copy)]
pub struct ApiOperation {
    pub method: &'static str,
    /// Path template (API Gateway resources with a `{action}` or `{proxy+}` segment are
    /// documented once per action).
    pub path: &'static str,
    /// The function serving it.
    pub function: &'static str,
    pub summary: &'static str,
    /// Schema of the JSON body, if any (a component name, or `object`).
    pub request: Option<&'static str>,
    /// Success status and the schema of its body (`object` for free-form JSON).
    pub status: u16,
    pub response: &'static str,
}

const fn op(
    method: &'static str,
    path: &'static str,
    function: &'static str,
    summary: &'static str,
    request: Option<&'static str>,
    status: u16,
    response: &'static str,
) -> ApiOperation {
    ApiOperation {
        method,
        path,
        function,
        summary,
        request,
        status,
        response,
    }
}

/// Every REST operation of the gateway.
pub const OPERATIONS: &[ApiOperation] = &[
    op(
        "POST",
        "/api/v1/services/{id}/execute",
        "execute",
        "Submit a job on a service (202)",
        Some("object"),
        202,
        "object",
    ),
    op(
        "POST",
        "/api/v1/services/{id}/validate-execution",
        "execute",
        "Dry run of execute: the same checks and figures, nothing written",
        Some("object"),
        200,
        "object",
    ),
    op(
        "GET",
        "/api/v1/jobs",
        "jobs",
        "List jobs, newest first (cursor pagination)",
        None,
        200,
        "object",
    ),
    op(
        "GET",
        "/api/v1/jobs/{id}",
        "jobs",
        "Job status, progress, result and metrics",
        None,
        200,
        "object",
    ),
    op(
        "DELETE",
        "/api/v1/jobs/{id}",
        "jobs",
        "Delete a terminal job and its objects",
        None,
        200,
        "object",
    ),
    op(
        "POST",
        "/api/v1/jobs/{id}/cancel",
        "jobs",
        "Cancel a job (stops at its next step)",
        None,
        200,
        "object",
    ),
    op(
        "GET",
        "/api/v1/providers",
        "catalog",
        "List providers (page)",
        None,
        200,
        "page:Provider",
    ),
    op(
        "POST",
        "/api/v1/providers",
        "catalog",
        "Create a provider (api_key is KMS-encrypted, never returned)",
        Some("object"),
        201,
        "Provider",
    ),
    op(
        "GET",
        "/api/v1/providers/{id}",
        "catalog",
        "Get a provider",
        None,
        200,
        "Provider",
    ),
    op(
        "PATCH",
        "/api/v1/providers/{id}",
        "catalog",
        "Update a provider",
        Some("object"),
        200,
        "Provider",
    ),
    op(
        "DELETE",
        "/api/v1/providers/{id}",
        "catalog",
        "Delete a provider and its unused models",
        None,
        204,
        "",
    ),
    op(
        "GET",
        "/api/v1/providers/{id}/models",
        "catalog",
        "List a provider's models (page)",
        None,
        200,
        "page:Model",
    ),
    op(
        "POST",
        "/api/v1/providers/{id}/models",
        "catalog",
        "Create a model of the provider",
        Some("Model"),
        201,
        "Model",
    ),
    op(
        "GET",
        "/api/v1/providers/{id}/discover-models",
        "catalog",
        "Models the provider lists, with limits",
        None,
        200,
        "array:object",
    ),
    op(
        "GET",
        "/api/v1/models",
        "catalog",
        "List models (page; filter provider_id)",
        None,
        200,
        "page:Model",
    ),
    op(
        "POST",
        "/api/v1/models",
        "catalog",
        "Create a model",
        Some("Model"),
        201,
        "Model",
    ),
    op(
        "GET",
        "/api/v1/models/{id}",
        "catalog",
        "Get a model",
        None,
        200,
        "Model",
    ),
    op(
        "PATCH",
        "/api/v1/models/{id}",
        "catalog",
        "Update a model",
        Some("object"),
        200,
        "Model",
    ),
    op(
        "DELETE",
        "/api/v1/models/{id}",
        "catalog",
        "Delete a model no flavor uses",
        None,
        204,
        "",
    ),
    op(
        "GET",
        "/api/v1/models/{id}/limits",
        "catalog",
        "Context split of a model",
        None,
        200,
        "object",
    ),
    op(
        "GET",
        "/api/v1/prompts",
        "catalog",
        "List prompts (page; filters name, service_type, prompt_category, prompt_type)",
        None,
        200,
        "page:Prompt",
    ),
    op(
        "POST",
        "/api/v1/prompts",
        "catalog",
        "Create a prompt",
        Some("Prompt"),
        201,
        "Prompt",
    ),
    op(
        "GET",
        "/api/v1/prompts/{id}",
        "catalog",
        "Get a prompt",
        None,
        200,
        "Prompt",
    ),
    op(
        "PATCH",
        "/api/v1/prompts/{id}",
        "catalog",
        "Update a prompt",
        Some("object"),
        200,
        "Prompt",
    ),
    op(
        "DELETE",
        "/api/v1/prompts/{id}",
        "catalog",
        "Delete a prompt no flavor uses",
        None,
        204,
        "",
    ),
    op(
        "GET",
        "/api/v1/prompt-types",
        "catalog",
        "List prompt types",
        None,
        200,
        "array:TypeEntry",
    ),
    op(
        "POST",
        "/api/v1/prompt-types",
        "catalog",
        "Create a prompt type",
        Some("TypeEntry"),
        201,
        "TypeEntry",
    ),
    op(
        "GET",
        "/api/v1/prompt-types/{id}",
        "catalog",
        "Get a prompt type (id or code)",
        None,
        200,
        "TypeEntry",
    ),
    op(
        "PATCH",
        "/api/v1/prompt-types/{id}",
        "catalog",
        "Update a prompt type",
        Some("object"),
        200,
        "TypeEntry",
    ),
    op(
        "DELETE",
        "/api/v1/prompt-types/{id}",
        "catalog",
        "Delete a non-system prompt type",
        None,
        204,
        "",
    ),
    op(
        "GET",
        "/api/v1/service-types",
        "catalog",
        "List service types",
        None,
        200,
        "array:TypeEntry",
    ),
    op(
        "POST",
        "/api/v1/service-types",
        "catalog",
        "Create a service type",
        Some("TypeEntry"),
        201,
        "TypeEntry",
    ),
    op(
        "GET",
        "/api/v1/service-types/{id}",
        "catalog",
        "Get a service type (id or code)",
        None,
        200,
        "TypeEntry",
    ),
    op(
        "PATCH",
        "/api/v1/service-types/{id}",
        "catalog",
        "Update a service type",
        Some("object"),
        200,
        "TypeEntry",
    ),
    op(
        "DELETE",
        "/api/v1/service-types/{id}",
        "catalog",
        "Delete a non-system service type",
        None,
        204,
        "",
    ),
    op(
        "GET",
        "/api/v1/flavor-presets",
        "catalog",
        "List flavor presets",
        None,
        200,
        "array:FlavorPreset",
    ),
    op(
        "POST",
        "/api/v1/flavor-presets",
        "catalog",
        "Create a flavor preset",
        Some("FlavorPreset"),
        201,
        "FlavorPreset",
    ),
    op(
        "GET",
        "/api/v1/flavor-presets/{id}",
        "catalog",
        "Get a flavor preset",
        None,
        200,
        "FlavorPreset",
    ),
    op(
        "PATCH",
        "/api/v1/flavor-presets/{id}",
        "catalog",
        "Update a flavor preset",
        Some("object"),
        200,
        "FlavorPreset",
    ),
    op(
        "DELETE",
        "/api/v1/flavor-presets/{id}",
        "catalog",
        "Delete a non-system preset",
        None,
        204,
        "",
    ),
    op(
        "POST",
        "/api/v1/flavor-presets/{id}/apply",
        "catalog",
        "Create a flavor from a preset (service_id, model_id, flavor_name)",
        Some("object"),
        201,
        "Flavor",
    ),
    op(
        "GET",
        "/api/v1/services",
        "catalog",
        "List services with their flavors (page)",
        None,
        200,
        "page:Service",
    ),
    op(
        "POST",
        "/api/v1/services",
        "catalog",
        "Create a service, optionally with flavors (atomic)",
        Some("Service"),
        201,
        "Service",
    ),
    op(
        "GET",
        "/api/v1/services/{id}",
        "catalog",
        "Get a service with its flavors",
        None,
        200,
        "Service",
    ),
    op(
        "PATCH",
        "/api/v1/services/{id}",
        "catalog",
        "Update a service",
        Some("object"),
        200,
        "Service",
    ),
    op(
        "DELETE",
        "/api/v1/services/{id}",
        "catalog",
        "Delete a service and its flavors",
        None,
        204,
        "",
    ),
    op(
        "GET",
        "/api/v1/services/{id}/flavors",
        "catalog",
        "List a service's flavors",
        None,
        200,
        "object",
    ),
    op(
        "POST",
        "/api/v1/services/{id}/flavors",
        "catalog",
        "Create a flavor",
        Some("Flavor"),
        201,
        "Flavor",
    ),
    op(
        "GET",
        "/api/v1/services/{id}/flavors/{flavor_id}",
        "catalog",
        "Get a flavor of the service",
        None,
        200,
        "Flavor",
    ),
    op(
        "PATCH",
        "/api/v1/services/{id}/flavors/{flavor_id}",
        "catalog",
        "Update a flavor of the service",
        Some("object"),
        200,
        "Flavor",
    ),
    op(
        "DELETE",
        "/api/v1/services/{id}/flavors/{flavor_id}",
        "catalog",
        "Delete a flavor of the service",
        None,
        204,
        "",
    ),
    op(
        "POST",
        "/api/v1/services/{id}/flavors/{flavor_id}/set-default",
        "catalog",
        "Make the flavor the service default",
        None,
        200,
        "object",
    ),
    op(
        "GET",
        "/api/v1/services/{id}/flavors/{flavor_id}/failover-chain",
        "catalog",
        "The flavors tried in order on failover",
        None,
        200,
        "object",
    ),
    op(
        "POST",
        "/api/v1/flavors/validate-prompt",
        "catalog",
        "Check a prompt's placeholders for a mode",
        Some("object"),
        200,
        "object",
    ),
    op(
        "GET",
        "/api/v1/flavors/{flavor_id}",
        "catalog",
        "Get a flavor",
        None,
        200,
        "Flavor",
    ),
    op(
        "PATCH",
        "/api/v1/flavors/{flavor_id}",
        "catalog",
        "Update a flavor",
        Some("object"),
        200,
        "Flavor",
    ),
    op(
        "DELETE",
        "/api/v1/flavors/{flavor_id}",
        "catalog",
        "Delete a flavor",
        None,
        204,
        "",
    ),
    op(
        "POST",
        "/api/v1/flavors/{flavor_id}/set-default",
        "catalog",
        "Make the flavor the service default",
        None,
        200,
        "object",
    ),
    op(
        "GET",
        "/api/v1/flavors/{flavor_id}/failover-chain",
        "catalog",
        "The flavors tried in order on failover",
        None,
        200,
        "object",
    ),
    op(
        "GET",
        "/openapi.json",
        "catalog",
        "This document",
        None,
        200,
        "object",
    ),
];

fn schema_ref(name: &str) -> RefOr<Schema> {
    match name {
        "object" | "" => ObjectBuilder::new().schema_type(Type::Object).into(),
        component => Ref::from_schema_name(component).into(),
    }
}

/// The schema of a response description: `Name`, `page:Name`, `array:Name` or `object`.
fn response_schema(response: &str) -> RefOr<Schema> {
    if let Some(item) = response.strip_prefix("array:") {
        return utoipa::openapi::schema::ArrayBuilder::new()
            .items(schema_ref(item))
            .into();
    }
    if let Some(item) = response.strip_prefix("page:") {
        let integer = || ObjectBuilder::new().schema_type(Type::Integer);
        return ObjectBuilder::new()
            .property(
                "items",
                utoipa::openapi::schema::ArrayBuilder::new().items(schema_ref(item)),
            )
            .property("total", integer())
            .property("page", integer())
            .property("page_size", integer())
            .property("total_pages", integer())
            .into();
    }
    schema_ref(response)
}

fn operation(api: &ApiOperation) -> Operation {
    let mut builder = OperationBuilder::new()
        .summary(Some(api.summary))
        .operation_id(Some(format!(
            "{}_{}",
            api.method.to_lowercase(),
            api.path
                .trim_start_matches('/')
                .replace(['/', '-', '.', '+'], "_")
                .replace(['{', '}'], "")
        )))
        .tag(api.function);
    for segment in api.path.split('/') {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            builder = builder.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            );
        }
    }
    if api.path.starts_with("/api/v1/") && api.function != "execute" {
        builder = builder.parameter(
            ParameterBuilder::new()
                .name("organization_id")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some("Tenant: own and global objects are visible"))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
        );
    }
    if let Some(request) = api.request {
        builder = builder.request_body(Some(
            RequestBodyBuilder::new()
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(schema_ref(request)))
                        .build(),
                )
                .required(Some(Required::True))
                .build(),
        ));
    }
    let success = if api.status == 204 {
        ResponseBuilder::new().description("No content").build()
    } else {
        ResponseBuilder::new()
            .description("Success")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(response_schema(api.response)))
                    .build(),
            )
            .build()
    };
    let error = ResponseBuilder::new()
        .description(
            "Error: `{detail, error_code}` (422: `detail` is a list of `{loc, msg, type}`)",
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                .build(),
        )
        .build();
    builder
        .response(api.status.to_string(), success)
        .response("default", error)
        .build()
}

fn method(name: &str) -> HttpMethod {
    match name {
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "PATCH" => HttpMethod::Patch,
        "DELETE" => HttpMethod::Delete,
        _ => HttpMethod::Get,
    }
}

/// The document as JSON.
pub fn document() -> Value {
    let mut paths = PathsBuilder::new();
    for api in OPERATIONS {
        paths = paths.path(api.path, PathItem::new(method(api.method), operation(api)));
    }
    let components = ComponentsBuilder::new()
        .schema(Provider::name(), Provider::schema())
        .schema(Model::name(), Model::schema())
        .schema(Service::name(), Service::schema())
        .schema(Flavor::name(), Flavor::schema())
        .schema(ProcessingMode::name(), ProcessingMode::schema())
        .schema(Prompt::name(), Prompt::schema())
        .schema(TypeEntry::name(), TypeEntry::schema())
        .schema(FlavorPreset::name(), FlavorPreset::schema())
        .build();
    let document = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("LLM Gateway")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Document jobs (summaries, minutes, extraction) on any OpenAI-compatible LLM, \
                     and the catalog that configures them.",
                )),
        )
        .paths(paths)
        .components(Some(components))
        .build();
    serde_json::to_value(&document).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_in_the_document_once() {
        let doc = document();
        assert_eq!(
            doc["openapi"].as_str().map(|v| v.starts_with("3.")),
            Some(true)
        );
        for api in OPERATIONS {
            let item = &doc["paths"][api.path][api.method.to_lowercase()];
            assert!(item.is_object(), "{} {} missing", api.method, api.path);
        }
        let components = doc["components"]["schemas"].as_object().unwrap();
        for name in [
            "Provider",
            "Model",
            "Service",
            "Flavor",
            "Prompt",
            "TypeEntry",
            "FlavorPreset",
        ] {
            assert!(components.contains_key(name), "{name}");
        }
        let secret = &doc["components"]["schemas"]["Provider"]["properties"]["api_key"];
        assert!(secret.is_null(), "the schema never offers the key back");
    }
}
