//! [`LlmClient`] over HTTP (reqwest with rustls) for any OpenAI-compatible server:
//! `POST {base}/chat/completions` (whole, or streamed as server-sent events) and
//! `GET {base}/models`.

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use serde::Deserialize;

use super::sse::SseDecoder;
use super::{
    ChatChunk, ChatCompletion, ChatRequest, ChatStream, Endpoint, LlmClient, LlmError, StreamUsage,
};

/// [`LlmClient`] over HTTP with reqwest (rustls).
#[derive(Clone)]
pub struct OpenAiClient {
    http: reqwest::Client,
    timeout: Duration,
}

impl OpenAiClient {
    /// A client whose attempts time out after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("static reqwest configuration is valid");
        OpenAiClient { http, timeout }
    }
}

impl OpenAiClient {
    /// Sends one request with the attempt timeout and the endpoint's key; the body of a 2xx
    /// answer, else [`LlmError::Status`] with the provider's message and Retry-After.
    async fn send(
        &self,
        endpoint: &Endpoint,
        builder: reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, LlmError> {
        let response = self
            .accepted(endpoint, builder.timeout(self.timeout))
            .await?;
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        Ok(body.to_vec())
    }

    /// Sends one request with the endpoint's key: the response of a 2xx answer, its body
    /// not read yet; else [`LlmError::Status`] with the provider's message and Retry-After.
    async fn accepted(
        &self,
        endpoint: &Endpoint,
        mut builder: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, LlmError> {
        if let Some(key) = &endpoint.api_key {
            builder = builder.bearer_auth(key);
        }
        let response = builder.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        Err(LlmError::Status {
            status,
            message: error_message(&body),
            retry_after,
        })
    }
}

#[derive(Deserialize)]
struct CompletionBody {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
}

#[async_trait]
impl LlmClient for OpenAiClient {
    async fn chat(
        &self,
        endpoint: &Endpoint,
        request: &ChatRequest,
    ) -> Result<ChatCompletion, LlmError> {
        let url = format!(
            "{}/chat/completions",
            endpoint.base_url.trim_end_matches('/')
        );
        let body = self
            .send(endpoint, self.http.post(url).json(request))
            .await?;
        let parsed: CompletionBody =
            serde_json::from_slice(&body).map_err(|e| LlmError::InvalidResponse(e.to_string()))?;
        let choice = parsed
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| LlmError::InvalidResponse("no choices".to_string()))?;
        let usage = parsed.usage;
        Ok(ChatCompletion {
            content: choice.message.content.unwrap_or_default(),
            prompt_tokens: usage.as_ref().and_then(|u| u.prompt_tokens),
            completion_tokens: usage.as_ref().and_then(|u| u.completion_tokens),
            finish_reason: choice.finish_reason,
        })
    }

    async fn chat_stream(
        &self,
        endpoint: &Endpoint,
        request: &ChatRequest,
    ) -> Result<ChatStream, LlmError> {
        let url = format!(
            "{}/chat/completions",
            endpoint.base_url.trim_end_matches('/')
        );
        let mut body = serde_json::to_value(request)
            .map_err(|e| LlmError::InvalidResponse(format!("request not encoded: {e}")))?;
        body["stream"] = serde_json::Value::Bool(true);
        body["stream_options"] = serde_json::json!({"include_usage": true});
        // No whole-request timeout: the answer may stream for longer. The attempt timeout
        // bounds the wait for the answer's head, then the wait for each piece.
        let opened = self.accepted(endpoint, self.http.post(url).json(&body));
        let response = tokio::time::timeout(self.timeout, opened)
            .await
            .map_err(|_| LlmError::Timeout(self.timeout))??;
        Ok(chunks(response, self.clone()))
    }

    async fn models(&self, endpoint: &Endpoint) -> Result<Vec<serde_json::Value>, LlmError> {
        let url = format!("{}/models", endpoint.base_url.trim_end_matches('/'));
        let body = self.send(endpoint, self.http.get(url)).await?;
        let parsed: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| LlmError::InvalidResponse(e.to_string()))?;
        // OpenAI: {"data": [...]}; Ollama's /api/tags style: {"models": [...]}.
        parsed
            .get("data")
            .or_else(|| parsed.get("models"))
            .and_then(serde_json::Value::as_array)
            .cloned()
            .ok_or_else(|| LlmError::InvalidResponse("no data list".to_string()))
    }
}

impl OpenAiClient {
    fn transport_error(&self, error: reqwest::Error) -> LlmError {
        if error.is_timeout() {
            LlmError::Timeout(self.timeout)
        } else if error.is_decode() || error.is_body() {
            LlmError::InvalidResponse(error.to_string())
        } else {
            LlmError::Transport(error.to_string())
        }
    }
}

