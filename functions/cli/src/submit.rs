//! Submitting a document: staging it (inline today), building the execute body, and
//! `POST /api/v1/services/{id}/execute`.

use reqwest::Method;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::client::ApiClient;
use crate::error::CliResult;
use crate::follow::segment;

/// How the document reaches the gateway.
///
/// Today every document travels inline in the execute body. When `POST /api/v1/uploads`
/// exists, [`stage`] uploads large documents first and returns an `Uploaded` reference,
/// and [`execute_body`] names it instead of carrying the text.
#[derive(Debug, Clone, PartialEq)]
pub enum Document {
    /// The text itself, sent as `input`.
    Inline(String),
}

/// Prepares the document for submission: the step where an upload slots in.
pub async fn stage(_client: &ApiClient, text: String) -> CliResult<Document> {
    Ok(Document::Inline(text))
}

/// The execute body: the document, the flavor (`flavor_id` for an id, else
/// `flavor_name`) and the organization.
pub fn execute_body(document: Document, flavor: Option<&str>, org: Option<&str>) -> Value {
    let mut body = Map::new();
    match document {
        Document::Inline(text) => {
            body.insert("input".into(), Value::String(text));
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
    }
}
