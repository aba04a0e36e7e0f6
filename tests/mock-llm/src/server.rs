//! HTTP routes, shared state and the request log.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::answer::{answer_for, count_tokens, prompt_tokens};
use crate::types::{FaultKind, FaultRule, Outcome, RequestLogEntry};
use crate::MODEL_ID;

/// State shared between the handlers and the [`crate::MockLlm`] handle.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// Becomes `true` at shutdown; releases hanging requests.
    release: watch::Receiver<bool>,
}

#[derive(Default)]
struct Inner {
    latency: Duration,
    /// Pause before each delta of a streamed answer after the first.
    delta_delay: Duration,
    /// When set, requests must send `Authorization: Bearer <key>` (else 401).
    api_key: Option<String>,
    faults: Vec<FaultRule>,
    log: Vec<RequestLogEntry>,
    next_seq: u64,
}

impl Shared {
    pub(crate) fn new(release: watch::Receiver<bool>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                next_seq: 1,
                ..Inner::default()
            }),
            release,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave Inner inconsistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn requests(&self) -> Vec<RequestLogEntry> {
        self.lock().log.clone()
    }

    pub(crate) fn push_faults(&self, rules: Vec<FaultRule>) -> usize {
        let mut inner = self.lock();
        inner.faults.extend(rules);
        inner.faults.len()
    }

    pub(crate) fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    pub(crate) fn set_delta_delay(&self, delay: Duration) {
        self.lock().delta_delay = delay;
    }

    pub(crate) fn delta_delay(&self) -> Duration {
        self.lock().delta_delay
    }

    pub(crate) fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    pub(crate) fn set_api_key(&self, key: Option<String>) {
        self.lock().api_key = key;
    }

    /// Whether `headers` carry the required key (always true when none is required).
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let required = self.lock().api_key.clone();
        required.is_none_or(|key| bearer(headers).as_deref() == Some(key.as_str()))
    }

    pub(crate) fn clear_requests(&self) {
        self.lock().log.clear();
    }

    pub(crate) fn reset(&self) {
        let mut inner = self.lock();
        inner.faults.clear();
        inner.log.clear();
        inner.latency = Duration::ZERO;
        inner.delta_delay = Duration::ZERO;
        inner.api_key = None;
    }

    /// Logs a new pending request and consumes the first matching fault rule.
    fn begin(
        &self,
        model: &str,
        prompt: &str,
        messages_count: usize,
        api_key: Option<String>,
    ) -> (u64, Option<FaultRule>, Duration) {
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.log.push(RequestLogEntry {
            seq,
            model: model.to_owned(),
            prompt: prompt.to_owned(),
            messages_count,
            api_key,
            received_at_ms: now_ms(),
            outcome: Outcome::Pending,
            status: None,
            prompt_tokens: None,
            completion_tokens: None,
        });
        let fault = match inner
            .faults
            .iter()
            .position(|r| r.matches(seq, model, prompt))
        {
            Some(idx) => {
                let rule = &mut inner.faults[idx];
                rule.times -= 1;
                let applied = rule.clone();
                if rule.times == 0 {
                    inner.faults.remove(idx);
                }
                Some(applied)
            }
            None => None,
        };
        (seq, fault, inner.latency)
    }

    fn update(&self, seq: u64, f: impl FnOnce(&mut RequestLogEntry)) {
        let mut inner = self.lock();
        if let Some(entry) = inner.log.iter_mut().rev().find(|e| e.seq == seq) {
            f(entry);
        }
    }
}

/// Marks the log entry `aborted` if the handler future (or a streamed answer) is dropped
/// before [`EntryGuard::finish`] is called (the client disconnected).
pub(crate) struct EntryGuard {
    shared: Arc<Shared>,
    pub(crate) seq: u64,
    done: bool,
}

impl EntryGuard {
    pub(crate) fn finish(
        mut self,
        outcome: Outcome,
        status: StatusCode,
        tokens: Option<(u32, u32)>,
    ) {
        self.done = true;
        self.shared.update(self.seq, |e| {
            e.outcome = outcome;
            e.status = Some(status.as_u16());
            if let Some((p, c)) = tokens {
                e.prompt_tokens = Some(p);
                e.completion_tokens = Some(c);
            }
        });
    }
}

