//! The API Gateway WebSocket front door and its management API, on one port.
//!
//! - Any upgrade request (any path, query kept) gets a connection id and invokes the
//!   WebSocket function with a `$connect` event; a `statusCode` >= 400 (or a failed
//!   invocation, 502) refuses the upgrade.
//! - Text frames are routed with the selection expression `$request.body.action`: the
//!   frame's JSON `action` when it names a configured route, else `$default`. A non-empty
//!   `body` in the function's result is sent back to the client (route response); a
//!   function error sends API Gateway's `{"message": "Internal server error", ...}`.
//! - A close (either side) or a broken socket invokes `$disconnect` once.
//! - `POST/GET/DELETE /@connections/{id}` is the management API (what
//!   `aws-sdk-apigatewaymanagement` calls), answered at the root without a stage prefix;
//!   unknown or closed connections are `410 GoneException`.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRequestParts, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use crate::invoke::Invoker;
use crate::proxy::{header_maps, query_maps, STAGE};

/// Largest message a client may send and the management API accepts (API Gateway's
/// 128 KB WebSocket message limit). Larger client messages close the socket with 1009.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

/// Function the WebSocket API invokes by default.
pub const DEFAULT_WS_FUNCTION: &str = "ws";

/// Routes (values of the frame's `action`) other than `$default`, by default.
pub const DEFAULT_WS_ROUTES: [&str; 2] = ["subscribe", "unsubscribe"];

/// `$default` route key.
pub const DEFAULT_ROUTE: &str = "$default";

/// Messages up to this size are read by the WebSocket layer, so that the ones over
/// [`MAX_MESSAGE_BYTES`] are answered with a 1009 close instead of a protocol error.
const TRANSPORT_MAX_MESSAGE_BYTES: usize = 1 << 20;

/// How long a server-initiated close waits for the client's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// A random id in API Gateway's style: 11 random bytes, base64 (16 characters ending in
/// `=`, may contain `+` and `/`), e.g. `L0SM9cOFvHcCIhw=`. Used for connection, request
/// and message ids.
pub fn connection_id() -> String {
    BASE64.encode(rand::random::<[u8; 11]>())
}

