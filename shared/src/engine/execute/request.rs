//! The execute request: its body decoded and validated, each problem naming its field.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::engine::catalog::validate::validate_organization_id;
use crate::engine::error::{BodyProblem, EngineError, EngineResult, Location};
use crate::postprocess::categorization::{self, CategorizationContext};
use crate::postprocess::extraction;

/// A validated execute request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecuteRequest {
    /// The text (read from the upload when `input_upload_id` names one).
    pub input: String,
    /// An upload holding the input instead of `input` (`POST /api/v1/uploads`).
    pub input_upload_id: Option<Uuid>,
    /// The size of that upload when it is too large to read before answering
    /// (`Limits::inline_plan_bytes`): `input` stays empty and the job's first step plans it.
    pub deferred_upload: Option<u64>,
    pub flavor_id: Option<Uuid>,
    pub flavor_name: Option<String>,
    pub organization_id: Option<String>,
    /// Tags to categorise the result against (needs a categorisation prompt).
    pub context: Option<CategorizationContext>,
    /// Fields to extract from the result, `name → hint` (needs an extraction prompt).
    pub extraction_fields: Option<BTreeMap<String, String>>,
    /// Whether a completed job of the same input and settings may answer (`cache`,
    /// default true).
    pub use_cache: bool,
}

impl ExecuteRequest {
    /// Parses and validates a request body; errors name the field and the problem.
    pub fn parse(body: &[u8], max_input_bytes: usize) -> EngineResult<Self> {
        let mut fields = body_object(body)?;
        let input_upload_id = optional_string(&mut fields, "input_upload_id")?
            .map(|id| {
                Uuid::parse_str(id.trim()).map_err(|_| invalid("input_upload_id", "must be a UUID"))
            })
            .transpose()?;
        let input = match (fields.remove("input"), input_upload_id) {
            (None | Some(Value::Null), None) => {
                return Err(invalid(
                    "input",
                    "is required (or input_upload_id, for a file sent to POST /api/v1/uploads)",
                ))
            }
            (None | Some(Value::Null), Some(_)) => String::new(),
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "input_upload_id",
                    "give input or input_upload_id, not both",
                ))
            }
            (Some(Value::String(input)), None) => input,
            (Some(_), None) => return Err(invalid("input", "must be a string")),
        };
        if input_upload_id.is_none() && input.trim().is_empty() {
            return Err(invalid("input", "must not be empty"));
        }
        if input.len() > max_input_bytes {
            return Err(EngineError::InvalidBody(BodyProblem::TooLarge {
                field: "input",
                size: input.len(),
                limit: max_input_bytes,
            }));
        }
        let flavor_id = optional_string(&mut fields, "flavor_id")?
            .map(|id| Uuid::parse_str(&id).map_err(|_| invalid("flavor_id", "must be a UUID")))
            .transpose()?;
        let flavor_name = optional_string(&mut fields, "flavor_name")?;
        if flavor_name
            .as_deref()
            .is_some_and(|name| name.trim().is_empty())
        {
            return Err(invalid("flavor_name", "must not be empty"));
        }
        let organization_id = optional_string(&mut fields, "organization_id")?;
        if let Some(org) = &organization_id {
            validate_organization_id(org).map_err(|problem| invalid("organization_id", problem))?;
        }
        let context = match fields.remove("context") {
            None | Some(Value::Null) => None,
            Some(value) => Some(categorization::parse_context(&value)?),
        };
        let extraction_fields = match fields.remove("extraction_fields") {
            None | Some(Value::Null) => None,
            Some(value) => Some(extraction::parse_fields(&value)?),
        };
        let use_cache = match fields.remove("cache") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(flag)) => flag,
            Some(_) => return Err(invalid("cache", "must be true or false")),
        };
        Ok(ExecuteRequest {
            input,
            input_upload_id,
            deferred_upload: None,
            flavor_id,
            flavor_name,
            organization_id,
            context,
            extraction_fields,
            use_cache,
        })
    }
}

/// 422 naming a body field, in FastAPI's list shape.
pub(crate) fn invalid(field: &str, problem: impl std::fmt::Display) -> EngineError {
    EngineError::validation(Location::Body, field, problem)
}

/// A request body as a JSON object: 400 when it is not UTF-8, 422 when it is empty, not
/// JSON or not an object.
pub(crate) fn body_object(body: &[u8]) -> EngineResult<Map<String, Value>> {
    let text = std::str::from_utf8(body).map_err(|e| {
        EngineError::InvalidBody(BodyProblem::NotUtf8 {
            valid_up_to: e.valid_up_to(),
        })
    })?;
    if text.trim().is_empty() {
        return Err(EngineError::InvalidBody(BodyProblem::Empty));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| EngineError::InvalidBody(BodyProblem::NotJson(e.to_string())))?;
    match value {
        Value::Object(fields) => Ok(fields),
        _ => Err(EngineError::InvalidBody(BodyProblem::NotObject)),
    }
}

