//! Property tests over gateway-core's public API: the text pipeline (normalisation and
//! batching), request parsing and the post-processing helpers, on arbitrary input.
//!
//! The default case count is modest so `cargo test` stays fast; a long run sets
//! `PROPTEST_CASES` (read by proptest itself), e.g.
//! `PROPTEST_CASES=20000 cargo test --release -p gateway-core --test properties`.

use std::sync::OnceLock;

use gateway_core::engine::execute::ExecuteRequest;
use gateway_core::postprocess::answer::parse_json_object;
use gateway_core::postprocess::consolidate::consolidate;
use gateway_core::postprocess::reduce::plan_groups;
use gateway_core::text::batching::BatchBudget;
use gateway_core::text::normalize::{normalize_transcript, split_by_tokens, NormalizeLimits};
use gateway_core::text::turns::{split_turns, Turn};
use gateway_core::tokens::TokenCounter;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Cases per property unless `PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: u32 = 96;

fn config() -> ProptestConfig {
    // `ProptestConfig::default()` reads PROPTEST_CASES; keep it when set.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn counters() -> &'static [TokenCounter; 2] {
    static COUNTERS: OnceLock<[TokenCounter; 2]> = OnceLock::new();
    COUNTERS.get_or_init(|| {
        [
            TokenCounter::load("cl100k_base").unwrap(),
            TokenCounter::load("o200k_base").unwrap(),
        ]
    })
}

/// Non-whitespace chars of `text`, in order.
fn squash(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

// ---------------------------------------------------------------------------------------
// Text generators
// ---------------------------------------------------------------------------------------

/// A word: ordinary, accented, CJK, emoji, punctuation, digits, or anything.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z]{1,12}",
        2 => "[a-zàéèçœäöüß'’-]{1,10}",
        2 => "[\u{4e00}-\u{9fa5}\u{3041}-\u{30ff}]{1,12}[。！？]?",
        1 => "[😀🎉👍🏽🇫🇷❤️‍🔥]{1,6}",
        2 => "[.,;:!?…\"'()«»\\[\\]—-]{1,4}",
        1 => "[0-9]{1,6}([.,][0-9]{1,3})?",
        1 => "(Dr|M|Mme|e\\.g|etc|U\\.S)\\.",
        1 => "\\PC{1,8}",
        1 => any::<String>().prop_map(|s| s.chars().take(12).collect()),
    ]
}

/// A long run of one unit with no whitespace (a "word" of several KB).
fn run() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("z".to_string()),
            Just(".,;!?".to_string()),
            Just("😀".to_string()),
            Just("预算".to_string()),
            Just("ab".to_string()),
            "\\PC{1,3}",
        ],
        1usize..6000,
    )
        .prop_map(|(unit, n)| unit.repeat(n.div_ceil(unit.len().max(1))))
}

/// Whitespace between words: mostly a space, sometimes odd whitespace.
fn gap() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => Just(" ".to_string()),
        1 => Just("  ".to_string()),
        1 => Just("\t".to_string()),
        1 => Just("\u{a0}".to_string()),
        1 => Just("\u{3000}".to_string()),
        1 => Just(" \u{2028} ".to_string()),
        1 => Just(String::new()),
    ]
}

fn body() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::collection::vec((prop_oneof![9 => word(), 1 => run()], gap()), 0..80)
            .prop_map(|parts| parts.into_iter().map(|(w, g)| w + &g).collect::<String>()),
        1 => run(),
        1 => "\\PC{0,200}",
        // Many short sentences: many sentence boundaries, many joins.
        1 => prop::collection::vec("[A-Z][a-z]{0,8}( [a-z]{1,8}){0,6}[.!?]", 1..400)
            .prop_map(|s| s.join(" ")),
    ]
}

/// A speaker prefix as transcripts write them, or something that looks like one.
fn prefix() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(String::new()),
        2 => "(Jean|Marie|Dr\\. Smith|SPEAKER_0[0-9]|张伟|田中|Алексей|محمد) ?[:：] ?",
        1 => "[\\p{L}\\p{N}][\\p{L}\\p{N} ._#'-]{0,70}[:：] {0,3}",
        1 => "\\PC{0,20}: ",
    ]
}

fn line() -> impl Strategy<Value = String> {
    (prefix(), body()).prop_map(|(p, b)| p + &b)
}

fn line_break() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        6 => Just("\n"),
        2 => Just("\r\n"),
        1 => Just("\n\n"),
        1 => Just("\n \t \n"),
        1 => Just("\r"),
    ]
}

/// A transcript: lines with and without prefixes, any line break, or plain anything.
fn transcript() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::collection::vec((line(), line_break()), 0..12).prop_map(|lines| {
            lines.into_iter().map(|(l, b)| l + b).collect::<String>()
        }),
        1 => any::<String>(),
        1 => Just(String::new()),
        1 => "[ \t\r\n]{0,20}",
    ]
}

/// A batch budget with at least `MIN_INPUT_TOKENS` available for input.
fn budget() -> impl Strategy<Value = BatchBudget> {
    (64usize..6000, 0usize..4000, 0usize..300, 1usize..40).prop_map(
        |(available, max_generation, prompt_tokens, max_new_turns)| BatchBudget {
            context_length: available + max_generation + prompt_tokens,
            max_generation,
            prompt_tokens,
            max_new_turns,
        },
    )
}

// ---------------------------------------------------------------------------------------
// Normalisation and batching
// ---------------------------------------------------------------------------------------

fn check_transcript(
    text: &str,
    counter: &TokenCounter,
    budget: BatchBudget,
    soft: usize,
) -> Result<(), TestCaseError> {
    let limits = NormalizeLimits {
        create_new_turn_after: soft,
        max_turn_tokens: budget.max_turn_tokens(),
    };
    let turns = normalize_transcript(text, counter, limits);

    // Turns are made line by line: the whole result is the lines' results, in order, and
    // every turn of a line carries the line's prefix and nothing of it is lost.
    let mut expected = Vec::new();
    for original in split_turns(text) {
        let of_line = normalize_transcript(original.line, counter, limits);
        // A line that fits (and is not too long to count whole) is kept whole.
        if original.line.len() <= soft * 10
            && counter.count(original.line) <= soft.min(limits.max_turn_tokens)
        {
            prop_assert_eq!(
                of_line.len(),
                1,
                "line {:?} fits but was split",
                original.line
            );
            prop_assert_eq!(&of_line[0].text, original.line);
        }
        let repeated = of_line
            .iter()
            .all(|turn| turn.text.starts_with(original.prefix));
        let mut bodies = String::new();
        for turn in &of_line {
            // The prefix is repeated on every piece, unless it is too long for the limit,
            // when the line is split as plain text.
            bodies.push_str(match repeated {
                true => &turn.text[original.prefix.len()..],
                false => &turn.text,
            });
            bodies.push(' ');
        }
        let want = if repeated {
            original.body
        } else {
            original.line
        };
        prop_assert_eq!(
            squash(&bodies),
            squash(want),
            "line {:?}: words lost or reordered",
            original.line
        );
        if !repeated {
            prop_assert!(
                counter.count(original.prefix) * 2 > limits.max_turn_tokens,
                "prefix {:?} dropped from pieces of {:?}",
                original.prefix,
                original.line
            );
        }
        expected.extend(of_line);
    }
    prop_assert_eq!(&turns, &expected);

    // Counts: exact, and never over the hard maximum.
    for turn in &turns {
        prop_assert!(!turn.text.trim().is_empty(), "empty turn");
        prop_assert!(
            turn.tokens as usize <= limits.max_turn_tokens,
            "turn of {} tokens over the maximum {}: {:?}",
            turn.tokens,
            limits.max_turn_tokens,
            turn.text
        );
        prop_assert_eq!(
            turn.tokens as usize,
            counter.count(&turn.text),
            "count not exact for {:?}",
            turn.text
        );
    }

    // Batches cover every turn exactly once, in order, within the budget.
    let tokens: Vec<u32> = turns.iter().map(|t| t.tokens).collect();
    for context in [0, budget.context_reserve()] {
        let mut cursor = 0;
        let mut batches = 0;
        while cursor < tokens.len() {
            let context = if batches == 0 { 0 } else { context };
            let end = budget.next_batch_end(&tokens, cursor, context);
            prop_assert!(
                end > cursor && end <= tokens.len(),
                "no progress at {cursor}"
            );
            prop_assert!(end - cursor <= budget.max_new_turns.max(1));
            let used: usize = tokens[cursor..end]
                .iter()
                .map(|&t| t as usize)
                .sum::<usize>()
                + (end - cursor - 1);
            prop_assert!(
                used + context <= budget.available(),
                "batch {cursor}..{end} uses {used} + {context} of {}",
                budget.available()
            );
            cursor = end;
            batches += 1;
        }
        prop_assert_eq!(cursor, tokens.len());
        prop_assert_eq!(budget.estimate_batches(&tokens, context), batches);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn normalize_and_batch_keep_every_word(
        text in transcript(),
        budget in budget(),
        soft in 1usize..400,
        which in 0usize..2,
    ) {
        check_transcript(&text, &counters()[which], budget, soft)?;
    }

    #[test]
    fn normalize_huge_lines(
        lines in prop::collection::vec((prefix(), run(), prop::collection::vec(word(), 0..4)), 1..4),
        budget in budget(),
        soft in 1usize..400,
    ) {
        let text: String = lines
            .into_iter()
            .map(|(p, r, words)| format!("{p}{} {r}{}\n", words.join(" "), words.join("")))
            .collect();
        check_transcript(&text, &counters()[0], budget, soft)?;
    }

    #[test]
    fn split_by_tokens_keeps_text_within_limit(
        text in body(),
        max_tokens in 0usize..300,
        which in 0usize..2,
    ) {
        let counter = &counters()[which];
        let pieces = split_by_tokens(&text, max_tokens, counter);
        prop_assert_eq!(squash(&pieces.concat()), squash(&text));
        for piece in &pieces {
            prop_assert!(!piece.is_empty());
            prop_assert_eq!(piece.trim(), *piece);
            prop_assert!(
                counter.count(piece) <= max_tokens.max(1) || piece.chars().count() == 1,
                "piece of {} tokens over {}: {:?}",
                counter.count(piece),
                max_tokens,
                piece
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Request parsing
// ---------------------------------------------------------------------------------------

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::String),
        "[ a-zA-Z0-9_-]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("input".to_string()),
        Just("flavor_id".to_string()),
        Just("flavor_name".to_string()),
        Just("organization_id".to_string()),
        Just("context".to_string()),
        Just("extraction_fields".to_string()),
        Just("tags".to_string()),
        Just("name".to_string()),
        Just("description".to_string()),
        Just("category".to_string()),
        Just("allow_new_tags".to_string()),
        "[a-z_]{1,10}",
        any::<String>(),
    ]
}

/// A request close to a valid one, with each field arbitrary or plausible.
fn request_value() -> impl Strategy<Value = Value> {
    let tag = (json_value(), json_value(), json_value(), any::<bool>()).prop_map(
        |(name, description, category, plain)| {
            if plain {
                json!({"name": "budget", "description": description, "category": category})
            } else {
                json!({"name": name, "description": description, "category": category})
            }
        },
    );
    (
        prop_oneof![any::<String>().prop_map(Value::String), json_value()],
        prop_oneof![
            Just(Value::Null),
            Just(json!("6f1c2a9e-4b7d-4c8e-9a1b-2c3d4e5f6a7b")),
            json_value()
        ],
        prop_oneof![Just(Value::Null), json_value()],
        prop_oneof![Just(Value::Null), Just(json!("org-1")), json_value()],
        prop_oneof![
            Just(Value::Null),
            (prop::collection::vec(tag, 0..4), json_value(), json_value())
                .prop_map(|(tags, input, allow)| json!({"tags": tags, "input": input, "allow_new_tags": allow})),
            json_value()
        ],
        prop_oneof![
            Just(Value::Null),
            prop::collection::vec(("[a-z_]{0,12}", json_value()), 0..4)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
            json_value()
        ],
    )
        .prop_map(|(input, flavor_id, flavor_name, org, context, fields)| {
            json!({
                "input": input,
                "flavor_id": flavor_id,
                "flavor_name": flavor_name,
                "organization_id": org,
                "context": context,
                "extraction_fields": fields,
            })
        })
}

fn check_parse(bytes: &[u8], limit: usize) -> Result<(), TestCaseError> {
    if let Err(error) = ExecuteRequest::parse(bytes, limit) {
        prop_assert!(
            (400..500).contains(&error.status()),
            "status {} for {error:?}",
            error.status()
        );
        prop_assert!(!error.code().is_empty(), "empty code for {error:?}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn execute_parse_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        limit in 0usize..1000,
    ) {
        check_parse(&bytes, limit)?;
    }

    #[test]
    fn execute_parse_arbitrary_json(value in json_value(), limit in 0usize..1000) {
        check_parse(value.to_string().as_bytes(), limit)?;
    }

    #[test]
    fn execute_parse_request_shaped_json(value in request_value(), limit in 0usize..100_000) {
        check_parse(value.to_string().as_bytes(), limit)?;
        // With nulls dropped, too (absent and null fields take different paths).
        if let Value::Object(mut fields) = value {
            fields.retain(|_, v| !v.is_null());
            check_parse(Value::Object(fields).to_string().as_bytes(), limit)?;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Post-processing
// ---------------------------------------------------------------------------------------

/// LLM-answer-like text: JSON fragments, fences, prose, braces and quotes in any order.
fn answer_text() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("\"".to_string()),
        Just("\\".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just("```json\n".to_string()),
        Just("\n```".to_string()),
        Just("\u{feff}".to_string()),
        Just("\"a\": 1".to_string()),
        Just("\"k\": [1, 2,]".to_string()),
        "[a-z ]{0,8}",
        "\\PC{0,4}",
        json_value().prop_map(|v| v.to_string()),
    ];
    prop_oneof![
        prop::collection::vec(fragment, 0..40).prop_map(|parts| parts.concat()),
        any::<String>(),
    ]
}

