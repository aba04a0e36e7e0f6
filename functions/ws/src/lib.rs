//! WebSocket API and job notifications in one function:
//! - API Gateway WebSocket events: `$connect` (query `job_id=` and/or `organization_id=`),
//!   `$disconnect`, and client messages (`subscribe` / `unsubscribe` / `$default`);
//! - DynamoDB stream batches of the jobs table: a job that finishes is counted in the usage
//!   analytics (once, however often the record is replayed), and every job update is pushed
//!   to its subscribers; a failed record is reported so the stream retries from it.
//!
//! All logic lives in `gateway_core::engine::notify` and `engine::catalog::analytics`.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use gateway_core::api::response::error_body;
use gateway_core::domain::Job;
use gateway_core::engine::catalog::analytics::record_change;
use gateway_core::engine::notify::{client_message, connect, job_update, publish, Realtime};
use gateway_core::engine::Gateway;
use gateway_core::logging::job_span;
use serde_json::{json, Value};
use tracing::Instrument;

/// Handles one event: a stream batch (has `Records`) or a WebSocket event.
pub async fn handle(gateway: &Gateway, realtime: &Realtime, event: Value) -> Value {
    if event.get("Records").is_some() {
        match serde_json::from_value::<StreamEvent>(event) {
            Ok(batch) => stream_batch(gateway, realtime, batch).await,
            Err(error) => {
                tracing::error!(%error, "undecodable stream batch dropped");
                json!({"batchItemFailures": []})
            }
        }
    } else {
        match serde_json::from_value::<ApiGatewayWebsocketProxyRequest>(event) {
            Ok(request) => websocket(gateway, realtime, request).await,
            Err(error) => response(
                400,
                &json!({"detail": format!("not a WebSocket event: {error}"), "error_code": "INVALID_EVENT"}),
            ),
        }
    }
}

fn response(status: u16, body: &Value) -> Value {
    json!({"statusCode": status, "body": body.to_string()})
}

async fn websocket(
    gateway: &Gateway,
    realtime: &Realtime,
    request: ApiGatewayWebsocketProxyRequest,
) -> Value {
    let context = &request.request_context;
    let connection_id = context.connection_id.clone().unwrap_or_default();
    match context.route_key.as_deref().unwrap_or("$default") {
        "$connect" => {
            let query = &request.query_string_parameters;
            match connect(
                gateway,
                realtime,
                &connection_id,
                query.first("job_id"),
                query.first("organization_id"),
            )
            .await
            {
                Ok(()) => json!({"statusCode": 200}),
                Err(error) => {
                    tracing::info!(connection_id, %error, "connection refused");
                    response(error.status(), &error_body(&error))
                }
            }
        }
        "$disconnect" => {
            if let Err(error) = realtime.connections.remove(&connection_id).await {
                tracing::warn!(connection_id, %error, "could not remove connection; it expires with its TTL");
            }
            json!({"statusCode": 200})
        }
        _ => {
            let body = request.body.as_deref().unwrap_or_default();
            let answer = client_message(gateway, realtime, &connection_id, body)
                .await
                .unwrap_or_else(|error| {
                    let mut body = error_body(&error);
                    body["type"] = json!("error");
                    body
                });
            response(200, &answer)
        }
    }
}

async fn stream_batch(gateway: &Gateway, realtime: &Realtime, batch: StreamEvent) -> Value {
    for record in batch.records {
        let sequence_number = record.change.sequence_number.clone().unwrap_or_default();
        if record.event_name == "REMOVE" {
            continue;
        }
        let new: Job = match serde_dynamo::from_item(record.change.new_image) {
            Ok(job) => job,
            Err(error) => {
                tracing::error!(%error, sequence_number, "stream record is not a job; skipped");
                continue;
            }
        };
        let old: Option<Job> = serde_dynamo::from_item(record.change.old_image).ok();
        let span = job_span(&new.id, new.organization_id.as_deref());
        match record_change(gateway, old.as_ref(), &new)
            .instrument(span.clone())
            .await
        {
            Ok(true) => span.in_scope(
                || tracing::info!(status = ?new.status, "job counted in the usage analytics"),
            ),
            Ok(false) => {}
            Err(error) => {
                span.in_scope(|| tracing::warn!(%error, "usage not recorded; the stream will retry from this record"));
                return json!({"batchItemFailures": [{"itemIdentifier": sequence_number}]});
            }
        }
        let Some(message) = job_update(old.as_ref(), &new) else {
            continue;
        };
        match publish(realtime, &new, &message).instrument(span.clone()).await {
            Ok(report) => {
                span.in_scope(|| tracing::info!(sent = report.sent, gone = report.gone, event_type = %message["event_type"], "job update published"))
            }
            Err(error) => {
                span.in_scope(|| tracing::warn!(%error, "publish failed; the stream will retry from this record"));
                return json!({"batchItemFailures": [{"itemIdentifier": sequence_number}]});
            }
        }
    }
    json!({"batchItemFailures": []})
}
