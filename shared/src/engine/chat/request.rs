//! The chat request: its body decoded and checked, each problem a 400 naming its field,
//! and the flavor's system prompt filled from its `context`.

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::engine::catalog::validate::validate_organization_id;
use crate::engine::error::EngineResult;
use crate::engine::execute::request::{body_object, invalid, optional_string};
use crate::llm::ChatMessage;
use crate::text::prompt::replace_markers;

/// Most messages in one request.
pub const MAX_MESSAGES: usize = 100;
/// Longest message content, in characters.
pub const MAX_CONTENT_CHARS: usize = 100_000;
/// Longest `context.transcript`, in characters.
pub const MAX_TRANSCRIPT_CHARS: usize = 500_000;
/// Longest `context.summary`, in characters.
pub const MAX_SUMMARY_CHARS: usize = 100_000;
/// Largest `max_tokens`.
pub const MAX_TOKENS_LIMIT: u64 = 128_000;
/// Longest `session_id`, in characters.
pub const MAX_SESSION_ID_CHARS: usize = 255;

/// A checked chat request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatCompletionRequest {
    pub flavor_id: Uuid,
    /// The conversation so far, oldest first: `user` and `assistant` messages.
    pub messages: Vec<ChatMessage>,
    pub context: ChatContext,
    /// The answer's token limit (default: the model's `max_generation_length`).
    pub max_tokens: Option<u32>,
    /// Answers of one session count on one job.
    pub session_id: Option<String>,
    pub organization_id: Option<String>,
}

/// What the flavor's system prompt is filled with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatContext {
    pub transcript: String,
    pub summary: Option<String>,
    /// Values of other `{key}` placeholders.
    pub metadata: Map<String, Value>,
}

impl ChatCompletionRequest {
    /// Parses and checks a request body; errors name the field and the problem.
    pub fn parse(body: &[u8]) -> EngineResult<Self> {
        let mut fields = body_object(body)?;
        let flavor_id = optional_string(&mut fields, "flavor_id")?
            .ok_or_else(|| invalid("flavor_id", "is required"))?;
        let flavor_id = Uuid::parse_str(flavor_id.trim())
            .map_err(|_| invalid("flavor_id", "must be a UUID"))?;
        let messages = parse_messages(fields.remove("messages"))?;
        let context = parse_context(fields.remove("context"))?;
        let max_tokens = match fields.remove("max_tokens") {
            None | Some(Value::Null) => None,
            Some(value) => Some(
                value
                    .as_u64()
                    .filter(|tokens| (1..=MAX_TOKENS_LIMIT).contains(tokens))
                    .ok_or_else(|| {
                        invalid(
                            "max_tokens",
                            format!("must be an integer from 1 to {MAX_TOKENS_LIMIT}"),
                        )
                    })? as u32,
            ),
        };
        let session_id = optional_string(&mut fields, "session_id")?;
        if let Some(session) = &session_id {
            let length = session.chars().count();
            if session.trim().is_empty() || length > MAX_SESSION_ID_CHARS {
                return Err(invalid(
                    "session_id",
                    format!("must be 1 to {MAX_SESSION_ID_CHARS} characters, not blank"),
                ));
            }
        }
        let organization_id = optional_string(&mut fields, "organization_id")?;
        if let Some(organization_id) = &organization_id {
            validate_organization_id(organization_id)
                .map_err(|problem| invalid("organization_id", problem))?;
        }
        Ok(ChatCompletionRequest {
            flavor_id,
            messages,
            context,
            max_tokens,
            session_id,
            organization_id,
        })
    }
}