/// The route key of a text frame under the selection expression `$request.body.action`:
/// the frame's string `action` when it is one of `routes`, else `$default` (also for
/// frames that are not JSON objects).
pub fn select_route(frame: &str, routes: &[String]) -> String {
    serde_json::from_str::<Value>(frame)
        .ok()
        .and_then(|value| {
            value
                .get("action")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .filter(|action| routes.iter().any(|route| route == action))
        .unwrap_or_else(|| DEFAULT_ROUTE.to_string())
}

/// What every event of one connection shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionContext {
    /// The connection id.
    pub connection_id: String,
    /// `requestContext.domainName`, e.g. `127.0.0.1:8081`.
    pub domain_name: String,
    /// Client IP address.
    pub source_ip: String,
    /// Client `User-Agent`, if it sent one.
    pub user_agent: Option<String>,
    /// When the connection was opened (epoch milliseconds).
    pub connected_at_ms: i64,
}

/// `requestContext` of a WebSocket event.
fn request_context(
    context: &ConnectionContext,
    route_key: &str,
    event_type: &str,
    request_id: &str,
) -> Map<String, Value> {
    let now = Utc::now();
    let mut identity = Map::new();
    identity.insert("sourceIp".into(), json!(context.source_ip));
    if let Some(agent) = &context.user_agent {
        identity.insert("userAgent".into(), json!(agent));
    }
    let value = json!({
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
        "messageDirection": "IN",
        "stage": STAGE,
        "connectedAt": context.connected_at_ms,
        "requestTimeEpoch": now.timestamp_millis(),
        "identity": identity,
        "requestId": request_id,
        "domainName": context.domain_name,
        "connectionId": context.connection_id,
        "apiId": "local",
    });
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The `$connect` event (shape of `aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest`):
/// the upgrade request's headers plus API Gateway's `X-Forwarded-*`, its query string
/// (`null`s when there is none), and the request context with `eventType: CONNECT`.
pub fn connect_event(
    context: &ConnectionContext,
    headers: &HeaderMap,
    query: Option<&str>,
    request_id: &str,
) -> Value {
    let mut headers = headers.clone();
    for (name, value) in [
        ("x-forwarded-for", context.source_ip.clone()),
        (
            "x-forwarded-port",
            context
                .domain_name
                .rsplit_once(':')
                .map(|(_, port)| port.to_string())
                .unwrap_or_default(),
        ),
        ("x-forwarded-proto", "http".to_string()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.entry(name).or_insert(value);
        }
    }
    let (single_headers, multi_headers) = header_maps(&headers);
    let (single_query, multi_query) = query_maps(query.unwrap_or(""));
    json!({
        "headers": single_headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": single_query,
        "multiValueQueryStringParameters": multi_query,
        "requestContext": request_context(context, "$connect", "CONNECT", request_id),
        "isBase64Encoded": false,
    })
}

/// A `MESSAGE` event for one frame routed to `route_key`; binary frames are sent
/// base64-encoded with `isBase64Encoded: true`.
pub fn message_event(
    context: &ConnectionContext,
    route_key: &str,
    body: &str,
    is_base64_encoded: bool,
    request_id: &str,
    message_id: &str,
) -> Value {
    let mut request_context = request_context(context, route_key, "MESSAGE", request_id);
    request_context.insert("messageId".into(), json!(message_id));
    json!({
        "requestContext": request_context,
        "body": body,
        "isBase64Encoded": is_base64_encoded,
    })
}

/// The `$disconnect` event, with API Gateway's fixed headers and the close status.
pub fn disconnect_event(
    context: &ConnectionContext,
    status_code: u16,
    reason: &str,
    request_id: &str,
) -> Value {
    let mut request_context = request_context(context, "$disconnect", "DISCONNECT", request_id);
    request_context.insert("disconnectStatusCode".into(), json!(status_code));
    request_context.insert("disconnectReason".into(), json!(reason));
    let headers = json!({
        "Host": context.domain_name,
        "x-api-key": "",
        "X-Forwarded-For": "",
        "x-restapi": "",
    });
    let multi_headers: Map<String, Value> = headers
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, value)| (name.clone(), json!([value])))
        .collect();
    json!({
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "requestContext": request_context,
        "isBase64Encoded": false,
    })
}

/// The route response to send back for a function result: its `body` when non-empty
/// (a non-string body is sent as JSON text).
pub fn route_response(result: &Value) -> Option<String> {
    match result.get("body") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.is_empty() => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(other) => Some(other.to_string()),
    }
}

/// The `statusCode` of a function result, if it has a valid one.
fn status_code(result: &Value) -> Option<u16> {
    result
        .get("statusCode")
        .and_then(|code| {
            code.as_u64()
                .or_else(|| code.as_str().and_then(|text| text.parse().ok()))
        })
        .and_then(|code| u16::try_from(code).ok())
}

/// Configuration of the WebSocket front door.
#[derive(Clone, Debug)]
pub struct WsFrontDoor {
    /// Invoke API client.
    pub invoker: Invoker,
    /// Function handling `$connect`, `$disconnect` and every route.
    pub function: String,
    /// Route keys selectable by the frame's `action` (besides `$default`).
    pub routes: Vec<String>,
}

enum Outgoing {
    Text(String),
    Binary(Vec<u8>),
    Close(u16, &'static str),
}

struct Connection {
    context: ConnectionContext,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    last_active_ms: AtomicI64,
}

impl Connection {
    fn touch(&self) {
        self.last_active_ms
            .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
    }
}

struct WsState {
    front_door: WsFrontDoor,
    domain_name: String,
    connections: Mutex<HashMap<String, Arc<Connection>>>,
    /// Connection tasks still running (their `$disconnect` not yet invoked).
    live: AtomicUsize,
}

impl WsState {
    fn get(&self, id: &str) -> Option<Arc<Connection>> {
        self.connections
            .lock()
            .ok()
            .and_then(|connections| connections.get(id).cloned())
    }

