//! `GET /api/v1/jobs/{id}` (status, progress, result, metrics), `GET /api/v1/jobs`
//! (newest first, filtered, paginated), `POST /api/v1/jobs/{id}/cancel` and
//! `DELETE /api/v1/jobs/{id}`. All logic lives in `gateway_core`.

use gateway_core::domain::JobStatus;
use gateway_core::engine::execute::validate_organization_id;
use gateway_core::engine::lifecycle::{cancel, delete};
use gateway_core::engine::views::job_json;
use gateway_core::engine::views::{job_detail, list_jobs, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use gateway_core::engine::Gateway;
use gateway_core::error::{ApiError, JsonResponse};
use gateway_core::ports::JobQuery;
use lambda_http::http::Method;
use lambda_http::{Request, RequestExt};
use uuid::Uuid;

/// Handles one API Gateway request.
pub async fn handle(gateway: &Gateway, request: Request) -> JsonResponse {
    route(gateway, request).await.into()
}

async fn route(gateway: &Gateway, request: Request) -> Result<JsonResponse, ApiError> {
    let query = request.query_string_parameters();
    let organization_id = query.first("organization_id");
    if let Some(org) = organization_id {
        validate_organization_id(org)?;
    }
    let params = request.path_parameters();
    let job_id = params
        .first("id")
        .map(|id| Uuid::parse_str(id).map_err(|_| ApiError::not_found("job", id)))
        .transpose()?;
    let method = request.method();
    match (job_id, params.first("proxy"), method) {
        (Some(id), None, &Method::GET) => Ok(JsonResponse::new(
            200,
            job_detail(gateway, id, organization_id).await?,
        )),
        (Some(id), None, &Method::DELETE) => Ok(JsonResponse::new(
            200,
            delete(gateway, id, organization_id).await?,
        )),
        (Some(id), Some("cancel"), &Method::POST) => {
            let job = cancel(gateway, id, organization_id).await?;
            Ok(JsonResponse::new(200, job_json(&job)))
        }
        (None, None, &Method::GET) => list(gateway, &query, organization_id).await,
        (Some(_), Some(action), _) if action != "cancel" => Err(ApiError::new(
            404,
            "NOT_FOUND",
            format!("no action '{action}' on jobs"),
        )),
        _ => Err(ApiError::new(
            405,
            "METHOD_NOT_ALLOWED",
            format!("{method} is not allowed on this path"),
        )),
    }
}

async fn list(
    gateway: &Gateway,
    query: &lambda_http::aws_lambda_events::query_map::QueryMap,
    organization_id: Option<&str>,
) -> Result<JsonResponse, ApiError> {
    let service_id = query
        .first("service_id")
        .map(|id| {
            Uuid::parse_str(id).map_err(|_| ApiError::invalid_field("service_id", "must be a UUID"))
        })
        .transpose()?;
    let status = query
        .first("status")
        .map(|s| {
            JobStatus::parse(s).ok_or_else(|| {
                ApiError::invalid_field(
                    "status",
                    "must be one of queued, processing, completed, failed, cancelled",
                )
            })
        })
        .transpose()?;
    let page_size = match query.first("page_size") {
        None => DEFAULT_PAGE_SIZE,
        Some(size) => size
            .parse::<usize>()
            .ok()
            .filter(|size| (1..=MAX_PAGE_SIZE).contains(size))
            .ok_or_else(|| {
                ApiError::invalid_field(
                    "page_size",
                    format!("must be an integer from 1 to {MAX_PAGE_SIZE}"),
                )
            })?,
    };
    let job_query = JobQuery {
        organization_id: organization_id.map(str::to_string),
        service_id,
        status,
        page_size,
        cursor: query.first("cursor").map(str::to_string),
    };
    Ok(JsonResponse::new(200, list_jobs(gateway, job_query).await?))
}
