//! API errors: an HTTP status, a stable `error_code`, a `detail` that names the problem,
//! and optional extra fields (token figures, the offending field).

use serde_json::{json, Map, Value};

use crate::ports::IoError;

/// An error returned to API callers as `{"detail": ..., "error_code": ..., ...extra}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub error_code: &'static str,
    pub detail: String,
    pub extra: Map<String, Value>,
}

impl ApiError {
    /// An error with no extra fields.
    pub fn new(status: u16, error_code: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            error_code,
            detail: detail.into(),
            extra: Map::new(),
        }
    }

    /// 400 for a request field that is missing or invalid; the body names the field.
    pub fn invalid_field(field: &str, problem: impl std::fmt::Display) -> Self {
        Self::new(400, "INVALID_REQUEST", format!("{field}: {problem}")).with("field", field)
    }

    /// 404 for an unknown (or foreign) resource.
    pub fn not_found(what: &str, id: impl std::fmt::Display) -> Self {
        let code = match what {
            "service" => "SERVICE_NOT_FOUND",
            "flavor" => "FLAVOR_NOT_FOUND",
            "job" => "JOB_NOT_FOUND",
            "model" => "MODEL_NOT_FOUND",
            "provider" => "PROVIDER_NOT_FOUND",
            _ => "NOT_FOUND",
        };
        Self::new(404, code, format!("{what} '{id}' not found"))
    }

    /// 503 for a dependency that failed (storage, queue); safe to retry.
    pub fn unavailable(error: &IoError) -> Self {
        Self::new(
            503,
            "SERVICE_UNAVAILABLE",
            format!("temporarily unavailable ({})", error.operation),
        )
    }

    /// Adds an extra field to the body.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// 422 in the shape FastAPI gives validation errors (`detail` is a list of
    /// `{loc, msg, type}`), plus `field` and a readable message in the log line.
    /// `location` is `body`, `query` or `path`.
    pub fn validation(location: &str, field: &str, problem: impl std::fmt::Display) -> Self {
        let message = problem.to_string();
        let mut loc = vec![json!(location)];
        loc.extend(
            field
                .split('.')
                .filter(|part| !part.is_empty())
                .map(|part| {
                    part.parse::<u64>()
                        .map_or_else(|_| json!(part), |index| json!(index))
                }),
        );
        let detail = json!([{"loc": loc, "msg": message, "type": "value_error"}]);
        Self::new(422, "VALIDATION_ERROR", format!("{field}: {message}"))
            .with("field", field)
            .with("detail", detail)
    }

    /// 409 with a plain `detail` message.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(409, "CONFLICT", detail)
    }

    /// The JSON body: `detail` and `error_code`, then the extra fields (which may replace
    /// `detail` with a structured one).
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("detail".into(), json!(self.detail));
        body.insert("error_code".into(), json!(self.error_code));
        body.extend(self.extra.clone());
        Value::Object(body)
    }
}

impl From<IoError> for ApiError {
    fn from(error: IoError) -> Self {
        tracing::error!(operation = error.operation, error = %error.message, "dependency failure");
        ApiError::unavailable(&error)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.error_code, self.detail)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_detail_code_and_extras() {
        let error = ApiError::invalid_field("input", "must not be empty").with("max", 3);
        assert_eq!(error.status, 400);
        assert_eq!(
            error.body(),
            json!({"detail": "input: must not be empty", "error_code": "INVALID_REQUEST", "field": "input", "max": 3})
        );
        assert_eq!(
            ApiError::not_found("flavor", "x").error_code,
            "FLAVOR_NOT_FOUND"
        );
    }

    #[test]
    fn validation_errors_have_the_fastapi_shape() {
        let error = ApiError::validation("body", "flavors.1.temperature", "must be from 0 to 2");
        assert_eq!(error.status, 422);
        assert_eq!(
            error.body(),
            json!({
                "detail": [{"loc": ["body", "flavors", 1, "temperature"], "msg": "must be from 0 to 2", "type": "value_error"}],
                "error_code": "VALIDATION_ERROR",
                "field": "flavors.1.temperature"
            })
        );
        assert_eq!(error.detail, "flavors.1.temperature: must be from 0 to 2");
    }
}

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

impl From<ApiError> for JsonResponse {
    fn from(error: ApiError) -> Self {
        JsonResponse {
            status: error.status,
            body: error.body(),
        }
    }
}

impl From<Result<JsonResponse, ApiError>> for JsonResponse {
    fn from(result: Result<JsonResponse, ApiError>) -> Self {
        result.unwrap_or_else(Into::into)
    }
}
