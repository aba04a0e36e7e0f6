//! Routes of the `export` function: document templates and exports of a job's result.
//!
//! [`TABLE`] is compiled into every function, so the OpenAPI document (served by the
//! catalog function) lists these routes, and its handlers answer 501; [`SERVED`], built
//! with the `documents` feature, is the export function's.

use super::request::ApiRequest;
use super::routes::{route, RouteTable};
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::{Gateway, JsonResponse};

/// The export function's routes, once per set of handlers: the same paths, documentation
/// and handler names, so the documented table and the served one cannot drift apart.
macro_rules! export_routes {
    ($handlers:ident) => {
        RouteTable {
            function: "export",
            routes: &[
                route!(Get "/api/v1/document-templates", "List document templates (system ∪ organization ∪ user; include_system, include_all)", None, 200 => "array:object",
                    |g, r| $handlers::list(g, r).await),
                route!(Post "/api/v1/document-templates", "Upload a .docx template (multipart: file, name_fr, name_en, description_fr, description_en, organization_id, user_id, is_default)", Some("object"), 201 => "object",
                    |g, r| $handlers::create(g, r).await),
                route!(Get "/api/v1/document-templates/{id}", "Get a document template", None, 200 => "object",
                    |g, r| $handlers::get(g, r).await),
                route!(Patch "/api/v1/document-templates/{id}", "Update a template's metadata (JSON), or also its file (multipart)", Some("object"), 200 => "object",
                    |g, r| $handlers::update(g, r).await),
                route!(Delete "/api/v1/document-templates/{id}", "Delete a template that is no default (409 otherwise)", None, 204 => "",
                    |g, r| $handlers::delete(g, r).await),
                route!(Get "/api/v1/document-templates/{id}/download", "The template's .docx file", None, 200 => "file",
                    |g, r| $handlers::download(g, r).await),
                route!(Get "/api/v1/document-templates/{id}/placeholders", "The template's placeholders: [{name, description, is_standard}]", None, 200 => "array:object",
                    |g, r| $handlers::placeholders(g, r).await),
                route!(Post "/api/v1/document-templates/{id}/set-default", "Make it the default template of service_id", None, 204 => "",
                    |g, r| $handlers::set_default(g, r).await),
                route!(Post "/api/v1/document-templates/{id}/set-global-default", "Operator: make this system template the global default", None, 204 => "",
                    |g, r| $handlers::set_global_default(g, r).await),
                route!(Get "/api/v1/jobs/{id}/export/{format}", "Export the result as docx, pdf or html (template_id, version_number, timezone, delivery=url)", None, 200 => "file",
                    |g, r| $handlers::export(g, r).await),
                route!(Post "/api/v1/jobs/{id}/export-preview", "Placeholders an export would fill, and whether it extracts (template_id, version_number)", None, 200 => "object",
                    |g, r| $handlers::preview(g, r).await),
            ],
        }
    };
}

/// The export routes as every function sees them: documented (the OpenAPI document lists
/// them), each answering 501. Only [`SERVED`] reaches the renderer, so a function other
/// than export never links it, even in a build where cargo unifies the `documents`
/// feature across the workspace.
pub static TABLE: RouteTable = export_routes!(not_served);

/// The export routes with their handlers, for the export function.
#[cfg(feature = "documents")]
pub static SERVED: RouteTable = export_routes!(serve);

#[cfg(feature = "documents")]
mod serve {
    use super::*;
    use crate::api::multipart::{parse_form, Form};
    use crate::engine::catalog::entity::parse_object;
    use crate::engine::documents::export::{self, ExportFormat, ExportOptions};
    use crate::engine::documents::templates::{self, TemplateFilter};
    use crate::engine::error::Resource;
    use uuid::Uuid;