    fn register(&self, connection: Arc<Connection>) {
        if let Ok(mut connections) = self.connections.lock() {
            connections.insert(connection.context.connection_id.clone(), connection);
        }
    }

    fn unregister(&self, id: &str) -> Option<Arc<Connection>> {
        self.connections
            .lock()
            .ok()
            .and_then(|mut connections| connections.remove(id))
    }

    /// Asks every connection to close with `code`; they unregister at once.
    fn close_all(&self, code: u16, reason: &'static str) {
        let all: Vec<Arc<Connection>> = self
            .connections
            .lock()
            .map(|mut connections| connections.drain().map(|(_, c)| c).collect())
            .unwrap_or_default();
        for connection in all {
            let _ = connection.outgoing.send(Outgoing::Close(code, reason));
        }
    }
}

/// The router of the WebSocket port: the management API under `/@connections/{id}` and
/// the WebSocket upgrade on every other path. `domain_name` (e.g. `127.0.0.1:8081`) goes
/// into `requestContext.domainName`. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()`; prefer [`serve_ws`], which also
/// closes the connections on shutdown.
pub fn ws_router(front_door: WsFrontDoor, domain_name: &str) -> Router {
    router_with_state(new_state(front_door, domain_name))
}

fn new_state(front_door: WsFrontDoor, domain_name: &str) -> Arc<WsState> {
    Arc::new(WsState {
        front_door,
        domain_name: domain_name.to_string(),
        connections: Mutex::new(HashMap::new()),
        live: AtomicUsize::new(0),
    })
}

fn router_with_state(state: Arc<WsState>) -> Router {
    Router::new()
        .route(
            "/@connections/{id}",
            post(post_to_connection)
                .get(get_connection)
                .delete(delete_connection),
        )
        .fallback(upgrade)
        .with_state(state)
}

/// Serves the WebSocket front door and management API on `listener` until `shutdown`
/// completes; then closes every connection (1001, each invoking `$disconnect`) and waits
/// up to 5 s for those invocations.
pub async fn serve_ws<F>(
    listener: tokio::net::TcpListener,
    front_door: WsFrontDoor,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let domain_name = listener.local_addr()?.to_string();
    let state = new_state(front_door, &domain_name);
    let closing = state.clone();
    let served = axum::serve(
        listener,
        router_with_state(state.clone()).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        closing.close_all(1001, "Going away");
    })
    .await;
    state.close_all(1001, "Going away");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while state.live.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    served
}

/// A JSON error response `{"message": ...}` with API Gateway's `x-amzn-ErrorType`.
fn api_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    let mut response = (status, json!({ "message": message }).to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = HeaderValue::from_str(error_type) {
        headers.insert("x-amzn-ErrorType", value);
    }
    response
}

fn gone() -> Response {
    api_error(StatusCode::GONE, "GoneException", "GoneException")
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `POST /@connections/{id}`: the raw body becomes one frame (text when UTF-8).
async fn post_to_connection(
    State(state): State<Arc<WsState>>,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let data = match crate::front_door::read_body(body, MAX_MESSAGE_BYTES).await {
        Ok(Some(data)) => data,
        Ok(None) => {
            return api_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLargeException",
                &format!("Message exceeds the {MAX_MESSAGE_BYTES} byte limit"),
            )
        }
        Err(error) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "BadRequestException",
                &format!("could not read the body: {error}"),
            )
        }
    };
    let Some(connection) = state.get(&id) else {
        tracing::info!(connection_id = %id, "post to a gone connection");
        return gone();
    };
    let frame = match String::from_utf8(data.to_vec()) {
        Ok(text) => Outgoing::Text(text),
        Err(error) => Outgoing::Binary(error.into_bytes()),
    };
    if connection.outgoing.send(frame).is_err() {
        return gone();
    }
    connection.touch();
    StatusCode::OK.into_response()
}

