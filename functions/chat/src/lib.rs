//! `POST /api/v1/chat/completions`: the answer streamed as server-sent events (Lambda
//! response streaming: the HTTP status and headers first, then the body as it is
//! produced); a refused request is a JSON error. The route is
//! [`gateway_core::api::chat::TABLE`], answered by [`gateway_core::api::chat::respond`].

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use gateway_core::api::ApiRequest;
use gateway_core::engine::Gateway;
use lambda_http::{Request, RequestExt};
use lambda_runtime::{MetadataPrelude, StreamResponse};

/// The body of a streamed answer.
pub type ChatBody = BoxStream<'static, Result<Bytes, Infallible>>;

/// Handles one API Gateway request.
pub async fn handle(gateway: &Gateway, request: Request) -> StreamResponse<ChatBody> {
    let path = request.raw_http_path().to_owned();
    let request = ApiRequest::from_http(&path, request);
    let (parts, body) = gateway_core::api::chat::respond(gateway, request)
        .await
        .into_http()
        .into_parts();
    StreamResponse {
        metadata_prelude: MetadataPrelude {
            status_code: parts.status,
            headers: parts.headers,
            cookies: Vec::new(),
        },
        stream: body.map(Ok).boxed(),
    }
}
