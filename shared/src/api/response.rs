//! The HTTP body of an [`EngineError`]: `{"detail": ..., "error_code": ..., ...}` with the
//! reference's shapes where it has one (FastAPI's 422 list, `prompt_validation_error`,
//! `"<Resource> not found"`), and the data of a stream's `error` event. The only place
//! error bodies are built.

use serde_json::{json, Map, Value};

use crate::domain::JobError;
use crate::engine::error::{BodyProblem, EngineError, Resource};
use crate::engine::JsonResponse;

/// The JSON body of an error.
pub fn error_body(error: &EngineError) -> Value {
    let mut body = Map::new();
    body.insert("detail".into(), json!(error.to_string()));
    body.insert("error_code".into(), json!(error.code()));
    if let Some(field) = error.field() {
        body.insert("field".into(), json!(field));
    }
    match error {
        EngineError::NotFound { what, id, .. } => {
            let name = what.name();
            let title = format!("{}{}", name[..1].to_ascii_uppercase(), &name[1..]);
            // A version number names no secret: say which one.
            let detail = match what {
                Resource::Version => format!("{title} {id} not found"),
                _ => format!("{title} not found"),
            };
            body.insert("detail".into(), json!(detail));
        }
        EngineError::Validation {
            location,
            field,
            problem,
        } => {
            let mut loc = vec![json!(location.name())];
            loc.extend(
                field
                    .split('.')
                    .filter(|part| !part.is_empty())
                    .map(|part| {
                        part.parse::<u64>()
                            .map_or_else(|_| json!(part), |i| json!(i))
                    }),
            );
            body.insert(
                "detail".into(),
                json!([{"loc": loc, "msg": problem, "type": "value_error"}]),
            );
        }
        EngineError::InvalidBody(BodyProblem::TooLarge { limit, .. }) => {
            body.insert("max_input_bytes".into(), json!(limit));
        }
        EngineError::InvalidBody(
            BodyProblem::Empty | BodyProblem::NotJson(_) | BodyProblem::NotObject,
        ) => {
            body.insert(
                "detail".into(),
                json!([{"loc": ["body"], "msg": error.to_string(), "type": "json_invalid"}]),
            );
        }
        EngineError::ContextExceeded(figures) => {
            body.insert("input_tokens".into(), json!(figures.input_tokens));
            body.insert("available_tokens".into(), json!(figures.available_tokens));
            body.insert("context_length".into(), json!(figures.context_length));
            body.insert(
                "max_generation_length".into(),
                json!(figures.max_generation_length),
            );
            body.insert("prompt_tokens".into(), json!(figures.prompt_tokens));
            body.insert("flavor_id".into(), json!(figures.flavor_id));
            body.insert("flavor_name".into(), json!(figures.flavor_name));
            body.insert("suggestion".into(), json!(figures.suggestion));
        }
        EngineError::PromptPlaceholders {
            field,
            mode,
            required,
            actual,
        } => {
            body.insert(
                "detail".into(),
                json!({
                    "type": "prompt_validation_error",
                    "field": field,
                    "message": error.to_string(),
                    "processing_mode": mode,
                    "required_placeholders": required,
                    "actual_placeholders": actual,
                }),
            );
        }
        EngineError::PresetConfig { source } => {
            let field = source.field().unwrap_or_default();
            body.insert(
                "detail".into(),
                json!({"errors": [format!("config.{field}: {source}")]}),
            );
        }
        EngineError::Refused { subject, .. } => {
            for (name, value) in subject {
                body.insert((*name).into(), json!(value));
            }
        }
        _ => {}
    }
    Value::Object(body)
}

/// The data of a stream's `error` event (a chat answer that failed or broke off): the
/// cause's `error_code`, as a failed job's, and its message (`error`, the reference's
/// field).
pub fn stream_error_body(error: &JobError) -> Value {
    json!({"error": error.message, "error_code": error.code})
}

impl From<EngineError> for JsonResponse {
    fn from(error: EngineError) -> Self {
        JsonResponse::new(error.status(), error_body(&error))
    }
}

impl From<Result<JsonResponse, EngineError>> for JsonResponse {
    fn from(result: Result<JsonResponse, EngineError>) -> Self {
        result.unwrap_or_else(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ProcessingMode;
    use crate::engine::error::{Location, Rule};

    #[test]
    fn bodies_name_the_field_and_code() {
        assert_eq!(
            error_body(&EngineError::invalid_field("input", "must not be empty")),
            json!({"detail": "input: must not be empty", "error_code": "INVALID_REQUEST", "field": "input"})
        );
        assert_eq!(
            error_body(&EngineError::not_found(Resource::FlavorPreset, "x")),
            json!({"detail": "Flavor preset not found", "error_code": "NOT_FOUND"})
        );
        assert_eq!(
            error_body(&EngineError::not_found_by(
                Resource::Version,
                7,
                "version_number"
            )),
            json!({"detail": "Version 7 not found", "error_code": "VERSION_NOT_FOUND", "field": "version_number"})
        );
        assert_eq!(
            error_body(
                &EngineError::refused(Rule::JobNotFinished, "busy").about("status", "queued")
            ),
            json!({"detail": "busy", "error_code": "JOB_NOT_FINISHED", "status": "queued"})
        );
    }

    #[test]
    fn validation_errors_have_the_fastapi_shape() {
        let error = EngineError::validation(
            Location::Body,
            "flavors.1.temperature",
            "must be from 0 to 2",
        );
        assert_eq!(error.status(), 422);
        assert_eq!(
            error_body(&error),
            json!({
                "detail": [{"loc": ["body", "flavors", 1, "temperature"], "msg": "must be from 0 to 2", "type": "value_error"}],
                "error_code": "VALIDATION_ERROR",
                "field": "flavors.1.temperature"
            })
        );
    }

    #[test]
    fn prompt_errors_have_the_reference_shape() {
        let error = EngineError::PromptPlaceholders {
            field: "prompt_user_content".into(),
            mode: ProcessingMode::Iterative,
            required: 2,
            actual: 1,
        };
        let body = error_body(&error);
        assert_eq!(body["detail"]["type"], "prompt_validation_error");
        assert_eq!(body["detail"]["actual_placeholders"], 1);
        assert_eq!(body["field"], "prompt_user_content");
        assert_eq!(error.status(), 400);
    }
}
