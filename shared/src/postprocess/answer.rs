//! Robust extraction of a JSON object from an LLM answer.
//!
//! Models wrap JSON in code fences, add prose before or after it, leave trailing commas
//! or a byte-order mark. [`parse_json_object`] finds the first complete `{ ... }` object
//! in the answer and parses it, tolerating all of these.

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Value};

/// Most scans that run to the end of the answer without closing their `{`. Scans that
/// do close cover disjoint ranges, so this bounds the work on adversarial input to
/// `MAX_UNCLOSED_SCANS` passes over the answer.
const MAX_UNCLOSED_SCANS: usize = 64;

/// Why no JSON object could be read from an answer. Messages are user-facing.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerError {
    /// The answer has no `{ ... }` candidate at all.
    NoObject,
    /// Candidates were found but none parsed; holds the first candidate's parse error.
    Invalid(String),
}

impl fmt::Display for AnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnswerError::NoObject => f.write_str("the answer contains no JSON object"),
            AnswerError::Invalid(message) => write!(f, "invalid JSON: {message}"),
        }
    }
}

impl std::error::Error for AnswerError {}

/// Reads the first JSON object of an LLM answer.
///
/// Scans for `{`, finds its matching `}` (respecting JSON strings and escapes) and parses
/// that slice after removing trailing commas before `}`/`]`. When a candidate does not
/// parse, the search goes on after it (or right after its `{` when it is never closed).
/// The first object found wins, even when it is nested in something else: for
/// `[{"a":1}]` the result is `{"a":1}`.
///
/// Errors: [`AnswerError::NoObject`] when there is no `{`, else
/// [`AnswerError::Invalid`] with the first candidate's error (its line/column are
/// relative to that candidate).
pub fn parse_json_object(answer: &str) -> Result<Map<String, Value>, AnswerError> {
    let text = answer.trim_start_matches('\u{feff}');
    let bytes = text.as_bytes();
    let mut matches = BraceMatches::default();
    let mut first_error: Option<String> = None;
    let mut search_from = 0;

    while let Some(offset) = bytes
        .get(search_from..)
        .and_then(|rest| rest.iter().position(|b| *b == b'{'))
    {
        let start = search_from + offset;
        let Some(end) = matches.closing_brace(bytes, start) else {
            break;
        };
        match end {
            Some(end) => {
                match parse_candidate(&text[start..=end]) {
                    Ok(object) => return Ok(object),
                    Err(message) => {
                        first_error.get_or_insert(message);
                    }
                }
                search_from = end + 1;
            }
            None => {
                if first_error.is_none() {
                    // Never closed: let serde_json describe the problem.
                    first_error = parse_candidate(&text[start..]).err();
                }
                search_from = start + 1;
            }
        }
    }

    match first_error {
        Some(message) => Err(AnswerError::Invalid(message)),
        None => Err(AnswerError::NoObject),
    }
}

/// Parses one `{ ... }` candidate, trailing commas removed; errors are serde_json's message.
fn parse_candidate(candidate: &str) -> Result<Map<String, Value>, String> {
    let cleaned = remove_trailing_commas(candidate);
    match serde_json::from_str::<Value>(&cleaned) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err("expected a JSON object".to_string()),
        Err(error) => Err(error.to_string()),
    }
}

/// Removes every `,` that is followed (after whitespace) by `}` or `]`, outside strings.
fn remove_trailing_commas(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for (index, ch) in json.char_indices() {
        if in_string {
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                in_string = false;
            }
        } else if ch == '"' {
            in_string = true;
        } else if ch == ',' {
            let next = json[index + 1..].trim_start().chars().next();
            if matches!(next, Some('}' | ']')) {
                continue;
            }
        }
        out.push(ch);
    }
    out
}

/// Matching `}` positions found so far, shared between candidates so that nested or
/// repeated `{` are not rescanned (keeps the search linear on typical input).
#[derive(Default)]
struct BraceMatches {
    /// For each `{` seen outside a string: its matching `}`, or `None` when unclosed.
    known: HashMap<usize, Option<usize>>,
    unclosed_scans: usize,
}

impl BraceMatches {
    /// The matching `}` of the `{` at `start` (`Some(None)` when it is never closed), or
    /// `None` when the budget of unclosed scans is exhausted.
    fn closing_brace(&mut self, bytes: &[u8], start: usize) -> Option<Option<usize>> {
        if let Some(known) = self.known.get(&start) {
            return Some(*known);
        }
        if self.unclosed_scans >= MAX_UNCLOSED_SCANS {
            return None;
        }
        let closing = self.scan(bytes, start);
        if closing.is_none() {
            self.unclosed_scans += 1;
        }
        Some(closing)
    }

