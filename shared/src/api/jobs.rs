//! Routes of the `jobs` function: job status, listing, cancel and delete.

use futures_util::FutureExt;

use super::request::ApiRequest;
use super::routes::{Method, Route, RouteDoc, RouteTable};
use crate::domain::JobStatus;
use crate::engine::error::{EngineError, EngineResult, Resource};
use crate::engine::health;
use crate::engine::lifecycle::{cancel, delete};
use crate::engine::views::{job_detail, job_json, list_jobs, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::engine::{Gateway, JsonResponse};
use crate::ports::JobQuery;

/// The jobs function's routes.
pub static TABLE: RouteTable = RouteTable {
    function: "jobs",
    routes: &[
        Route {
            method: Method::Get,
            path: "/healthcheck",
            doc: RouteDoc {
                summary: "Dependencies reachable (DynamoDB, S3, SQS): 200 healthy, 503 unhealthy",
                request: None,
                status: 200,
                response: "object",
            },
            handler: |gateway, _request| {
                async move {
                    let (healthy, body) = health::check(gateway).await;
                    Ok(JsonResponse::new(if healthy { 200 } else { 503 }, body))
                }
                .boxed()
            },
        },
        Route {
            method: Method::Get,
            path: "/api/v1/jobs",
            doc: RouteDoc {
                summary: "List jobs, newest first (cursor pagination)",
                request: None,
                status: 200,
                response: "object",
            },
            handler: |gateway, request| list(gateway, request).boxed(),
        },
        Route {
            method: Method::Get,
            path: "/api/v1/jobs/{id}",
            doc: RouteDoc {
                summary: "Job status, progress, result and metrics",
                request: None,
                status: 200,
                response: "object",
            },
            handler: |gateway, request| {
                async move {
                    let id = request.id("id", Resource::Job)?;
                    let body = job_detail(gateway, id, request.organization_id()?).await?;
                    Ok(JsonResponse::new(200, body))
                }
                .boxed()
            },
        },
        Route {
            method: Method::Delete,
            path: "/api/v1/jobs/{id}",
            doc: RouteDoc {
                summary: "Delete a terminal job and its objects",
                request: None,
                status: 200,
                response: "object",
            },
            handler: |gateway, request| {
                async move {
                    let id = request.id("id", Resource::Job)?;
                    let body = delete(gateway, id, request.organization_id()?).await?;
                    Ok(JsonResponse::new(200, body))
                }
                .boxed()
            },
        },
        Route {
            method: Method::Post,
            path: "/api/v1/jobs/{id}/cancel",
            doc: RouteDoc {
                summary: "Cancel a job (stops at its next step)",
                request: None,
                status: 200,
                response: "object",
            },
            handler: |gateway, request| {
                async move {
                    let id = request.id("id", Resource::Job)?;
                    let job = cancel(gateway, id, request.organization_id()?).await?;
                    Ok(JsonResponse::new(200, job_json(&job)))
                }
                .boxed()
            },
        },
    ],
};

async fn list(gateway: &Gateway, request: &ApiRequest) -> EngineResult<JsonResponse> {
    let query = job_query(request)?;
    Ok(JsonResponse::new(200, list_jobs(gateway, query).await?))
}

/// The filters and page of `GET /api/v1/jobs`.
fn job_query(request: &ApiRequest) -> EngineResult<JobQuery> {
    let service_id = request
        .query("service_id")
        .map(|id| {
            uuid::Uuid::parse_str(id)
                .map_err(|_| EngineError::invalid_field("service_id", "must be a UUID"))
        })
        .transpose()?;
    let status = request
        .query("status")
        .map(|status| {
            JobStatus::parse(status).ok_or_else(|| {
                EngineError::invalid_field(
                    "status",
                    "must be one of queued, processing, completed, failed, cancelled",
                )
            })
        })
        .transpose()?;
    let page_size = match request.query("page_size") {
        None => DEFAULT_PAGE_SIZE,
        Some(size) => size
            .parse::<usize>()
            .ok()
            .filter(|size| (1..=MAX_PAGE_SIZE).contains(size))
            .ok_or_else(|| {
                EngineError::invalid_field(
                    "page_size",
                    format!("must be an integer from 1 to {MAX_PAGE_SIZE}"),
                )
            })?,
    };
    Ok(JobQuery {
        organization_id: request.organization_id()?.map(str::to_string),
        service_id,
        status,
        page_size,
        cursor: request.query("cursor").map(str::to_string),
    })
}
