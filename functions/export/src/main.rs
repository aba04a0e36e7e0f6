use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let gateway = &gateway_core::aws::bootstrap().await?;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(export::into_lambda(export::handle(gateway, request).await))
    }))
    .await
}
