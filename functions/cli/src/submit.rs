//! Submitting a document: staging it (inline, or above [`INLINE_LIMIT`] through
//! `POST /api/v1/uploads` and a PUT to the URL it gives), building the execute body, and
//! `POST /api/v1/services/{id}/execute`.

use reqwest::Method;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::client::ApiClient;
use crate::error::CliResult;
use crate::follow::segment;

/// Larger documents are uploaded first (the gateway takes at most 5 MB inline).
pub const INLINE_LIMIT: usize = 1_000_000;

/// How the document reaches the gateway.
#[derive(Debug, Clone, PartialEq)]
pub enum Document {
    /// The text itself, sent as `input`.
    Inline(String),
    /// Uploaded beforehand, named as `input_upload_id`.
    Uploaded(String),
}

/// Prepares the document for submission: small ones travel inline, larger ones are
/// uploaded to the URL `POST /api/v1/uploads` hands out.
pub async fn stage(client: &ApiClient, text: String) -> CliResult<Document> {
    if text.len() <= INLINE_LIMIT {
        return Ok(Document::Inline(text));
    }
    let query: Vec<(&str, String)> = client
        .org()
        .map(|org| ("organization_id", org.to_string()))
        .into_iter()
        .collect();
    let upload = client
        .json(Method::POST, "/api/v1/uploads", &query, None)
        .await?;
    let (Some(id), Some(url)) = (upload["upload_id"].as_str(), upload["url"].as_str()) else {
        return Err(crate::error::CliError::Protocol(format!(
            "the upload answer has no upload_id and url: {upload}"
        )));
    };
    eprintln!("uploading {:.1} MB", text.len() as f64 / 1e6);
    client.put(url, text.into_bytes()).await?;
    Ok(Document::Uploaded(id.to_string()))
}

/// The execute body: the document, the flavor (`flavor_id` for an id, else
/// `flavor_name`) and the organization.
pub fn execute_body(document: Document, flavor: Option<&str>, org: Option<&str>) -> Value {
    let mut body = Map::new();
    match document {
        Document::Inline(text) => {
            body.insert("input".into(), Value::String(text));
        }
        Document::Uploaded(id) => {
            body.insert("input_upload_id".into(), Value::String(id));
        }
    }
    if let Some(flavor) = flavor.map(str::trim).filter(|f| !f.is_empty()) {
        let key = if Uuid::parse_str(flavor).is_ok() {
            "flavor_id"
        } else {
            "flavor_name"
        };
        body.insert(key.into(), Value::String(flavor.to_string()));
    }
    if let Some(org) = org {
        body.insert("organization_id".into(), Value::String(org.to_string()));
    }
    Value::Object(body)
}

/// Submits the job; the 202 answer (`job_id`, `status`, `input_tokens`, ...).
pub async fn execute(client: &ApiClient, service_id: &str, body: &Value) -> CliResult<Value> {
    client
        .json(
            Method::POST,
            &format!("/api/v1/services/{}/execute", segment(service_id)),
            &[],
            Some(body),
        )
        .await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_body_names_the_flavor_by_id_or_name() {
        let doc = || Document::Inline("Alice: hi".into());
        assert_eq!(
            execute_body(doc(), Some("single-pass"), Some("acme")),
            json!({"input": "Alice: hi", "flavor_name": "single-pass", "organization_id": "acme"})
        );
        assert_eq!(
            execute_body(doc(), Some("0b0d3f3e-0000-4000-8000-000000000302"), None),
            json!({"input": "Alice: hi", "flavor_id": "0b0d3f3e-0000-4000-8000-000000000302"})
        );
        assert_eq!(
            execute_body(doc(), None, None),
            json!({"input": "Alice: hi"})
        );
        assert_eq!(
            execute_body(Document::Uploaded("u-1".into()), None, None),
            json!({"input_upload_id": "u-1"})
        );
    }
}
