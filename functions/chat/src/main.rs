use lambda_http::request::LambdaRequest;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let gateway = &gateway_core::aws::bootstrap().await?;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<LambdaRequest>| async move {
            Ok::<_, Error>(chat::handle(gateway, event.payload.into()).await)
        },
    ))
    .await
}
