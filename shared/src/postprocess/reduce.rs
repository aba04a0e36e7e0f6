//! Reduce planning: the partial outputs of a job are merged by calls that each fit the
//! model's budget. When they do not fit one call, they are grouped into pieces that do,
//! each group is reduced, and the answers are reduced again, level after level, until one
//! call covers everything. Nothing is skipped and nothing is truncated.

use crate::text::normalize::split_by_tokens;
use crate::tokens::TokenCounter;

/// Joins outputs in order, one line per non-blank line (trailing whitespace trimmed).
pub fn join_outputs<'a>(outputs: impl IntoIterator<Item = &'a str>) -> String {
    let lines: Vec<&str> = outputs
        .into_iter()
        .flat_map(str::lines)
        .map(str::trim_end)
        .filter(|line| !line.trim().is_empty())
        .collect();
    lines.join("\n")
}

/// A single answer made tidy without changing its markdown: trailing whitespace trimmed,
/// runs of blank lines collapsed to one, no blank lines at either end.
pub fn tidy_answer(answer: &str) -> String {
    let mut lines: Vec<&str> = Vec::new();
    for line in answer.lines().map(str::trim_end) {
        if line.is_empty() && lines.last().is_none_or(|last| last.is_empty()) {
            continue;
        }
        lines.push(line);
    }
    while lines.last().is_some_and(|last| last.is_empty()) {
        lines.pop();
    }
    lines.join("\n")
}

/// Cuts `inputs` (in order) into groups of at most `budget` tokens, each the input of one
/// reduce call. An input that fits is kept whole; a larger one is cut at line breaks, and
/// a line larger than the budget at whitespace. Every non-blank line of every input lands
/// in exactly one group, in order; parts are joined by newlines (counted as one token).
pub fn plan_groups(inputs: &[&str], budget: usize, counter: &TokenCounter) -> Vec<String> {
    let budget = budget.max(1);
    let mut pieces: Vec<(String, usize)> = Vec::new();
    for input in inputs {
        let text = join_outputs([*input]);
        if text.is_empty() {
            continue;
        }
        let tokens = counter.count(&text);
        if tokens <= budget {
            pieces.push((text, tokens));
            continue;
        }
        for line in text.lines() {
            let tokens = counter.count(line);
            if tokens <= budget {
                pieces.push((line.to_string(), tokens));
            } else {
                for part in split_by_tokens(line, budget, counter) {
                    pieces.push((part.to_string(), counter.count(part)));
                }
            }
        }
    }

    let mut groups = Vec::new();
    let mut current = String::new();
    let mut used = 0usize;
    for (piece, tokens) in pieces {
        let cost = tokens + usize::from(!current.is_empty());
        if !current.is_empty() && used + cost > budget {
            groups.push(std::mem::take(&mut current));
            used = 0;
        }
        if !current.is_empty() {
            current.push('\n');
            used += 1;
        }
        current.push_str(&piece);
        used += tokens;
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

/// Estimated reduce calls for `outputs` partial outputs of about `output_tokens` tokens
/// each, when one call takes `budget` tokens of input and answers about `answer_tokens`.
/// Levels repeat until one call covers everything (bounded, like the engine's check that
/// every level makes progress).
pub fn estimate_calls(outputs: u64, output_tokens: u64, budget: u64, answer_tokens: u64) -> u64 {
    if outputs == 0 {
        return 0;
    }
    let budget = budget.max(1);
    let mut calls = 0;
    let mut inputs = outputs;
    let mut input_tokens = output_tokens;
    for _ in 0..MAX_LEVELS {
        let groups = (inputs * (input_tokens + 1)).div_ceil(budget).max(1);
        calls += groups;
        if groups == 1 || groups >= inputs {
            break;
        }
        inputs = groups;
        input_tokens = answer_tokens;
    }
    calls
}

/// The most reduce levels a job may run; each level must have fewer groups than the one
/// before, so this is never reached by a model whose answers are shorter than its budget.
pub const MAX_LEVELS: u32 = 16;

#[cfg(test)]
mod tests {
    use super::*;

    fn counter() -> TokenCounter {
        TokenCounter::default_counter()
    }

    #[test]
    fn outputs_that_fit_make_one_group_in_order() {
        let groups = plan_groups(&["- a\n\n- b  ", "", "- c"], 1000, &counter());
        assert_eq!(groups, vec!["- a\n- b\n- c".to_string()]);
        assert_eq!(join_outputs(["x\n\n", "  \ny "]), "x\ny");
        assert_eq!(
            tidy_answer("\n\n# T  \n\n\n \n- a\n- b\n\n"),
            "# T\n\n- a\n- b"
        );
    }

    #[test]
    fn groups_fit_the_budget_and_keep_every_line_in_order() {
        let counter = counter();
        let inputs: Vec<String> = (0..40)
            .map(|i| format!("- point {i} about the budget of the project\n- decision {i}"))
            .collect();
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let budget = 60;
        let groups = plan_groups(&refs, budget, &counter);
        assert!(groups.len() > 1);
        for group in &groups {
            assert!(counter.count(group) <= budget, "{group}");
        }
        assert_eq!(groups.join("\n"), join_outputs(refs.iter().copied()));
    }

    #[test]
    fn oversized_inputs_and_lines_are_cut_not_dropped() {
        let counter = counter();
        let long_line = "word ".repeat(300);
        let input = format!("- short\n{long_line}\n- end");
        let groups = plan_groups(&[&input], 50, &counter);
        for group in &groups {
            assert!(counter.count(group) <= 50);
        }
        let words: usize = groups.iter().map(|g| g.matches("word").count()).sum();
        assert_eq!(words, 300);
        assert!(groups[0].starts_with("- short"));
        assert!(groups.last().unwrap().ends_with("- end"));
    }

    #[test]
    fn estimates_count_every_level() {
        assert_eq!(estimate_calls(0, 100, 1000, 100), 0);
        assert_eq!(estimate_calls(5, 100, 1000, 100), 1);
        // 40 outputs of 99 tokens (+1 for the newline) over 1000-token calls: 4 groups,
        // then one call over their 4 answers.
        assert_eq!(estimate_calls(40, 99, 1000, 100), 4 + 1);
        // Inputs as large as the budget make no progress: one level, then stop.
        assert_eq!(estimate_calls(4, 1000, 1000, 1000), 5);
    }
}
