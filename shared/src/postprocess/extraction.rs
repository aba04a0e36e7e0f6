//! Field extraction: the request's `extraction_fields`, prompt filling, and the stored
//! `extracted_metadata` built from the model's answer.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::categorization::FieldProblem;
use crate::text::prompt::replace_markers;

/// Placeholders the gateway fills itself; they cannot be extraction field names.
pub const STANDARD_PLACEHOLDERS: [&str; 7] = [
    "output",
    "job_id",
    "job_date",
    "service_name",
    "flavor_name",
    "organization_name",
    "generated_at",
];

/// Most fields one request may ask for.
pub const MAX_FIELDS: usize = 50;
/// Longest field name, in characters.
pub const MAX_FIELD_NAME_CHARS: usize = 64;
/// Longest field hint, in characters.
pub const MAX_HINT_CHARS: usize = 500;

/// Named marker replaced by the document when the template has fewer than two `{}`.
pub const OUTPUT_MARKER: &str = "{{output}}";
/// Named marker replaced by the field list when the template has fewer than two `{}`.
pub const FIELDS_MARKER: &str = "{{metadata_fields}}";

/// Positional placeholder.
const POSITIONAL: &str = "{}";

/// Validates the request's `extraction_fields` (`{name: hint}`); hints are trimmed and a
/// null hint becomes `""`. Field paths are rooted at `extraction_fields`.
pub fn parse_fields(value: &Value) -> Result<BTreeMap<String, String>, FieldProblem> {
    let object = value.as_object().ok_or_else(|| {
        FieldProblem::new(
            "extraction_fields",
            "must be an object mapping field names to hints",
        )
    })?;
    if object.is_empty() || object.len() > MAX_FIELDS {
        return Err(FieldProblem::new(
            "extraction_fields",
            format!("must have between 1 and {MAX_FIELDS} fields"),
        ));
    }
    let mut fields = BTreeMap::new();
    for (name, hint) in object {
        if !is_valid_field_name(name) {
            return Err(FieldProblem::new(
                "extraction_fields",
                format!(
                    "'{name}' is not a valid field name: use at most {MAX_FIELD_NAME_CHARS} ASCII letters, digits or _, not starting with a digit"
                ),
            ));
        }
        let path = format!("extraction_fields.{name}");
        if STANDARD_PLACEHOLDERS.contains(&name.as_str()) {
            return Err(FieldProblem::new(
                path,
                format!("'{name}' is a standard placeholder, filled by the gateway"),
            ));
        }
        let hint = match hint {
            Value::Null => String::new(),
            Value::String(hint) if hint.chars().count() <= MAX_HINT_CHARS => {
                hint.trim().to_string()
            }
            Value::String(_) => {
                return Err(FieldProblem::new(
                    path,
                    format!("must be at most {MAX_HINT_CHARS} characters"),
                ))
            }
            _ => return Err(FieldProblem::new(path, "must be a string or null")),
        };
        fields.insert(name.clone(), hint);
    }
    Ok(fields)
}

