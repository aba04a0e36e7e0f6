//! Turn normalisation (`create_new_turn_after`): long turns are split on sentence
//! boundaries with the speaker prefix repeated on every piece (unless the prefix alone is
//! worth more than half the hard limit); a sentence longer than the hard limit is split by
//! tokens. No content is ever dropped, and the work is linear in the text whatever its
//! shape (no whitespace, one huge line, emoji or CJK runs).

use serde::{Deserialize, Serialize};

use super::sentences::split_sentences;
use super::turns::{split_turns, Turn};
use crate::tokens::TokenCounter;

/// Longest run without whitespace at the start of a joined sentence for which the estimate
/// of [`Piece::flush`] is trusted without an exact count.
const MAX_ESTIMATED_JOIN_RUN: usize = 12;

/// Natural text averages well under this many bytes per token: a line this long per
/// token of a limit is assumed over it uncounted, and an upload not read yet is assumed
/// to have at least its size / this many tokens.
pub const MAX_BYTES_PER_TOKEN: usize = 10;

/// A transcript turn ready for batching, with its exact token count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NormalizedTurn {
    pub text: String,
    pub tokens: u32,
}

/// Limits for normalisation, in tokens.
#[derive(Debug, Clone, Copy)]
pub struct NormalizeLimits {
    /// Soft target: a turn longer than this is split on sentence boundaries.
    pub create_new_turn_after: usize,
    /// Hard maximum: no normalised turn exceeds this (sentences are split by tokens).
    pub max_turn_tokens: usize,
}

/// Splits a transcript into normalised turns.
pub fn normalize_transcript(
    text: &str,
    counter: &TokenCounter,
    limits: NormalizeLimits,
) -> Vec<NormalizedTurn> {
    let soft = limits.create_new_turn_after.max(1);
    let hard = limits.max_turn_tokens.max(1);
    let mut out = Vec::new();
    for turn in split_turns(text) {
        let line = turn.line;
        // Natural text averages well under 10 bytes per token, so a line that long is split
        // without counting it whole first (a line that fits comes back as one piece).
        if line.len() <= soft.saturating_mul(MAX_BYTES_PER_TOKEN) {
            let tokens = counter.count(line);
            if tokens <= soft.min(hard) {
                out.push(NormalizedTurn {
                    text: line.to_string(),
                    tokens: tokens as u32,
                });
                continue;
            }
        }
        split_long_turn(turn, counter, soft, hard, &mut out);
    }
    out
}

fn split_long_turn(
    turn: Turn<'_>,
    counter: &TokenCounter,
    soft: usize,
    hard: usize,
    out: &mut Vec<NormalizedTurn>,
) {
    let (mut prefix, mut body) = (turn.prefix, turn.body);
    let mut prefix_tokens = counter.count(prefix);
    if prefix_tokens.saturating_mul(2) > hard {
        // A label this long for the limit is not repeated (each piece would be mostly
        // label, or the label alone over the limit): the line is split as plain text.
        (prefix, body, prefix_tokens) = ("", turn.line, 0);
    }
    let soft_body = soft.saturating_sub(prefix_tokens).max(1);
    let hard_body = hard.saturating_sub(prefix_tokens).max(1);
    let mut piece = Piece {
        prefix,
        prefix_tokens,
        sentences: Vec::new(),
        tokens: 0,
        uncertain: false,
    };
    for sentence in split_sentences(body) {
        // A sentence far longer than natural text needs is split without counting it whole
        // first (as lines are above): cut into pieces, each counted once.
        let sentence_tokens = if sentence.len() > hard_body.saturating_mul(MAX_BYTES_PER_TOKEN) {
            usize::MAX
        } else {
            counter.count(sentence)
        };
        if sentence_tokens > hard_body {
            piece.flush(counter, hard, out);
            for part in split_by_tokens(sentence, hard_body, counter) {
                push_piece(prefix, part, None, counter, hard, out);
            }
            continue;
        }
        if !piece.sentences.is_empty() && piece.tokens + 1 + sentence_tokens > soft_body {
            piece.flush(counter, hard, out);
        }
        piece.tokens += sentence_tokens + usize::from(!piece.sentences.is_empty());
        piece.uncertain |= leading_run_len(sentence) > MAX_ESTIMATED_JOIN_RUN;
        piece.sentences.push(sentence);
    }
    piece.flush(counter, hard, out);
}

/// Sentences gathered for the next piece of a long turn, with their token sum.
struct Piece<'a> {
    prefix: &'a str,
    prefix_tokens: usize,
    sentences: Vec<&'a str>,
    /// Tokens of the sentences plus one per join.
    tokens: usize,
    /// Whether a sentence starts with a run without whitespace too long for the estimate.
    uncertain: bool,
}

