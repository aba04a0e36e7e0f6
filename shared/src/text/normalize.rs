//! Turn normalisation (`create_new_turn_after`): long turns are split on sentence
//! boundaries with the speaker prefix repeated on every piece (unless the prefix alone is
//! worth more than half the hard limit); a sentence longer than the hard limit is split by
//! tokens. No content is ever dropped, every turn's count is exact, and the work is linear
//! in the text whatever its shape (no whitespace, one huge line, emoji or CJK runs).
//!
//! Each byte of a line is usually counted once. A long line is counted sentence by
//! sentence, each count taking the whitespace before the sentence with it; with a tiktoken
//! encoding these counts add up at spaces (see [`TokenCounter::counts_add_up_at_spaces`]),
//! so the whole line's count and every piece's count are sums of them, read without
//! counting again. A piece whose count is not such a sum (a line without a speaker label,
//! sentences not separated by one space, a HuggingFace tokenizer) is counted once more.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::sentences::Sentences;
use super::turns::{turn_lines, Turn};
use crate::tokens::TokenCounter;

/// Natural text averages well under this many bytes per token: a line this long per
/// token of a limit is assumed over it uncounted, and an upload not read yet is assumed
/// to have at least its size / this many tokens.
pub const MAX_BYTES_PER_TOKEN: usize = 10;

/// A line up to this many bytes per token of the soft limit likely fits: it is counted
/// whole first, and sentence by sentence only when it does not fit. A longer line is
/// counted sentence by sentence at once (the sum is its whole count too).
const LIKELY_FITS_BYTES_PER_TOKEN: usize = 4;

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
    let mut splitter = Splitter {
        counter,
        soft: limits.create_new_turn_after.max(1),
        hard: limits.max_turn_tokens.max(1),
        sentences: Vec::new(),
        out: Vec::new(),
    };
    for line in turn_lines(text) {
        splitter.line(line);
    }
    splitter.out
}

/// The state of [`normalize_transcript`]: its limits, the current line's sentences (a
/// buffer reused across lines), and the turns made so far.
struct Splitter<'c> {
    counter: &'c TokenCounter,
    soft: usize,
    hard: usize,
    sentences: Vec<Sentence>,
    out: Vec<NormalizedTurn>,
}

/// A sentence of the line being split. Its segment is the text from the previous
/// sentence's end (or its run's start) to its own end, whitespace before it included.
#[derive(Clone)]
struct Sentence {
    /// Bytes of the line, trimmed.
    range: Range<usize>,
    /// Tokens of the segments of its run up to its own, included.
    tokens_to_end: usize,
    /// Joins of its run before it where counts may not add up (the previous sentence is
    /// not followed by a space or tab).
    loose_joins_before: usize,
}

/// A line being split and the prefix repeated on its pieces.
struct Line<'t> {
    text: &'t str,
    prefix: &'t str,
    prefix_tokens: usize,
    /// Tokens of the prefix without its last space, when it ends in one space after a
    /// non-space: a piece after one space is then counted as these plus its segments.
    prefix_head_tokens: Option<usize>,
}

/// A piece's token count, and whether it is exact (else an estimate to choose cuts by).
#[derive(Clone, Copy)]
struct PieceCount {
    tokens: usize,
    exact: bool,
}

