//! Dev-only AWS glue for running the gateway's Lambda functions locally (never deployed).
//!
//! The functions run under `cargo lambda watch`; this crate fronts them the way AWS would,
//! speaking only HTTP to the Lambda Invoke API and SQS through the AWS SDK, so it never
//! imports handler code:
//! - [`front_door`]: the API Gateway REST front door (HTTP → proxy event → Invoke → HTTP);
//! - [`websocket`]: the API Gateway WebSocket front door (connection ids, `$connect` /
//!   `$disconnect`, routing by the frame's `action`, route responses) and, on the same
//!   port, the management API `POST/GET/DELETE /@connections/{id}` (410 for gone
//!   connections);
//! - [`sqs`]: the SQS event source mapping (batches, partial batch failures; failed
//!   invocations leave messages to the visibility timeout and the queue's redrive policy);
//! - [`streams`]: the DynamoDB stream event source mapping (every shard in order, batches,
//!   retries from the first failed record with backoff, then log and skip).

pub mod config;
pub mod front_door;
pub mod invoke;
pub mod proxy;
pub mod routes;
pub mod sqs;
pub mod streams;
pub mod websocket;
pub mod wire;

use std::future::Future;

pub use config::{parse_args, Command, Config};
pub use front_door::{router, FrontDoor};
pub use invoke::{Answer, InvokeError, Invoker};
pub use sqs::{sqs_event, SqsMapping, SqsPoller};
pub use streams::{stream_event, StreamMapping, StreamPoller};
pub use websocket::{serve_ws, ws_router, WsFrontDoor};

/// Serves the REST front door on `listener` until `shutdown` completes; requests hyper
/// cannot parse get JSON errors too ([`wire`]).
pub async fn serve_http<F>(
    listener: tokio::net::TcpListener,
    front_door: FrontDoor,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    axum::serve(
        wire::JsonErrorListener(listener),
        router(front_door).into_make_service_with_connect_info::<wire::Peer>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
