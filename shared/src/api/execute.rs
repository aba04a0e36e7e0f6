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
        route!(Post "/api/v1/uploads", "A presigned URL to PUT a large input to, then name it in execute as input_upload_id (201)", None, 201 => "object",
            |g, r| uploads::create(g, r.organization_id()?).await),
    ],
};

/// The service and the request, its input read from the upload it names.
async fn decode(gateway: &Gateway, request: &ApiRequest) -> EngineResult<(Uuid, ExecuteRequest)> {
    let service_id = request.id("id", Resource::Service)?;
    let mut parsed = ExecuteRequest::parse(request.body(), gateway.limits.max_input_bytes)?;
    if let Some(upload) = parsed.input_upload_id {
        parsed.input = uploads::read(gateway, parsed.organization_id.as_deref(), upload).await?;
    }
    Ok((service_id, parsed))
}

async fn execute(gateway: &Gateway, request: &ApiRequest) -> EngineResult<JsonResponse> {
    let (service_id, parsed) = decode(gateway, request).await?;
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
