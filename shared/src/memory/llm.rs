//! A scripted [`LlmClient`].

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;
use futures_util::StreamExt;

use crate::llm::{
    ChatChunk, ChatCompletion, ChatRequest, ChatStream, Endpoint, LlmClient, LlmError, StreamUsage,
};

use super::support::lock;

/// One call received by [`MemoryLlm`].
#[derive(Debug, Clone)]
pub struct LlmCall {
    /// Where the call went (base URL, decrypted API key, provider name).
    pub endpoint: Endpoint,
    /// What was asked.
    pub request: ChatRequest,
    /// Whether the answer was asked for as a stream ([`LlmClient::chat_stream`]).
    pub streamed: bool,
}

/// What the next call gets instead of [`MemoryLlm::answer_for`].
#[derive(Debug, Clone)]
enum Scripted {
    Answer(ChatCompletion),
    Fail(LlmError),
    /// A streamed answer that breaks off with `error` after `after` deltas (a whole
    /// answer fails with `error` at once).
    BreakOff {
        after: usize,
        error: LlmError,
    },
}

/// A scripted [`LlmClient`]: answers with [`MemoryLlm::answer_for`] unless a scripted
/// answer or failure is queued, and records every call (failed attempts included). A
/// streamed answer is the same text in deltas of one word (with the whitespace after
/// it), then its usage.
#[derive(Debug, Default)]
pub struct MemoryLlm {
    calls: Mutex<Vec<LlmCall>>,
    script: Mutex<VecDeque<Scripted>>,
    models: Mutex<Vec<serde_json::Value>>,
}

/// Whitespace-separated words: the fake's token count.
fn words(text: &str) -> u32 {
    text.split_whitespace().count() as u32
}

/// The deltas a streamed `content` comes in: one word each, with the whitespace after it.
pub fn deltas_of(content: &str) -> Vec<String> {
    content
        .split_inclusive(char::is_whitespace)
        .map(str::to_string)
        .collect()
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
        script.extend(std::iter::repeat_n(Scripted::Fail(error), times));
    }

    /// Makes the next call (after those already scripted) answer `completion`.
    pub fn respond_next(&self, completion: ChatCompletion) {
        lock(&self.script).push_back(Scripted::Answer(completion));
    }

    /// Makes the next streamed call (after those already scripted) send the first
    /// `after` deltas of its answer, then break off with `error`.
    pub fn break_off_next(&self, after: usize, error: LlmError) {
        lock(&self.script).push_back(Scripted::BreakOff { after, error });
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

    /// Records a call and takes what the script says for it.
    fn receive(&self, endpoint: &Endpoint, request: &ChatRequest, streamed: bool) -> Scripted {
        lock(&self.calls).push(LlmCall {
            endpoint: endpoint.clone(),
            request: request.clone(),
            streamed,
        });
        lock(&self.script)
            .pop_front()
            .unwrap_or_else(|| Scripted::Answer(Self::answer_for(request)))
    }
}

#[async_trait]
impl LlmClient for MemoryLlm {
    async fn chat(
        &self,
        endpoint: &Endpoint,
        request: &ChatRequest,
    ) -> Result<ChatCompletion, LlmError> {
        match self.receive(endpoint, request, false) {
            Scripted::Answer(completion) => Ok(completion),
            Scripted::Fail(error) | Scripted::BreakOff { error, .. } => Err(error),
        }
    }

    async fn chat_stream(
        &self,
        endpoint: &Endpoint,
        request: &ChatRequest,
    ) -> Result<ChatStream, LlmError> {
        let (completion, broken) = match self.receive(endpoint, request, true) {
            Scripted::Answer(completion) => (completion, None),
            Scripted::Fail(error) => return Err(error),
            Scripted::BreakOff { after, error } => {
                (Self::answer_for(request), Some((after, error)))
            }
        };
        let mut chunks: Vec<Result<ChatChunk, LlmError>> = deltas_of(&completion.content)
            .into_iter()
            .map(|delta| Ok(ChatChunk::Delta(delta)))
            .collect();
        match broken {
            Some((after, error)) => {
                chunks.truncate(after);
                chunks.push(Err(error));
            }
            None => {
                if let (Some(prompt_tokens), Some(completion_tokens)) =
                    (completion.prompt_tokens, completion.completion_tokens)
                {
                    chunks.push(Ok(ChatChunk::Usage(StreamUsage {
                        prompt_tokens,
                        completion_tokens,
                        cached_tokens: None,
                    })));
                }
            }
        }
        Ok(futures_util::stream::iter(chunks).boxed())
    }

    async fn models(&self, _endpoint: &Endpoint) -> Result<Vec<serde_json::Value>, LlmError> {
        Ok(lock(&self.models).clone())
    }
}
