//! Client for the Lambda Invoke API served by `cargo lambda watch`.
//!
//! Like Lambda, a function runs up to its concurrency limit of invocations at once (one per
//! execution environment: the launcher starts that many processes of each function, all
//! polling the same Runtime API); further invocations wait here for a free environment
//! rather than in `cargo lambda watch`'s queue. Every invocation has a deadline, because
//! `cargo lambda watch` never answers an invocation whose runtime process died (SIGKILL,
//! crash): the caller picks it (API Gateway's 29 s, an SQS message's visibility timeout).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Semaphore;

/// Invocations of one function at once when nothing else is configured.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// Why an invocation produced no usable result.
#[derive(Debug)]
pub enum InvokeError {
    /// The Invoke API could not be reached, or the connection broke.
    Transport(String),
    /// No result within the deadline: the function is slow, or its runtime died (Lambda
    /// would report `Task timed out`). Counts as a failed invocation.
    Timeout {
        /// The function invoked.
        function: String,
        /// The deadline that passed (waiting for a free instance included).
        after: Duration,
    },
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
            Self::Timeout { function, after } => write!(
                formatter,
                "{function} did not answer within {} ms (slow, or its runtime died)",
                after.as_millis()
            ),
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

/// Invokes functions by name through `POST {base}/2015-03-31/functions/{name}/invocations`,
/// at most `concurrency` at once per function. Clones share the limits.
#[derive(Clone, Debug)]
pub struct Invoker {
    base_url: String,
    http: reqwest::Client,
    timeout: Duration,
    concurrency: usize,
    slots: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl Invoker {
    /// Creates an invoker for the Invoke API at `base_url` (e.g. `http://127.0.0.1:9000`);
    /// an invocation may take up to `timeout` (the longest deadline of any caller), and
    /// [`DEFAULT_CONCURRENCY`] invocations of a function run at once.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, InvokeError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|error| InvokeError::Transport(error.to_string()))?;
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            http,
            timeout,
            concurrency: DEFAULT_CONCURRENCY,
            slots: Arc::default(),
        })
    }

    /// The same invoker with at most `concurrency` (at least 1) invocations per function at
    /// once: the number of instances of each function the launcher started.
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self.slots = Arc::default();
        self
    }

    /// The Invoke API base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The longest an invocation may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Invocations of one function at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Invokes `function` synchronously with `event` and returns its result JSON
    /// (`null` for an empty result), within the invoker's timeout.
    pub async fn invoke(&self, function: &str, event: &Value) -> Result<Value, InvokeError> {
        self.invoke_within(function, event, self.timeout).await
    }

    /// Like [`Invoker::invoke`], but fails with [`InvokeError::Timeout`] unless the result
    /// arrives within `deadline` (capped by the invoker's timeout), the wait for a free
    /// instance included.
    pub async fn invoke_within(
        &self,
        function: &str,
        event: &Value,
        deadline: Duration,
    ) -> Result<Value, InvokeError> {
        let after = deadline.min(self.timeout);
        let slots = self.slots(function);
        let call = async {
            let _slot = slots
                .acquire()
                .await
                .map_err(|error| InvokeError::Transport(error.to_string()))?;
            self.call(function, event).await
        };
        tokio::time::timeout(after, call).await.unwrap_or_else(|_| {
            Err(InvokeError::Timeout {
                function: function.to_string(),
                after,
            })
        })
    }

    /// The concurrency limit of `function`.
    fn slots(&self, function: &str) -> Arc<Semaphore> {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        slots
            .entry(function.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.concurrency)))
            .clone()
    }

    async fn call(&self, function: &str, event: &Value) -> Result<Value, InvokeError> {
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
