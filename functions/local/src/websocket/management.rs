//! The management API (`POST/GET/DELETE /@connections/{id}`), as
//! `aws-sdk-apigatewaymanagement` calls it; closed or unknown connections are 410.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map};

use super::state::*;

/// A JSON error response `{"message": ...}` with API Gateway's `x-amzn-ErrorType`.
pub(super) fn api_error(status: StatusCode, error_type: &str, message: &str) -> Response {
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

pub(super) fn gone() -> Response {
    api_error(StatusCode::GONE, "GoneException", "GoneException")
}

pub(super) fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `POST /@connections/{id}`: the raw body becomes one frame (text when UTF-8).
pub(super) async fn post_to_connection(
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

pub(super) fn iso(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `GET /@connections/{id}`: `{"connectedAt", "identity": {"sourceIp", "userAgent"},
/// "lastActiveAt"}` (ISO 8601), the wire shape `aws-sdk-apigatewaymanagement` reads.
pub(super) async fn get_connection(
    State(state): State<Arc<WsState>>,
    Path(id): Path<String>,
) -> Response {
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
pub(super) async fn delete_connection(
    State(state): State<Arc<WsState>>,
    Path(id): Path<String>,
) -> Response {
    let Some(connection) = state.unregister(&id) else {
        return gone();
    };
    let _ = connection
        .outgoing
        .send(Outgoing::Close(1000, "Connection deleted"));
    StatusCode::NO_CONTENT.into_response()
}
