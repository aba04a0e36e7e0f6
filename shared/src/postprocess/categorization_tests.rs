//! Tests of the categorisation context, prompt and result rules.

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
