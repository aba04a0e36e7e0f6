//! The catalog API (providers, models, prompts, prompt and service types, services and
//! flavors, flavor presets) and `/openapi.json`. The routes, their handlers and their
//! documentation are one table, [`gateway_core::api::catalog::TABLE`].

use gateway_core::api::ApiRequest;
use gateway_core::engine::{Gateway, JsonResponse};
use lambda_http::{Request, RequestExt};

/// Handles one API Gateway request.
pub async fn handle(gateway: &Gateway, request: Request) -> JsonResponse {
    let path = request.raw_http_path().to_owned();
    let request = ApiRequest::from_http(&path, request);
    gateway_core::api::catalog::TABLE
        .handle(gateway, request)
        .await
}
