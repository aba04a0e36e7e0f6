use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (gateway, clients) = gateway_core::aws::bootstrap_with_clients().await?;
    let gateway = &gateway;
    let realtime = &gateway_core::aws::realtime(&clients)?;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            Ok::<_, Error>(ws::handle(gateway, realtime, event.payload).await)
        },
    ))
    .await
}
