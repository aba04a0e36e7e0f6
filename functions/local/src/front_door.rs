//! The API Gateway REST front door: an axum server that turns HTTP requests into proxy
//! events, invokes the function that owns the route and converts its proxy response back,
//! or, for a function that streams its answer, passes the answer on as it arrives.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde_json::json;

use crate::invoke::{Answer, InvokeError, Invoker, STREAMING_MODE_HEADER};
use crate::proxy::{proxy_event, proxy_response_to_http, IncomingRequest};
use crate::routes::{match_route, Route};
use crate::wire::{source_ip, REQUEST_ID_HEADER};

/// API Gateway REST's request payload limit (10 MB), the default body limit.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// Lambda's synchronous invocation request payload limit: an event larger than this is
/// refused by Lambda before the function runs (the body is base64-encoded in the event,
/// so bodies over about 4.7 MB never reach a handler).
pub const LAMBDA_REQUEST_PAYLOAD_BYTES: usize = 6_291_556;

/// Everything the front door needs to answer requests.
#[derive(Clone, Debug)]
pub struct FrontDoor {
    /// Invoke API client.
    pub invoker: Invoker,
    /// Resource table.
    pub routes: &'static [Route],
    /// Larger request bodies are refused with 413 without invoking.
    pub max_body_bytes: usize,
    /// An invocation without a result by then is answered 504 (API Gateway's integration
    /// timeout, 29 s).
    pub timeout: Duration,
}

/// The axum router: every path proxied to the function that owns its route.
/// Serve it with [`crate::serve_http`] (or `into_make_service_with_connect_info` of
/// [`Peer`] or `SocketAddr`) so events carry the caller's IP.
pub fn router(front_door: FrontDoor) -> Router {
    Router::new()
        .fallback(proxy_request)
        .with_state(Arc::new(front_door))
}

async fn proxy_request(State(front_door): State<Arc<FrontDoor>>, request: Request) -> Response {
    let source_ip = source_ip(request.extensions());
    handle(&front_door, request, &source_ip).await
}

/// Answers one proxied request: 404 for unknown paths, 413 for oversized bodies, 502
/// when the invocation fails or returns a malformed proxy response, 504 when it has no
/// result within the timeout, else the function's response. Every response carries the
/// request id in `x-amzn-RequestId`, as API Gateway's do.
pub async fn handle(front_door: &FrontDoor, request: Request, source_ip: &str) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut response = respond(front_door, request, source_ip, &request_id).await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

