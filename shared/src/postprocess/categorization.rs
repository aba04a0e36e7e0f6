//! Document categorisation: the request `context` (allowed tags, optional input text),
//! prompt filling, and the rules enforced on the model's answer.
//!
//! The prompt asks the model to match the given tags; [`enforce`] makes sure the stored
//! result obeys those rules whatever the model answered.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Marker replaced by the JSON list of allowed tags.
pub const TAGS_MARKER: &str = "{context[tags]}";
/// Marker replaced by the text to categorise.
pub const INPUT_MARKER: &str = "{context[input]}";

/// Most tags one request may define.
pub const MAX_TAGS: usize = 200;
/// Longest tag name or category, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest tag description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2_000;
/// Longest `context.input`, in characters.
pub const MAX_INPUT_CHARS: usize = 1_000_000;
/// Lowest confidence kept for a matched or suggested tag.
pub const MIN_CONFIDENCE: f64 = 0.5;
/// Confidence given to a suggested tag whose answer has no confidence at all.
pub const DEFAULT_SUGGESTION_CONFIDENCE: f64 = 0.5;

/// One allowed tag, as given in the request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagDefinition {
    /// The tag's name (trimmed, unique case-insensitively within a request).
    pub name: String,
    /// What the tag means; may be empty.
    pub description: String,
    /// Optional grouping of the tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

/// The validated `context` of a categorisation request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategorizationContext {
    /// The allowed tags (1 to [`MAX_TAGS`]).
    pub tags: Vec<TagDefinition>,
    /// Text to categorise instead of the job output, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Whether the model may suggest tags that are not in `tags`.
    #[serde(default)]
    pub allow_new_tags: bool,
}

/// A validation problem on one request field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// Path of the field, e.g. `context.tags[2].name`.
    pub field: String,
    /// What is wrong with it, e.g. `must be a non-empty string`.
    pub problem: String,
}

impl FieldProblem {
    /// A problem on `field`.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        FieldProblem {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl std::fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl std::error::Error for FieldProblem {}

/// One tag of the stored result (matched or suggested).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategorizedTag {
    /// Tag name (canonical for matched tags).
    pub name: String,
    /// Tag description (canonical for matched tags).
    pub description: String,
    /// Tag category; serialized as `null` when absent.
    #[serde(default)]
    pub category: Option<String>,
    /// Model confidence in `[0, 1]`.
    pub confidence: f64,
    /// Short quotes from the text supporting the tag.
    #[serde(default)]
    pub mentions: Vec<String>,
}

/// A given tag found in the text.
pub type MatchedTag = CategorizedTag;
/// A new tag proposed by the model (only when `allow_new_tags`).
pub type SuggestedTag = CategorizedTag;

/// The stored categorisation result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Categorization {
    /// Given tags found with enough confidence, in the given order.
    pub matched_tags: Vec<MatchedTag>,
    /// New tags proposed by the model; always empty unless new tags are allowed.
    pub suggested_tags: Vec<SuggestedTag>,
    /// Names of the given tags that were not matched, in the given order.
    pub unmatched_tags: Vec<String>,
}