fn parse_messages(value: Option<Value>) -> EngineResult<Vec<ChatMessage>> {
    let Some(Value::Array(items)) = value else {
        return Err(invalid(
            "messages",
            "is required: a list of {role, content}",
        ));
    };
    if items.is_empty() || items.len() > MAX_MESSAGES {
        return Err(invalid(
            "messages",
            format!(
                "must hold 1 to {MAX_MESSAGES} messages, not {}",
                items.len()
            ),
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let field = |name: &str| format!("messages[{index}].{name}");
            let Value::Object(mut message) = item else {
                return Err(invalid(
                    &format!("messages[{index}]"),
                    "must be an object {role, content}",
                ));
            };
            let role = match message.remove("role") {
                Some(Value::String(role)) if role == "user" || role == "assistant" => role,
                _ => {
                    return Err(invalid(
                        &field("role"),
                        "must be \"user\" or \"assistant\" (the system prompt is the flavor's)",
                    ))
                }
            };
            let content = match message.remove("content") {
                Some(Value::String(content)) => content,
                _ => return Err(invalid(&field("content"), "is required: a string")),
            };
            if content.trim().is_empty() || content.chars().count() > MAX_CONTENT_CHARS {
                return Err(invalid(
                    &field("content"),
                    format!("must have 1 to {MAX_CONTENT_CHARS} characters, not blank"),
                ));
            }
            Ok(ChatMessage { role, content })
        })
        .collect()
}

fn parse_context(value: Option<Value>) -> EngineResult<ChatContext> {
    let Some(Value::Object(mut context)) = value else {
        return Err(invalid(
            "context",
            "is required: {transcript, summary?, metadata?}",
        ));
    };
    let transcript = optional_string(&mut context, "transcript")
        .map_err(|_| invalid("context.transcript", "must be a string"))?
        .unwrap_or_default();
    if transcript.trim().is_empty() || transcript.chars().count() > MAX_TRANSCRIPT_CHARS {
        return Err(invalid(
            "context.transcript",
            format!("must have 1 to {MAX_TRANSCRIPT_CHARS} characters, not blank"),
        ));
    }
    let summary = optional_string(&mut context, "summary")
        .map_err(|_| invalid("context.summary", "must be a string"))?;
    if summary
        .as_ref()
        .is_some_and(|summary| summary.chars().count() > MAX_SUMMARY_CHARS)
    {
        return Err(invalid(
            "context.summary",
            format!("must have at most {MAX_SUMMARY_CHARS} characters"),
        ));
    }
    let metadata = match context.remove("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(metadata)) => metadata,
        Some(_) => {
            return Err(invalid(
                "context.metadata",
                "must be an object of placeholder values",
            ))
        }
    };
    Ok(ChatContext {
        transcript,
        summary,
        metadata,
    })
}

/// The heading of the `{summary_section}` placeholder, before the summary.
const SUMMARY_SECTION_HEADING: &str = "Below is a summary that was generated from this transcript:";

/// Fills a flavor's system prompt: `{transcript}`; `{summary_section}` (the summary
/// between `---` lines under [`SUMMARY_SECTION_HEADING`], or nothing without a summary);
/// `{summary}`; then `{key}` for each metadata key (null gives nothing, a string itself,
/// any other value its JSON). Where two names could apply the first in that order wins;
/// unknown placeholders stay as written. Values are inserted as they are: a placeholder
/// inside the transcript is not replaced.
pub fn fill_system_prompt(template: &str, context: &ChatContext) -> String {
    let summary = context
        .summary
        .as_deref()
        .filter(|summary| !summary.trim().is_empty());
    let section = summary
        .map(|summary| format!("{SUMMARY_SECTION_HEADING}\n---\n{summary}\n---"))
        .unwrap_or_default();
    let metadata: Vec<(String, String)> = context
        .metadata
        .iter()
        .map(|(key, value)| {
            let text = match value {
                Value::Null => String::new(),
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            (format!("{{{key}}}"), text)
        })
        .collect();
    let mut markers: Vec<(&str, &str)> = vec![
        ("{transcript}", &context.transcript),
        ("{summary_section}", &section),
        ("{summary}", summary.unwrap_or_default()),
    ];
    markers.extend(
        metadata
            .iter()
            .map(|(marker, value)| (marker.as_str(), value.as_str())),
    );
    replace_markers(template, &markers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn context(value: Value) -> ChatContext {
        parse_context(Some(value)).unwrap()
    }

    #[test]
    fn the_system_prompt_is_filled_in_the_reference_order() {
        let template = "Meeting {conversation_name} on {date}:\n{transcript}\n\n{summary_section}\nShort: {summary}\nKept: {unknown} {}";
        let filled = fill_system_prompt(
            template,
            &context(json!({
                "transcript": "Alice: hi",
                "summary": "A greeting.",
                "metadata": {"conversation_name": "Weekly", "date": null, "attendees": 3}
            })),
        );
        assert_eq!(
            filled,
            "Meeting Weekly on :\nAlice: hi\n\nBelow is a summary that was generated from this transcript:\n---\nA greeting.\n---\nShort: A greeting.\nKept: {unknown} {}"
        );
        let numbers = fill_system_prompt(
            "{attendees} {flag} {list}",
            &context(
                json!({"transcript": "t", "metadata": {"attendees": 3, "flag": false, "list": ["a"]}}),
            ),
        );
        assert_eq!(numbers, "3 false [\"a\"]", "only null gives nothing");
    }

    #[test]
    fn without_a_summary_its_section_and_placeholder_are_empty() {
        for summary in [json!(null), json!(""), json!("  ")] {
            let filled = fill_system_prompt(
                "Before\n{summary_section}\nAfter {summary}.",
                &context(json!({"transcript": "t", "summary": summary})),
            );
            assert_eq!(filled, "Before\n\nAfter .");
        }
    }

    #[test]
    fn values_are_never_filled_again() {
        // The reference replaced in sequence, so a transcript quoting `{summary}` had it
        // replaced too; here the transcript stays as given.
        let filled = fill_system_prompt(
            "{transcript} | {summary}",
            &context(json!({
                "transcript": "Bob: write {summary} and {date}",
                "summary": "S",
                "metadata": {"date": "today", "transcript": "not this"}
            })),
        );
        assert_eq!(filled, "Bob: write {summary} and {date} | S");
    }

    fn parse(body: Value) -> EngineResult<ChatCompletionRequest> {
        ChatCompletionRequest::parse(body.to_string().as_bytes())
    }

    fn valid() -> Value {
        json!({
            "flavor_id": "0b0d3f3e-0000-4000-8000-000000000302",
            "messages": [
                {"role": "user", "content": "What was decided?"},
                {"role": "assistant", "content": "A budget."},
                {"role": "user", "content": "Which one?"}
            ],
            "context": {"transcript": "Alice: the budget"},
            "max_tokens": 200,
            "session_id": "s-1",
            "organization_id": "org-1",
            "ignored": true
        })
    }

    #[test]
    fn a_valid_request_keeps_every_field() {
        let request = parse(valid()).unwrap();
        assert_eq!(request.messages.len(), 3);
        assert_eq!(
            request.messages[1],
            ChatMessage::new("assistant", "A budget.")
        );
        assert_eq!(request.context.transcript, "Alice: the budget");
        assert_eq!(request.max_tokens, Some(200));
        assert_eq!(request.session_id.as_deref(), Some("s-1"));
        assert_eq!(request.organization_id.as_deref(), Some("org-1"));
        let minimal = parse(json!({
            "flavor_id": "0b0d3f3e-0000-4000-8000-000000000302",
            "messages": [{"role": "user", "content": "Hi"}],
            "context": {"transcript": "t"}
        }))
        .unwrap();
        assert_eq!(
            (
                minimal.max_tokens,
                minimal.session_id,
                minimal.organization_id
            ),
            (None, None, None)
        );
    }

    #[test]
    fn bad_requests_are_400_naming_the_field() {
        let many: Vec<Value> = (0..101)
            .map(|_| json!({"role": "user", "content": "x"}))
            .collect();
        let cases: Vec<(&str, Value, &str)> = vec![
            ("flavor_id", Value::Null, "flavor_id"),
            ("flavor_id", json!("nope"), "flavor_id"),
            ("messages", Value::Null, "messages"),
            ("messages", json!([]), "messages"),
            ("messages", json!(many), "messages"),
            ("messages", json!(["hi"]), "messages[0]"),
            (
                "messages",
                json!([{"role": "system", "content": "x"}]),
                "messages[0].role",
            ),
            (
                "messages",
                json!([{"role": "user", "content": "ok"}, {"role": "tool", "content": "x"}]),
                "messages[1].role",
            ),
            ("messages", json!([{"role": "user"}]), "messages[0].content"),
            (
                "messages",
                json!([{"role": "user", "content": " "}]),
                "messages[0].content",
            ),
            ("context", Value::Null, "context"),
            ("context", json!({}), "context.transcript"),
            ("context", json!({"transcript": ""}), "context.transcript"),
            ("context", json!({"transcript": 5}), "context.transcript"),
            (
                "context",
                json!({"transcript": "t", "summary": 1}),
                "context.summary",
            ),
            (
                "context",
                json!({"transcript": "t", "metadata": ["a"]}),
                "context.metadata",
            ),
            ("max_tokens", json!(0), "max_tokens"),
            ("max_tokens", json!(-1), "max_tokens"),
            ("max_tokens", json!(128_001), "max_tokens"),
            ("max_tokens", json!("5"), "max_tokens"),
            ("session_id", json!(""), "session_id"),
            ("session_id", json!("s".repeat(256)), "session_id"),
            ("organization_id", json!(""), "organization_id"),
        ];
        for (name, value, field) in cases {
            let mut body = valid();
            if value.is_null() {
                body.as_object_mut().unwrap().remove(name);
            } else {
                body[name] = value.clone();
            }
            let error = parse(body).unwrap_err();
            assert_eq!(
                (error.status(), error.code(), error.field()),
                (422, "VALIDATION_ERROR", Some(field)),
                "{name} = {value}: {error}"
            );
        }
        let not_json = ChatCompletionRequest::parse(b"{nope").unwrap_err();
        assert_eq!((not_json.status(), not_json.code()), (422, "INVALID_JSON"));
    }
}
