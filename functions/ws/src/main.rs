use std::sync::Arc;

use gateway_core::aws::{ApiGatewayNotifier, AwsClients, DynamoConnectionStore};
use gateway_core::engine::notify::Realtime;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let gateway = &gateway_core::engine::bootstrap().await?;
    let var = |name: &str| {
        std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
    };
    let clients = AwsClients::load().await;
    let realtime = &Realtime {
        connections: Arc::new(DynamoConnectionStore::new(
            clients.dynamodb.clone(),
            var("GATEWAY_CONNECTIONS_TABLE")?,
        )),
        notifier: Arc::new(ApiGatewayNotifier::new(&var("GATEWAY_WS_MANAGEMENT_URL")?).await),
    };
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            Ok::<_, Error>(ws::handle(gateway, realtime, event.payload).await)
        },
    ))
    .await
}
