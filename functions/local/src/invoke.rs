//! Client for the Lambda Invoke API served by `cargo lambda watch`.
//!
//! Like Lambda, a function runs up to its concurrency limit of invocations at once (one per
//! execution environment: the launcher starts that many processes of each function, all
//! polling the same Runtime API); further invocations wait here for a free environment
//! rather than in `cargo lambda watch`'s queue. Every invocation has a deadline, because
//! `cargo lambda watch` never answers an invocation whose runtime process died (SIGKILL,
//! crash): the caller picks it (API Gateway's 29 s, an SQS message's visibility timeout).
//!
//! A function that answers in response streaming mode (Lambda's `StreamResponse`) is
//! answered by `cargo lambda watch` with the status and headers of its metadata prelude,
//! then the body as the function writes it (`Lambda-Runtime-Function-Response-Mode:
//! streaming`); [`Invoker::invoke_answer`] hands such a body on as it arrives.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The header `cargo lambda watch` marks a streamed answer with.
pub const STREAMING_MODE_HEADER: &str = "lambda-runtime-function-response-mode";

/// What an invocation answered.
pub enum Answer {
    /// A result (JSON; `null` when empty).
    Result(Value),
    /// A streamed HTTP answer: the status and headers of its metadata prelude, then the
    /// body as the function produces it. The function's concurrency slot is held until
    /// the body ends or is dropped.
    Streamed {
        status: StatusCode,
        headers: HeaderMap,
        body: BoxStream<'static, Result<Bytes, InvokeError>>,
    },
}

impl fmt::Debug for Answer {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Result(value) => formatter.debug_tuple("Result").field(value).finish(),
            Self::Streamed { status, .. } => formatter
                .debug_struct("Streamed")
                .field("status", status)
                .finish_non_exhaustive(),
        }
    }
}

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
    /// instance included. A streamed answer is not a result here
    /// ([`InvokeError::InvalidResult`]).
    pub async fn invoke_within(
        &self,
        function: &str,
        event: &Value,
        deadline: Duration,
    ) -> Result<Value, InvokeError> {
        let payload = serde_json::to_vec(event)
            .map_err(|error| InvokeError::Transport(format!("encode the event: {error}")))?;
        match self.invoke_answer(function, payload, deadline).await? {
            Answer::Result(value) => Ok(value),
            Answer::Streamed { .. } => Err(InvokeError::InvalidResult(format!(
                "{function} answered with a stream where a result was expected"
            ))),
        }
    }

    /// Invokes `function` with `payload` (an event as JSON, encoded once by the caller):
    /// its result, or its streamed answer once the status and headers are in. `deadline` (capped by the invoker's timeout) bounds the
    /// wait for a free instance and for the result, or for the head of a streamed answer
    /// (whose body then takes as long as the function streams, as with API Gateway's
    /// response streaming).
    pub async fn invoke_answer(
        &self,
        function: &str,
        payload: Vec<u8>,
        deadline: Duration,
    ) -> Result<Answer, InvokeError> {
        let after = deadline.min(self.timeout);
        let slots = self.slots(function);
        let call = async {
            let slot = slots
                .acquire_owned()
                .await
                .map_err(|error| InvokeError::Transport(error.to_string()))?;
            self.call(function, payload, slot).await
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

    async fn call(
        &self,
        function: &str,
        payload: Vec<u8>,
        slot: OwnedSemaphorePermit,
    ) -> Result<Answer, InvokeError> {
        let url = format!(
            "{}/2015-03-31/functions/{function}/invocations",
            self.base_url
        );
        let response = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(payload)
            .send()
            .await
            .map_err(|error| InvokeError::Transport(format!("{url}: {}", with_causes(&error))))?;
        let status = response.status();
        let streamed = response
            .headers()
            .get(STREAMING_MODE_HEADER)
            .is_some_and(|mode| mode == "streaming");
        if streamed {
            let headers = response.headers().clone();
            let body = futures_util::stream::unfold(
                (response, Some(slot), url),
                |(mut response, slot, url)| async move {
                    slot.as_ref()?;
                    match response.chunk().await {
                        Ok(Some(bytes)) => Some((Ok(bytes), (response, slot, url))),
                        // The end frees the function's slot.
                        Ok(None) => None,
                        Err(error) => Some((
                            Err(InvokeError::Transport(format!(
                                "{url}: the streamed answer broke off: {}",
                                with_causes(&error)
                            ))),
                            (response, None, url),
                        )),
                    }
                },
            )
            .boxed();
            return Ok(Answer::Streamed {
                status,
                headers,
                body,
            });
        }
        // A result is read whole before the function's slot is free.
        let _slot = slot;
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
            return Ok(Answer::Result(Value::Null));
        }
        serde_json::from_slice(&body)
            .map(Answer::Result)
            .map_err(|error| InvokeError::InvalidResult(error.to_string()))
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