fn iso(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `GET /@connections/{id}`: `{"connectedAt", "identity": {"sourceIp", "userAgent"},
/// "lastActiveAt"}` (ISO 8601), the wire shape `aws-sdk-apigatewaymanagement` reads.
async fn get_connection(State(state): State<Arc<WsState>>, Path(id): Path<String>) -> Response {
    let Some(connection) = state.get(&id) else {
        return gone();
    };
    let context = &connection.context;
    let mut identity = Map::new();
    identity.insert("sourceIp".into(), json!(context.source_ip));
    if let Some(agent) = &context.user_agent {
        identity.insert("userAgent".into(), json!(agent));
    }
    // The wire names are camelCase (the SDK documents them as ConnectedAt, ...).
    let body = json!({
        "connectedAt": iso(context.connected_at_ms),
        "identity": identity,
        "lastActiveAt": iso(connection.last_active_ms.load(Ordering::Relaxed)),
    });
    json_response(StatusCode::OK, body.to_string())
}

/// `DELETE /@connections/{id}`: closes the socket (which invokes `$disconnect`); the id
/// is gone at once.
async fn delete_connection(State(state): State<Arc<WsState>>, Path(id): Path<String>) -> Response {
    let Some(connection) = state.unregister(&id) else {
        return gone();
    };
    let _ = connection
        .outgoing
        .send(Outgoing::Close(1000, "Connection deleted"));
    StatusCode::NO_CONTENT.into_response()
}

/// Any other request: a WebSocket upgrade, accepted when `$connect` allows it.
async fn upgrade(State(state): State<Arc<WsState>>, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    let source_ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip().to_string())
        .unwrap_or_else(|| "127.0.0.1".to_string());
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            let status = rejection.status();
            return json_response(
                status,
                json!({ "message": rejection.body_text() }).to_string(),
            );
        }
    };
    let context = ConnectionContext {
        connection_id: connection_id(),
        domain_name: state.domain_name.clone(),
        source_ip,
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .map(|agent| String::from_utf8_lossy(agent.as_bytes()).into_owned()),
        connected_at_ms: Utc::now().timestamp_millis(),
    };
    let request_id = connection_id();
    let event = connect_event(&context, &parts.headers, parts.uri.query(), &request_id);
    let function = state.front_door.function.as_str();
    match state.front_door.invoker.invoke(function, &event).await {
        Err(error) => {
            tracing::error!(function, connection_id = %context.connection_id, %request_id, %error, "$connect invocation failed");
            return json_response(
                StatusCode::BAD_GATEWAY,
                json!({
                    "message": "Internal server error",
                    "connectionId": context.connection_id,
                    "requestId": request_id,
                })
                .to_string(),
            );
        }
        Ok(result) => {
            if let Some(status) = status_code(&result).filter(|status| *status >= 400) {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                let body = route_response(&result).unwrap_or_else(|| {
                    json!({"message": status.canonical_reason().unwrap_or("Refused")}).to_string()
                });
                tracing::info!(function, connection_id = %context.connection_id, status = status.as_u16(), "$connect refused");
                return json_response(status, body);
            }
        }
    }
    tracing::info!(connection_id = %context.connection_id, path = %parts.uri.path(), "websocket connected");
    state.live.fetch_add(1, Ordering::SeqCst);
    let task_state = state.clone();
    upgrade
        .max_message_size(TRANSPORT_MAX_MESSAGE_BYTES)
        .max_frame_size(TRANSPORT_MAX_MESSAGE_BYTES)
        .on_failed_upgrade(move |error| {
            tracing::warn!(%error, "websocket upgrade failed");
            state.live.fetch_sub(1, Ordering::SeqCst);
        })
        .on_upgrade(move |socket| run_connection(task_state, context, socket))
}