/// Validates the request's `context` value (field paths are rooted at `context`).
pub fn parse_context(value: &Value) -> Result<CategorizationContext, FieldProblem> {
    let object = value
        .as_object()
        .ok_or_else(|| FieldProblem::new("context", "must be an object"))?;
    refuse_unknown_keys(object, "context", &["tags", "input", "allow_new_tags"])?;

    let tags_value = object
        .get("tags")
        .ok_or_else(|| FieldProblem::new("context.tags", "is required"))?;
    let tag_values = tags_value
        .as_array()
        .ok_or_else(|| FieldProblem::new("context.tags", "must be an array of tags"))?;
    if tag_values.is_empty() || tag_values.len() > MAX_TAGS {
        return Err(FieldProblem::new(
            "context.tags",
            format!("must have between 1 and {MAX_TAGS} tags"),
        ));
    }
    let mut tags: Vec<TagDefinition> = Vec::with_capacity(tag_values.len());
    for (index, tag_value) in tag_values.iter().enumerate() {
        let path = format!("context.tags[{index}]");
        let tag = parse_tag(tag_value, &path)?;
        let key = name_key(&tag.name);
        if let Some(first) = tags.iter().position(|known| name_key(&known.name) == key) {
            return Err(FieldProblem::new(
                format!("{path}.name"),
                format!(
                    "duplicates tag '{}' at context.tags[{first}]",
                    tags[first].name
                ),
            ));
        }
        tags.push(tag);
    }

    let input = match object.get("input") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => {
            if text.trim().is_empty() {
                return Err(FieldProblem::new(
                    "context.input",
                    "must be a non-empty string",
                ));
            }
            if text.chars().count() > MAX_INPUT_CHARS {
                return Err(FieldProblem::new(
                    "context.input",
                    format!("must be at most {MAX_INPUT_CHARS} characters"),
                ));
            }
            Some(text.clone())
        }
        Some(_) => {
            return Err(FieldProblem::new(
                "context.input",
                "must be a non-empty string",
            ))
        }
    };

    let allow_new_tags = match object.get("allow_new_tags") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(allowed)) => *allowed,
        Some(_) => {
            return Err(FieldProblem::new(
                "context.allow_new_tags",
                "must be true or false",
            ))
        }
    };

    Ok(CategorizationContext {
        tags,
        input,
        allow_new_tags,
    })
}

