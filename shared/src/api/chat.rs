//! Routes of the `chat` function: `POST /api/v1/chat/completions`, answered as
//! server-sent events. The route is in [`TABLE`] for routing, the OpenAPI document and
//! the route checks; since its answer is a stream, the function serves it with
//! [`respond`] instead of [`RouteTable::handle`](super::routes::RouteTable::handle).

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use serde_json::json;

use super::request::ApiRequest;
use super::response::stream_error_body;
use super::routes::{route, RouteTable};
use crate::engine::chat::{self, ChatCompletionRequest, ChatEvent};
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::{Gateway, JsonResponse};
use crate::llm::sse::encode_event;

/// The chat function's routes.
pub static TABLE: RouteTable = RouteTable {
    function: "chat",
    routes: &[
        route!(Post "/api/v1/chat/completions", "Chat about a transcript (the flavor's system prompt filled with context.transcript, summary and metadata), answered as server-sent events: `token` {content} per piece, then `done` {usage, estimated_cost?, job_id} or `error` {error, error_code}. A refused request is a JSON error before any event", Some("object"), 200 => "event-stream",
            |_g, _r| Err(EngineError::NotBuilt("the chat answer is a stream: the chat function serves it with api::chat::respond"))),
    ],
};

/// Response headers of an event stream: nothing may buffer or cache it.
pub const EVENT_STREAM_HEADERS: [(&str, &str); 3] = [
    ("content-type", "text/event-stream; charset=utf-8"),
    ("cache-control", "no-cache"),
    ("x-accel-buffering", "no"),
];

/// The answer to a chat request: a JSON error (nothing was streamed), or the events.
pub enum ChatReply {
    Refused(JsonResponse),
    /// The events, each framed as server-sent event text.
    Events(BoxStream<'static, Bytes>),
}

impl ChatReply {
    /// The HTTP answer, its body produced piece by piece.
    pub fn into_http(self) -> http::Response<BoxStream<'static, Bytes>> {
        match self {
            ChatReply::Refused(error) => error
                .into_http()
                .map(|body| futures_util::stream::once(async { Bytes::from(body) }).boxed()),
            ChatReply::Events(events) => {
                let mut response = http::Response::new(events);
                for (name, value) in EVENT_STREAM_HEADERS {
                    response
                        .headers_mut()
                        .insert(name, http::HeaderValue::from_static(value));
                }
                response
            }
        }
    }
}

/// Answers a chat request: 404/405 for another path or method, 415 for a body that is not
/// JSON, then every refusal of [`chat::prepare`] as a JSON error; else the events.
pub async fn respond(gateway: &Gateway, request: ApiRequest) -> ChatReply {
    match open(gateway, request).await {
        Ok(events) => ChatReply::Events(events.map(|event| Bytes::from(frame(&event))).boxed()),
        Err(error) => ChatReply::Refused(error.into()),
    }
}

async fn open(
    gateway: &Gateway,
    request: ApiRequest,
) -> EngineResult<BoxStream<'static, ChatEvent>> {
    request.check_body_size()?;
    let (route, _) = TABLE.find(&request.method, &request.segments)?;
    request.check_media_type(route.path)?;
    let chat = chat::prepare(gateway, ChatCompletionRequest::parse(request.body())?).await?;
    Ok(chat::answer(gateway.clone(), chat))
}

