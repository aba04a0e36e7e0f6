//! Turn normalisation (`create_new_turn_after`): long turns are split on sentence
//! boundaries with the speaker prefix repeated on every piece; a sentence longer than the
//! hard limit is split by tokens. No content is ever dropped.

use serde::{Deserialize, Serialize};

use super::sentences::split_sentences;
use super::turns::split_turns;
use crate::tokens::TokenCounter;

/// Bytes per token above which a line is assumed to exceed the soft limit uncounted.
const MAX_BYTES_PER_TOKEN: usize = 10;

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
        split_long_turn(turn.prefix, turn.body, counter, soft, hard, &mut out);
    }
    out
}

fn split_long_turn(
    prefix: &str,
    body: &str,
    counter: &TokenCounter,
    soft: usize,
    hard: usize,
    out: &mut Vec<NormalizedTurn>,
) {
    let prefix_tokens = counter.count(prefix);
    let soft_body = soft.saturating_sub(prefix_tokens).max(1);
    let hard_body = hard.saturating_sub(prefix_tokens).max(1);
    let mut piece = Piece {
        prefix,
        prefix_tokens,
        sentences: Vec::new(),
        tokens: 0,
    };
    for sentence in split_sentences(body) {
        let sentence_tokens = counter.count(sentence);
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
}

impl Piece<'_> {
    /// Emits the gathered sentences as one turn. Its count is an upper estimate: prefix +
    /// sentences + joins + one at the prefix boundary (a merge across a join changes a
    /// count by about one token at most), which spares counting the piece again.
    fn flush(&mut self, counter: &TokenCounter, hard: usize, out: &mut Vec<NormalizedTurn>) {
        if self.sentences.is_empty() {
            return;
        }
        let estimate = self.prefix_tokens + self.tokens + 1;
        push_piece(
            self.prefix,
            &self.sentences.join(" "),
            Some(estimate),
            counter,
            hard,
            out,
        );
        self.sentences.clear();
        self.tokens = 0;
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
        for part in split_by_tokens(body, body_limit, counter) {
            push_piece(prefix, part, None, counter, hard, out);
        }
        return;
    }
    out.push(NormalizedTurn {
        text,
        tokens: tokens as u32,
    });
}

/// Splits `text` into consecutive pieces of at most `max_tokens` tokens each, cutting at
/// whitespace where possible and always at char boundaries. Whitespace at a cut is dropped;
/// every other character is kept, in order. A single char worth more than `max_tokens`
/// tokens still makes progress as a piece of its own.
pub fn split_by_tokens<'a>(
    text: &'a str,
    max_tokens: usize,
    counter: &TokenCounter,
) -> Vec<&'a str> {
    let max_tokens = max_tokens.max(1);
    let mut pieces = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let total = counter.count(rest);
        if total <= max_tokens {
            pieces.push(rest);
            break;
        }
        let mut guess = (rest.len() * max_tokens / total).max(1);
        let cut = loop {
            let cut = cut_point(rest, guess);
            if cut == first_char_len(rest) || counter.count(&rest[..cut]) <= max_tokens {
                break cut;
            }
            guess = (guess * 9 / 10).min(cut - 1).max(1);
        };
        pieces.push(rest[..cut].trim_end());
        rest = rest[cut..].trim_start();
    }
    pieces
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
}
