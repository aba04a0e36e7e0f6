//! `POST /api/v1/services/{id}/execute` (202 with the job id and token figures) and
//! `POST .../validate-execution` (the same checks as a dry run that writes nothing). The
//! routes are [`gateway_core::api::execute::TABLE`].

use gateway_core::api::ApiRequest;
use gateway_core::engine::{Gateway, JsonResponse};
use lambda_http::{Request, RequestExt};

/// Handles one API Gateway request.
pub async fn handle(gateway: &Gateway, request: Request) -> JsonResponse {
    let path = request.raw_http_path().to_owned();
    let request = ApiRequest::from_http(&path, request);
    gateway_core::api::execute::TABLE
        .handle(gateway, request)
        .await
}