/// One event as server-sent event text: `token` `{"content"}`, `done`
/// `{"usage": {prompt_tokens, completion_tokens, total_tokens, cached_tokens?},
/// "estimated_cost"?, "job_id"}`, `error` `{"error", "error_code"}`.
pub fn frame(event: &ChatEvent) -> String {
    match event {
        ChatEvent::Token(content) => {
            encode_event("token", &json!({"content": content}).to_string())
        }
        ChatEvent::Done(done) => {
            let mut usage = json!({
                "prompt_tokens": done.prompt_tokens,
                "completion_tokens": done.completion_tokens,
                "total_tokens": done.prompt_tokens + done.completion_tokens,
            });
            if let Some(cached) = done.cached_tokens {
                usage["cached_tokens"] = json!(cached);
            }
            let mut data = json!({"usage": usage, "job_id": done.job_id});
            if let Some(cost) = done.estimated_cost {
                data["estimated_cost"] = json!(cost);
            }
            encode_event("done", &data.to_string())
        }
        ChatEvent::Failed(error) => encode_event("error", &stream_error_body(error).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::JobError;
    use crate::engine::chat::ChatDone;
    use crate::llm::sse::SseDecoder;
    use serde_json::Value;

    fn decoded(event: &ChatEvent) -> (String, Value) {
        let mut events = SseDecoder::default().push(frame(event).as_bytes());
        assert_eq!(events.len(), 1);
        let event = events.remove(0);
        (
            event.event.unwrap(),
            serde_json::from_str(&event.data).unwrap(),
        )
    }

    #[test]
    fn events_are_framed_as_the_reference_names_them() {
        assert_eq!(
            decoded(&ChatEvent::Token("line 1\nline 2".into())),
            ("token".into(), json!({"content": "line 1\nline 2"}))
        );
        let job_id = uuid::Uuid::new_v4();
        assert_eq!(
            decoded(&ChatEvent::Done(ChatDone {
                prompt_tokens: 10,
                completion_tokens: 2,
                cached_tokens: Some(8),
                estimated_cost: Some(0.0001),
                job_id: Some(job_id),
            })),
            (
                "done".into(),
                json!({
                    "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12, "cached_tokens": 8},
                    "estimated_cost": 0.0001,
                    "job_id": job_id
                })
            )
        );
        let (_, unpriced) = decoded(&ChatEvent::Done(ChatDone {
            prompt_tokens: 1,
            completion_tokens: 1,
            cached_tokens: None,
            estimated_cost: None,
            job_id: None,
        }));
        assert!(
            unpriced.get("estimated_cost").is_none()
                && unpriced["usage"].get("cached_tokens").is_none()
        );
        assert_eq!(
            decoded(&ChatEvent::Failed(JobError {
                code: "PROVIDER_RATE_LIMITED".into(),
                message: "slow down".into()
            })),
            (
                "error".into(),
                json!({"error": "slow down", "error_code": "PROVIDER_RATE_LIMITED"})
            )
        );
    }

    #[tokio::test]
    async fn refusals_are_json_errors_before_any_event() {
        use futures_util::StreamExt;
        let memory = crate::memory::MemoryGateway::new();
        let request = |method: &str, path: &str, content_type: &str, body: &str| {
            let http = http::Request::builder()
                .method(method)
                .uri(path)
                .header("content-type", content_type)
                .body(body.as_bytes().to_vec())
                .unwrap();
            ApiRequest::from_http(path, http)
        };
        let cases = [
            (
                request("GET", "/api/v1/chat/completions", "application/json", ""),
                405,
                "METHOD_NOT_ALLOWED",
            ),
            (
                request("POST", "/api/v1/chat/other", "application/json", "{}"),
                404,
                "NOT_FOUND",
            ),
            (
                request("POST", "/api/v1/chat/completions", "text/plain", "{}"),
                415,
                "UNSUPPORTED_MEDIA_TYPE",
            ),
            (
                request("POST", "/api/v1/chat/completions", "application/json", "{}"),
                422,
                "VALIDATION_ERROR",
            ),
            (
                request(
                    "POST",
                    "/api/v1/chat/completions",
                    "application/json",
                    &" ".repeat(crate::engine::MAX_REQUEST_BODY_BYTES + 1),
                ),
                413,
                "INPUT_TOO_LARGE",
            ),
        ];
        for (request, status, code) in cases {
            let response = respond(&memory.gateway, request).await.into_http();
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(response.headers()["content-type"], "application/json");
            let body: Vec<Bytes> = response.into_body().collect().await;
            let body: Value = serde_json::from_slice(&body.concat()).unwrap();
            assert_eq!(body["error_code"], code, "{body}");
        }
    }
}
