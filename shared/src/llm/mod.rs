//! The LLM port: OpenAI-shaped chat requests and answers, whole or streamed, the
//! [`LlmClient`] trait (one attempt), and retries (exponential backoff with full jitter,
//! honouring Retry-After) on 429, 5xx, timeouts and transport errors; never on other 4xx.
//! A streamed answer is retried only until its first token ([`open_stream_with_retries`]).
//! The HTTP adapter is [`openai::OpenAiClient`].

mod openai;
pub mod sse;

pub use openai::OpenAiClient;

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

pub use crate::domain::FailureKind;

/// One chat message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role.
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.to_string(),
            content: content.into(),
        }
    }
}

/// A chat completion request (OpenAI shape).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub temperature: f32,
    pub top_p: f32,
    pub max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Provider-specific fields (a flavor's `custom_params`), merged into the body.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ChatRequest {
    /// The request of one call of a job run with `settings`: the flavor's own calls
    /// (`flavor_call`) carry its penalties and stop sequences; every call carries its
    /// `custom_params` (provider-specific fields).
    pub fn for_job(
        settings: &crate::domain::JobSettings,
        messages: Vec<ChatMessage>,
        temperature: f32,
        max_tokens: u32,
        flavor_call: bool,
    ) -> ChatRequest {
        let extra = settings
            .custom_params
            .as_deref()
            .and_then(|params| {
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(params).ok()
            })
            .unwrap_or_default();
        ChatRequest {
            model: settings.model_identifier.clone(),
            messages,
            temperature,
            top_p: settings.top_p,
            max_tokens,
            frequency_penalty: settings.frequency_penalty.filter(|_| flavor_call),
            presence_penalty: settings.presence_penalty.filter(|_| flavor_call),
            stop: if flavor_call {
                settings.stop_sequences.clone()
            } else {
                Vec::new()
            },
            extra,
        }
    }
}

/// Body fields a flavor's `custom_params` may not set: the gateway sets them.
pub const RESERVED_BODY_FIELDS: [&str; 11] = [
    "model",
    "messages",
    "temperature",
    "top_p",
    "max_tokens",
    "frequency_penalty",
    "presence_penalty",
    "stop",
    "stream",
    "stream_options",
    "n",
];

/// Where to send requests.
#[derive(Clone)]
pub struct Endpoint {
    /// Base URL including the version path, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub api_key: Option<String>,
    /// Provider name, for error messages.
    pub provider_name: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("base_url", &self.base_url)
            .field("provider_name", &self.provider_name)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The answer and the provider's token usage (None when the provider omits it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatCompletion {
    pub content: String,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    /// Why generation stopped (`stop`, `length`, ...), when the provider says.
    pub finish_reason: Option<String>,
}

/// One item of a streamed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatChunk {
    /// The next piece of the answer (never empty).
    Delta(String),
    /// The provider's token usage (its last chunk, asked for with `stream_options`).
    Usage(StreamUsage),
}

/// Token usage of a streamed answer, as the provider reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Prompt tokens served from the provider's cache (`prompt_tokens_details`), if told.
    pub cached_tokens: Option<u32>,
}

/// A streamed answer: its chunks as they arrive; an `Err` item breaks it off.
pub type ChatStream = BoxStream<'static, Result<ChatChunk, LlmError>>;

/// A failed attempt.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum LlmError {
    #[error("HTTP {status}: {message}")]
    Status {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("connection failed: {0}")]
    Transport(String),
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    /// Not sent: the provider's circuit breaker is open until this time.
    #[error("circuit breaker open until {0}")]
    CircuitOpen(String),
}

impl LlmError {
    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::Status { status, .. } => {
                *status == 408 || *status == 409 || *status == 429 || *status >= 500
            }
            LlmError::Timeout(_) | LlmError::Transport(_) | LlmError::InvalidResponse(_) => true,
            LlmError::CircuitOpen(_) => false,
        }
    }

    /// What kind of failure this is, for failover and for the job's error code.
    pub fn kind(&self) -> FailureKind {
        match self {
            LlmError::Timeout(_) => FailureKind::Timeout,
            LlmError::Transport(_) => FailureKind::Unreachable,
            LlmError::InvalidResponse(_) => FailureKind::BadResponse,
            LlmError::CircuitOpen(_) => FailureKind::ServerError,
            LlmError::Status {
                status, message, ..
            } => {
                let message = message.to_ascii_lowercase();
                let mentions = |words: &[&str]| words.iter().any(|word| message.contains(word));
                match status {
                    408 => FailureKind::Timeout,
                    429 => FailureKind::RateLimit,
                    401 | 403 => FailureKind::Auth,
                    413 => FailureKind::ContextLength,
                    409 | 500..=599 => FailureKind::ServerError,
                    _ if mentions(&[
                        "content_filter",
                        "content filter",
                        "content policy",
                        "content management policy",
                        "safety",
                    ]) =>
                    {
                        FailureKind::ContentFilter
                    }
                    _ if mentions(&[
                        "context length",
                        "context_length",
                        "maximum context",
                        "too many tokens",
                        "max_tokens",
                        "token limit",
                    ]) =>
                    {
                        FailureKind::ContextLength
                    }
                    _ => FailureKind::BadRequest,
                }
            }
        }
    }

    /// The HTTP status, if the provider answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            LlmError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Sends one request (one attempt).
#[async_trait]
pub trait LlmClient: Send + Sync {
    async fn chat(
        &self,
        endpoint: &Endpoint,
        request: &ChatRequest,
    ) -> Result<ChatCompletion, LlmError>;

