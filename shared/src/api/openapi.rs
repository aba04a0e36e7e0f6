//! The OpenAPI 3 document of the REST API, built with utoipa from the route tables (the
//! same ones that route requests) and the `ToSchema` derives of the domain types.
//!
//! [`document`] builds it; the catalog function serves [`published`], the copy kept in
//! `docs/openapi.json`, so that it links neither utoipa nor, through the route tables,
//! every other function's handlers. A test keeps the two equal.

use serde_json::Value;
use utoipa::openapi::path::{Operation, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, HttpMethod, InfoBuilder, KnownFormat, ObjectBuilder,
    OpenApiBuilder, PathItem, PathsBuilder, Ref, RefOr, Required, ResponseBuilder, Schema,
    SchemaFormat, Type,
};
use utoipa::{PartialSchema, ToSchema};

use super::routes::{parameter_name, template_segments, Method, Route};
use super::TABLES;
use crate::domain::{Flavor, Model, ProcessingMode, Provider, Service};
use crate::engine::catalog::presets::FlavorPreset;
use crate::engine::catalog::prompts::{Prompt, TypeEntry};

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

fn operation(function: &str, route: &Route) -> Operation {
    let api = &route.doc;
    let mut builder = OperationBuilder::new()
        .summary(Some(api.summary))
        .operation_id(Some(format!(
            "{}_{}",
            route.method.as_str().to_lowercase(),
            route
                .path
                .trim_start_matches('/')
                .replace(['/', '-', '.', '+'], "_")
                .replace(['{', '}'], "")
        )))
        .tag(function);
    for segment in template_segments(route.path) {
        if let Some(name) = parameter_name(segment) {
            builder = builder.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            );
        }
    }
    // Execute and chat read the organization from the body.
    if route.path.starts_with("/api/v1/") && !matches!(function, "execute" | "chat") {
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
    } else if api.response == "file" {
        // A document as an attachment, or JSON `{url, ...}` to a stored one.
        let binary = || {
            ContentBuilder::new()
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary))),
                ))
                .build()
        };
        let mut response =
            ResponseBuilder::new().description("The file (Content-Disposition: attachment)");
        for media_type in FILE_MEDIA_TYPES {
            response = response.content(*media_type, binary());
        }
        response
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                    .build(),
            )
            .build()
    } else if api.response == "event-stream" {
        ResponseBuilder::new()
            .description(
                "Server-sent events: `event: token` (`{content}`) per piece of the answer, then \
                 `event: done` (`{usage: {prompt_tokens, completion_tokens, total_tokens, \
                 cached_tokens?}, estimated_cost?, job_id}`) or `event: error` \
                 (`{error, error_code}`, e.g. `PROVIDER_RATE_LIMITED`)",
            )
            .content(
                "text/event-stream",
                ContentBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .build(),
            )
            .build()
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
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                    .build(),
            )
            .build()
    };
    if api.request.is_some() {
        builder = builder.response(
            "415",
            error("UNSUPPORTED_MEDIA_TYPE: the body is declared as another type than application/json"),
        );
    }
    builder
        .response(api.status.to_string(), success)
        .response(
            "default",
            error("Error: `{detail, error_code}` (422: `detail` is a list of `{loc, msg, type}`)"),
        )
        .build()
}

/// Media types of the files the API answers (`RouteDoc::response == "file"`).
const FILE_MEDIA_TYPES: &[&str] = &[
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/pdf",
    "text/html; charset=utf-8",
];

fn http_method(method: Method) -> HttpMethod {
    match method {
        Method::Get => HttpMethod::Get,
        Method::Post => HttpMethod::Post,
        Method::Patch => HttpMethod::Patch,
        Method::Delete => HttpMethod::Delete,
    }
}

/// The document as kept in `docs/openapi.json` (what `GET /openapi.json` answers).
pub const PUBLISHED: &str = include_str!("../../../docs/openapi.json");

/// [`PUBLISHED`] as JSON.
pub fn published() -> Value {
    serde_json::from_str(PUBLISHED).unwrap_or(Value::Null)
}

/// The document as JSON, built from the route tables.
pub fn document() -> Value {
    let mut paths = PathsBuilder::new();
    for table in TABLES {
        for route in table.routes {
            paths = paths.path(
                route.path,
                PathItem::new(http_method(route.method), operation(table.function, route)),
            );
        }
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

    /// `docs/openapi.json` is the built document; `UPDATE_OPENAPI=1` rewrites it.
    #[test]
    fn the_published_document_is_the_built_one() {
        let built = document();
        let text = serde_json::to_string_pretty(&built).unwrap() + "\n";
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
            std::fs::write(path, &text).unwrap();
            return;
        }
        assert!(
            published() == built && PUBLISHED == text,
            "docs/openapi.json is not the document the route tables make: rerun with \
             UPDATE_OPENAPI=1 cargo test -p gateway-core api::openapi"
        );
    }

    #[test]
    fn every_operation_is_in_the_document_once() {
        let doc = document();
        assert_eq!(
            doc["openapi"].as_str().map(|v| v.starts_with("3.")),
            Some(true)
        );
        let mut operations = 0;
        for table in TABLES {
            for route in table.routes {
                let method = route.method.as_str().to_lowercase();
                let item = &doc["paths"][route.path][&method];
                assert!(item.is_object(), "{method} {} missing", route.path);
                assert_eq!(item["tags"][0], table.function);
                operations += 1;
            }
        }
        let documented: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|item| item.as_object().unwrap().len())
            .sum();
        assert_eq!(documented, operations, "every route once, nothing else");
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
        let execute = &doc["paths"]["/api/v1/services/{id}/execute"]["post"];
        assert!(execute["responses"]["415"].is_object(), "{execute}");
        let chat = &doc["paths"]["/api/v1/chat/completions"]["post"];
        assert!(
            chat["responses"]["200"]["content"]["text/event-stream"].is_object(),
            "{chat}"
        );
        let secret = &doc["components"]["schemas"]["Provider"]["properties"]["api_key"];
        assert!(secret.is_null(), "the schema never offers the key back");
    }
}
