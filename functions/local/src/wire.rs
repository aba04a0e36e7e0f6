//! JSON bodies for the errors hyper answers by itself.
//!
//! A request hyper cannot parse (a malformed request line or header, a bad
//! `Content-Length`, a URI over 65,534 bytes, a head over its buffer) never reaches the
//! router: hyper writes `400`, `414` or `431` with an empty body and closes the connection.
//! [`JsonErrorListener`] wraps each accepted connection so that such a response is replaced,
//! on its way out, by the front door's `{"detail", "error_code"}` JSON. A response is
//! recognised as hyper's own when it is a 4xx/5xx head without the `x-amzn-requestid`
//! header, which every response of the front door carries (as API Gateway's do).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The header every front door response carries (API Gateway's request id).
pub const REQUEST_ID_HEADER: &str = "x-amzn-requestid";

/// A TCP listener whose connections answer hyper's automatic errors in JSON.
#[derive(Debug)]
pub struct JsonErrorListener(pub TcpListener);

impl Listener for JsonErrorListener {
    type Io = JsonErrorStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, address) = Listener::accept(&mut self.0).await;
        (JsonErrorStream::new(stream), address)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// The caller's address, as `ConnectInfo` of a [`JsonErrorListener`] connection.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, JsonErrorListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, JsonErrorListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// The caller's IP from a request's `ConnectInfo` (of a [`JsonErrorListener`] or a plain
/// TCP listener); 127.0.0.1 when there is none.
pub fn source_ip(extensions: &axum::http::Extensions) -> String {
    use axum::extract::ConnectInfo;
    extensions
        .get::<ConnectInfo<Peer>>()
        .map(|ConnectInfo(Peer(address))| address.ip().to_string())
        .or_else(|| {
            extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(address)| address.ip().to_string())
        })
        .unwrap_or_else(|| "127.0.0.1".to_string())
}

/// Marks a response as the server's own (not one of hyper's automatic errors) with a
/// fresh request id, as API Gateway's responses carry one.
pub fn with_request_id(mut response: axum::response::Response) -> axum::response::Response {
    if let Ok(value) = axum::http::HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// A connection whose outgoing bytes are checked for hyper's automatic error responses.
#[derive(Debug)]
pub struct JsonErrorStream<S> {
    inner: S,
    /// A replacement response still to be written.
    pending: Vec<u8>,
}

impl<S> JsonErrorStream<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            pending: Vec::new(),
        }
    }
}

impl<S: AsyncWrite + Unpin> JsonErrorStream<S> {
    /// Writes what is left of a replacement response.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let written = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..written);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonErrorStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonErrorStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(replacement) = json_error_for(buf) {
            // hyper's response is taken as written; ours goes out instead.
            self.pending = replacement;
            if let Poll::Ready(Err(error)) = self.poll_pending(cx) {
                return Poll::Ready(Err(error));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored: hyper then writes each response head in one contiguous buffer.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// The JSON response replacing `buf` when it is one of hyper's automatic error responses:
/// a complete `HTTP/1.x 4xx|5xx` head without [`REQUEST_ID_HEADER`] and without a body.
pub fn json_error_for(buf: &[u8]) -> Option<Vec<u8>> {
    if !buf.starts_with(b"HTTP/1.") {
        return None;
    }
    let head_end = buf.windows(4).position(|window| window == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.get(9..12)?.parse().ok()?;
    if !(400..600).contains(&status) || buf.len() > head_end + 4 {
        return None;
    }
    let mut has_empty_body = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let name = name.trim().to_ascii_lowercase();
        if name == REQUEST_ID_HEADER {
            return None;
        }
        if name == "content-length" {
            has_empty_body = value.trim() == "0";
        }
    }
    if !has_empty_body {
        return None;
    }
    let (error_code, detail) = match status {
        414 => (
            "URI_TOO_LONG",
            "the request URI is longer than 65,534 bytes",
        ),
        431 => (
            "REQUEST_HEADER_FIELDS_TOO_LARGE",
            "the request line and headers are too large",
        ),
        400 => (
            "BAD_REQUEST",
            "the request could not be parsed (malformed request line, header or Content-Length)",
        ),
        _ => ("BAD_REQUEST", "the request could not be served"),
    };
    let reason = axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|status| status.canonical_reason())
        .unwrap_or("Error");
    let body = json!({"detail": detail, "error_code": error_code}).to_string();
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body.as_bytes());
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(response: &[u8]) -> serde_json::Value {
        let text = std::str::from_utf8(response).expect("utf-8");
        let (_, body) = text.split_once("\r\n\r\n").expect("a head");
        serde_json::from_str(body).expect("a JSON body")
    }

    #[test]
    fn hypers_automatic_errors_become_json() {
        for (status, code) in [
            ("400 Bad Request", "BAD_REQUEST"),
            ("414 URI Too Long", "URI_TOO_LONG"),
            (
                "431 Request Header Fields Too Large",
                "REQUEST_HEADER_FIELDS_TOO_LARGE",
            ),
        ] {
            let automatic = format!(
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\ndate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n"
            );
            let replaced = json_error_for(automatic.as_bytes()).expect("replaced");
            let text = String::from_utf8(replaced.clone()).expect("utf-8");
            assert!(
                text.starts_with(&format!("HTTP/1.1 {status}\r\n")),
                "{text}"
            );
            assert!(text.contains("content-type: application/json\r\n"));
            assert_eq!(body_of(&replaced)["error_code"], code);
            assert!(body_of(&replaced)["detail"].is_string());
        }
    }

    #[test]
    fn front_door_responses_pass_unchanged() {
        for untouched in [
            // Ours: they carry the request id.
            "HTTP/1.1 400 Bad Request\r\nx-amzn-RequestId: r\r\ncontent-length: 0\r\n\r\n",
            // Not an error, an interim response, a body, part of a head, body bytes.
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 100 Continue\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            "{\"detail\": \"x\"}",
        ] {
            assert_eq!(json_error_for(untouched.as_bytes()), None, "{untouched}");
        }
    }
}
