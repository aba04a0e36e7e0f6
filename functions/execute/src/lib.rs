//! `POST /api/v1/services/{id}/execute`: validates the request and submits the job
//! (202 with the job id and token figures); `POST .../validate-execution`: the same
//! checks as a dry run that writes nothing. All logic lives in `gateway_core`.

use gateway_core::domain::round6;
use gateway_core::engine::execute::{plan, submit, ExecuteRequest};
use gateway_core::engine::Gateway;
use gateway_core::error::{ApiError, JsonResponse};
use lambda_http::{Body, Request, RequestExt};
use serde_json::json;
use uuid::Uuid;

/// Handles one API Gateway request.
pub async fn handle(gateway: &Gateway, request: Request) -> JsonResponse {
    execute(gateway, request).await.into()
}

async fn execute(gateway: &Gateway, request: Request) -> Result<JsonResponse, ApiError> {
    if request.method() != lambda_http::http::Method::POST {
        return Err(ApiError::new(
            405,
            "METHOD_NOT_ALLOWED",
            format!("{} is not allowed here; use POST", request.method()),
        ));
    }
    let service_id = request
        .path_parameters_ref()
        .and_then(|params| params.first("id"))
        .ok_or_else(|| ApiError::invalid_field("id", "path parameter is missing"))?;
    let service_id =
        Uuid::parse_str(service_id).map_err(|_| ApiError::not_found("service", service_id))?;
    let body: &[u8] = match request.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    };
    let parsed = ExecuteRequest::parse(body, gateway.limits.max_input_bytes)?;
    let dry_run = request.uri().path().ends_with("/validate-execution");
    if dry_run {
        return validate_execution(gateway, service_id, &parsed).await;
    }
    let job = submit(gateway, service_id, parsed).await?;
    Ok(JsonResponse::new(
        202,
        json!({
            "job_id": job.id,
            "status": job.status,
            "service_id": job.service_id,
            "service_name": job.service_name,
            "flavor_id": job.flavor_id,
            "flavor_name": job.flavor_name,
            "organization_id": job.organization_id,
            "processing_mode": job.processing_mode,
            "created_at": job.created_at,
            "input_tokens": job.input_tokens,
            "context_available": job.context_available,
            "tokenizer": job.settings.tokenizer,
            "total_turns": job.progress.total_turns,
            "estimated_batches": job.progress.total_batches,
        }),
    ))
}

/// The dry run: 200 `{valid: true, ...figures}`, or `{valid: false, ...}` when the input
/// does not fit the flavor; other problems are the usual 4xx.
async fn validate_execution(
    gateway: &Gateway,
    service_id: Uuid,
    request: &ExecuteRequest,
) -> Result<JsonResponse, ApiError> {
    let job = match plan(gateway, service_id, request).await {
        Ok(plan) => plan.job,
        Err(error) if error.error_code == "CONTEXT_EXCEEDED" => {
            let mut body = error.body();
            body["valid"] = json!(false);
            return Ok(JsonResponse::new(200, body));
        }
        Err(error) => return Err(error),
    };
    let settings = &job.settings;
    // Every batch sends its prompt and may generate up to half the generation budget.
    let estimated_tokens = u64::from(job.input_tokens)
        + u64::from(job.progress.total_batches)
            * (u64::from(settings.prompt_tokens) + u64::from(settings.max_generation_length) / 2);
    Ok(JsonResponse::new(
        200,
        json!({
            "valid": true,
            "service_id": job.service_id,
            "flavor_id": job.flavor_id,
            "flavor_name": job.flavor_name,
            "processing_mode": job.processing_mode,
            "input_tokens": job.input_tokens,
            "context_available": job.context_available,
            "tokenizer": settings.tokenizer,
            "total_turns": job.progress.total_turns,
            "estimated_batches": job.progress.total_batches,
            "estimated_tokens": estimated_tokens,
            "estimated_cost": settings
                .estimated_cost_per_1k_tokens
                .map(|rate| round6(estimated_tokens as f64 / 1000.0 * rate)),
        }),
    ))
}