impl Piece<'_> {
    /// Emits the gathered sentences as one turn. Its count is an upper estimate: prefix +
    /// sentences + joins + one at the prefix boundary (a merge across a join changes a
    /// count by about one token at most), which spares counting the piece again.
    ///
    /// That holds when the word after each join is short. A long run without whitespace
    /// after a join (CJK, a run of symbols) is pre-tokenised as one piece whose whole BPE
    /// merge can change with the space or prefix in front of it, so such a piece is also
    /// counted exactly and keeps the larger of the two figures (the same turns and counts
    /// as the estimate whenever it was right).
    fn flush(&mut self, counter: &TokenCounter, hard: usize, out: &mut Vec<NormalizedTurn>) {
        if self.sentences.is_empty() {
            return;
        }
        let body = self.sentences.join(" ");
        let mut estimate = self.prefix_tokens + self.tokens + 1;
        if self.uncertain && estimate <= hard {
            estimate = estimate.max(counter.count(&format!("{}{body}", self.prefix)));
        }
        push_piece(self.prefix, &body, Some(estimate), counter, hard, out);
        self.sentences.clear();
        self.tokens = 0;
        self.uncertain = false;
    }
}

/// Pushes `prefix + body` as a turn, with `estimate` as its count when given and not over
/// `hard` (sparing a recount), else its exact count; a piece over `hard` is split further
/// (a single char is pushed as is).
fn push_piece(
    prefix: &str,
    body: &str,
    estimate: Option<usize>,
    counter: &TokenCounter,
    hard: usize,
    out: &mut Vec<NormalizedTurn>,
) {
    if body.is_empty() {
        return;
    }
    let text = format!("{prefix}{body}");
    if let Some(estimate) = estimate.filter(|estimate| *estimate <= hard) {
        out.push(NormalizedTurn {
            text,
            tokens: estimate as u32,
        });
        return;
    }
    let tokens = counter.count(&text);
    if tokens > hard && body.chars().nth(1).is_some() {
        let body_limit = counter.count(body).saturating_sub(tokens - hard).max(1);
        let parts = split_by_tokens(body, body_limit, counter);
        // Recurse only on progress (each part shorter than `body`): a body of one token
        // cannot be cut by tokens and is pushed as is.
        if parts.len() > 1 {
            for part in parts {
                push_piece(prefix, part, None, counter, hard, out);
            }
            return;
        }
    }
    out.push(NormalizedTurn {
        text,
        tokens: tokens as u32,
    });
}

/// Bytes per token assumed for the first counting window of [`split_by_tokens`]: more than
/// natural text, cut-up words or CJK need, so one window usually holds a whole piece.
const WINDOW_BYTES_PER_TOKEN: usize = 8;

/// Splits `text` into consecutive pieces of at most `max_tokens` tokens each, cutting at
/// whitespace where possible and always at char boundaries. Whitespace at a cut is dropped;
/// every other character is kept, in order. A single char worth more than `max_tokens`
/// tokens still makes progress as a piece of its own.
///
/// Linear in the length of `text` whatever its shape: each piece is found by counting a
/// window of the text ahead (about twice the piece, doubled while it holds no more than
/// `max_tokens` tokens), never the whole rest, so every byte is counted a bounded number of
/// times.
pub fn split_by_tokens<'a>(
    text: &'a str,
    max_tokens: usize,
    counter: &TokenCounter,
) -> Vec<&'a str> {
    let max_tokens = max_tokens.max(1);
    let min_window = max_tokens.saturating_mul(WINDOW_BYTES_PER_TOKEN);
    let mut window = min_window;
    let mut pieces = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        // The shortest window of `rest` (doubling) that holds more than `max_tokens`.
        let (scope, total) = loop {
            let scope = &rest[..floor_char_boundary(rest, window)];
            let total = counter.count(scope);
            if total > max_tokens || scope.len() == rest.len() {
                break (scope, total);
            }
            window = window.saturating_mul(2);
        };
        if total <= max_tokens {
            pieces.push(rest);
            break;
        }
        let mut guess = (scope.len() * max_tokens / total).max(1);
        let cut = loop {
            let cut = cut_point(scope, guess);
            if cut == first_char_len(rest) {
                break cut;
            }
            let tokens = counter.count(&rest[..cut]);
            if tokens <= max_tokens {
                break cut;
            }
            // Shrink at least 10%, or in proportion to the overshoot when it is larger.
            guess = (guess * 9 / 10)
                .min(cut * max_tokens / tokens)
                .min(cut - 1)
                .max(1);
        };
        pieces.push(rest[..cut].trim_end());
        rest = rest[cut..].trim_start();
        // The next piece is likely about as long as this one.
        window = cut.saturating_mul(2).max(min_window);
    }
    pieces
}

