//! Batching with rolling context: each batch holds at most `max_new_turns` turns and fits
//! the token budget `context − max generation − prompt − rolling context`.

use super::normalize::split_by_tokens;
use crate::tokens::TokenCounter;

/// The fewest tokens a flavor must leave for input in one call.
pub const MIN_INPUT_TOKENS: usize = 64;

/// Token budget of one LLM call in iterative mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchBudget {
    pub context_length: usize,
    pub max_generation: usize,
    /// Tokens of the prompt template without its placeholders.
    pub prompt_tokens: usize,
    pub max_new_turns: usize,
}

impl BatchBudget {
    /// Tokens left for rolling context plus new turns.
    pub fn available(&self) -> usize {
        self.context_length
            .saturating_sub(self.max_generation)
            .saturating_sub(self.prompt_tokens)
    }

    /// The most tokens the rolling context may use (a quarter of what is available), so
    /// that any normalised turn always fits next to it.
    pub fn context_reserve(&self) -> usize {
        self.available() / 4
    }

    /// The largest a single normalised turn may be.
    pub fn max_turn_tokens(&self) -> usize {
        (self.available() - self.context_reserve()).max(1)
    }

    /// End (exclusive) of the batch that starts at `cursor`, given the rolling context's
    /// token count. Always takes at least one turn when any is left. Turns are joined by
    /// newlines, counted as one token each.
    pub fn next_batch_end(
        &self,
        turn_tokens: &[u32],
        cursor: usize,
        context_tokens: usize,
    ) -> usize {
        let room = self.available().saturating_sub(context_tokens);
        let max_turns = self.max_new_turns.max(1);
        let mut used = 0usize;
        let mut end = cursor;
        while end < turn_tokens.len() && end - cursor < max_turns {
            let cost = turn_tokens[end] as usize + usize::from(end > cursor);
            if end > cursor && used + cost > room {
                break;
            }
            used += cost;
            end += 1;
        }
        end
    }

    /// Number of batches for the whole transcript, assuming each batch after the first
    /// carries `context_tokens_estimate` tokens of rolling context.
    pub fn estimate_batches(&self, turn_tokens: &[u32], context_tokens_estimate: usize) -> usize {
        let mut cursor = 0;
        let mut batches = 0;
        while cursor < turn_tokens.len() {
            let context = if batches == 0 {
                0
            } else {
                context_tokens_estimate.min(self.context_reserve())
            };
            cursor = self.next_batch_end(turn_tokens, cursor, context);
            batches += 1;
        }
        batches
    }
}

/// The rolling context after a batch: the last `summary_turns` non-empty lines of all output
/// so far, trimmed from the oldest line until it fits `max_tokens` (a lone oversized line
/// keeps only its first `max_tokens` tokens).
pub fn rolling_context(
    previous: &[String],
    new_output: &str,
    summary_turns: usize,
    max_tokens: usize,
    counter: &TokenCounter,
) -> Vec<String> {
    let mut lines: Vec<String> = previous
        .iter()
        .map(String::as_str)
        .chain(
            new_output
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty()),
        )
        .map(str::to_string)
        .collect();
    let keep_from = lines.len().saturating_sub(summary_turns);
    lines.drain(..keep_from);
    while context_tokens(&lines, counter) > max_tokens {
        if lines.len() > 1 {
            lines.remove(0);
        } else {
            let first = split_by_tokens(&lines[0], max_tokens, counter)
                .first()
                .map(|piece| piece.to_string())
                .unwrap_or_default();
            lines = if first.is_empty() {
                Vec::new()
            } else {
                vec![first]
            };
            break;
        }
    }
    lines
}

/// Tokens of context lines joined by newlines.
pub fn context_tokens(lines: &[String], counter: &TokenCounter) -> usize {
    if lines.is_empty() {
        0
    } else {
        counter.count(&lines.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(context_length: usize, max_new_turns: usize) -> BatchBudget {
        BatchBudget {
            context_length,
            max_generation: 100,
            prompt_tokens: 20,
            max_new_turns,
        }
    }

    fn batches(b: &BatchBudget, tokens: &[u32], context: usize) -> Vec<std::ops::Range<usize>> {
        let mut out = Vec::new();
        let mut cursor = 0;
        while cursor < tokens.len() {
            let end = b.next_batch_end(tokens, cursor, if out.is_empty() { 0 } else { context });
            out.push(cursor..end);
            cursor = end;
        }
        out
    }

    #[test]
    fn max_new_turns_bounds_every_batch() {
        let b = budget(100_000, 12);
        let tokens = vec![10u32; 100];
        let ranges = batches(&b, &tokens, 30);
        assert_eq!(ranges.len(), 9);
        assert!(ranges.iter().all(|r| r.len() <= 12));
        assert_eq!(ranges.last().unwrap().len(), 4);
        assert_eq!(b.estimate_batches(&tokens, 30), 9);
    }

    #[test]
    fn token_budget_bounds_every_batch() {
        let b = budget(620, 50); // available 500, reserve 125
        let tokens: Vec<u32> = (0..200).map(|i| 20 + (i % 7) * 9).collect();
        for context in [0usize, 60, 125] {
            for range in batches(&b, &tokens, context) {
                let used: usize = tokens[range.clone()]
                    .iter()
                    .map(|&t| t as usize)
                    .sum::<usize>()
                    + range.len()
                    - 1;
                let room = if range.start == 0 {
                    b.available()
                } else {
                    b.available() - context
                };
                assert!(used <= room, "{range:?} uses {used} of {room}");
                assert!(!range.is_empty());
            }
        }
    }

    #[test]
    fn a_turn_at_the_maximum_always_fits_beside_a_full_context() {
        let b = budget(620, 10);
        let tokens = vec![b.max_turn_tokens() as u32; 3];
        assert_eq!(b.next_batch_end(&tokens, 0, b.context_reserve()), 1);
        assert_eq!(
            b.next_batch_end(&tokens, 3, 0),
            3,
            "no turns left, empty batch"
        );
    }

    #[test]
    fn rolling_context_keeps_last_lines_within_budget() {
        let c = TokenCounter::load("cl100k_base").unwrap();
        let previous = vec!["• A — one".to_string(), "• B — two".to_string()];
        let ctx = rolling_context(&previous, "• C — three\n\n• D — four\n", 3, 1000, &c);
        assert_eq!(ctx, vec!["• B — two", "• C — three", "• D — four"]);
        let tight = rolling_context(&previous, "• C — three", 3, 8, &c);
        assert!(context_tokens(&tight, &c) <= 8);
        assert_eq!(tight.last().unwrap(), "• C — three");
        let long = "word ".repeat(100);
        let cut = rolling_context(&[], &long, 3, 10, &c);
        assert_eq!(cut.len(), 1);
        assert!(c.count(&cut[0]) <= 10);
    }
}
