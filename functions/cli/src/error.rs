//! Errors of the client, how they read, and the exit code of each.

use std::fmt;

use serde_json::Value;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the job failed or was cancelled.
pub const EXIT_JOB_FAILED: u8 = 1;
/// Exit code: bad command line (clap's own code for usage errors).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the API answered with a 4xx or 5xx (or something that is not its API).
pub const EXIT_API: u8 = 3;
/// Exit code: the gateway could not be reached.
pub const EXIT_UNREACHABLE: u8 = 4;
/// Exit code: `--timeout` passed.
pub const EXIT_TIMEOUT: u8 = 5;

/// Everything that stops a command.
#[derive(Debug)]
pub enum CliError {
    /// A bad command line that clap cannot see (e.g. no WebSocket URL can be derived).
    Usage(String),
    /// The API answered with an error status.
    Api(ApiError),
    /// A resource named on the command line does not exist (e.g. an unknown service name).
    NotFound(String),
    /// The gateway could not be reached at `url`.
    Unreachable {
        /// What was called.
        url: String,
        /// Why it failed, readable.
        reason: String,
    },
    /// `--timeout` passed while doing `what`.
    Timeout {
        /// What was going on.
        what: String,
    },
    /// An answer that is not what the API documents (not JSON, missing fields).
    Protocol(String),
    /// The job ended failed or cancelled.
    JobFailed {
        /// The job id.
        job_id: String,
        /// `failed` or `cancelled`.
        status: String,
        /// `error_code: error` of the job, when it has one.
        reason: Option<String>,
    },
    /// A local file could not be read or written.
    Io {
        /// Which file (or stdin/stdout).
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// An error answer of the API: status, `error_code` and `detail`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// The API's `error_code`, when the body has one.
    pub code: Option<String>,
    /// Readable lines: the `detail` string, or one `loc: msg` line per validation error.
    pub details: Vec<String>,
}

impl ApiError {
    /// Reads an error answer: `{"detail": "...", "error_code": "..."}`, FastAPI's 422
    /// `{"detail": [{loc, msg, type}]}`, or any other body (shown shortened).
    pub fn from_body(status: u16, body: &[u8]) -> ApiError {
        let text = String::from_utf8_lossy(body);
        let Ok(json) = serde_json::from_slice::<Value>(body) else {
            return ApiError {
                status,
                code: None,
                details: vec![shorten(text.trim(), 300)],
            };
        };
        let code = json
            .get("error_code")
            .and_then(Value::as_str)
            .map(str::to_string);
        let details = match json.get("detail").or_else(|| json.get("message")) {
            Some(Value::String(detail)) => vec![detail.clone()],
            Some(Value::Array(items)) => items.iter().map(validation_line).collect(),
            Some(other) => vec![other.to_string()],
            None => vec![shorten(&json.to_string(), 300)],
        };
        ApiError {
            status,
            code,
            details,
        }
    }
}

/// One FastAPI validation error as `body.input: field required`.
fn validation_line(item: &Value) -> String {
    let loc = match item.get("loc") {
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|part| match part {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join("."),
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    let msg = item
        .get("msg")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| item.to_string());
    if loc.is_empty() {
        msg
    } else {
        format!("{loc}: {msg}")
    }
}

fn shorten(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return if text.is_empty() {
            "(empty body)".into()
        } else {
            text.to_string()
        };
    }
    let cut: String = text.chars().take(max_chars).collect();
    format!("{cut}…")
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self
            .code
            .clone()
            .unwrap_or_else(|| format!("HTTP {}", self.status));
        match self.details.as_slice() {
            [one] => write!(f, "{code}: {one}"),
            lines => {
                write!(f, "{code} ({}):", self.status)?;
                for line in lines {
                    write!(f, "\n  {line}")?;
                }
                Ok(())
            }
        }
    }
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Api(_) | CliError::NotFound(_) | CliError::Protocol(_) => EXIT_API,
            CliError::Unreachable { .. } => EXIT_UNREACHABLE,
            CliError::Timeout { .. } => EXIT_TIMEOUT,
            CliError::JobFailed { .. } => EXIT_JOB_FAILED,
            // A local file problem is the caller's input: like a usage error.
            CliError::Io { .. } => EXIT_USAGE,
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<String>, source: std::io::Error) -> CliError {
        CliError::Io {
            path: path.into(),
            source,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(message) => write!(f, "{message}"),
            CliError::Api(error) => write!(f, "{error}"),
            CliError::NotFound(message) => write!(f, "{message}"),
            CliError::Unreachable { url, reason } => {
                write!(f, "cannot reach the gateway at {url}: {reason}")
            }
            CliError::Timeout { what } => write!(f, "timed out {what}"),
            CliError::Protocol(message) => {
                write!(f, "unexpected answer from the gateway: {message}")
            }
            CliError::JobFailed {
                job_id,
                status,
                reason,
            } => match reason {
                Some(reason) => write!(f, "job {job_id} {status}: {reason}"),
                None => write!(f, "job {job_id} {status}"),
            },
            CliError::Io { path, source } => write!(f, "{path}: {source}"),
        }
    }
}