/// The largest char boundary of `text` at or before `at`, past the first char.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    if at >= text.len() {
        return text.len();
    }
    let mut end = at;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end.max(first_char_len(text))
}

/// Bytes before the first whitespace of `text` (all of it when it has none).
fn leading_run_len(text: &str) -> usize {
    text.find(char::is_whitespace).unwrap_or(text.len())
}

fn first_char_len(text: &str) -> usize {
    text.chars().next().map_or(0, char::len_utf8)
}

/// A cut at or before byte `guess`: the last whitespace in the second half of the window if
/// any, else the nearest char boundary; never empty.
fn cut_point(text: &str, guess: usize) -> usize {
    let mut end = guess.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end == 0 {
        return first_char_len(text);
    }
    let window = &text[..end];
    match window.rfind(char::is_whitespace) {
        Some(space) if space >= end / 2 && space > 0 => space,
        _ => end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter() -> TokenCounter {
        TokenCounter::load("cl100k_base").unwrap()
    }

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn short_turns_are_kept_verbatim() {
        let turns = normalize_transcript(
            "Jean : Bonjour.\n\nMarie: Salut !\n[rires]\n",
            &counter(),
            NormalizeLimits {
                create_new_turn_after: 150,
                max_turn_tokens: 1000,
            },
        );
        let texts: Vec<_> = turns.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, vec!["Jean : Bonjour.", "Marie: Salut !", "[rires]"]);
        assert!(turns.iter().all(|t| t.tokens > 0));
    }

    #[test]
    fn long_turn_split_on_sentences_with_prefix_repeated() {
        let body: Vec<String> = (0..40)
            .map(|i| format!("Sentence number {i} is about the budget."))
            .collect();
        let line = format!("Sofia : {}", body.join(" "));
        let c = counter();
        let turns = normalize_transcript(
            &line,
            &c,
            NormalizeLimits {
                create_new_turn_after: 50,
                max_turn_tokens: 1000,
            },
        );
        assert!(turns.len() > 1);
        for turn in &turns {
            assert!(turn.text.starts_with("Sofia : "), "{}", turn.text);
            assert!(
                turn.text.ends_with('.'),
                "cut on a sentence boundary: {}",
                turn.text
            );
            assert!(turn.tokens as usize <= 50 + 12, "{}", turn.tokens);
            assert!(
                turn.tokens as usize >= c.count(&turn.text),
                "the count never underestimates"
            );
        }
        let bodies: Vec<String> = turns
            .iter()
            .map(|t| t.text.trim_start_matches("Sofia : ").to_string())
            .collect();
        assert_eq!(words(&bodies.join(" ")), words(&body.join(" ")));
    }

    #[test]
    fn oversized_sentence_is_split_by_tokens_not_dropped() {
        let sentence = (0..500)
            .map(|i| format!("mot{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let cjk = "预算".repeat(400);
        let line = format!("A : Short one. {sentence}. {cjk}。 End.");
        let c = counter();
        let turns = normalize_transcript(
            &line,
            &c,
            NormalizeLimits {
                create_new_turn_after: 40,
                max_turn_tokens: 60,
            },
        );
        assert!(
            turns.iter().all(|t| t.tokens <= 60),
            "{:?}",
            turns.iter().map(|t| t.tokens).collect::<Vec<_>>()
        );
        assert!(turns.iter().all(|t| t.text.starts_with("A : ")));
        let joined: String = turns
            .iter()
            .map(|t| t.text.trim_start_matches("A : "))
            .collect::<Vec<_>>()
            .join(" ");
        let squash = |s: &str| s.split_whitespace().collect::<String>();
        assert_eq!(squash(&joined), squash(line.trim_start_matches("A : ")));
    }

    #[test]
    fn whole_transcript_keeps_every_word_in_order() {
        let transcript = [
            "Jean : Bonjour à tous. M. Dupont ne viendra pas ! On commence ?",
            "[rires]",
            "Marie: Okay. Dr. Smith sent the report, e.g. the Q3 figures. Any questions? None.",
            "张伟：我们开始吧。今天讨论预算！有问题吗？好的。",
            "田中 : 会議を始めます。予算について話しましょう！",
            "Ahmed : We agree. 我们同意。 On est d'accord ! 了解しました。",
        ]
        .iter()
        .map(|line| line.repeat(7))
        .collect::<Vec<_>>()
        .join("\n");
        let c = counter();
        for soft in [8, 20, 150] {
            let turns = normalize_transcript(
                &transcript,
                &c,
                NormalizeLimits {
                    create_new_turn_after: soft,
                    max_turn_tokens: 40,
                },
            );
            assert!(turns.iter().all(|t| t.tokens <= 40));
            let mut got = Vec::new();
            for turn in &turns {
                let parsed = crate::text::turns::Turn::parse(&turn.text);
                got.extend(words(parsed.body));
            }
            let mut want = Vec::new();
            for turn in crate::text::turns::split_turns(&transcript) {
                want.extend(words(turn.body));
            }
            let squash = |w: Vec<String>| w.concat();
            assert_eq!(squash(got), squash(want), "soft limit {soft}");
        }
    }

    #[test]
    fn split_by_tokens_respects_limit_and_keeps_text() {
        let c = counter();
        let text = "🎉".repeat(50) + &" word".repeat(300);
        let pieces = split_by_tokens(&text, 7, &c);
        assert!(pieces
            .iter()
            .all(|p| c.count(p) <= 7 || p.chars().count() == 1));
        assert_eq!(pieces.concat().replace(' ', ""), text.replace(' ', ""));
        assert!(split_by_tokens("   ", 5, &c).is_empty());
    }

    #[test]
    fn estimate_never_under_when_a_long_run_follows_a_join() {
        // Found by the property tests: the prefix's second space merges into the CJK run
        // after it, changing that run's BPE as a whole.
        let c = counter();
        for line in [
            format!("𛅤:  {}", "预算".repeat(14)),
            format!("Jean : Oui. {} Fin.", "预算".repeat(30)),
        ] {
            let turns = normalize_transcript(
                &line,
                &c,
                NormalizeLimits {
                    create_new_turn_after: 1,
                    max_turn_tokens: 48,
                },
            );
            for turn in &turns {
                assert!(turn.tokens as usize >= c.count(&turn.text), "{turn:?}");
                assert!(turn.tokens <= 48, "{turn:?}");
            }
        }
    }

    #[test]
    fn a_label_over_half_the_limit_is_not_repeated() {
        // Found by the property tests: a label alone over the limit made `push_piece`
        // recurse forever on a one-token body (stack overflow).
        let c = counter();
        let squash = |s: &str| s.split_whitespace().collect::<String>();
        for body in ["ab cd ".repeat(100), "ab".to_string(), "z".repeat(3000)] {
            let line = format!("{}: {body}", "𛅤".repeat(40));
            let turns = normalize_transcript(
                &line,
                &c,
                NormalizeLimits {
                    create_new_turn_after: 20,
                    max_turn_tokens: 48,
                },
            );
            for turn in &turns {
                assert!(turn.tokens <= 48, "{turn:?}");
                assert!(turn.tokens as usize >= c.count(&turn.text), "{turn:?}");
            }
            let joined: String = turns.iter().map(|t| t.text.as_str()).collect();
            assert_eq!(squash(&joined), squash(&line));
        }
    }

    /// Inputs of about `bytes` bytes in the shapes that used to make splitting quadratic.
    fn shapes(bytes: usize) -> Vec<(&'static str, String)> {
        vec![
            ("z-run", "z".repeat(bytes)),
            ("words", "budget review ".repeat(bytes / 14)),
            ("punctuation", ".,;!?".repeat(bytes / 5)),
            ("emoji", "😀".repeat(bytes / 4)),
            ("cjk", "我们讨论预算".repeat(bytes / 18)),
        ]
    }

    /// Regression for the quadratic splitting of long text without whitespace: the bytes
    /// handed to the counter grow linearly with the input (no timing involved).
    #[test]
    fn splitting_counts_each_byte_a_bounded_number_of_times() {
        use crate::tokens::counted::bytes_during;
        let c = counter();
        let limits = NormalizeLimits {
            create_new_turn_after: 150,
            max_turn_tokens: 400,
        };
        let per_byte = |text: &str| {
            let (bytes, turns) = bytes_during(|| normalize_transcript(text, &c, limits));
            assert!(turns.iter().all(|t| t.tokens <= 400));
            bytes as f64 / text.len() as f64
        };
        for ((name, small), (_, large)) in shapes(40_000).into_iter().zip(shapes(160_000)) {
            let (small, large) = (per_byte(&small), per_byte(&large));
            assert!(
                large <= 8.0 && large <= small * 1.25 + 0.5,
                "{name}: each byte counted {small:.1} times at 40 KB, {large:.1} at 160 KB"
            );
        }
        // split_by_tokens alone, with small pieces (many cuts).
        for ((name, small), (_, large)) in shapes(20_000).into_iter().zip(shapes(80_000)) {
            let per_byte = |text: &str| {
                let (bytes, pieces) = bytes_during(|| split_by_tokens(text, 7, &c));
                assert!(pieces.len() > 1);
                bytes as f64 / text.len() as f64
            };
            let (small, large) = (per_byte(&small), per_byte(&large));
            assert!(
                large <= 8.0 && large <= small * 1.25 + 0.5,
                "{name}: each byte counted {small:.1} times at 20 KB, {large:.1} at 80 KB"
            );
        }
    }
}
