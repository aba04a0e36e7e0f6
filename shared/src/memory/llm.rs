//! A scripted [`LlmClient`].

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::llm::{ChatCompletion, ChatRequest, Endpoint, LlmClient, LlmError};

use super::support::lock;

/// One call received by [`MemoryLlm`].
#[derive(Debug, Clone)]
pub struct LlmCall {
    /// Where the call went (base URL, decrypted API key, provider name).
    pub endpoint: Endpoint,
    /// What was asked.
    pub request: ChatRequest,
}

/// A scripted [`LlmClient`]: answers with [`MemoryLlm::answer_for`] unless a scripted
/// answer or failure is queued, and records every call (failed attempts included).
#[derive(Debug, Default)]
pub struct MemoryLlm {
    calls: Mutex<Vec<LlmCall>>,
    script: Mutex<VecDeque<Result<ChatCompletion, LlmError>>>,
    models: Mutex<Vec<serde_json::Value>>,
}

/// Whitespace-separated words: the fake's token count.
fn words(text: &str) -> u32 {
    text.split_whitespace().count() as u32
}

impl MemoryLlm {
    /// The default answer to a request: one line naming the prompt's size and its last
    /// non-empty line (the newest turn of a batch), with usage counted in words.
    pub fn answer_for(request: &ChatRequest) -> ChatCompletion {
        let prompt = request
            .messages
            .last()
            .map_or("", |message| message.content.as_str());
        let last_line = prompt
            .lines()
            .rev()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .unwrap_or_default();
        let gist: String = last_line.chars().take(60).collect();
        let content = format!("summary of {} words: {gist}", words(prompt));
        ChatCompletion {
            prompt_tokens: Some(request.messages.iter().map(|m| words(&m.content)).sum()),
            completion_tokens: Some(words(&content)),
            content,
            finish_reason: Some("stop".to_string()),
        }
    }

    /// Makes the next `times` calls fail with `error` (use `retry_after: None`: the retry
    /// policy waits at least that long).
    pub fn fail_next(&self, times: usize, error: LlmError) {
        let mut script = lock(&self.script);
        script.extend(std::iter::repeat_n(Err(error), times));
    }

    /// Makes the next call (after those already scripted) answer `completion`.
    pub fn respond_next(&self, completion: ChatCompletion) {
        lock(&self.script).push_back(Ok(completion));
    }

    /// The model list [`LlmClient::models`] returns (empty until set).
    pub fn set_models(&self, models: Vec<serde_json::Value>) {
        *lock(&self.models) = models;
    }

    /// Number of chat calls received.
    pub fn call_count(&self) -> usize {
        lock(&self.calls).len()
    }

    /// Every chat call received, in order.
    pub fn calls(&self) -> Vec<LlmCall> {
        lock(&self.calls).clone()
    }
}

#[async_trait]
impl LlmClient for MemoryLlm {
    async fn chat(
        &self,
        endpoint: &Endpoint,
        request: &ChatRequest,
    ) -> Result<ChatCompletion, LlmError> {
        lock(&self.calls).push(LlmCall {
            endpoint: endpoint.clone(),
            request: request.clone(),
        });
        match lock(&self.script).pop_front() {
            Some(scripted) => scripted,
            None => Ok(Self::answer_for(request)),
        }
    }

    async fn models(&self, _endpoint: &Endpoint) -> Result<Vec<serde_json::Value>, LlmError> {
        Ok(lock(&self.models).clone())
    }
}