/// Runs one accepted connection: reads frames, writes outgoing frames, and invokes
/// `$disconnect` once when the socket ends for any reason.
async fn run_connection(state: Arc<WsState>, context: ConnectionContext, mut socket: WebSocket) {
    let (sender, mut outgoing) = mpsc::unbounded_channel();
    let connection = Arc::new(Connection {
        context: context.clone(),
        outgoing: sender.clone(),
        last_active_ms: AtomicI64::new(context.connected_at_ms),
    });
    state.register(connection.clone());

    // Set once a close is under way: (status for $disconnect, reason, deadline).
    let mut closing: Option<(u16, String, tokio::time::Instant)> = None;
    let (status, reason) = loop {
        let deadline = closing.as_ref().map(|(_, _, deadline)| *deadline);
        tokio::select! {
            incoming = socket.recv() => match incoming {
                None => break match closing {
                    Some((code, reason, _)) => (code, reason),
                    None => (1006, "Going away".to_string()),
                },
                Some(Err(error)) => {
                    let too_big = error.to_string().to_ascii_lowercase().contains("too long")
                        || error.to_string().to_ascii_lowercase().contains("too big");
                    if too_big {
                        let _ = socket.send(close_message(1009, "Message too big")).await;
                        break (1009, "Message too big".to_string());
                    }
                    tracing::info!(connection_id = %context.connection_id, %error, "websocket broken");
                    break (1006, error.to_string());
                }
                // Closing: nothing more is routed; the client's close ends the stream.
                Some(Ok(_)) if closing.is_some() => {}
                Some(Ok(Message::Text(text))) => {
                    connection.touch();
                    if text.len() > MAX_MESSAGE_BYTES {
                        let _ = socket.send(close_message(1009, "Message too big")).await;
                        closing = Some((1009, "Message too big".into(), tokio::time::Instant::now() + CLOSE_GRACE));
                        state.unregister(&context.connection_id);
                        continue;
                    }
                    tokio::spawn(handle_message(state.clone(), context.clone(), sender.clone(), text.to_string(), false));
                }
                Some(Ok(Message::Binary(data))) => {
                    connection.touch();
                    if data.len() > MAX_MESSAGE_BYTES {
                        let _ = socket.send(close_message(1009, "Message too big")).await;
                        closing = Some((1009, "Message too big".into(), tokio::time::Instant::now() + CLOSE_GRACE));
                        state.unregister(&context.connection_id);
                        continue;
                    }
                    tokio::spawn(handle_message(state.clone(), context.clone(), sender.clone(), BASE64.encode(&data), true));
                }
                Some(Ok(Message::Close(frame))) => {
                    // tungstenite answers the close itself; the stream ends next.
                    let (code, reason) = match frame {
                        Some(frame) if frame.code != 1005 => (frame.code, frame.reason.to_string()),
                        _ => (1005, "Client-side close frame status not set".to_string()),
                    };
                    state.unregister(&context.connection_id);
                    closing = Some((code, reason, tokio::time::Instant::now() + CLOSE_GRACE));
                }
                Some(Ok(_ping_or_pong)) => connection.touch(),
            },
            Some(frame) = outgoing.recv() => {
                let message = match frame {
                    Outgoing::Text(text) => Message::Text(text.into()),
                    Outgoing::Binary(data) => Message::Binary(Bytes::from(data)),
                    Outgoing::Close(code, reason) => {
                        if closing.is_none() {
                            state.unregister(&context.connection_id);
                            closing = Some((code, reason.to_string(), tokio::time::Instant::now() + CLOSE_GRACE));
                            let _ = socket.send(close_message(code, reason)).await;
                        }
                        continue;
                    }
                };
                if closing.is_some() {
                    continue;
                }
                if let Err(error) = socket.send(message).await {
                    tracing::info!(connection_id = %context.connection_id, %error, "websocket write failed");
                    break (1006, error.to_string());
                }
            }
            _ = sleep_until(deadline) => {
                break match closing.take() {
                    Some((code, reason, _)) => (code, reason),
                    None => (1006, "Going away".to_string()),
                };
            }
        }
    };
    state.unregister(&context.connection_id);
    drop(outgoing);
    let request_id = connection_id();
    let event = disconnect_event(&context, status, &reason, &request_id);
    let function = state.front_door.function.as_str();
    if let Err(error) = state.front_door.invoker.invoke(function, &event).await {
        tracing::error!(function, connection_id = %context.connection_id, %request_id, %error, "$disconnect invocation failed");
    }
    tracing::info!(connection_id = %context.connection_id, status, %reason, "websocket disconnected");
    state.live.fetch_sub(1, Ordering::SeqCst);
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn close_message(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Invokes the function for one client frame and sends the route response (or API
/// Gateway's internal-error message) back to that client.
async fn handle_message(
    state: Arc<WsState>,
    context: ConnectionContext,
    sender: mpsc::UnboundedSender<Outgoing>,
    body: String,
    is_base64_encoded: bool,
) {
    let route_key = if is_base64_encoded {
        DEFAULT_ROUTE.to_string()
    } else {
        select_route(&body, &state.front_door.routes)
    };
    let request_id = connection_id();
    let message_id = connection_id();
    let event = message_event(
        &context,
        &route_key,
        &body,
        is_base64_encoded,
        &request_id,
        &message_id,
    );
    let function = state.front_door.function.as_str();
    let reply = match state.front_door.invoker.invoke(function, &event).await {
        Ok(result) => route_response(&result),
        Err(error) => {
            tracing::error!(function, connection_id = %context.connection_id, route_key, %request_id, %error, "message invocation failed");
            Some(
                json!({
                    "message": "Internal server error",
                    "connectionId": context.connection_id,
                    "requestId": request_id,
                })
                .to_string(),
            )
        }
    };
    if let Some(reply) = reply {
        let _ = sender.send(Outgoing::Text(reply));
        if let Some(connection) = state.get(&context.connection_id) {
            connection.touch();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;

    fn context() -> ConnectionContext {
        ConnectionContext {
            connection_id: "L0SM9cOFvHcCIhw=".into(),
            domain_name: "127.0.0.1:8081".into(),
            source_ip: "127.0.0.1".into(),
            user_agent: Some("test-agent".into()),
            connected_at_ms: 1_700_000_000_000,
        }
    }

    fn routes() -> Vec<String> {
        DEFAULT_WS_ROUTES.iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn connection_ids_look_like_api_gateway_ones() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let id = connection_id();
            assert_eq!(id.len(), 16, "{id}");
            assert!(id.ends_with('='), "{id}");
            assert!(id[..15]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/'));
            assert_eq!(BASE64.decode(&id).expect("base64").len(), 11);
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn routes_are_selected_by_action() {
        let routes = routes();
        assert_eq!(
            select_route(r#"{"action":"subscribe","job_id":"y"}"#, &routes),
            "subscribe"
        );
        assert_eq!(
            select_route(r#"{"action":"unsubscribe"}"#, &routes),
            "unsubscribe"
        );
        assert_eq!(select_route(r#"{"action":"nope"}"#, &routes), "$default");
        assert_eq!(select_route(r#"{"action":1}"#, &routes), "$default");
        assert_eq!(select_route(r#"{"job":"x"}"#, &routes), "$default");
        assert_eq!(select_route(r#"["subscribe"]"#, &routes), "$default");
        assert_eq!(select_route("not json", &routes), "$default");
        assert_eq!(select_route("", &routes), "$default");
        assert_eq!(select_route(r#"{"action":"subscribe"}"#, &[]), "$default");
    }

    #[test]
    fn connect_event_parses_as_websocket_request() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("127.0.0.1:8081"));
        headers.insert("user-agent", HeaderValue::from_static("test-agent"));
        headers.insert("sec-websocket-version", HeaderValue::from_static("13"));
        let event = connect_event(&context(), &headers, Some("job_id=x&t=a%20b"), "req-1");
        let request_context = &event["requestContext"];
        assert_eq!(request_context["routeKey"], "$connect");
        assert_eq!(request_context["eventType"], "CONNECT");
        assert_eq!(request_context["messageDirection"], "IN");
        assert_eq!(request_context["stage"], "local");
        assert_eq!(request_context["apiId"], "local");
        assert_eq!(request_context["connectionId"], "L0SM9cOFvHcCIhw=");
        assert_eq!(request_context["domainName"], "127.0.0.1:8081");
        assert_eq!(request_context["connectedAt"], 1_700_000_000_000i64);
        assert_eq!(request_context["identity"]["sourceIp"], "127.0.0.1");
        assert_eq!(request_context["requestId"], "req-1");
        assert!(request_context["requestTimeEpoch"].is_i64());
        assert_eq!(
            event["queryStringParameters"],
            json!({"job_id": "x", "t": "a b"})
        );
        assert_eq!(
            event["multiValueQueryStringParameters"],
            json!({"job_id": ["x"], "t": ["a b"]})
        );
        assert_eq!(event["headers"]["x-forwarded-for"], "127.0.0.1");
        assert_eq!(event["headers"]["x-forwarded-port"], "8081");
        assert_eq!(
            event["multiValueHeaders"]["sec-websocket-version"],
            json!(["13"])
        );
        assert_eq!(event["isBase64Encoded"], false);

        let parsed: ApiGatewayWebsocketProxyRequest =
            serde_json::from_value(event).expect("the runtime can read the event");
        assert_eq!(
            parsed.request_context.route_key.as_deref(),
            Some("$connect")
        );
        assert_eq!(
            parsed.request_context.event_type.as_deref(),
            Some("CONNECT")
        );
        assert_eq!(
            parsed.request_context.connection_id.as_deref(),
            Some("L0SM9cOFvHcCIhw=")
        );
        assert_eq!(parsed.request_context.connected_at, 1_700_000_000_000);
        assert_eq!(parsed.query_string_parameters.first("job_id"), Some("x"));
        assert_eq!(parsed.headers["user-agent"], "test-agent");

        let without_query = connect_event(&context(), &HeaderMap::new(), None, "req-2");
        assert_eq!(without_query["queryStringParameters"], Value::Null);
        let parsed: ApiGatewayWebsocketProxyRequest =
            serde_json::from_value(without_query).expect("null query parses");
        assert!(parsed.query_string_parameters.is_empty());
    }

    #[test]
    fn message_and_disconnect_events_parse_as_websocket_requests() {
        let body = r#"{"action":"subscribe","job_id":"y"}"#;
        let event = message_event(&context(), "subscribe", body, false, "req-3", "msg-1");
        assert_eq!(event["requestContext"]["eventType"], "MESSAGE");
        assert_eq!(event["requestContext"]["routeKey"], "subscribe");
        assert_eq!(event["requestContext"]["messageId"], "msg-1");
        assert_eq!(event["body"], body);
        let parsed: ApiGatewayWebsocketProxyRequest =
            serde_json::from_value(event).expect("message event parses");
        assert_eq!(parsed.body.as_deref(), Some(body));
        assert_eq!(parsed.request_context.message_id.as_deref(), Some("msg-1"));
        assert_eq!(
            parsed.request_context.route_key.as_deref(),
            Some("subscribe")
        );
        assert!(!parsed.is_base64_encoded);

        let event = disconnect_event(&context(), 1001, "Going away", "req-4");
        assert_eq!(event["requestContext"]["routeKey"], "$disconnect");
        assert_eq!(event["requestContext"]["eventType"], "DISCONNECT");
        assert_eq!(event["headers"]["Host"], "127.0.0.1:8081");
        let parsed: ApiGatewayWebsocketProxyRequest =
            serde_json::from_value(event).expect("disconnect event parses");
        assert_eq!(
            parsed.request_context.event_type.as_deref(),
            Some("DISCONNECT")
        );
        assert_eq!(parsed.request_context.disconnect_status_code, Some(1001));
        assert_eq!(
            parsed.request_context.disconnect_reason.as_deref(),
            Some("Going away")
        );
    }

    #[test]
    fn route_responses_come_from_non_empty_bodies() {
        assert_eq!(
            route_response(&json!({"statusCode": 200, "body": "hi"})),
            Some("hi".to_string())
        );
        assert_eq!(
            route_response(&json!({"statusCode": 200, "body": ""})),
            None
        );
        assert_eq!(route_response(&json!({"statusCode": 200})), None);
        assert_eq!(route_response(&Value::Null), None);
        assert_eq!(
            route_response(&json!({"body": {"a": 1}})),
            Some(r#"{"a":1}"#.to_string())
        );
        assert_eq!(status_code(&json!({"statusCode": "403"})), Some(403));
        assert_eq!(status_code(&json!({})), None);
    }
}
