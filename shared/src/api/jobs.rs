//! Routes of the `jobs` function: job status, metrics, listing, cancel and delete, result
//! versions.

use serde_json::json;

use super::request::ApiRequest;
use super::routes::{route, RouteTable};
use crate::domain::JobStatus;
use crate::engine::error::{EngineError, EngineResult, Resource};
use crate::engine::health;
use crate::engine::lifecycle::{cancel, delete};
use crate::engine::sweeper;
use crate::engine::versions;
use crate::engine::views::{
    job_detail, job_json, job_metrics, list_jobs, list_jobs_numbered, ResultFormat,
    DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE,
};
use crate::engine::JsonResponse;
use crate::ports::JobQuery;

/// The jobs function's routes.
pub static TABLE: RouteTable = RouteTable {
    function: "jobs",
    routes: &[
        route!(Get "/healthcheck", "Dependencies reachable (DynamoDB, S3, SQS): 200 healthy, 503 unhealthy", None, 200 => "object",
        |g, _r| {
            let (healthy, body) = health::check(g).await;
            Ok(JsonResponse::new(if healthy { 200 } else { 503 }, body))
        }),
        route!(Post "/api/v1/jobs/cleanup-orphaned", "Operator: send again the steps whose worker went silent, fail jobs stuck after several re-sends (also run every minute by a schedule)", None, 200 => "object",
        |g, r| {
            operator_only(r)?;
            let mut report = sweeper::sweep(g, g.limits.silent_after, g.limits.lost_after).await?;
            report["cleaned_count"] = json!(report["requeued_count"].as_u64().unwrap_or(0) + report["failed_count"].as_u64().unwrap_or(0));
            Ok(JsonResponse::new(200, report))
        }),
        route!(Post "/api/v1/jobs/cleanup-stale", "Operator: like cleanup-orphaned for jobs unchanged for timeout_minutes (5-1440, default 30)", None, 200 => "object",
        |g, r| {
            operator_only(r)?;
            let minutes = timeout_minutes(r)?;
            let age = std::time::Duration::from_secs(minutes * 60);
            let mut report = sweeper::sweep(g, age, age).await?;
            report["marked_count"] = report["failed_count"].clone();
            report["marked_jobs"] = report["failed_jobs"].clone();
            Ok(JsonResponse::new(200, report))
        }),
        route!(Post "/api/v1/jobs/cleanup-expired", "Operator: delete the jobs whose expiry has passed, with their objects", None, 200 => "object",
        |g, r| {
            operator_only(r)?;
            Ok(JsonResponse::new(200, sweeper::delete_expired(g).await?))
        }),
        route!(Get "/api/v1/jobs", "List jobs, newest first: cursor pages (page_size, cursor → next_cursor), or the reference's numbered pages (page, page_size → total, total_pages)", None, 200 => "object",
        |g, r| {
            let query = job_query(r)?;
            Ok(JsonResponse::new(200, match numbered_page(r, &query)? {
                Some(page) => list_jobs_numbered(g, query, page).await?,
                None => list_jobs(g, query).await?,
            }))
        }),
        route!(Get "/api/v1/jobs/{id}", "Job status, progress, result (format=raw|json|md|text) and metrics", None, 200 => "object",
            |g, r| Ok(JsonResponse::new(200, job_detail(g, r.id("id", Resource::Job)?, r.organization_id()?, ResultFormat::parse(r.query("format"))?).await?))),
        route!(Get "/api/v1/jobs/{id}/metrics", "Token metrics of every pass, and the final summary of a completed job", None, 200 => "object",
            |g, r| Ok(JsonResponse::new(200, job_metrics(g, r.id("id", Resource::Job)?, r.organization_id()?).await?))),
        route!(Delete "/api/v1/jobs/{id}", "Delete a terminal job and its objects", None, 200 => "object",
            |g, r| Ok(JsonResponse::new(200, delete(g, r.id("id", Resource::Job)?, r.organization_id()?).await?))),
        route!(Post "/api/v1/jobs/{id}/cancel", "Cancel a job (stops at its next step)", None, 200 => "object",
            |g, r| Ok(JsonResponse::new(200, job_json(&cancel(g, r.id("id", Resource::Job)?, r.organization_id()?).await?)))),
        route!(Patch "/api/v1/jobs/{id}/result", "Edit a completed job's result: a new version, made current; returns the job", Some("object"), 200 => "object",
            |g, r| Ok(JsonResponse::new(200, versions::edit_result(g, r.id("id", Resource::Job)?, r.organization_id()?, r.body()).await?))),
        route!(Get "/api/v1/jobs/{id}/versions", "Versions of a completed job's result, oldest first", None, 200 => "array:object",
            |g, r| Ok(JsonResponse::new(200, versions::list_versions(g, r.id("id", Resource::Job)?, r.organization_id()?).await?))),
        route!(Get "/api/v1/jobs/{id}/versions/{version_number}", "One version of a job's result, with its content", None, 200 => "object",
            |g, r| Ok(JsonResponse::new(200, versions::get_version(g, r.id("id", Resource::Job)?, r.organization_id()?, versions::version_number(r.param("version_number"))?).await?))),
        route!(Post "/api/v1/jobs/{id}/versions/{version_number}/restore", "Restore a version: a new version with its content, made current; returns the job", None, 200 => "object",
            |g, r| Ok(JsonResponse::new(200, versions::restore_version(g, r.id("id", Resource::Job)?, r.organization_id()?, versions::version_number(r.param("version_number"))?).await?))),
        route!(Delete "/api/v1/jobs/{id}/versions/{version_number}", "Delete a version (neither the current one nor version 1)", None, 200 => "object",
            |g, r| Ok(JsonResponse::new(200, versions::delete_version(g, r.id("id", Resource::Job)?, r.organization_id()?, versions::version_number(r.param("version_number"))?).await?))),
    ],
};

/// The cleanup routes act on every organization's jobs: the operator's (no organization).
fn operator_only(request: &ApiRequest) -> EngineResult<()> {
    match request.organization_id()? {
        None => Ok(()),
        Some(_) => Err(EngineError::Forbidden(
            "job cleanup is an operator action; call it without organization_id".into(),
        )),
    }
}

/// `timeout_minutes` of `cleanup-stale`: 5 to 1440, default 30.
fn timeout_minutes(request: &ApiRequest) -> EngineResult<u64> {
    match request.query("timeout_minutes") {
        None => Ok(30),
        Some(value) => value
            .parse::<u64>()
            .ok()
            .filter(|minutes| (5..=1440).contains(minutes))
            .ok_or_else(|| {
                EngineError::invalid_field("timeout_minutes", "must be an integer from 5 to 1440")
            }),
    }
}

/// The filters and page of `GET /api/v1/jobs`.
/// The reference's `page` (from 1), when asked for; never with a cursor.
fn numbered_page(request: &ApiRequest, query: &JobQuery) -> EngineResult<Option<usize>> {
    let Some(page) = request.query("page") else {
        return Ok(None);
    };
    if query.cursor.is_some() {
        return Err(EngineError::invalid_field(
            "page",
            "give page or cursor, not both",
        ));
    }
    page.parse::<usize>()
        .ok()
        .filter(|page| *page >= 1)
        .map(Some)
        .ok_or_else(|| EngineError::invalid_field("page", "must be an integer from 1"))
}

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
