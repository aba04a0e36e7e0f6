use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let gateway = &gateway_core::aws::bootstrap().await?;
    let dead_letter_queue = batch_worker::dead_letter_queue_from_env();
    let dead_letter_queue = dead_letter_queue.as_deref();
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, Error>(batch_worker::handle(gateway, event, dead_letter_queue).await)
    }))
    .await
}
