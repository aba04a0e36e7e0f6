//! [`LlmClient`] over HTTP (reqwest with rustls) for any OpenAI-compatible server:
//! `POST {base}/chat/completions` and `GET {base}/models`.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{ChatCompletion, ChatRequest, Endpoint, LlmClient, LlmError};

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
        let mut builder = builder.timeout(self.timeout);
        if let Some(key) = &endpoint.api_key {
            builder = builder.bearer_auth(key);
        }
        let response = builder.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
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
        if !(200..300).contains(&status) {
            return Err(LlmError::Status {
                status,
                message: error_message(&body),
                retry_after,
            });
        }
        Ok(body.to_vec())
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