impl Drop for EntryGuard {
    fn drop(&mut self) {
        if !self.done {
            tracing::info!(seq = self.seq, "client disconnected before answer; aborted");
            self.shared.update(self.seq, |e| {
                if e.outcome == Outcome::Pending {
                    e.outcome = Outcome::Aborted;
                }
            });
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/_mock/config", get(get_config).post(set_config))
        .route(
            "/_mock/faults",
            get(list_faults).post(add_faults).delete(clear_faults),
        )
        .route("/_mock/requests", get(list_requests).delete(clear_requests))
        .route("/_mock/reset", post(reset))
        .fallback(not_found)
        .with_state(shared)
}

/// OpenAI-style error response.
pub(crate) fn openai_error(status: StatusCode, message: impl Into<String>) -> Response {
    let (kind, code) = match status.as_u16() {
        400 => ("invalid_request_error", Value::Null),
        401 => ("authentication_error", json!("invalid_api_key")),
        403 => ("permission_error", Value::Null),
        404 => ("invalid_request_error", json!("not_found")),
        429 => ("requests", json!("rate_limit_exceeded")),
        503 => ("server_error", json!("service_unavailable")),
        s if s >= 500 => ("server_error", Value::Null),
        _ => ("invalid_request_error", Value::Null),
    };
    let body = json!({
        "error": {
            "message": message.into(),
            "type": kind,
            "param": Value::Null,
            "code": code,
        }
    });
    (status, Json(body)).into_response()
}

fn bad_request(message: impl Into<String>) -> Response {
    openai_error(StatusCode::BAD_REQUEST, message)
}

async fn not_found() -> Response {
    openai_error(StatusCode::NOT_FOUND, "unknown mock-llm route")
}

#[derive(Deserialize)]
struct ChatRequest {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<ChatMessage>,
    // Accepted for compatibility; they do not influence the answer.
    #[serde(default)]
    #[allow(dead_code)]
    temperature: Option<f64>,
    #[serde(default)]
    #[allow(dead_code)]
    top_p: Option<f64>,
    #[serde(default)]
    #[allow(dead_code)]
    max_tokens: Option<u64>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Value,
}

/// Text of a message `content`: a string, or an array of `{type:"text", text}` parts.
fn content_text(content: &Value) -> Result<String, String> {
    match content {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p {
                Value::String(s) => Ok(s.as_str()),
                Value::Object(o) => Ok(o.get("text").and_then(Value::as_str).unwrap_or("")),
                _ => Err("content parts must be strings or objects".to_owned()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.concat()),
        _ => Err("message content must be a string, an array of parts, or null".into()),
    }
}

/// The bearer token of a request, if any.
fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::to_owned)
}

async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: ChatRequest = match serde_json::from_slice(&body) {
        Ok(req) => req,
        Err(err) => return bad_request(format!("invalid request body: {err}")),
    };
    if req.messages.is_empty() {
        return bad_request("messages must contain at least one message");
    }
    let mut contents = Vec::with_capacity(req.messages.len());
    for msg in &req.messages {
        match content_text(&msg.content) {
            Ok(text) => contents.push(text),
            Err(err) => return bad_request(err),
        }
    }
    let prompt = req
        .messages
        .iter()
        .zip(&contents)
        .rev()
        .find(|(m, _)| m.role == "user")
        .map(|(_, c)| c.clone())
        .unwrap_or_default();
    let model = req
        .model
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| MODEL_ID.to_owned());

    let (seq, fault, base_latency) =
        shared.begin(&model, &prompt, req.messages.len(), bearer(&headers));
    let guard = EntryGuard {
        shared: shared.clone(),
        seq,
        done: false,
    };
    if !shared.authorized(&headers) {
        guard.finish(Outcome::Fault, StatusCode::UNAUTHORIZED, None);
        return openai_error(StatusCode::UNAUTHORIZED, "Incorrect API key provided");
    }
    tracing::debug!(seq, fault = ?fault.as_ref().map(|f| f.kind), "completion request");
    if !base_latency.is_zero() {
        tokio::time::sleep(base_latency).await;
    }

    let streamed = req.stream == Some(true);
    let mut scripted = None;
    let mut break_after = None;
    if let Some(rule) = fault {
        match rule.kind {
            FaultKind::Status => {
                let status =
                    StatusCode::from_u16(rule.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut resp = openai_error(status, format!("mock fault {}", status.as_u16()));
                if let Some(secs) = rule.retry_after_secs {
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                guard.finish(Outcome::Fault, status, None);
                return resp;
            }
            FaultKind::Malformed if streamed => {
                guard.finish(Outcome::Fault, StatusCode::OK, None);
                return crate::stream::malformed(seq);
            }
            FaultKind::Break if !streamed => {
                let status = StatusCode::INTERNAL_SERVER_ERROR;
                guard.finish(Outcome::Fault, status, None);
                return openai_error(status, "mock break (the answer was not streamed)");
            }
            FaultKind::Break => break_after = Some(rule.after_deltas.unwrap_or(1) as usize),
            FaultKind::Malformed => {
                let truncated = format!(
                    "{{\"id\":\"chatcmpl-mock-{seq}\",\"object\":\"chat.completion\",\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":\"• trunc"
                );
                guard.finish(Outcome::Fault, StatusCode::OK, None);
                return (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    truncated,
                )
                    .into_response();
            }
            FaultKind::Hang => {
                // Pending until the client disconnects (the future is dropped
                // and the guard marks the entry aborted) or the server stops.
                let mut release = shared.release.clone();
                let _ = release.wait_for(|stop| *stop).await;
                let status = StatusCode::SERVICE_UNAVAILABLE;
                guard.finish(Outcome::Fault, status, None);
                return openai_error(status, "mock-llm is shutting down");
            }
            FaultKind::Latency => {
                let ms = rule.latency_ms.unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            FaultKind::Reply => scripted = rule.content,
        }
    }

    let answer = scripted.unwrap_or_else(|| answer_for(&prompt));
    let prompt_toks = prompt_tokens(&contents);
    let completion_toks = count_tokens(&answer);
    let created = now_ms() / 1000;
    if streamed {
        return crate::stream::answer(
            guard,
            crate::stream::Streamed {
                model,
                answer,
                delay: shared.delta_delay(),
                break_after,
                include_usage: req.stream_options.is_some_and(|o| o.include_usage),
                usage: (prompt_toks, completion_toks),
            },
        );
    }
    let body = json!({
        "id": format!("chatcmpl-mock-{seq}"),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": "mock-llm",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": answer},
            "logprobs": Value::Null,
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": prompt_toks,
            "completion_tokens": completion_toks,
            "total_tokens": prompt_toks.saturating_add(completion_toks),
        },
    });
    guard.finish(
        Outcome::Answered,
        StatusCode::OK,
        Some((prompt_toks, completion_toks)),
    );
    (StatusCode::OK, Json(body)).into_response()
}

