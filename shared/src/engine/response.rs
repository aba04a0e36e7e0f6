//! A JSON response: a status and a body, convertible to `http::Response` for any HTTP front
//! end. Error bodies are built at the edge ([`crate::api::response`]).

use serde_json::Value;

/// A JSON HTTP response, convertible to `http::Response` for any HTTP front end; or,
/// when `file` is set, that file as an attachment (exports, template downloads).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonResponse {
    pub status: u16,
    pub body: Value,
    pub file: Option<FileResponse>,
}

/// A file answered as an attachment.
#[derive(Debug, Clone, PartialEq)]
pub struct FileResponse {
    pub content_type: String,
    /// The name offered to save it under (ASCII, no quotes).
    pub file_name: String,
    pub bytes: Vec<u8>,
}

/// The body of an [`http::Response`]: text (JSON) or bytes (a file).
#[derive(Debug, Clone, PartialEq)]
pub enum HttpBody {
    Text(String),
    Binary(Vec<u8>),
}

impl JsonResponse {
    /// A response with the given status and body.
    pub fn new(status: u16, body: Value) -> Self {
        JsonResponse {
            status,
            body,
            file: None,
        }
    }

    /// A 200 whose body is `file`, with `Content-Disposition: attachment`.
    pub fn file(file: FileResponse) -> Self {
        JsonResponse {
            status: 200,
            body: Value::Null,
            file: Some(file),
        }
    }

    /// The `http` response, a file's bytes or JSON text.
    pub fn into_http_body(self) -> http::Response<HttpBody> {
        let Some(file) = self.file else {
            return self.into_http().map(HttpBody::Text);
        };
        let name: String = file
            .file_name
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() && c != '"' && c != '\\' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        http::Response::builder()
            .status(self.status)
            .header(http::header::CONTENT_TYPE, file.content_type)
            .header(
                http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            )
            .body(HttpBody::Binary(file.bytes))
            .unwrap_or_else(|_| http::Response::new(HttpBody::Text(String::new())))
    }

    /// The `http` response with a JSON content type (no body for 204).
    pub fn into_http(self) -> http::Response<String> {
        let body = if self.status == 204 {
            String::new()
        } else {
            self.body.to_string()
        };
        http::Response::builder()
            .status(self.status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .unwrap_or_else(|_| http::Response::new(String::new()))
    }
}