impl std::error::Error for CliError {}

/// Result of the client's operations.
pub type CliResult<T> = Result<T, CliError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_error_reads_code_colon_detail() {
        let error = ApiError::from_body(
            404,
            br#"{"detail": "Service not found: 123", "error_code": "SERVICE_NOT_FOUND"}"#,
        );
        assert_eq!(
            error.to_string(),
            "SERVICE_NOT_FOUND: Service not found: 123"
        );
        assert_eq!(CliError::Api(error).exit_code(), 3);
    }

    #[test]
    fn a_422_lists_each_location_and_message() {
        let body = br#"{"detail": [
            {"loc": ["body", "input"], "msg": "field required", "type": "missing"},
            {"loc": ["body", "context", "tags", 0, "name"], "msg": "must not be empty", "type": "value_error"}
        ], "error_code": "VALIDATION_ERROR"}"#;
        let error = ApiError::from_body(422, body);
        assert_eq!(
            error.to_string(),
            "VALIDATION_ERROR (422):\n  body.input: field required\n  body.context.tags.0.name: must not be empty"
        );
        // Without an error_code the status names it.
        let error = ApiError::from_body(
            422,
            br#"{"detail": [{"loc": ["query", "page"], "msg": "bad", "type": "x"}]}"#,
        );
        assert_eq!(error.to_string(), "HTTP 422: query.page: bad");
    }

    #[test]
    fn a_body_that_is_not_json_is_shown_shortened() {
        let error = ApiError::from_body(502, b"<html>Bad Gateway</html>");
        assert_eq!(error.to_string(), "HTTP 502: <html>Bad Gateway</html>");
        let long = "x".repeat(1000);
        let error = ApiError::from_body(500, long.as_bytes());
        assert!(error.to_string().ends_with('…'));
        assert!(error.to_string().len() < 400);
        assert_eq!(
            ApiError::from_body(503, b"").to_string(),
            "HTTP 503: (empty body)"
        );
    }

    #[test]
    fn exit_codes() {
        assert_eq!(CliError::Usage("x".into()).exit_code(), EXIT_USAGE);
        assert_eq!(CliError::NotFound("x".into()).exit_code(), EXIT_API);
        assert_eq!(CliError::Protocol("x".into()).exit_code(), EXIT_API);
        let unreachable = CliError::Unreachable {
            url: "http://127.0.0.1:1/api/v1/services".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(unreachable.exit_code(), EXIT_UNREACHABLE);
        assert_eq!(
            unreachable.to_string(),
            "cannot reach the gateway at http://127.0.0.1:1/api/v1/services: connection refused"
        );
        assert_eq!(
            CliError::Timeout {
                what: "waiting for job j".into()
            }
            .exit_code(),
            EXIT_TIMEOUT
        );
        let failed = CliError::JobFailed {
            job_id: "j".into(),
            status: "failed".into(),
            reason: Some("LLM_ERROR: provider down".into()),
        };
        assert_eq!(failed.exit_code(), EXIT_JOB_FAILED);
        assert_eq!(failed.to_string(), "job j failed: LLM_ERROR: provider down");
    }
}