    /// Scans from the `{` at `start`, recording every nested `{` it resolves.
    fn scan(&mut self, bytes: &[u8], start: usize) -> Option<usize> {
        let mut open: Vec<usize> = Vec::new();
        let mut in_string = false;
        let mut escaped = false;
        for (index, byte) in bytes.iter().enumerate().skip(start) {
            if in_string {
                if escaped {
                    escaped = false;
                } else if *byte == b'\\' {
                    escaped = true;
                } else if *byte == b'"' {
                    in_string = false;
                }
                continue;
            }
            match byte {
                b'"' => in_string = true,
                b'{' => open.push(index),
                b'}' => {
                    if let Some(opening) = open.pop() {
                        self.known.insert(opening, Some(index));
                        if open.is_empty() {
                            return Some(index);
                        }
                    }
                }
                _ => {}
            }
        }
        for opening in open {
            self.known.insert(opening, None);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn plain_object() {
        assert_eq!(
            parse_json_object(r#"{"a": 1, "b": [true, null]}"#),
            Ok(object(json!({"a": 1, "b": [true, null]})))
        );
    }

    #[test]
    fn fenced_with_and_without_language_tag() {
        let fenced = "```json\n{\"title\": \"Budget\"}\n```";
        assert_eq!(
            parse_json_object(fenced),
            Ok(object(json!({"title": "Budget"})))
        );
        let bare = "```\n{\"title\": \"Budget\"}\n```\n";
        assert_eq!(
            parse_json_object(bare),
            Ok(object(json!({"title": "Budget"})))
        );
    }

    #[test]
    fn prose_before_and_after() {
        let answer = "Here is the JSON:\n{\"a\": \"x\"}\nLet me know if you need more.";
        assert_eq!(parse_json_object(answer), Ok(object(json!({"a": "x"}))));
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        assert_eq!(
            parse_json_object("\u{feff}{\"a\": 1}"),
            Ok(object(json!({"a": 1})))
        );
    }

    #[test]
    fn trailing_commas_are_removed_even_nested() {
        let answer = "{\"a\": [1, 2, ], \"b\": {\"c\": \"d\",\n },\n}";
        assert_eq!(
            parse_json_object(answer),
            Ok(object(json!({"a": [1, 2], "b": {"c": "d"}})))
        );
    }

    #[test]
    fn commas_inside_strings_are_kept() {
        let answer = r#"{"a": "x, }", "b": "y,]",}"#;
        assert_eq!(
            parse_json_object(answer),
            Ok(object(json!({"a": "x, }", "b": "y,]"})))
        );
    }

    #[test]
    fn braces_and_escaped_quotes_inside_strings() {
        let answer = r#"Result: {"a": "a \"}\" b", "c": "{{", "d": "\\"} trailing }"#;
        assert_eq!(
            parse_json_object(answer),
            Ok(object(json!({"a": "a \"}\" b", "c": "{{", "d": "\\"})))
        );
    }

    #[test]
    fn first_object_of_a_top_level_array_is_taken() {
        assert_eq!(
            parse_json_object(r#"[{"a":1}, {"b":2}]"#),
            Ok(object(json!({"a": 1})))
        );
    }

    #[test]
    fn first_complete_object_wins_over_later_ones() {
        assert_eq!(
            parse_json_object(r#"{"a":1} and also {"b":2}"#),
            Ok(object(json!({"a": 1})))
        );
    }

    #[test]
    fn invalid_candidates_are_skipped() {
        let answer = "Fill the {placeholder} then: {\"a\": 1}";
        assert_eq!(parse_json_object(answer), Ok(object(json!({"a": 1}))));
        let unclosed_first = "Use { carefully. Answer: {\"a\": 1}";
        assert_eq!(
            parse_json_object(unclosed_first),
            Ok(object(json!({"a": 1})))
        );
    }

    #[test]
    fn no_object_at_all() {
        for answer in ["", "   ", "garbage", "[1, 2]", "}}}", "\"{\""] {
            let result = parse_json_object(answer);
            if answer == "\"{\"" {
                // A lone `{` is a candidate, it is just not valid JSON.
                assert!(matches!(result, Err(AnswerError::Invalid(_))), "{answer:?}");
            } else {
                assert_eq!(result, Err(AnswerError::NoObject), "{answer:?}");
            }
        }
        assert_eq!(
            AnswerError::NoObject.to_string(),
            "the answer contains no JSON object"
        );
    }

    #[test]
    fn invalid_object_reports_the_first_error() {
        let error = parse_json_object(r#"{"a": }"#).unwrap_err();
        let AnswerError::Invalid(message) = &error else {
            panic!("expected Invalid, got {error:?}");
        };
        assert!(message.contains("line 1 column 7"), "{message}");
        assert!(error.to_string().starts_with("invalid JSON: "), "{error}");

        let two_bad = r#"{"a" 1} then {"b": }"#;
        let Err(AnswerError::Invalid(message)) = parse_json_object(two_bad) else {
            panic!("expected Invalid");
        };
        assert!(message.starts_with("expected `:`"), "{message}");
    }

    #[test]
    fn unclosed_object_is_invalid() {
        let Err(AnswerError::Invalid(message)) = parse_json_object(r#"{"a": 1"#) else {
            panic!("expected Invalid");
        };
        assert!(message.contains("EOF"), "{message}");
    }

    #[test]
    fn unicode_content() {
        let answer = "Voici : {\"titre\": \"Réunion budgétaire 🎉\", \"名前\": \"张伟\"}";
        assert_eq!(
            parse_json_object(answer),
            Ok(object(
                json!({"titre": "Réunion budgétaire 🎉", "名前": "张伟"})
            ))
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_panic() {
        let depth = 200;
        let deep = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        let result = parse_json_object(&deep);
        assert!(matches!(result, Err(AnswerError::Invalid(_))), "{result:?}");

        let unclosed = "{\"a\":".repeat(100_000);
        assert!(matches!(
            parse_json_object(&unclosed),
            Err(AnswerError::Invalid(_))
        ));
    }

    #[test]
    fn pathological_inputs_stay_fast() {
        let braces = "{".repeat(200_000);
        assert!(matches!(
            parse_json_object(&braces),
            Err(AnswerError::Invalid(_))
        ));
        let alternating = "{\"".repeat(100_000);
        assert!(parse_json_object(&alternating).is_err());
        let many_small = "{x}".repeat(100_000);
        assert!(matches!(
            parse_json_object(&many_small),
            Err(AnswerError::Invalid(_))
        ));
        let object_after_many_bad = format!("{}{{\"ok\": true}}", "{x} ".repeat(1_000));
        assert_eq!(
            parse_json_object(&object_after_many_bad),
            Ok(object(json!({"ok": true})))
        );
    }
}