/// Takes an optional string field out of `fields` (422 naming it unless a string or null).
pub(crate) fn optional_string(
    fields: &mut Map<String, Value>,
    name: &str,
) -> EngineResult<Option<String>> {
    match fields.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(invalid(name, "must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> EngineResult<ExecuteRequest> {
        ExecuteRequest::parse(body.as_bytes(), 100)
    }

    #[test]
    fn valid_request() {
        let request = parse(
            r#"{"input":"A : hi","flavor_name":"fast","organization_id":"org-1","metadata":{}}"#,
        )
        .unwrap();
        assert_eq!(request.input, "A : hi");
        assert_eq!(request.flavor_name.as_deref(), Some("fast"));
        assert_eq!(request.organization_id.as_deref(), Some("org-1"));
    }

    #[test]
    fn bad_requests_name_the_problem() {
        let cases = [
            ("", "INVALID_JSON", None),
            ("{not json", "INVALID_JSON", None),
            ("[1]", "INVALID_JSON", None),
            (
                "{\"input\":\"x\",\"organization_id\":\"\\u0000\"}",
                "VALIDATION_ERROR",
                Some("organization_id"),
            ),
            ("{}", "VALIDATION_ERROR", Some("input")),
            (r#"{"input":"   "}"#, "VALIDATION_ERROR", Some("input")),
            (r#"{"input":5}"#, "VALIDATION_ERROR", Some("input")),
            (
                r#"{"input":"x","cache":"no"}"#,
                "VALIDATION_ERROR",
                Some("cache"),
            ),
            (
                r#"{"input":"x","flavor_id":"nope"}"#,
                "VALIDATION_ERROR",
                Some("flavor_id"),
            ),
            (
                r#"{"input":"x","flavor_name":""}"#,
                "VALIDATION_ERROR",
                Some("flavor_name"),
            ),
            (
                r#"{"input":"x","organization_id":""}"#,
                "VALIDATION_ERROR",
                Some("organization_id"),
            ),
        ];
        for (body, code, field) in cases {
            let error = parse(body).unwrap_err();
            assert_eq!(error.status(), 422, "{body}");
            assert_eq!(error.code(), code, "{body}");
            assert_eq!(error.field(), field, "{body}");
        }
        let unprocessable = [
            (r#"{"input":"x","context":"tags"}"#, "context"),
            (r#"{"input":"x","context":{"tags":[]}}"#, "context.tags"),
            (
                r#"{"input":"x","context":{"tags":[{"name":"a","description":"d"},{"name":"A","description":"e"}]}}"#,
                "context.tags[1].name",
            ),
            (
                r#"{"input":"x","context":{"tags":[{"name":"a","description":"d"}],"allow_new_tags":"yes"}}"#,
                "context.allow_new_tags",
            ),
            (
                r#"{"input":"x","extraction_fields":[]}"#,
                "extraction_fields",
            ),
            (
                r#"{"input":"x","extraction_fields":{"output":"the text"}}"#,
                "extraction_fields.output",
            ),
            (
                r#"{"input":"x","extraction_fields":{"title":5}}"#,
                "extraction_fields.title",
            ),
        ];
        for (body, field) in unprocessable {
            let error = parse(body).unwrap_err();
            assert_eq!(
                (error.status(), error.code(), error.field()),
                (422, "VALIDATION_ERROR", Some(field)),
                "{body}"
            );
        }
        let request = parse(
            r#"{"input":"x","context":{"tags":[{"name":" Budget ","description":"money"}],"allow_new_tags":true},"extraction_fields":{"title":"short title","date":null}}"#,
        )
        .unwrap();
        let context = request.context.unwrap();
        assert_eq!(context.tags[0].name, "Budget");
        assert!(context.allow_new_tags);
        assert_eq!(
            request
                .extraction_fields
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            [
                ("date".to_string(), String::new()),
                ("title".to_string(), "short title".to_string())
            ]
        );
        let too_large = parse(&format!(r#"{{"input":"{}"}}"#, "a".repeat(101))).unwrap_err();
        assert_eq!(
            (too_large.status(), too_large.code()),
            (413, "INPUT_TOO_LARGE")
        );
        let not_utf8 = ExecuteRequest::parse(b"{\"input\":\"\xff\xfe\"}", 100).unwrap_err();
        assert_eq!(
            (not_utf8.status(), not_utf8.code()),
            (400, "INVALID_ENCODING")
        );
    }
}