/// `^[A-Za-z_][A-Za-z0-9_]*$`, at most [`MAX_FIELD_NAME_CHARS`] long.
fn is_valid_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    name.len() <= MAX_FIELD_NAME_CHARS
        && (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Why `template` cannot be used as an extraction prompt, if it cannot: it needs at least
/// two `{}` (document, then field list) or both `{{output}}` and `{{metadata_fields}}`.
pub fn prompt_problem(template: &str) -> Option<String> {
    let positional = template.matches(POSITIONAL).count();
    if positional >= 2 || (template.contains(OUTPUT_MARKER) && template.contains(FIELDS_MARKER)) {
        return None;
    }
    Some(format!(
        "an extraction prompt needs two {{}} placeholders (the document, then the list of fields) or both {OUTPUT_MARKER} and {FIELDS_MARKER}; found {positional} {{}}"
    ))
}

/// The field list given to the model: a JSON array of `"name: hint"` (or `"name"`).
pub fn field_list_json(fields: &BTreeMap<String, String>) -> String {
    let list: Vec<String> = fields
        .iter()
        .map(|(name, hint)| {
            if hint.is_empty() {
                name.clone()
            } else {
                format!("{name}: {hint}")
            }
        })
        .collect();
    serde_json::to_string(&list).unwrap_or_else(|_| "[]".to_string())
}

/// Fills an extraction prompt.
///
/// With two or more `{}`, the last one receives the field list and the one before it the
/// output; earlier `{}` stay literal. Otherwise `{{output}}` and `{{metadata_fields}}` are
/// replaced. Inserted values are taken verbatim (never expanded).
pub fn fill_prompt(template: &str, fields: &BTreeMap<String, String>, output: &str) -> String {
    let field_list = field_list_json(fields);
    let positions: Vec<usize> = template
        .match_indices(POSITIONAL)
        .map(|(at, _)| at)
        .collect();
    if let [.., output_at, fields_at] = positions[..] {
        let mut filled = String::with_capacity(template.len() + output.len() + field_list.len());
        filled.push_str(&template[..output_at]);
        filled.push_str(output);
        filled.push_str(&template[output_at + POSITIONAL.len()..fields_at]);
        filled.push_str(&field_list);
        filled.push_str(&template[fields_at + POSITIONAL.len()..]);
        return filled;
    }
    replace_markers(
        template,
        &[(OUTPUT_MARKER, output), (FIELDS_MARKER, &field_list)],
    )
}

/// The stored `extracted_metadata`: exactly the requested names, looked up exactly then
/// case-insensitively in the answer; missing ones are `null`. Values are kept as JSON.
pub fn select_fields(
    answer: &Map<String, Value>,
    fields: &BTreeMap<String, String>,
) -> Map<String, Value> {
    fields
        .keys()
        .map(|name| {
            let value = answer
                .get(name)
                .or_else(|| {
                    answer
                        .iter()
                        .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
                        .map(|(_, value)| value)
                })
                .cloned()
                .unwrap_or(Value::Null);
            (name.clone(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, hint)| (name.to_string(), hint.to_string()))
            .collect()
    }

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn problem(value: Value) -> FieldProblem {
        parse_fields(&value).expect_err("should be refused")
    }

    #[test]
    fn parses_fields_and_hints() {
        let parsed = parse_fields(&json!({
            "title": " The title ",
            "_private": null,
            "Speakers2": ""
        }))
        .expect("valid");
        assert_eq!(
            parsed,
            fields(&[("title", "The title"), ("_private", ""), ("Speakers2", "")])
        );
    }

    #[test]
    fn shape_and_count_errors() {
        assert_eq!(problem(json!(["title"])).field, "extraction_fields");
        assert_eq!(
            problem(json!({})),
            FieldProblem::new("extraction_fields", "must have between 1 and 50 fields")
        );
        let many: Map<String, Value> = (0..51).map(|i| (format!("f{i}"), json!(""))).collect();
        assert_eq!(
            problem(Value::Object(many)).problem,
            "must have between 1 and 50 fields"
        );
        let fifty: Map<String, Value> = (0..50).map(|i| (format!("f{i}"), json!(""))).collect();
        assert_eq!(parse_fields(&Value::Object(fifty)).map(|f| f.len()), Ok(50));
    }

    #[test]
    fn invalid_names_are_refused() {
        for name in ["", "1st", "with space", "dash-name", "é", "a.b", "{}"] {
            let found = problem(json!({ name: "" }));
            assert_eq!(found.field, "extraction_fields", "{name:?}");
            assert!(found.problem.starts_with(&format!("'{name}'")), "{found:?}");
        }
        assert!(parse_fields(&json!({ "a".repeat(64): "" })).is_ok());
        assert!(parse_fields(&json!({ "a".repeat(65): "" })).is_err());
    }

    #[test]
    fn standard_placeholders_are_refused() {
        for name in STANDARD_PLACEHOLDERS {
            assert_eq!(
                problem(json!({ name: "" })),
                FieldProblem::new(
                    format!("extraction_fields.{name}"),
                    format!("'{name}' is a standard placeholder, filled by the gateway")
                )
            );
        }
    }

    #[test]
    fn hints_are_checked() {
        assert_eq!(
            problem(json!({"title": 3})),
            FieldProblem::new("extraction_fields.title", "must be a string or null")
        );
        assert_eq!(
            problem(json!({"title": "h".repeat(501)})),
            FieldProblem::new("extraction_fields.title", "must be at most 500 characters")
        );
        assert!(parse_fields(&json!({"title": "é".repeat(500)})).is_ok());
    }

    #[test]
    fn prompt_problem_accepts_both_styles() {
        assert_eq!(prompt_problem("Doc: {}\nFields: {}"), None);
        assert_eq!(prompt_problem("{} {} {}"), None);
        assert_eq!(prompt_problem("{{output}} then {{metadata_fields}}"), None);
        for bad in [
            "",
            "Doc: {}",
            "{{output}} only",
            "{{metadata_fields}} only",
            "{ }",
        ] {
            let problem = prompt_problem(bad).expect("a problem");
            assert!(problem.contains("{{metadata_fields}}"), "{problem}");
        }
    }

    #[test]
    fn field_list_is_sorted_with_optional_hints() {
        let list = field_list_json(&fields(&[("title", "The title"), ("date", "")]));
        assert_eq!(list, r#"["date","title: The title"]"#);
    }

    #[test]
    fn fill_prompt_positional_uses_the_last_two_placeholders() {
        let f = fields(&[("title", "short")]);
        assert_eq!(
            fill_prompt("A {} B {} C {} D", &f, "DOC"),
            r#"A {} B DOC C ["title: short"] D"#
        );
        assert_eq!(fill_prompt("{}{}", &f, "DOC"), r#"DOC["title: short"]"#);
    }

    #[test]
    fn fill_prompt_named_markers() {
        let f = fields(&[("title", "")]);
        assert_eq!(
            fill_prompt(
                "Doc: {{output}}\nFields: {{metadata_fields}}\n{{output}}",
                &f,
                "DOC"
            ),
            "Doc: DOC\nFields: [\"title\"]\nDOC"
        );
    }

    #[test]
    fn fill_prompt_does_not_expand_inserted_values() {
        let f = fields(&[("title", "{{output}} {}")]);
        assert_eq!(
            fill_prompt(
                "{{output}}|{{metadata_fields}}",
                &f,
                "doc {{metadata_fields}} {}"
            ),
            r#"doc {{metadata_fields}} {}|["title: {{output}} {}"]"#
        );
        assert_eq!(
            fill_prompt("{}|{}", &f, "doc {} {}"),
            r#"doc {} {}|["title: {{output}} {}"]"#
        );
    }

    #[test]
    fn fill_prompt_with_unicode() {
        let f = fields(&[("titre", "Titre de la réunion")]);
        assert_eq!(
            fill_prompt("Document : {}\nChamps : {}", &f, "Réunion 会议"),
            "Document : Réunion 会议\nChamps : [\"titre: Titre de la réunion\"]"
        );
    }

    #[test]
    fn select_fields_keeps_exactly_the_requested_names() {
        let f = fields(&[("title", ""), ("speakers", ""), ("date", ""), ("extra", "")]);
        let answer = object(json!({
            "title": "Budget review",
            "Speakers": ["Jean", "Marie"],
            "date": null,
            "unrequested": "dropped"
        }));
        assert_eq!(
            Value::Object(select_fields(&answer, &f)),
            json!({"title": "Budget review", "speakers": ["Jean", "Marie"], "date": null, "extra": null})
        );
    }

    #[test]
    fn select_fields_prefers_the_exact_name() {
        let f = fields(&[("title", "")]);
        let answer = object(json!({"TITLE": "upper", "title": "exact"}));
        assert_eq!(
            select_fields(&answer, &f).get("title"),
            Some(&json!("exact"))
        );
    }

    #[test]
    fn select_fields_keeps_json_values() {
        let f = fields(&[("count", ""), ("details", "")]);
        let answer = object(json!({"count": 3, "details": {"a": [1, {"b": true}]}}));
        assert_eq!(
            Value::Object(select_fields(&answer, &f)),
            json!({"count": 3, "details": {"a": [1, {"b": true}]}})
        );
        assert_eq!(
            Value::Object(select_fields(&Map::new(), &f)),
            json!({"count": null, "details": null})
        );
    }
}
