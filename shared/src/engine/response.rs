//! A JSON response: a status and a body, convertible to `http::Response` for any HTTP front
//! end. Error bodies are built at the edge ([`crate::api::response`]).

use serde_json::Value;

/// A JSON HTTP response, convertible to `http::Response` for any HTTP front end.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonResponse {
    pub status: u16,
    pub body: Value,
}

impl JsonResponse {
    /// A response with the given status and body.
    pub fn new(status: u16, body: Value) -> Self {
        JsonResponse { status, body }
    }

    /// The `http` response with a JSON content type (no body for 204).
    pub fn into_http(self) -> http::Response<String> {
        let body = if self.status == 204 {
            String::new()
        } else {
            self.body.to_string()
        };
        http::Response::builder()
            .status(self.status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .unwrap_or_else(|_| http::Response::new(String::new()))
    }
}
