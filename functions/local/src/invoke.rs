//! Client for the Lambda Invoke API served by `cargo lambda watch`.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

/// Why an invocation produced no usable result.
#[derive(Debug)]
pub enum InvokeError {
    /// The Invoke API could not be reached or did not answer in time.
    Transport(String),
    /// The function failed (`X-Amz-Function-Error` or a non-2xx status); `body` is its error.
    Function {
        /// HTTP status of the Invoke API response.
        status: u16,
        /// The error body as returned (usually `{"errorType", "errorMessage"}`).
        body: String,
    },
    /// The function returned something that is not JSON.
    InvalidResult(String),
}

impl fmt::Display for InvokeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport(reason) => write!(formatter, "invoke failed: {reason}"),
            Self::Function { status, body } => {
                write!(formatter, "function error (status {status}): {body}")
            }
            Self::InvalidResult(reason) => {
                write!(formatter, "function result is not JSON: {reason}")
            }
        }
    }
}

impl std::error::Error for InvokeError {}

/// Invokes functions by name through `POST {base}/2015-03-31/functions/{name}/invocations`.
#[derive(Clone, Debug)]
pub struct Invoker {
    base_url: String,
    http: reqwest::Client,
}

impl Invoker {
    /// Creates an invoker for the Invoke API at `base_url` (e.g. `http://127.0.0.1:9000`);
    /// each invocation may take up to `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, InvokeError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|error| InvokeError::Transport(error.to_string()))?;
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// The Invoke API base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Invokes `function` synchronously with `event` and returns its result JSON
    /// (`null` for an empty result).
    pub async fn invoke(&self, function: &str, event: &Value) -> Result<Value, InvokeError> {
        let url = format!(
            "{}/2015-03-31/functions/{function}/invocations",
            self.base_url
        );
        let response = self
            .http
            .post(&url)
            .json(event)
            .send()
            .await
            .map_err(|error| InvokeError::Transport(format!("{url}: {}", with_causes(&error))))?;
        let status = response.status();
        let function_error = response.headers().contains_key("x-amz-function-error");
        let body = response.bytes().await.map_err(|error| {
            InvokeError::Transport(format!(
                "{url}: reading the result: {}",
                with_causes(&error)
            ))
        })?;
        if function_error || !status.is_success() {
            return Err(InvokeError::Function {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body).map_err(|error| InvokeError::InvalidResult(error.to_string()))
    }
}

/// `error` followed by its chain of causes (reqwest's own message omits "connection refused").
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}
