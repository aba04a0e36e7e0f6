//! Streamed answers (`stream: true`): OpenAI's server-sent events, one chunk per delta.

use std::collections::VecDeque;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::answer::deltas_of;
use crate::server::{now_ms, EntryGuard};
use crate::types::Outcome;

/// Pause before a [`crate::FaultKind::Break`] cuts a stream off.
const FLUSH_BEFORE_BREAK: Duration = Duration::from_millis(50);

/// A streamed answer about to be sent.
pub(crate) struct Streamed {
    pub(crate) model: String,
    pub(crate) answer: String,
    /// Pause before each delta after the first.
    pub(crate) delay: Duration,
    /// Deltas sent before the connection drops ([`crate::FaultKind::Break`]).
    pub(crate) break_after: Option<usize>,
    /// Usage in a last chunk (`stream_options.include_usage`).
    pub(crate) include_usage: bool,
    /// Prompt and completion tokens.
    pub(crate) usage: (u32, u32),
}

/// Where a stream is.
enum Next {
    /// The first chunk: the role, no content (as OpenAI sends it).
    Role,
    Delta,
    /// The chunk with `finish_reason`, the usage if asked, `[DONE]`.
    Finish,
    End,
}

struct State {
    streamed: Streamed,
    deltas: VecDeque<String>,
    sent: usize,
    next: Next,
    id: String,
    created: u64,
    guard: Option<EntryGuard>,
}

fn event(data: &Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

impl State {
    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.streamed.model,
            "system_fingerprint": "mock-llm",
            "choices": [{"index": 0, "delta": delta, "logprobs": Value::Null, "finish_reason": finish_reason}],
        })
    }

    fn finish(&mut self, outcome: Outcome) {
        if let Some(guard) = self.guard.take() {
            let tokens = (outcome == Outcome::Answered).then_some(self.streamed.usage);
            guard.finish(outcome, StatusCode::OK, tokens);
        }
    }
}

/// The answer as `text/event-stream`: a role chunk, one chunk per delta, a chunk with
/// `finish_reason: stop`, the usage chunk (`choices: []`) when asked, `data: [DONE]`. The
/// request's log entry (`guard`) is finished as answered after `[DONE]`, as a fault at a
/// break, and aborted when the client goes away first (the body is dropped).
pub(crate) fn answer(guard: EntryGuard, streamed: Streamed) -> Response {
    let deltas: VecDeque<String> = deltas_of(&streamed.answer).into();
    let seq = guard.seq;
    let state = State {
        streamed,
        deltas,
        sent: 0,
        next: Next::Role,
        id: format!("chatcmpl-mock-{seq}"),
        created: now_ms() / 1000,
        guard: Some(guard),
    };
    let body = futures_util::stream::unfold(state, |mut state| async move {
        let bytes = match state.next {
            Next::Role => {
                state.next = Next::Delta;
                event(&state.chunk(json!({"role": "assistant", "content": ""}), None))
            }
            Next::Delta => {
                if state.streamed.break_after == Some(state.sent) {
                    // What was sent reaches the client before the connection drops (hyper
                    // discards what it has not written yet when a body fails).
                    tokio::time::sleep(FLUSH_BEFORE_BREAK).await;
                    state.finish(Outcome::Fault);
                    state.next = Next::End;
                    let broken = std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "mock break: the stream is cut off",
                    );
                    return Some((Err(broken), state));
                }
                match state.deltas.pop_front() {
                    Some(delta) => {
                        if state.sent > 0 && !state.streamed.delay.is_zero() {
                            tokio::time::sleep(state.streamed.delay).await;
                        }
                        state.sent += 1;
                        event(&state.chunk(json!({"content": delta}), None))
                    }
                    None => {
                        state.next = Next::Finish;
                        event(&state.chunk(json!({}), Some("stop")))
                    }
                }
            }
            Next::Finish => {
                state.next = Next::End;
                let mut tail = String::new();
                if state.streamed.include_usage {
                    let (prompt, completion) = state.streamed.usage;
                    let mut usage = state.chunk(json!({}), None);
                    usage["choices"] = json!([]);
                    usage["usage"] = json!({
                        "prompt_tokens": prompt,
                        "completion_tokens": completion,
                        "total_tokens": prompt.saturating_add(completion),
                    });
                    tail.push_str(&format!("data: {usage}\n\n"));
                }
                tail.push_str("data: [DONE]\n\n");
                state.finish(Outcome::Answered);
                Bytes::from(tail)
            }
            Next::End => return None,
        };
        Some((Ok(bytes), state))
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// A stream whose first chunk is not JSON ([`crate::FaultKind::Malformed`]).
pub(crate) fn malformed(seq: u64) -> Response {
    let body = format!(
        "data: {{\"id\":\"chatcmpl-mock-{seq}\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"• trunc\n\n"
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/event-stream")],
        body,
    )
        .into_response()
}