async fn respond(
    front_door: &FrontDoor,
    request: Request,
    source_ip: &str,
    request_id: &str,
) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let Some(route) = match_route(front_door.routes, path) else {
        return error_response(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no route for {} {}", parts.method, path),
        );
    };
    let declared_length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok())
        .and_then(|length| length.parse::<u64>().ok());
    let too_large = || {
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!(
                "request body exceeds {} bytes (API Gateway's payload limit)",
                front_door.max_body_bytes
            ),
        )
    };
    if declared_length.is_some_and(|length| length > MAX_DRAIN_BYTES as u64) {
        return too_large();
    }
    let declared_too_large =
        declared_length.is_some_and(|length| length > front_door.max_body_bytes as u64);
    let body = match read_body(body, front_door.max_body_bytes).await {
        Ok(Some(body)) if !declared_too_large => body,
        Ok(_) => return too_large(),
        Err(error) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                format!("could not read the body: {error}"),
            )
        }
    };
    let incoming = IncomingRequest {
        method: &parts.method,
        path,
        query: parts.uri.query(),
        headers: &parts.headers,
        body: &body,
        source_ip,
        request_id,
    };
    let event = proxy_event(&incoming, &route);
    let function = route.route.function;
    // Encoded once: its size is what Lambda limits, and it is what is sent.
    let payload = event.to_string().into_bytes();
    let event_bytes = payload.len();
    if event_bytes > LAMBDA_REQUEST_PAYLOAD_BYTES {
        return error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!(
                "the request's Lambda event is {event_bytes} bytes (the body is base64-encoded), over Lambda's {LAMBDA_REQUEST_PAYLOAD_BYTES}-byte payload limit; send large inputs with POST /api/v1/uploads"
            ),
        );
    }
    let result = front_door
        .invoker
        .invoke_answer(function, payload, front_door.timeout)
        .await;
    let response = match result {
        Err(error @ InvokeError::Timeout { .. }) => {
            tracing::error!(function, %request_id, %error, "invocation timed out");
            error_response(
                StatusCode::GATEWAY_TIMEOUT,
                "INTEGRATION_TIMEOUT",
                format!("function {function} did not answer in time: {error}"),
            )
        }
        Err(error) => {
            tracing::error!(function, %request_id, %error, "invocation failed");
            error_response(
                StatusCode::BAD_GATEWAY,
                "FUNCTION_ERROR",
                format!("function {function} failed: {error}"),
            )
        }
        Ok(Answer::Streamed {
            status,
            headers,
            body,
        }) => streamed_response(status, &headers, body),
        Ok(Answer::Result(result)) => match proxy_response_to_http(&result) {
            Ok(reply) => {
                let mut response = Response::new(Body::from(reply.body));
                *response.status_mut() = reply.status;
                *response.headers_mut() = reply.headers;
                response
            }
            Err(reason) => {
                tracing::error!(function, %request_id, %reason, %result, "malformed proxy response");
                error_response(
                    StatusCode::BAD_GATEWAY,
                    "FUNCTION_ERROR",
                    format!("function {function} returned a malformed proxy response: {reason}"),
                )
            }
        },
    };
    tracing::info!(
        method = %parts.method,
        path,
        function,
        %request_id,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

/// Headers of `cargo lambda watch`'s streamed answer that are its own, not the function's.
const STREAM_TRANSPORT_HEADERS: [&str; 6] = [
    STREAMING_MODE_HEADER,
    "transfer-encoding",
    "content-length",
    "connection",
    "date",
    "x-amzn-remapped-content-length",
];

/// The HTTP response of a streamed answer (API Gateway's response transfer mode
/// `STREAM`): the function's status and headers, then its body as it arrives. A body
/// that breaks off ends the response early (the client sees the connection close).
fn streamed_response(
    status: StatusCode,
    headers: &axum::http::HeaderMap,
    body: futures_util::stream::BoxStream<'static, Result<Bytes, InvokeError>>,
) -> Response {
    let body = body.map(|piece| {
        piece.map_err(|error| {
            tracing::warn!(%error, "streamed answer broke off");
            std::io::Error::other(error.to_string())
        })
    });
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = status;
    for (name, value) in headers {
        if !STREAM_TRANSPORT_HEADERS.contains(&name.as_str()) {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
}

/// Reads the whole body, or `None` as soon as it exceeds `limit` bytes.
/// Bodies up to this size are read to the end even when over the limit, so that the
/// client finishes sending and reads the 413 instead of a broken pipe.
const MAX_DRAIN_BYTES: usize = 64 << 20;

/// Reads the body; `None` when it exceeds `limit` (the rest is drained and discarded, up to
/// [`MAX_DRAIN_BYTES`]).
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Option<Bytes>, axum::Error> {
    let mut stream = body.into_data_stream();
    let mut collected = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        seen += chunk.len();
        if seen > limit {
            collected = Vec::new();
            if seen > MAX_DRAIN_BYTES {
                break;
            }
            continue;
        }
        collected.extend_from_slice(&chunk);
    }
    Ok((seen <= limit).then(|| Bytes::from(collected)))
}

/// A JSON error in the project's `{"detail", "error_code"}` shape.
pub fn error_response(status: StatusCode, error_code: &str, detail: String) -> Response {
    let mut response = (
        status,
        Json(json!({"detail": detail, "error_code": error_code})),
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::ROUTES;

    fn front_door(max_body_bytes: usize) -> FrontDoor {
        // Nothing listens on port 9: reaching the invoker would yield 502, not 404/413.
        let invoker =
            Invoker::new("http://127.0.0.1:9", Duration::from_secs(2)).expect("client builds");
        FrontDoor {
            invoker,
            routes: ROUTES,
            max_body_bytes,
            timeout: Duration::from_secs(2),
        }
    }

    async fn json_body(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body reads");
        serde_json::from_slice(&bytes).expect("body is JSON")
    }

    fn request(method: &str, uri: &str, body: impl Into<Body>) -> Request {
        Request::builder()
            .method(method)
            .uri(uri)
            .body(body.into())
            .expect("valid request")
    }

    #[tokio::test]
    async fn unknown_path_is_404_json() {
        let response = handle(
            &front_door(100),
            request("GET", "/x", Body::empty()),
            "127.0.0.1",
        )
        .await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(response.headers().contains_key(REQUEST_ID_HEADER));
        assert_eq!(
            json_body(response).await,
            json!({"detail": "no route for GET /x", "error_code": "NOT_FOUND"})
        );
    }

    #[tokio::test]
    async fn oversized_body_is_413_without_invoking() {
        let body = vec![b'a'; 101];
        let response = handle(
            &front_door(100),
            request("POST", "/api/v1/services/s/execute", body),
            "127.0.0.1",
        )
        .await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(json_body(response).await["error_code"], "PAYLOAD_TOO_LARGE");

        let declared = Request::builder()
            .method("POST")
            .uri("/api/v1/services/s/execute")
            .header("content-length", "5000")
            .body(Body::empty())
            .expect("valid request");
        let response = handle(&front_door(100), declared, "127.0.0.1").await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn a_body_whose_base64_event_exceeds_lambdas_payload_is_413_without_invoking() {
        // Under the body limit, but about 6.7 MB once base64-encoded in the event.
        let body = vec![b'a'; 5_000_000];
        let response = handle(
            &front_door(DEFAULT_MAX_BODY_BYTES),
            request("POST", "/api/v1/services/s/execute", body),
            "127.0.0.1",
        )
        .await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body = json_body(response).await;
        assert_eq!(body["error_code"], "PAYLOAD_TOO_LARGE");
        assert!(
            body["detail"].as_str().unwrap().contains("uploads"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn unreachable_invoke_api_is_502_function_error() {
        let body = vec![b'a'; 100];
        let response = handle(
            &front_door(100),
            request("POST", "/api/v1/services/s/execute", body),
            "127.0.0.1",
        )
        .await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(json_body(response).await["error_code"], "FUNCTION_ERROR");
    }
}
