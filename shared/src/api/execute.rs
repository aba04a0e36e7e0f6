//! Routes of the `execute` function: submit a job, or its dry run.

use serde_json::json;
use uuid::Uuid;

use super::request::ApiRequest;
use super::response::error_body;
use super::routes::{route, RouteTable};
use crate::engine::error::{EngineError, EngineResult, Resource};
use crate::engine::execute::{accepted_json, dry_run_json, plan, submit, uploads, ExecuteRequest};
use crate::engine::{Gateway, JsonResponse};

/// The execute function's routes.
pub static TABLE: RouteTable = RouteTable {
    function: "execute",
    routes: &[
        route!(Post "/api/v1/services/{id}/execute", "Submit a job on a service (202)", Some("object"), 202 => "object",
            |g, r| execute(g, r).await),
        route!(Post "/api/v1/services/{id}/validate-execution", "Dry run of execute: the same checks and figures, nothing written", Some("object"), 200 => "object",
            |g, r| validate_execution(g, r).await),
        route!(Post "/api/v1/services/{id}/run", "Submit a job from a multipart form (the reference's): file, flavor_id or flavor_name, organization_id, context and extraction_fields as JSON text, cache (202)", Some("object"), 202 => "object",
            |g, r| run_form(g, r).await),
        route!(Post "/api/v1/uploads", "A presigned URL to PUT a large input to, then name it in execute as input_upload_id (201)", None, 201 => "object",
            |g, r| uploads::create(g, r.organization_id()?).await),
    ],
};

/// The service and the request, its input read from the upload it names.
async fn decode(gateway: &Gateway, request: &ApiRequest) -> EngineResult<(Uuid, ExecuteRequest)> {
    let service_id = request.id("id", Resource::Service)?;
    let mut parsed = ExecuteRequest::parse(request.body(), gateway.limits.max_input_bytes)?;
    uploads::resolve_input(gateway, &mut parsed).await?;
    Ok((service_id, parsed))
}

async fn execute(gateway: &Gateway, request: &ApiRequest) -> EngineResult<JsonResponse> {
    let (service_id, parsed) = decode(gateway, request).await?;
    let job = submit(gateway, service_id, parsed).await?;
    Ok(JsonResponse::new(202, accepted_json(&job)))
}

/// `POST /services/{id}/run`: the reference's multipart submission, read into an execute
/// body (the file's text as `input`; `context` and `extraction_fields` as JSON text) and
/// checked like one. Its `temperature`/`top_p` overrides and `synthetic_template` are
/// refused: a flavor carries the settings, and test transcripts are not shipped.
async fn run_form(gateway: &Gateway, request: &ApiRequest) -> EngineResult<JsonResponse> {
    use super::multipart::parse_form;
    use crate::engine::error::Location;
    let service_id = request.id("id", Resource::Service)?;
    if request.media_type().as_deref() != Some("multipart/form-data") {
        return Err(EngineError::UnsupportedMediaType(
            request.content_type.clone().unwrap_or_default(),
        ));
    }
    let mut form = parse_form(
        request.content_type.as_deref().unwrap_or_default(),
        request.body(),
    )
    .await?;
    for refused in ["temperature", "top_p", "synthetic_template"] {
        if form.text(refused).is_some() {
            return Err(EngineError::validation(
                Location::Body,
                refused,
                "is not supported here: choose a flavor with the settings you need, and send the text as file",
            ));
        }
    }
    let file = form
        .files
        .remove("file")
        .ok_or_else(|| EngineError::validation(Location::Body, "file", "field required"))?;
    let input = String::from_utf8(file.bytes)
        .map_err(|_| EngineError::validation(Location::Body, "file", "must be UTF-8 text"))?;
    let mut body = serde_json::Map::new();
    body.insert("input".into(), json!(input));
    for name in ["flavor_id", "flavor_name", "organization_id"] {
        if let Some(value) = form.text(name) {
            body.insert(name.into(), json!(value));
        }
    }
    for name in ["context", "extraction_fields"] {
        if let Some(text) = form.text(name) {
            let value: serde_json::Value = serde_json::from_str(text).map_err(|error| {
                EngineError::validation(Location::Body, name, format!("must be JSON: {error}"))
            })?;
            body.insert(name.into(), value);
        }
    }
    if let Some(cache) = form.text("cache") {
        let flag = match cache.to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => {
                return Err(EngineError::validation(
                    Location::Body,
                    "cache",
                    "must be true or false",
                ))
            }
        };
        body.insert("cache".into(), json!(flag));
    }
    let encoded = serde_json::to_vec(&body).map_err(|e| EngineError::internal("encode", e))?;
    let parsed = ExecuteRequest::parse(&encoded, gateway.limits.max_input_bytes)?;
    let job = submit(gateway, service_id, parsed).await?;
    Ok(JsonResponse::new(202, accepted_json(&job)))
}

/// 200 `{valid: true, ...figures}`, or `{valid: false, ...}` with the `CONTEXT_EXCEEDED`
/// figures when the input does not fit; other problems are the usual 4xx.
async fn validate_execution(gateway: &Gateway, request: &ApiRequest) -> EngineResult<JsonResponse> {
    let (service_id, parsed) = decode(gateway, request).await?;
    match plan(gateway, service_id, &parsed).await {
        Ok(plan) => Ok(JsonResponse::new(200, dry_run_json(&plan.job))),
        Err(error @ EngineError::ContextExceeded(_)) => {
            let mut body = error_body(&error);
            body["valid"] = json!(false);
            Ok(JsonResponse::new(200, body))
        }
        Err(error) => Err(error),
    }
}