impl Splitter<'_> {
    fn line(&mut self, line: &str) {
        let length = line.len();
        if length <= self.soft.saturating_mul(LIKELY_FITS_BYTES_PER_TOKEN) {
            let tokens = self.counter.count(line);
            if tokens <= self.fits() {
                self.push(line.to_string(), tokens);
                return;
            }
        }
        // Natural text averages well under 10 bytes per token, so a longer line is split
        // without counting it whole (and a sentence far too long is split by tokens without
        // counting it whole either).
        let may_fit = length > self.soft.saturating_mul(LIKELY_FITS_BYTES_PER_TOKEN)
            && length <= self.soft.saturating_mul(MAX_BYTES_PER_TOKEN);
        self.split_long_turn(Turn::parse(line), may_fit);
    }

    /// The most tokens a line kept whole may have.
    fn fits(&self) -> usize {
        self.soft.min(self.hard)
    }

    fn push(&mut self, text: String, tokens: usize) {
        self.out.push(NormalizedTurn {
            text,
            tokens: tokens as u32,
        });
    }

    /// Splits a line that is over the soft limit, or `may_fit` it (then counted by its
    /// sentences, and kept whole when it fits).
    fn split_long_turn(&mut self, turn: Turn<'_>, may_fit: bool) {
        let counter = self.counter;
        let (mut prefix, mut body_start) = (turn.prefix, turn.prefix.len());
        let mut prefix_tokens = counter.count(prefix);
        if prefix_tokens.saturating_mul(2) > self.hard {
            // A label this long for the limit is not repeated (each piece would be mostly
            // label, or the label alone over the limit): the line is split as plain text.
            (prefix, body_start, prefix_tokens) = ("", 0, 0);
        }
        let prefix_head_tokens = prefix
            .strip_suffix(' ')
            .filter(|head| head.ends_with(|c: char| !c.is_whitespace()))
            .map(|head| counter.count(head));
        let line = Line {
            text: turn.line,
            prefix,
            prefix_tokens,
            prefix_head_tokens,
        };
        let hard_body = self.hard.saturating_sub(prefix_tokens).max(1);
        let body = &line.text[body_start..];
        self.sentences.clear();
        self.sentences.extend(Sentences::new(body).map(|sentence| {
            let start = body_start + (sentence.as_ptr() as usize - body.as_ptr() as usize);
            Sentence {
                range: start..start + sentence.len(),
                tokens_to_end: 0,
                loose_joins_before: 0,
            }
        }));

        if may_fit {
            let tokens = self.count_run(&line, 0..self.sentences.len(), 0);
            let adds_up = counter.counts_add_up_at_spaces()
                && self
                    .sentences
                    .last()
                    .is_none_or(|last| last.loose_joins_before == 0);
            let whole = if adds_up {
                tokens
            } else {
                counter.count(line.text)
            };
            if whole <= self.fits() {
                self.push(line.text.to_string(), whole);
                return;
            }
            self.pack(&line, 0..self.sentences.len());
            return;
        }

        let too_long = |sentence: &Sentence| {
            sentence.range.len() > hard_body.saturating_mul(MAX_BYTES_PER_TOKEN)
        };
        let mut index = 0;
        let mut run_start = 0;
        while index < self.sentences.len() {
            if too_long(&self.sentences[index]) {
                let sentence = &line.text[self.sentences[index].range.clone()];
                for part in split_by_tokens(sentence, hard_body, counter) {
                    push_piece(prefix, part, counter, self.hard, &mut self.out);
                }
                run_start = self.sentences[index].range.end;
                index += 1;
                continue;
            }
            // A run of sentences short enough to count, each counted once.
            let run_end = index
                + self.sentences[index..]
                    .iter()
                    .position(too_long)
                    .unwrap_or(self.sentences.len() - index);
            self.count_run(&line, index..run_end, run_start);
            self.pack(&line, index..run_end);
            index = run_end;
        }
    }

    /// Counts the segments of the sentences `run`, the first one starting at `from`;
    /// returns their sum.
    fn count_run(&mut self, line: &Line<'_>, run: Range<usize>, mut from: usize) -> usize {
        let (mut tokens, mut loose_joins) = (0, 0);
        for index in run.clone() {
            let sentence = &mut self.sentences[index];
            if index > run.start && !matches!(line.text.as_bytes()[from], b' ' | b'\t') {
                loose_joins += 1;
            }
            tokens += self.counter.count(&line.text[from..sentence.range.end]);
            sentence.tokens_to_end = tokens;
            sentence.loose_joins_before = loose_joins;
            from = sentence.range.end;
        }
        tokens
    }

    /// Packs the counted sentences `run` into pieces of at most the soft limit each (one
    /// sentence at least); a sentence over the hard limit is split by tokens.
    fn pack(&mut self, line: &Line<'_>, run: Range<usize>) {
        let mut first = run.start;
        while first < run.end {
            let mut last = first;
            let mut count = self.piece_count(line, &run, first, last);
            if count.tokens > self.hard && !count.exact {
                // An estimate over the limit: the sentence may still fit.
                let sentence = &line.text[self.sentences[first].range.clone()];
                count = PieceCount {
                    tokens: self.counter.count(&format!("{}{sentence}", line.prefix)),
                    exact: true,
                };
            }
            if count.tokens > self.hard {
                let sentence = &line.text[self.sentences[first].range.clone()];
                let hard_body = self.hard.saturating_sub(line.prefix_tokens).max(1);
                for part in split_by_tokens(sentence, hard_body, self.counter) {
                    push_piece(line.prefix, part, self.counter, self.hard, &mut self.out);
                }
                first += 1;
                continue;
            }
            while last + 1 < run.end {
                let longer = self.piece_count(line, &run, first, last + 1);
                if longer.tokens > self.fits() {
                    break;
                }
                (last, count) = (last + 1, longer);
            }
            let (start, end) = (
                self.sentences[first].range.start,
                self.sentences[last].range.end,
            );
            let mut text = String::with_capacity(line.prefix.len() + end - start);
            text.push_str(line.prefix);
            text.push_str(&line.text[start..end]);
            match count.exact {
                true => self.push(text, count.tokens),
                false => push_text(
                    line.prefix.len(),
                    text,
                    self.counter,
                    self.hard,
                    &mut self.out,
                ),
            }
            first = last + 1;
        }
    }

    /// The count of the piece of sentences `first..=last` of `run` (`prefix +` the line
    /// from the first's start to the last's end), as a sum of segments. Exact when the
    /// counts add up at every join inside the piece and the piece either starts the line
    /// or follows one space (with a prefix ending in one space after a non-space); else an
    /// estimate, over by the joins that may not add up.
    fn piece_count(
        &self,
        line: &Line<'_>,
        run: &Range<usize>,
        first: usize,
        last: usize,
    ) -> PieceCount {
        let (head, tail) = (&self.sentences[first], &self.sentences[last]);
        let before = match first > run.start {
            true => self.sentences[first - 1].tokens_to_end,
            false => 0,
        };
        let segments = tail.tokens_to_end - before;
        let loose_joins = tail.loose_joins_before - head.loose_joins_before;
        let start = head.range.start;
        // The segment of the first sentence is the whole line up to its end when it starts
        // the line, else one space and the sentence when the gap before it is one space.
        let exact_head = if start == line.prefix.len() && before == 0 && first == 0 {
            Some(0)
        } else {
            let segment_start = match first > run.start {
                true => self.sentences[first - 1].range.end,
                false => start,
            };
            line.prefix_head_tokens.filter(|_| {
                first > run.start
                    && segment_start + 1 == start
                    && line.text.as_bytes()[segment_start] == b' '
            })
        };
        match exact_head {
            Some(head_tokens) if loose_joins == 0 && self.counter.counts_add_up_at_spaces() => {
                PieceCount {
                    tokens: head_tokens + segments,
                    exact: true,
                }
            }
            _ => PieceCount {
                tokens: line.prefix_tokens + segments + loose_joins,
                exact: false,
            },
        }
    }
}

/// Pushes `prefix + body` as a turn (see [`push_text`]); nothing for an empty body.
fn push_piece(
    prefix: &str,
    body: &str,
    counter: &TokenCounter,
    hard: usize,
    out: &mut Vec<NormalizedTurn>,
) {
    if body.is_empty() {
        return;
    }
    push_text(prefix.len(), format!("{prefix}{body}"), counter, hard, out);
}

/// Pushes `text` (a prefix of `prefix_len` bytes, then a non-empty body) as a turn with
/// its exact count; a piece over `hard` is split further (a single char is pushed as is).
fn push_text(
    prefix_len: usize,
    text: String,
    counter: &TokenCounter,
    hard: usize,
    out: &mut Vec<NormalizedTurn>,
) {
    let tokens = counter.count(&text);
    let (prefix, body) = text.split_at(prefix_len);
    if tokens > hard && body.chars().nth(1).is_some() {
        let body_limit = counter.count(body).saturating_sub(tokens - hard).max(1);
        let parts = split_by_tokens(body, body_limit, counter);
        // Recurse only on progress (each part shorter than `body`): a body of one token
        // cannot be cut by tokens and is pushed as is.
        if parts.len() > 1 {
            for part in parts {
                push_piece(prefix, part, counter, hard, out);
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