async fn models(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !shared.authorized(&headers) {
        return openai_error(StatusCode::UNAUTHORIZED, "Incorrect API key provided");
    }
    Json(json!({
        "object": "list",
        "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "mock"}],
    }))
    .into_response()
}

/// `POST /_mock/config`: the settings given change, the others stay.
#[derive(Deserialize)]
struct ConfigBody {
    #[serde(default)]
    latency_ms: Option<u64>,
    #[serde(default)]
    delta_delay_ms: Option<u64>,
}

fn config_json(shared: &Shared) -> Json<Value> {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let inner = shared.lock();
    Json(json!({
        "latency_ms": millis(inner.latency),
        "delta_delay_ms": millis(inner.delta_delay),
    }))
}

async fn get_config(State(shared): State<Arc<Shared>>) -> Json<Value> {
    config_json(&shared)
}

async fn set_config(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match serde_json::from_slice::<ConfigBody>(&body) {
        Ok(cfg) => {
            if let Some(ms) = cfg.latency_ms {
                shared.set_latency(Duration::from_millis(ms));
            }
            if let Some(ms) = cfg.delta_delay_ms {
                shared.set_delta_delay(Duration::from_millis(ms));
            }
            tracing::info!(
                latency_ms = cfg.latency_ms,
                delta_delay_ms = cfg.delta_delay_ms,
                "config set"
            );
            config_json(&shared).into_response()
        }
        Err(err) => bad_request(format!("invalid config body: {err}")),
    }
}

/// `POST /_mock/faults` accepts a list of rules or a single rule.
#[derive(Deserialize)]
#[serde(untagged)]
enum FaultsBody {
    Many(Vec<FaultRule>),
    One(FaultRule),
}

async fn add_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let rules = match serde_json::from_slice::<FaultsBody>(&body) {
        Ok(FaultsBody::Many(rules)) => rules,
        Ok(FaultsBody::One(rule)) => vec![rule],
        Err(err) => return bad_request(format!("invalid fault rules: {err}")),
    };
    for rule in &rules {
        if let Err(err) = rule.validate() {
            return bad_request(format!("invalid fault rule: {err}"));
        }
    }
    let added = rules.len();
    let queued = shared.push_faults(rules);
    tracing::info!(added, queued, "fault rules queued");
    Json(json!({ "added": added, "queued": queued })).into_response()
}

async fn list_faults(State(shared): State<Arc<Shared>>) -> Json<Vec<FaultRule>> {
    Json(shared.lock().faults.clone())
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.clear_faults();
    StatusCode::NO_CONTENT
}

async fn list_requests(State(shared): State<Arc<Shared>>) -> Json<Vec<RequestLogEntry>> {
    Json(shared.requests())
}

async fn clear_requests(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.clear_requests();
    StatusCode::NO_CONTENT
}

async fn reset(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.reset();
    StatusCode::NO_CONTENT
}
