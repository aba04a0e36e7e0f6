use std::sync::Arc;

use gateway_core::aws::{ApiGatewayNotifier, DynamoConnectionStore};
use gateway_core::engine::notify::Realtime;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (gateway, clients) = gateway_core::engine::bootstrap_with_clients().await?;
    let gateway = &gateway;
    let var = |name: &str| {
        std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
    };
    let realtime = &Realtime {
        connections: Arc::new(DynamoConnectionStore::new(
            clients.dynamodb.clone(),
            var("GATEWAY_CONNECTIONS_TABLE")?,
        )),
        notifier: Arc::new(ApiGatewayNotifier::new(
            &clients.config,
            &var("GATEWAY_WS_MANAGEMENT_URL")?,
        )),
    };
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            Ok::<_, Error>(ws::handle(gateway, realtime, event.payload).await)
        },
    ))
    .await
}