/// Summary-like text: speaker lines, markdown blocks, fences, blank lines.
fn summary_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        4 => (
            prop_oneof![Just("A"), Just("B"), Just("Jean"), Just("张伟")],
            prop_oneof![Just(" : "), Just(":"), Just("："), Just(" :")],
            "\\PC{0,30}"
        )
            .prop_map(|(s, sep, b)| format!("{s}{sep}{b}")),
        1 => Just(String::new()),
        1 => Just("   ".to_string()),
        1 => prop_oneof![
            Just("```"), Just("~~~"), Just("````rust"), Just("```x`"), Just("# Title"),
            Just("- item"), Just("1. one"), Just("---"), Just("> quote"), Just("| a | b |"),
            Just("    code"), Just("\tcode"), Just("<div>"), Just("***")
        ]
        .prop_map(str::to_string),
        2 => "\\PC{0,40}",
        1 => any::<String>(),
    ];
    prop::collection::vec(
        (line, prop_oneof![Just("\n"), Just("\r\n"), Just("\n\n")]),
        0..20,
    )
    .prop_map(|lines| lines.into_iter().map(|(l, b)| l + b).collect())
}

/// Non-whitespace content of `text` with each line's speaker label removed (consolidation
/// keeps the first label of a merged run only).
fn content_without_labels(text: &str) -> String {
    text.lines()
        .map(|line| Turn::parse(line.trim()).body)
        .map(squash)
        .collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parse_json_object_never_panics(answer in answer_text()) {
        if let Ok(object) = parse_json_object(&answer) {
            // What it returns is an object that serialises back.
            prop_assert!(serde_json::to_string(&Value::Object(object)).is_ok());
        }
    }

    #[test]
    fn consolidate_is_idempotent_and_keeps_content(text in summary_text()) {
        let once = consolidate(&text);
        let twice = consolidate(&once);
        prop_assert_eq!(&twice, &once, "not idempotent on {:?}", text);
        prop_assert_eq!(content_without_labels(&once), content_without_labels(&text));
    }

    #[test]
    fn plan_groups_keeps_every_line_within_budget(
        inputs in prop::collection::vec(summary_text(), 0..6),
        budget in 0usize..400,
        which in 0usize..2,
    ) {
        let counter = &counters()[which];
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let groups = plan_groups(&refs, budget, counter);
        let want: String = inputs
            .iter()
            .flat_map(|input| input.lines())
            .filter(|line| !line.trim().is_empty())
            .map(squash)
            .collect();
        let got: String = groups.iter().map(|g| squash(g)).collect();
        prop_assert_eq!(got, want, "lines lost or reordered");
        for group in &groups {
            prop_assert!(!group.trim().is_empty(), "empty group");
            let tokens = counter.count(group);
            prop_assert!(
                tokens <= budget.max(1) || group.chars().count() == 1,
                "group of {} tokens over the budget {}: {:?}",
                tokens,
                budget,
                group
            );
        }
    }
}
