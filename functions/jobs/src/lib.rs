//! `GET /api/v1/jobs/{id}` (status, progress, result, metrics), `GET /api/v1/jobs`
//! (newest first, filtered, paginated), `POST /api/v1/jobs/{id}/cancel` and
//! `DELETE /api/v1/jobs/{id}`, and the result versions (`PATCH /api/v1/jobs/{id}/result`,
//! `/api/v1/jobs/{id}/versions[/{n}[/restore]]`). The routes are
//! [`gateway_core::api::jobs::TABLE`].

use gateway_core::api::ApiRequest;
use gateway_core::engine::{Gateway, JsonResponse};
use lambda_http::{Request, RequestExt};

/// Handles one API Gateway request.
pub async fn handle(gateway: &Gateway, request: Request) -> JsonResponse {
    let path = request.raw_http_path().to_owned();
    let request = ApiRequest::from_http(&path, request);
    gateway_core::api::jobs::TABLE
        .handle(gateway, request)
        .await
}