    /// An optional UUID query parameter (400 naming it when it is not one).
    fn query_uuid(request: &ApiRequest, name: &str) -> EngineResult<Option<Uuid>> {
        match request.query(name).map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(raw) => Uuid::parse_str(raw)
                .map(Some)
                .map_err(|_| EngineError::invalid_field(name, "must be a UUID")),
        }
    }

    /// An optional `version_number` query parameter.
    fn query_version(request: &ApiRequest) -> EngineResult<Option<u32>> {
        request
            .query("version_number")
            .map(crate::engine::versions::version_number)
            .transpose()
    }

    fn id(r: &ApiRequest) -> EngineResult<Uuid> {
        r.id("id", Resource::DocumentTemplate)
    }

    /// The body of a template write: a multipart form, a URL-encoded form, or (for
    /// metadata) JSON.
    async fn form(r: &ApiRequest) -> EngineResult<Form> {
        if r.media_type().as_deref() == Some("multipart/form-data") {
            parse_form(r.content_type.as_deref().unwrap_or_default(), r.body()).await
        } else if r.is_form() {
            Ok(Form {
                fields: form_urlencoded::parse(r.body()).into_owned().collect(),
                ..Form::default()
            })
        } else {
            templates::form_of_json(parse_object(r.body())?)
        }
    }

    pub async fn list(g: &Gateway, r: &ApiRequest) -> EngineResult<JsonResponse> {
        let filter = TemplateFilter {
            user_id: r.query("user_id").map(str::to_string),
            include_system: r.flag("include_system")?.unwrap_or(true),
            include_all: r.flag("include_all")?.unwrap_or(false),
        };
        templates::list_templates(g, &r.scope()?, &filter).await
    }
    pub async fn create(g: &Gateway, r: &ApiRequest) -> EngineResult<JsonResponse> {
        if r.media_type().as_deref() != Some("multipart/form-data") {
            return Err(EngineError::UnsupportedMediaType(
                r.content_type.clone().unwrap_or_default(),
            ));
        }
        templates::create(g, &r.scope()?, &form(r).await?).await
    }
    pub async fn get(g: &Gateway, r: &ApiRequest) -> EngineResult<JsonResponse> {
        templates::get(g, &r.scope()?, id(r)?).await
    }
    pub async fn update(g: &Gateway, r: &ApiRequest) -> EngineResult<JsonResponse> {
        templates::update(g, &r.scope()?, id(r)?, &form(r).await?).await
    }
    pub async fn delete(g: &Gateway, r: &ApiRequest) -> EngineResult<JsonResponse> {
        templates::delete(g, &r.scope()?, id(r)?).await
    }
    pub async fn download(g: &Gateway, r: &ApiRequest) -> EngineResult<JsonResponse> {
        templates::download(g, &r.scope()?, id(r)?).await
    }
    pub async fn placeholders(g: &Gateway, r: &ApiRequest) -> EngineResult<JsonResponse> {
        templates::placeholders(g, &r.scope()?, id(r)?).await
    }
    pub async fn set_default(g: &Gateway, r: &ApiRequest) -> EngineResult<JsonResponse> {
        let service_id = query_uuid(r, "service_id")?
            .ok_or_else(|| EngineError::invalid_field("service_id", "field required"))?;
        templates::set_default(g, &r.scope()?, id(r)?, service_id).await
    }
    pub async fn set_global_default(g: &Gateway, r: &ApiRequest) -> EngineResult<JsonResponse> {
        templates::set_global_default(g, &r.scope()?, id(r)?).await
    }
    pub async fn export(g: &Gateway, r: &ApiRequest) -> EngineResult<JsonResponse> {
        let format = ExportFormat::parse(r.param("format"))?;
        let options = ExportOptions {
            template_id: query_uuid(r, "template_id")?,
            version_number: query_version(r)?,
            timezone: r.query("timezone").map(str::to_string),
            by_url: match r.query("delivery") {
                None | Some("file") => false,
                Some("url") => true,
                Some(_) => {
                    return Err(EngineError::invalid_field(
                        "delivery",
                        "must be file or url",
                    ))
                }
            },
        };
        let job = r.id("id", Resource::Job)?;
        export::export(g, r.organization_id()?, job, format, &options).await
    }
    pub async fn preview(g: &Gateway, r: &ApiRequest) -> EngineResult<JsonResponse> {
        let job = r.id("id", Resource::Job)?;
        let template = query_uuid(r, "template_id")?;
        export::preview(g, r.organization_id()?, job, template, query_version(r)?).await
    }
}

mod not_served {
    //! The handlers of [`TABLE`](super::TABLE): none can render, each answers 501.
    use super::*;

    fn not_built() -> EngineResult<JsonResponse> {
        Err(EngineError::NotBuilt(
            "document templates and exports are served by the export function",
        ))
    }

    macro_rules! not_built {
        ($($name:ident),*) => {$(
            pub async fn $name(_: &Gateway, _: &ApiRequest) -> EngineResult<JsonResponse> {
                not_built()
            }
        )*};
    }
    not_built!(
        list,
        create,
        get,
        update,
        delete,
        download,
        placeholders,
        set_default,
        set_global_default,
        export,
        preview
    );
}

#[cfg(all(test, feature = "documents"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_documented_table_answers_501_and_only_the_served_one_renders() {
        let memory = crate::memory::MemoryGateway::new();
        let request = || {
            let path = "/api/v1/document-templates";
            let http = http::Request::builder()
                .method("GET")
                .uri(format!("{path}?organization_id=org-1"))
                .body(Vec::new())
                .unwrap();
            ApiRequest::from_http(path, http)
        };
        let documented = TABLE.handle(&memory.gateway, request()).await;
        assert_eq!(documented.status, 501, "{}", documented.body);
        assert_eq!(documented.body["error_code"], "NOT_IMPLEMENTED");
        let served = SERVED.handle(&memory.gateway, request()).await;
        assert_eq!(served.status, 200, "{}", served.body);
        assert!(served.body.is_array(), "{}", served.body);
    }
}
