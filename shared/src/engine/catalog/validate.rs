//! Field validators shared by the catalog's entities, and the placeholder rule of user
//! prompts (also checked when a job is planned).

use crate::domain::ProcessingMode;
use crate::engine::error::{EngineError, EngineResult, Location};
use crate::text::prompt::placeholder_count;

/// 422 unless `value` has `min..=max` characters once trimmed.
pub fn text_length(field: &str, value: &str, min: usize, max: usize) -> EngineResult<()> {
    let length = value.trim().chars().count();
    if length < min || value.chars().count() > max {
        return Err(EngineError::validation(
            Location::Body,
            field,
            format!("must have {min} to {max} characters"),
        ));
    }
    Ok(())
}

/// 422 unless `value` is translations: an object of at most 50 language tags (1–16
/// letters, digits, `-` or `_`) to strings of at most 4,000 characters.
pub fn translations(field: &str, value: &serde_json::Value) -> EngineResult<()> {
    let problem = |problem: String| Err(EngineError::validation(Location::Body, field, problem));
    let Some(entries) = value.as_object() else {
        return problem("must be an object of translations, e.g. {\"en\": \"...\"}".into());
    };
    if entries.len() > 50 {
        return problem("must have at most 50 translations".into());
    }
    for (language, text) in entries {
        let tag_ok = (1..=16).contains(&language.chars().count())
            && language
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !tag_ok {
            return problem(format!(
                "'{language}' is not a language tag (1-16 letters, digits, - or _)"
            ));
        }
        match text.as_str() {
            Some(text) if text.chars().count() <= 4000 => {}
            Some(_) => return problem(format!("the '{language}' text is over 4000 characters")),
            None => return problem(format!("the '{language}' translation must be a string")),
        }
    }
    Ok(())
}

/// The string field `name` of a request body, 1 to `max` characters once trimmed (422
/// naming it when it is missing, not a string, blank or too long).
pub fn required_text(
    fields: &serde_json::Map<String, serde_json::Value>,
    name: &str,
    max: usize,
) -> EngineResult<String> {
    let text = match fields.get(name) {
        None | Some(serde_json::Value::Null) => {
            return Err(EngineError::validation(
                Location::Body,
                name,
                "field required",
            ))
        }
        Some(serde_json::Value::String(text)) => text,
        Some(_) => {
            return Err(EngineError::validation(
                Location::Body,
                name,
                "must be a string",
            ))
        }
    };
    text_length(name, text, 1, max)?;
    Ok(text.clone())
}

/// 422 unless `value` is one of `allowed`.
pub fn one_of(field: &str, value: &str, allowed: &[&str]) -> EngineResult<()> {
    if allowed.contains(&value) {
        return Ok(());
    }
    Err(EngineError::validation(
        Location::Body,
        field,
        format!("must be one of {}", allowed.join(", ")),
    ))
}

/// 422 unless `value` is an absolute http(s) URL with a host.
pub fn http_url(field: &str, value: &str) -> EngineResult<()> {
    let parsed = reqwest::Url::parse(value.trim());
    let valid = parsed.is_ok_and(|url| {
        matches!(url.scheme(), "http" | "https") && url.host_str().is_some_and(|h| !h.is_empty())
    });
    if valid && value.len() <= 500 {
        return Ok(());
    }
    Err(EngineError::validation(
        Location::Body,
        field,
        "must be an http:// or https:// URL with a host (at most 500 characters)",
    ))
}

/// The placeholder rule: a user prompt has exactly the number of `{}` its processing mode
/// fills (one for single pass; two, summary so far and new turns, for iterative). An
/// empty prompt passes (a template fills it later). `field` names where the prompt came
/// from (`prompt_user_content` or `user_prompt_template_id`).
pub fn check_placeholders(mode: ProcessingMode, prompt: &str, field: &str) -> EngineResult<()> {
    let required = mode.required_placeholders();
    let actual = placeholder_count(prompt);
    if prompt.is_empty() || actual == required {
        return Ok(());
    }
    Err(EngineError::PromptPlaceholders {
        field: field.to_string(),
        mode,
        required,
        actual,
    })
}

/// Longest accepted `organization_id`.
const MAX_ORGANIZATION_ID_CHARS: usize = 100;

/// Checks an organization id: 1–100 characters, not blank (only whitespace), no control
/// characters. The error is the problem, for the caller to attach to its field.
pub fn validate_organization_id(org: &str) -> Result<(), String> {
    if org.trim().is_empty()
        || org.chars().count() > MAX_ORGANIZATION_ID_CHARS
        || org.chars().any(char::is_control)
    {
        return Err(format!(
            "must be 1 to {MAX_ORGANIZATION_ID_CHARS} characters, not blank, without control characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validators_name_the_field() {
        assert!(text_length("name", " ab ", 1, 4).is_ok());
        assert_eq!(
            text_length("name", "  ", 1, 4).unwrap_err().field(),
            Some("name")
        );
        assert!(one_of("mode", "a", &["a", "b"]).is_ok());
        assert_eq!(one_of("mode", "c", &["a", "b"]).unwrap_err().status(), 422);
        assert!(http_url("url", "https://api.example.com/v1").is_ok());
        for bad in ["ftp://x", "http://", "not a url"] {
            assert!(http_url("url", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn translations_are_language_tags_to_strings() {
        use serde_json::json;
        assert!(translations(
            "name",
            &json!({"en": "Summary", "fr": "Résumé", "pt-BR": ""})
        )
        .is_ok());
        assert!(translations("name", &json!({})).is_ok());
        for bad in [
            json!("Summary"),
            json!({"en": {"BOOL": false}}),
            json!({"en": ["a"]}),
            json!({"": "x"}),
            json!({"e n": "x"}),
            json!({"en": "x".repeat(4001)}),
        ] {
            let error = translations("name", &bad).unwrap_err();
            assert_eq!(
                (error.status(), error.field()),
                (422, Some("name")),
                "{bad}"
            );
        }
    }

    #[test]
    fn organization_ids_are_neither_empty_nor_blank() {
        assert!(validate_organization_id("org-1").is_ok());
        assert!(validate_organization_id(" org 1 ").is_ok());
        for bad in ["", " ", "\t", "   ", "a\u{0}", &"x".repeat(101)] {
            let problem = validate_organization_id(bad).unwrap_err();
            assert!(
                problem.contains("1 to 100 characters"),
                "{bad:?}: {problem}"
            );
        }
    }

    #[test]
    fn placeholders_must_match_the_mode() {
        assert!(check_placeholders(ProcessingMode::SinglePass, "Summarise: {}", "p").is_ok());
        assert!(check_placeholders(ProcessingMode::Iterative, "{} then {}", "p").is_ok());
        assert!(check_placeholders(ProcessingMode::Iterative, "", "p").is_ok());
        let error = check_placeholders(ProcessingMode::Iterative, "only {}", "p").unwrap_err();
        assert_eq!(
            (error.status(), error.code()),
            (400, "PROMPT_VALIDATION_ERROR")
        );
    }
}