    /// Sends one request as a stream (`stream: true`, usage asked for in the last chunk).
    /// `Err` when the provider refuses it (like [`LlmClient::chat`]); otherwise the chunks
    /// as they arrive, ending after the provider's end marker.
    async fn chat_stream(
        &self,
        endpoint: &Endpoint,
        request: &ChatRequest,
    ) -> Result<ChatStream, LlmError>;

    /// The provider's model list (`GET {base}/models`): the `data` entries as sent.
    async fn models(&self, endpoint: &Endpoint) -> Result<Vec<serde_json::Value>, LlmError>;
}

/// How many attempts and how long to wait between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt `attempt + 1` (attempt counts from 1): full jitter on an
    /// exponential ceiling, but never less than the provider's Retry-After (capped).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max_delay);
        let jittered = ceiling.mul_f64(jitter.clamp(0.0, 1.0));
        match retry_after {
            Some(wait) => jittered.max(wait.min(self.max_delay.max(Duration::from_secs(60)))),
            None => jittered,
        }
    }
}

/// All attempts failed; `last` is the final error.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("provider '{provider}' failed after {attempts} attempt(s): {last}")]
pub struct LlmFailure {
    pub provider: String,
    pub attempts: u32,
    pub last: LlmError,
    /// How long to wait before trying again, when known (Retry-After, or a backoff that
    /// did not fit before the deadline).
    pub retry_after: Option<Duration>,
}

/// Sends the request, retrying retryable failures per `policy`, and never past
/// `deadline`: an attempt is cut off when the deadline comes (a timeout), and a wait that
/// would end after it is not made (the failure is returned with the wait still due in
/// [`LlmFailure::retry_after`], for the caller to re-queue the step instead of sleeping).
pub async fn chat_with_retries(
    client: &dyn LlmClient,
    endpoint: &Endpoint,
    request: &ChatRequest,
    policy: RetryPolicy,
    deadline: tokio::time::Instant,
) -> Result<ChatCompletion, LlmFailure> {
    with_retries(endpoint, policy, deadline, move || {
        client.chat(endpoint, request)
    })
    .await
}

/// A streamed answer whose first token has arrived.
pub struct OpenedStream {
    /// The chunks received so far: the first delta (last), or, for an answer without any
    /// text, everything the provider sent.
    pub first: Vec<ChatChunk>,
    /// The chunks still to come.
    pub rest: ChatStream,
}

/// Opens a streamed answer with the retries and deadline of [`chat_with_retries`], each
/// attempt counting until the answer's first token: a failure before it is retried (per
/// [`LlmError::is_retryable`]); once a token has arrived nothing is retried, a failure
/// can only break the stream off.
pub async fn open_stream_with_retries(
    client: &dyn LlmClient,
    endpoint: &Endpoint,
    request: &ChatRequest,
    policy: RetryPolicy,
    deadline: tokio::time::Instant,
) -> Result<OpenedStream, LlmFailure> {
    with_retries(endpoint, policy, deadline, move || async move {
        let mut rest = client.chat_stream(endpoint, request).await?;
        let mut first = Vec::new();
        while let Some(chunk) = rest.next().await {
            let token = matches!(chunk, Ok(ChatChunk::Delta(_)));
            first.push(chunk?);
            if token {
                break;
            }
        }
        Ok(OpenedStream { first, rest })
    })
    .await
}

/// Runs `attempt` until it succeeds, fails for good or `policy` / `deadline` stop it.
async fn with_retries<T, Attempt, Outcome>(
    endpoint: &Endpoint,
    policy: RetryPolicy,
    deadline: tokio::time::Instant,
    mut attempt_once: Attempt,
) -> Result<T, LlmFailure>
where
    Attempt: FnMut() -> Outcome,
    Outcome: Future<Output = Result<T, LlmError>>,
{
    let mut attempt = 1;
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let result = match tokio::time::timeout(remaining, attempt_once()).await {
            Ok(result) => result,
            Err(_) => Err(LlmError::Timeout(remaining)),
        };
        let error = match result {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let provider_wait = match &error {
            LlmError::Status { retry_after, .. } => *retry_after,
            _ => None,
        };
        let failure = |retry_after| LlmFailure {
            provider: endpoint.provider_name.clone(),
            attempts: attempt,
            last: error.clone(),
            retry_after,
        };
        if !error.is_retryable() || attempt >= policy.max_attempts {
            return Err(failure(provider_wait));
        }
        let delay = policy.delay(attempt, provider_wait, rand::random::<f64>());
        if tokio::time::Instant::now() + delay >= deadline {
            return Err(failure(Some(delay)));
        }
        tracing::warn!(provider = %endpoint.provider_name, attempt, %error, delay_ms = delay.as_millis() as u64, "LLM call failed, retrying");
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_classification() {
        let status = |status| LlmError::Status {
            status,
            message: String::new(),
            retry_after: None,
        };
        assert!(status(429).is_retryable());
        assert!(status(500).is_retryable() && status(503).is_retryable());
        assert!(
            !status(400).is_retryable()
                && !status(401).is_retryable()
                && !status(404).is_retryable()
        );
        assert!(LlmError::Timeout(Duration::from_secs(1)).is_retryable());
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let policy = RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        assert_eq!(policy.delay(1, None, 1.0), Duration::from_millis(100));
        assert_eq!(policy.delay(3, None, 1.0), Duration::from_millis(400));
        assert_eq!(policy.delay(10, None, 1.0), Duration::from_secs(1));
        assert_eq!(policy.delay(3, None, 0.5), Duration::from_millis(200));
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(2)), 0.1),
            Duration::from_secs(2)
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(3600)), 0.1),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn endpoint_debug_never_shows_the_key() {
        let endpoint = Endpoint {
            base_url: "http://x".into(),
            api_key: Some("sk-secret".into()),
            provider_name: "p".into(),
        };
        assert!(!format!("{endpoint:?}").contains("sk-secret"));
    }
}
