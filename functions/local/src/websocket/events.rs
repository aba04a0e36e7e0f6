//! API Gateway WebSocket events: connection ids, route selection, the `$connect`,
//! message and `$disconnect` events the function receives, and its route responses.

use axum::http::{HeaderMap, HeaderValue};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::Utc;
use serde_json::{json, Map, Value};

use crate::proxy::{header_maps, query_maps, STAGE};

/// `$default` route key.
pub const DEFAULT_ROUTE: &str = "$default";

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
pub(super) fn status_code(result: &Value) -> Option<u16> {
    result
        .get("statusCode")
        .and_then(|code| {
            code.as_u64()
                .or_else(|| code.as_str().and_then(|text| text.parse().ok()))
        })
        .and_then(|code| u16::try_from(code).ok())
}
