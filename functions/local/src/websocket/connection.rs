//! One WebSocket connection: the upgrade (`$connect`), frames routed to the function,
//! route responses and management posts sent back, and `$disconnect` once at the end.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::Utc;
use serde_json::json;
use tokio::sync::mpsc;

use super::events::*;
use super::management::*;
use super::state::*;

/// Any other request: a WebSocket upgrade, accepted when `$connect` allows it.
pub(super) async fn upgrade(State(state): State<Arc<WsState>>, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    let source_ip = crate::wire::source_ip(&parts.extensions);
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
pub(super) async fn run_connection(
    state: Arc<WsState>,
    context: ConnectionContext,
    mut socket: WebSocket,
) {
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

pub(super) async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

pub(super) fn close_message(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Invokes the function for one client frame and sends the route response (or API
/// Gateway's internal-error message) back to that client.
pub(super) async fn handle_message(
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
