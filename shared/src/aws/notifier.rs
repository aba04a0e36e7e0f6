//! Posts to WebSocket connections through the API Gateway management API.

use async_trait::async_trait;

use super::sdk_error;
use crate::ports::{Delivery, IoResult, Notifier};

/// Posts to WebSocket connections through the API Gateway management API.
#[derive(Clone, Debug)]
pub struct ApiGatewayNotifier {
    client: aws_sdk_apigatewaymanagement::Client,
}

impl ApiGatewayNotifier {
    /// A notifier for the management endpoint `https://{api}.execute-api.{region}.amazonaws.com/{stage}`
    /// (locally, functions/local's WebSocket port).
    pub fn new(config: &aws_types::SdkConfig, endpoint: &str) -> Self {
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(config)
            .endpoint_url(endpoint)
            .build();
        ApiGatewayNotifier {
            client: aws_sdk_apigatewaymanagement::Client::from_conf(config),
        }
    }
}

#[async_trait]
impl Notifier for ApiGatewayNotifier {
    async fn post(&self, connection_id: &str, payload: &[u8]) -> IoResult<Delivery> {
        let result = self
            .client
            .post_to_connection()
            .connection_id(connection_id)
            .data(aws_sdk_apigatewaymanagement::primitives::Blob::new(
                payload.to_vec(),
            ))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Delivery::Sent),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_gone_exception()) =>
            {
                Ok(Delivery::Gone)
            }
            Err(error) => Err(sdk_error("post to connection")(error)),
        }
    }
}
