//! Document templates (`/api/v1/document-templates…`) and exports of a job's result
//! (`GET /api/v1/jobs/{id}/export/{docx|pdf|html}`, `POST /api/v1/jobs/{id}/export-preview`),
//! rendered natively (no office suite). The routes are [`gateway_core::api::export::SERVED`].

use gateway_core::api::ApiRequest;
use gateway_core::engine::{Gateway, HttpBody, JsonResponse};
use lambda_http::{Body, Request, RequestExt, Response};

/// Handles one API Gateway request.
pub async fn handle(gateway: &Gateway, request: Request) -> JsonResponse {
    let path = request.raw_http_path().to_owned();
    let request = ApiRequest::from_http(&path, request);
    gateway_core::api::export::SERVED
        .handle(gateway, request)
        .await
}

/// The Lambda response: JSON as text, files as binary (API Gateway decodes the base64).
pub fn into_lambda(response: JsonResponse) -> Response<Body> {
    response.into_http_body().map(|body| match body {
        HttpBody::Text(text) => Body::Text(text),
        HttpBody::Binary(bytes) => Body::Binary(bytes),
    })
}
