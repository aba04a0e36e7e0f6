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

mod connection;
mod events;
mod management;
mod state;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use axum::Router;

use connection::upgrade;
use management::{delete_connection, get_connection, post_to_connection};
use state::{new_state, WsState};

pub use events::{
    connect_event, connection_id, disconnect_event, message_event, route_response, select_route,
    ConnectionContext, DEFAULT_ROUTE,
};
pub use state::{WsFrontDoor, DEFAULT_WS_FUNCTION, DEFAULT_WS_ROUTES, MAX_MESSAGE_BYTES};

/// The router of the WebSocket port: the management API under `/@connections/{id}` and
/// the WebSocket upgrade on every other path. `domain_name` (e.g. `127.0.0.1:8081`) goes
/// into `requestContext.domainName`. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()`; prefer [`serve_ws`], which also
/// closes the connections on shutdown and answers requests hyper cannot parse in JSON.
pub fn ws_router(front_door: WsFrontDoor, domain_name: &str) -> Router {
    router_with_state(new_state(front_door, domain_name))
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
        .layer(axum::middleware::map_response(
            |response: axum::response::Response| async { crate::wire::with_request_id(response) },
        ))
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
        crate::wire::JsonErrorListener(listener),
        router_with_state(state.clone()).into_make_service_with_connect_info::<crate::wire::Peer>(),
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

#[cfg(test)]
mod tests {
    use super::events::*;
    use super::*;
    use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
    use axum::http::{HeaderMap, HeaderValue};
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine;
    use serde_json::{json, Value};

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