/// The chunks of a streamed answer: each `data:` event of the body parsed as a chat
/// completion chunk, until `data: [DONE]`. A piece that takes longer than the attempt
/// timeout, a body that ends before `[DONE]`, an error object or a chunk that is not JSON
/// breaks the stream off.
fn chunks(response: reqwest::Response, client: OpenAiClient) -> ChatStream {
    struct Reading {
        response: reqwest::Response,
        decoder: SseDecoder,
        ready: VecDeque<Result<ChatChunk, LlmError>>,
        finished: bool,
        client: OpenAiClient,
    }
    let state = Reading {
        response,
        decoder: SseDecoder::default(),
        ready: VecDeque::new(),
        finished: false,
        client,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(item) = state.ready.pop_front() {
                if item.is_err() {
                    state.finished = true;
                    state.ready.clear();
                }
                return Some((item, state));
            }
            if state.finished {
                return None;
            }
            let timeout = state.client.timeout;
            let bytes = match tokio::time::timeout(timeout, state.response.chunk()).await {
                Err(_) => Err(LlmError::Timeout(timeout)),
                Ok(Ok(None)) => Err(LlmError::Transport(
                    "the answer stream ended before [DONE]".to_string(),
                )),
                Ok(Err(error)) => Err(state.client.transport_error(error)),
                Ok(Ok(Some(bytes))) => Ok(bytes),
            };
            match bytes {
                Err(error) => state.ready.push_back(Err(error)),
                Ok(bytes) => {
                    for event in state.decoder.push(&bytes) {
                        match parse_chunk(&event.data) {
                            Parsed::Done => {
                                state.finished = true;
                                break;
                            }
                            Parsed::Items(items) => state.ready.extend(items),
                        }
                    }
                }
            }
        }
    })
    .boxed()
}

/// What one `data:` event of a streamed answer holds.
#[derive(Debug, PartialEq)]
enum Parsed {
    /// `[DONE]`: the answer is complete.
    Done,
    /// Its delta and usage, an error, or nothing (a role-only first chunk).
    Items(Vec<Result<ChatChunk, LlmError>>),
}

#[derive(Deserialize)]
struct StreamChunk {
    #[serde(default)]
    choices: Vec<StreamChoice>,
    #[serde(default)]
    usage: Option<StreamChunkUsage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct StreamChoice {
    #[serde(default)]
    delta: Option<ChoiceMessage>,
}

#[derive(Deserialize)]
struct StreamChunkUsage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
    #[serde(default)]
    prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Deserialize)]
struct PromptTokensDetails {
    #[serde(default)]
    cached_tokens: Option<u32>,
}

fn parse_chunk(data: &str) -> Parsed {
    if data.trim() == "[DONE]" {
        return Parsed::Done;
    }
    let chunk: StreamChunk = match serde_json::from_str(data) {
        Ok(chunk) => chunk,
        Err(error) => {
            return Parsed::Items(vec![Err(LlmError::InvalidResponse(format!(
                "a streamed chunk is not JSON: {error}"
            )))])
        }
    };
    if let Some(error) = chunk.error {
        // Some servers report a failure inside the stream: `{"error": {"message", "code"}}`.
        let status = error
            .get("code")
            .and_then(serde_json::Value::as_u64)
            .and_then(|code| u16::try_from(code).ok())
            .filter(|code| (400..600).contains(code))
            .unwrap_or(502);
        let message = error
            .get("message")
            .and_then(serde_json::Value::as_str)
            .map_or_else(|| error.to_string(), str::to_string);
        return Parsed::Items(vec![Err(LlmError::Status {
            status,
            message,
            retry_after: None,
        })]);
    }
    let mut items: Vec<Result<ChatChunk, LlmError>> = chunk
        .choices
        .into_iter()
        .filter_map(|choice| choice.delta?.content)
        .filter(|content| !content.is_empty())
        .map(|content| Ok(ChatChunk::Delta(content)))
        .collect();
    if let Some(usage) = chunk.usage {
        items.push(Ok(ChatChunk::Usage(StreamUsage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            cached_tokens: usage.prompt_tokens_details.and_then(|d| d.cached_tokens),
        })));
    }
    Parsed::Items(items)
}

/// The provider's error message (`error.message`), else the start of the body.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| {
            value
                .pointer("/error/message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(data: &str) -> Vec<Result<ChatChunk, LlmError>> {
        match parse_chunk(data) {
            Parsed::Items(items) => items,
            Parsed::Done => panic!("{data} is not [DONE]"),
        }
    }

    #[test]
    fn openai_chunks_give_deltas_usage_and_the_end() {
        assert_eq!(parse_chunk("[DONE]"), Parsed::Done);
        assert_eq!(
            items(r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#),
            vec![],
            "the role-only first chunk carries no token"
        );
        assert_eq!(
            items(
                r#"{"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}],"usage":null}"#
            ),
            vec![Ok(ChatChunk::Delta("Hel".into()))]
        );
        assert_eq!(
            items(
                r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":8}}}"#
            ),
            vec![Ok(ChatChunk::Usage(StreamUsage {
                prompt_tokens: 12,
                completion_tokens: 3,
                cached_tokens: Some(8)
            }))]
        );
    }

    #[test]
    fn errors_inside_the_stream_are_classified() {
        let [Err(error)] = &items(r#"{"error":{"message":"slow down","code":429}}"#)[..] else {
            panic!("an error item");
        };
        assert_eq!(error.kind(), crate::domain::FailureKind::RateLimit);
        let [Err(error)] = &items("{not json")[..] else {
            panic!("an error item");
        };
        assert!(matches!(error, LlmError::InvalidResponse(_)), "{error}");
    }
}
