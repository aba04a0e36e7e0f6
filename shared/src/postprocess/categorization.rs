//! Document categorisation: the request `context` (allowed tags, optional input text),
//! prompt filling, and the rules enforced on the model's answer.
//!
//! The prompt asks the model to match the given tags; [`enforce`] makes sure the stored
//! result obeys those rules whatever the model answered.

use crate::text::prompt::replace_markers;
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
#[path = "categorization_tests.rs"]
mod tests;