/// Validates one tag definition at `path`.
fn parse_tag(value: &Value, path: &str) -> Result<TagDefinition, FieldProblem> {
    let object = value
        .as_object()
        .ok_or_else(|| FieldProblem::new(path, "must be an object"))?;
    refuse_unknown_keys(object, path, &["name", "description", "category"])?;

    let name_path = format!("{path}.name");
    let name = match object.get("name") {
        None => return Err(FieldProblem::new(name_path, "is required")),
        Some(Value::String(name)) if !name.trim().is_empty() => name.trim(),
        Some(_) => return Err(FieldProblem::new(name_path, "must be a non-empty string")),
    };
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(FieldProblem::new(
            name_path,
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }

    let description_path = format!("{path}.description");
    let description = match object.get("description") {
        None => return Err(FieldProblem::new(description_path, "is required")),
        Some(Value::String(description)) => description,
        Some(_) => return Err(FieldProblem::new(description_path, "must be a string")),
    };
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(FieldProblem::new(
            description_path,
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }

    let category_path = format!("{path}.category");
    let category = match object.get("category") {
        None | Some(Value::Null) => None,
        Some(Value::String(category)) => {
            if category.chars().count() > MAX_NAME_CHARS {
                return Err(FieldProblem::new(
                    category_path,
                    format!("must be at most {MAX_NAME_CHARS} characters"),
                ));
            }
            Some(category.clone())
        }
        Some(_) => return Err(FieldProblem::new(category_path, "must be a string or null")),
    };

    Ok(TagDefinition {
        name: name.to_string(),
        description: description.clone(),
        category,
    })
}

/// Refuses the first key of `object` not in `expected`, naming the object's `path`.
fn refuse_unknown_keys(
    object: &Map<String, Value>,
    path: &str,
    expected: &[&str],
) -> Result<(), FieldProblem> {
    match object.keys().find(|key| !expected.contains(&key.as_str())) {
        Some(unknown) => Err(FieldProblem::new(
            path,
            format!(
                "unknown field '{unknown}'; expected {}",
                expected.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// Why `template` cannot be used as a categorisation prompt, if it cannot.
pub fn prompt_problem(template: &str) -> Option<String> {
    if template.contains(TAGS_MARKER) {
        None
    } else {
        Some(format!(
            "a categorization prompt must contain the {TAGS_MARKER} marker, replaced by the list of allowed tags"
        ))
    }
}

/// Fills a categorisation prompt.
///
/// Every [`INPUT_MARKER`] becomes `context.input` (or `output` when there is none) and
/// every [`TAGS_MARKER`] the pretty-printed JSON list of tags. Inserted values are taken
/// verbatim: markers inside them are not expanded.
pub fn fill_prompt(template: &str, context: &CategorizationContext, output: &str) -> String {
    let tags_json =
        serde_json::to_string_pretty(&context.tags).unwrap_or_else(|_| "[]".to_string());
    let input = context.input.as_deref().unwrap_or(output);
    let mut prompt = replace_markers(
        template,
        &[(TAGS_MARKER, &tags_json), (INPUT_MARKER, input)],
    );
    prompt.push_str("\n\n");
    prompt.push_str(if context.allow_new_tags {
        NEW_TAGS_ALLOWED
    } else {
        NEW_TAGS_NOT_ALLOWED
    });
    prompt
}

/// The instruction appended to a categorisation prompt when the request allows new tags.
pub const NEW_TAGS_ALLOWED: &str =
    "New tags are allowed: put in suggested_tags the important subjects of the text that no allowed tag covers.";
/// The instruction appended when it does not (suggestions are dropped anyway).
pub const NEW_TAGS_NOT_ALLOWED: &str = "New tags are not allowed: leave suggested_tags empty.";

/// Replaces every marker of `replacements` in one left-to-right pass.
pub(crate) fn replace_markers(template: &str, replacements: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    loop {
        let next = replacements
            .iter()
            .filter_map(|(marker, value)| rest.find(marker).map(|at| (at, *marker, *value)))
            .min_by_key(|(at, _, _)| *at);
        match next {
            Some((at, marker, value)) => {
                out.push_str(&rest[..at]);
                out.push_str(value);
                rest = &rest[at + marker.len()..];
            }
            None => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

/// Builds the stored result from the model's (untrusted) answer.
///
/// - `matched_tags`: answer entries naming a given tag (case-insensitive, trimmed) with a
///   confidence (number or numeric string, clamped to `[0, 1]`) of at least
///   [`MIN_CONFIDENCE`]; name, description and category come from the given definition;
///   for a tag listed several times the highest confidence wins; in the given order.
///   Entries without a usable confidence are dropped.
/// - `suggested_tags`: empty unless `allow_new_tags`; else the answer's `suggested_tags`
///   plus `matched_tags` entries naming unknown tags, with a non-empty name that is not a
///   given one, deduplicated case-insensitively (highest confidence wins, first position
///   kept). A missing or null confidence counts as [`DEFAULT_SUGGESTION_CONFIDENCE`]; an
///   unusable one drops the entry.
/// - `unmatched_tags`: every given tag that is not matched, in the given order.
///
/// Malformed shapes are ignored; this never fails.
pub fn enforce(answer: &Map<String, Value>, context: &CategorizationContext) -> Categorization {
    let given_keys: Vec<String> = context.tags.iter().map(|tag| name_key(&tag.name)).collect();
    let mut best_matches: Vec<Option<(f64, Vec<String>)>> = vec![None; context.tags.len()];
    let mut suggestions: Vec<CategorizedTag> = Vec::new();

    for entry in entries(answer, "matched_tags") {
        let Some(name) = entry_name(entry) else {
            continue;
        };
        match given_keys.iter().position(|key| *key == name_key(name)) {
            Some(index) => {
                let Some(confidence) = entry.get("confidence").and_then(confidence_of) else {
                    continue;
                };
                let better = best_matches[index]
                    .as_ref()
                    .is_none_or(|(best, _)| confidence > *best);
                if better {
                    best_matches[index] = Some((confidence, mentions_of(entry.get("mentions"))));
                }
            }
            None if context.allow_new_tags => add_suggestion(&mut suggestions, entry, name),
            None => {}
        }
    }

    if context.allow_new_tags {
        for entry in entries(answer, "suggested_tags") {
            let Some(name) = entry_name(entry) else {
                continue;
            };
            if !given_keys.contains(&name_key(name)) {
                add_suggestion(&mut suggestions, entry, name);
            }
        }
    }

    let mut matched_tags = Vec::new();
    let mut unmatched_tags = Vec::new();
    for (tag, best) in context.tags.iter().zip(best_matches) {
        match best {
            Some((confidence, mentions)) if confidence >= MIN_CONFIDENCE => {
                matched_tags.push(CategorizedTag {
                    name: tag.name.clone(),
                    description: tag.description.clone(),
                    category: tag.category.clone(),
                    confidence,
                    mentions,
                });
            }
            _ => unmatched_tags.push(tag.name.clone()),
        }
    }

    Categorization {
        matched_tags,
        suggested_tags: suggestions,
        unmatched_tags,
    }
}

/// Adds (or improves) a suggestion named `name` from an answer entry.
fn add_suggestion(suggestions: &mut Vec<CategorizedTag>, entry: &Map<String, Value>, name: &str) {
    let confidence = match entry.get("confidence") {
        None | Some(Value::Null) => DEFAULT_SUGGESTION_CONFIDENCE,
        Some(value) => match confidence_of(value) {
            Some(confidence) => confidence,
            None => return,
        },
    };
    if confidence < MIN_CONFIDENCE {
        return;
    }
    let suggestion = CategorizedTag {
        name: name.to_string(),
        description: entry
            .get("description")
            .and_then(Value::as_str)
            .map(str::trim)
            .unwrap_or_default()
            .to_string(),
        category: entry
            .get("category")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|category| !category.is_empty())
            .map(str::to_string),
        confidence,
        mentions: mentions_of(entry.get("mentions")),
    };
    let key = name_key(name);
    match suggestions
        .iter_mut()
        .find(|known| name_key(&known.name) == key)
    {
        Some(known) if known.confidence < confidence => *known = suggestion,
        Some(_) => {}
        None => suggestions.push(suggestion),
    }
}

/// The object entries of the answer's array `key` (anything else is ignored).
fn entries<'a>(
    answer: &'a Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a Map<String, Value>> {
    answer
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

/// The entry's trimmed, non-empty `name`.
fn entry_name(entry: &Map<String, Value>) -> Option<&str> {
    entry
        .get("name")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|name| !name.is_empty())
}

/// A confidence from a number or numeric string, clamped to `[0, 1]`; `None` if unusable.
fn confidence_of(value: &Value) -> Option<f64> {
    let number = match value {
        Value::Number(number) => number.as_f64()?,
        Value::String(text) => text.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    number.is_finite().then(|| number.clamp(0.0, 1.0))
}

/// Mentions from an array of strings (others skipped) or a single string.
fn mentions_of(value: Option<&Value>) -> Vec<String> {
    let keep = |text: &str| {
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_string())
    };
    match value {
        Some(Value::String(text)) => keep(text).into_iter().collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .filter_map(keep)
            .collect(),
        _ => Vec::new(),
    }
}

/// Case-insensitive comparison key of a tag name.
fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn context(allow_new_tags: bool) -> CategorizationContext {
        parse_context(&json!({
            "tags": [
                {"name": "Budget", "description": "Money matters", "category": "Finance"},
                {"name": "Hiring", "description": "Recruitment"},
                {"name": "Roadmap", "description": ""}
            ],
            "allow_new_tags": allow_new_tags
        }))
        .expect("valid context")
    }

    fn answer(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn problem(value: Value) -> FieldProblem {
        parse_context(&value).expect_err("should be refused")
    }

    #[test]
    fn parses_a_full_context() {
        let parsed = parse_context(&json!({
            "tags": [{"name": "  Budget ", "description": "d", "category": null}],
            "input": "Some text",
            "allow_new_tags": null
        }))
        .expect("valid");
        assert_eq!(
            parsed,
            CategorizationContext {
                tags: vec![TagDefinition {
                    name: "Budget".into(),
                    description: "d".into(),
                    category: None,
                }],
                input: Some("Some text".into()),
                allow_new_tags: false,
            }
        );
        assert!(context(true).allow_new_tags);
        assert_eq!(context(false).tags[0].category.as_deref(), Some("Finance"));
    }

    #[test]
    fn context_shape_errors_name_the_field() {
        assert_eq!(
            problem(json!([])),
            FieldProblem::new("context", "must be an object")
        );
        assert_eq!(
            problem(json!({"tags": [], "extra": 1})),
            FieldProblem::new(
                "context",
                "unknown field 'extra'; expected tags, input, allow_new_tags"
            )
        );
        assert_eq!(
            problem(json!({})),
            FieldProblem::new("context.tags", "is required")
        );
        assert_eq!(problem(json!({"tags": "Budget"})).field, "context.tags");
        assert_eq!(
            problem(json!({"tags": []})),
            FieldProblem::new("context.tags", "must have between 1 and 200 tags")
        );
        let too_many: Vec<Value> = (0..201)
            .map(|i| json!({"name": format!("t{i}"), "description": ""}))
            .collect();
        assert_eq!(
            problem(json!({ "tags": too_many })).problem,
            "must have between 1 and 200 tags"
        );
    }

    #[test]
    fn tag_errors_name_the_exact_path() {
        let ok = json!({"name": "A", "description": ""});
        let cases = [
            (json!("A"), "context.tags[1]", "must be an object"),
            (
                json!({"description": ""}),
                "context.tags[1].name",
                "is required",
            ),
            (
                json!({"name": "  ", "description": ""}),
                "context.tags[1].name",
                "must be a non-empty string",
            ),
            (
                json!({"name": 3, "description": ""}),
                "context.tags[1].name",
                "must be a non-empty string",
            ),
            (
                json!({"name": "x".repeat(101), "description": ""}),
                "context.tags[1].name",
                "must be at most 100 characters",
            ),
            (
                json!({"name": "B"}),
                "context.tags[1].description",
                "is required",
            ),
            (
                json!({"name": "B", "description": null}),
                "context.tags[1].description",
                "must be a string",
            ),
            (
                json!({"name": "B", "description": "é".repeat(2001)}),
                "context.tags[1].description",
                "must be at most 2000 characters",
            ),
            (
                json!({"name": "B", "description": "", "category": 1}),
                "context.tags[1].category",
                "must be a string or null",
            ),
            (
                json!({"name": "B", "description": "", "category": "c".repeat(101)}),
                "context.tags[1].category",
                "must be at most 100 characters",
            ),
            (
                json!({"name": "B", "description": "", "color": "red"}),
                "context.tags[1]",
                "unknown field 'color'; expected name, description, category",
            ),
        ];
        for (tag, field, text) in cases {
            let found = problem(json!({ "tags": [ok.clone(), tag] }));
            assert_eq!(found, FieldProblem::new(field, text));
        }
    }

    #[test]
    fn names_at_the_limits_are_accepted() {
        let parsed = parse_context(&json!({"tags": [
            {"name": "é".repeat(100), "description": "d".repeat(2000), "category": "c".repeat(100)}
        ]}));
        assert!(parsed.is_ok(), "{parsed:?}");
    }

    #[test]
    fn duplicate_names_are_refused_case_insensitively() {
        let found = problem(json!({"tags": [
            {"name": "Budget", "description": ""},
            {"name": "Other", "description": ""},
            {"name": " budget ", "description": ""}
        ]}));
        assert_eq!(
            found,
            FieldProblem::new(
                "context.tags[2].name",
                "duplicates tag 'Budget' at context.tags[0]"
            )
        );
        assert_eq!(
            found.to_string(),
            "context.tags[2].name: duplicates tag 'Budget' at context.tags[0]"
        );
    }

    #[test]
    fn input_and_allow_new_tags_are_checked() {
        let tags = json!([{"name": "A", "description": ""}]);
        for input in [json!("   "), json!(5), json!(["x"])] {
            assert_eq!(
                problem(json!({"tags": tags, "input": input})),
                FieldProblem::new("context.input", "must be a non-empty string")
            );
        }
        assert_eq!(
            problem(json!({"tags": tags, "input": "x".repeat(1_000_001)})).problem,
            "must be at most 1000000 characters"
        );
        assert_eq!(
            problem(json!({"tags": tags, "allow_new_tags": "yes"})),
            FieldProblem::new("context.allow_new_tags", "must be true or false")
        );
        let parsed = parse_context(&json!({"tags": tags, "input": null})).expect("valid");
        assert_eq!(parsed.input, None);
    }

    #[test]
    fn prompt_problem_requires_the_tags_marker() {
        assert_eq!(
            prompt_problem("Tags: {context[tags]}\nText: {context[input]}"),
            None
        );
        assert_eq!(prompt_problem("Tags: {context[tags]}"), None);
        let problem = prompt_problem("Text: {context[input]}").expect("a problem");
        assert!(problem.contains("{context[tags]}"), "{problem}");
        assert!(prompt_problem("").is_some());
    }

    #[test]
    fn fill_prompt_uses_input_when_present() {
        let mut ctx = context(false);
        ctx.input = Some("the input".into());
        let filled = fill_prompt(
            "T={context[tags]}\nI={context[input]} / {context[input]}",
            &ctx,
            "OUT",
        );
        let tags_json = serde_json::to_string_pretty(&ctx.tags).expect("json");
        assert_eq!(
            filled,
            format!("T={tags_json}\nI=the input / the input\n\n{NEW_TAGS_NOT_ALLOWED}")
        );
        assert!(filled.contains("\"category\": \"Finance\""));
        assert!(!filled.contains("\"category\": null"));
    }

    #[test]
    fn fill_prompt_falls_back_to_the_output() {
        let filled = fill_prompt("{context[input]}", &context(false), "the output");
        assert_eq!(filled, format!("the output\n\n{NEW_TAGS_NOT_ALLOWED}"));
        let allowed = fill_prompt("{context[input]}", &context(true), "the output");
        assert_eq!(allowed, format!("the output\n\n{NEW_TAGS_ALLOWED}"));
    }

    #[test]
    fn fill_prompt_does_not_expand_markers_inside_values() {
        let mut ctx = context(false);
        ctx.input = Some("text with {context[tags]} and {context[input]}".into());
        ctx.tags[0].description = "see {context[input]}".into();
        let filled = fill_prompt("{context[input]}|{context[tags]}", &ctx, "unused");
        let (input_part, tags_part) = filled.split_once('|').expect("separator");
        assert_eq!(input_part, "text with {context[tags]} and {context[input]}");
        assert!(tags_part.contains("see {context[input]}"));
    }

    #[test]
    fn fill_prompt_keeps_non_ascii_literal() {
        let ctx = parse_context(&json!({"tags": [{"name": "Réunion", "description": "会议"}]}))
            .expect("valid");
        let filled = fill_prompt("{context[tags]}", &ctx, "");
        assert!(
            filled.contains("Réunion") && filled.contains("会议"),
            "{filled}"
        );
    }

    #[test]
    fn matched_tags_use_the_canonical_definition() {
        let result = enforce(
            &answer(json!({"matched_tags": [
                {"name": " budget ", "description": "invented", "category": "Wrong",
                 "confidence": 0.9, "mentions": ["we spent", 3, "too much"]}
            ]})),
            &context(false),
        );
        assert_eq!(
            result.matched_tags,
            vec![CategorizedTag {
                name: "Budget".into(),
                description: "Money matters".into(),
                category: Some("Finance".into()),
                confidence: 0.9,
                mentions: vec!["we spent".into(), "too much".into()],
            }]
        );
        assert_eq!(result.unmatched_tags, vec!["Hiring", "Roadmap"]);
    }

    #[test]
    fn low_confidence_matches_become_unmatched() {
        let result = enforce(
            &answer(json!({"matched_tags": [
                {"name": "Budget", "confidence": 0.49},
                {"name": "Hiring", "confidence": 0.5}
            ]})),
            &context(false),
        );
        let names: Vec<_> = result
            .matched_tags
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(names, vec!["Hiring"]);
        assert_eq!(result.unmatched_tags, vec!["Budget", "Roadmap"]);
    }

    #[test]
    fn confidence_is_parsed_and_clamped() {
        let result = enforce(
            &answer(json!({"matched_tags": [
                {"name": "Budget", "confidence": "0.8"},
                {"name": "Hiring", "confidence": 7},
                {"name": "Roadmap", "confidence": -1}
            ]})),
            &context(false),
        );
        let got: Vec<_> = result
            .matched_tags
            .iter()
            .map(|t| (t.name.as_str(), t.confidence))
            .collect();
        assert_eq!(got, vec![("Budget", 0.8), ("Hiring", 1.0)]);
        assert_eq!(result.unmatched_tags, vec!["Roadmap"]);
    }

    #[test]
    fn missing_or_invalid_confidence_drops_the_match() {
        let result = enforce(
            &answer(json!({"matched_tags": [
                {"name": "Budget"},
                {"name": "Hiring", "confidence": "high"},
                {"name": "Roadmap", "confidence": "NaN"}
            ]})),
            &context(false),
        );
        assert!(result.matched_tags.is_empty());
        assert_eq!(result.unmatched_tags, vec!["Budget", "Hiring", "Roadmap"]);
    }

    #[test]
    fn duplicates_keep_the_highest_confidence() {
        let result = enforce(
            &answer(json!({"matched_tags": [
                {"name": "Roadmap", "confidence": 0.6, "mentions": "first"},
                {"name": "ROADMAP", "confidence": 0.95, "mentions": ["second"]},
                {"name": "roadmap", "confidence": 0.7, "mentions": ["third"]},
                {"name": "Budget", "confidence": 0.8}
            ]})),
            &context(false),
        );
        assert_eq!(result.matched_tags.len(), 2);
        // Given order, not answer order.
        assert_eq!(result.matched_tags[0].name, "Budget");
        assert_eq!(result.matched_tags[0].mentions, Vec::<String>::new());
        assert_eq!(result.matched_tags[1].confidence, 0.95);
        assert_eq!(result.matched_tags[1].mentions, vec!["second"]);
    }

    #[test]
    fn mentions_accept_a_single_string() {
        let result = enforce(
            &answer(json!({"matched_tags": [
                {"name": "Budget", "confidence": 1, "mentions": "only one"},
                {"name": "Hiring", "confidence": 1, "mentions": {"a": 1}}
            ]})),
            &context(false),
        );
        assert_eq!(result.matched_tags[0].mentions, vec!["only one"]);
        assert!(result.matched_tags[1].mentions.is_empty());
    }

    #[test]
    fn invented_tags_are_dropped_without_allow_new_tags() {
        let result = enforce(
            &answer(json!({
                "matched_tags": [{"name": "Invented", "confidence": 0.9}],
                "suggested_tags": [{"name": "Other", "description": "x", "confidence": 0.9}]
            })),
            &context(false),
        );
        assert!(result.matched_tags.is_empty());
        assert!(result.suggested_tags.is_empty());
        assert_eq!(result.unmatched_tags, vec!["Budget", "Hiring", "Roadmap"]);
    }

    #[test]
    fn invented_tags_are_suggested_with_allow_new_tags() {
        let result = enforce(
            &answer(json!({
                "matched_tags": [
                    {"name": "Invented", "description": "d", "confidence": 0.9, "mentions": ["m"]}
                ],
                "suggested_tags": [
                    {"name": "Travel", "description": " Trips ", "category": "Ops", "confidence": "0.7"},
                    {"name": "travel", "confidence": 0.8},
                    {"name": "budget", "confidence": 0.9},
                    {"name": "Weak", "confidence": 0.2},
                    {"name": "NoConfidence"},
                    {"name": "BadConfidence", "confidence": "?"},
                    {"name": "  ", "confidence": 1},
                    {"name": "Blank category", "category": "", "confidence": null}
                ]
            })),
            &context(true),
        );
        assert_eq!(
            result.suggested_tags,
            vec![
                CategorizedTag {
                    name: "Invented".into(),
                    description: "d".into(),
                    category: None,
                    confidence: 0.9,
                    mentions: vec!["m".into()],
                },
                CategorizedTag {
                    name: "travel".into(),
                    description: String::new(),
                    category: None,
                    confidence: 0.8,
                    mentions: vec![],
                },
                CategorizedTag {
                    name: "NoConfidence".into(),
                    description: String::new(),
                    category: None,
                    confidence: DEFAULT_SUGGESTION_CONFIDENCE,
                    mentions: vec![],
                },
                CategorizedTag {
                    name: "Blank category".into(),
                    description: String::new(),
                    category: None,
                    confidence: DEFAULT_SUGGESTION_CONFIDENCE,
                    mentions: vec![],
                },
            ]
        );
        assert!(result.matched_tags.is_empty());
    }

    #[test]
    fn every_given_tag_appears_exactly_once() {
        let ctx = context(true);
        let result = enforce(
            &answer(json!({
                "matched_tags": [
                    {"name": "Hiring", "confidence": 0.9},
                    {"name": "hiring", "confidence": 0.3},
                    {"name": "Roadmap", "confidence": 0.1}
                ],
                "unmatched_tags": ["Hiring", "Nonsense"]
            })),
            &ctx,
        );
        for tag in &ctx.tags {
            let matched = result
                .matched_tags
                .iter()
                .filter(|t| t.name == tag.name)
                .count();
            let unmatched = result
                .unmatched_tags
                .iter()
                .filter(|n| **n == tag.name)
                .count();
            assert_eq!(matched + unmatched, 1, "{}", tag.name);
        }
        assert_eq!(result.unmatched_tags, vec!["Budget", "Roadmap"]);
    }

    #[test]
    fn malformed_answers_are_tolerated() {
        let ctx = context(true);
        for value in [
            json!({}),
            json!({"matched_tags": "Budget", "suggested_tags": {"name": "x"}}),
            json!({"matched_tags": [1, null, "Budget", [], {"name": 5, "confidence": 1}]}),
            json!({"matched_tags": [{"name": "Budget", "confidence": [0.9]}]}),
        ] {
            let result = enforce(&answer(value.clone()), &ctx);
            assert!(result.matched_tags.is_empty(), "{value}");
            assert!(result.suggested_tags.is_empty(), "{value}");
            assert_eq!(result.unmatched_tags.len(), 3, "{value}");
        }
    }

    #[test]
    fn result_serializes_with_null_category() {
        let result = Categorization {
            matched_tags: vec![CategorizedTag {
                name: "Hiring".into(),
                description: "Recruitment".into(),
                category: None,
                confidence: 0.75,
                mentions: vec!["we hire".into()],
            }],
            suggested_tags: vec![],
            unmatched_tags: vec!["Budget".into()],
        };
        let value = serde_json::to_value(&result).expect("json");
        assert_eq!(
            value,
            json!({
                "matched_tags": [{"name": "Hiring", "description": "Recruitment", "category": null,
                                  "confidence": 0.75, "mentions": ["we hire"]}],
                "suggested_tags": [],
                "unmatched_tags": ["Budget"]
            })
        );
        let back: Categorization = serde_json::from_value(value).expect("round trip");
        assert_eq!(back, result);
    }
}
