//! Summary consolidation: merges consecutive lines of the same speaker while keeping
//! markdown structure intact.
//!
//! Used by the flavor option `consolidate_summary`. Only plain `Speaker : text` lines are
//! merged; headings, list items, tables, quotes, rules, code and HTML lines are left as
//! they are and are never merged with their neighbours.

use crate::text::turns::Turn;

/// Merges consecutive same-speaker lines of `text` and tidies blank lines.
///
/// - Trailing whitespace is removed from every line; `\r\n` is treated like `\n`.
/// - Blank lines at the start and end are dropped, runs of blank lines collapse to one
///   (except inside fenced code blocks, whose content is kept as written).
/// - Consecutive speaker lines with the same label (exact match) become one line: the
///   first line's prefix followed by every body, separated by single spaces.
/// - Markdown block lines (see the module docs) are never merged.
///
/// The result has no trailing newline.
pub fn consolidate(text: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut pending_blank_lines = 0usize;
    let mut open_fence: Option<Fence> = None;
    let mut current_run: Option<SpeakerRun> = None;

    for raw_line in text.lines() {
        let line = raw_line.trim_end();

        if let Some(fence) = open_fence {
            // Inside a fenced code block: keep every line, blank ones included.
            if line.is_empty() {
                pending_blank_lines += 1;
                continue;
            }
            out.resize(out.len() + pending_blank_lines, String::new());
            pending_blank_lines = 0;
            if fence.is_closed_by(line) {
                open_fence = None;
            }
            out.push(line.to_string());
            continue;
        }

        if line.is_empty() {
            pending_blank_lines += 1;
            current_run = None;
            continue;
        }
        if pending_blank_lines > 0 && !out.is_empty() {
            out.push(String::new());
        }
        pending_blank_lines = 0;

        if let Some(fence) = Fence::opened_by(line) {
            open_fence = Some(fence);
            current_run = None;
            out.push(line.to_string());
            continue;
        }

        if is_markdown_block_line(line) {
            current_run = None;
            out.push(line.to_string());
            continue;
        }

        let turn = Turn::parse(line.trim());
        let Some(speaker) = turn.speaker().filter(|label| !label.is_empty()) else {
            current_run = None;
            out.push(line.to_string());
            continue;
        };

        match &current_run {
            Some(run) if run.speaker == speaker && run.line_index + 1 == out.len() => {
                let body = turn.body.trim();
                if !body.is_empty() {
                    let merged = &mut out[run.line_index];
                    merged.push(' ');
                    merged.push_str(body);
                }
            }
            _ => {
                current_run = Some(SpeakerRun {
                    speaker: speaker.to_string(),
                    line_index: out.len(),
                });
                out.push(line.to_string());
            }
        }
    }

    out.join("\n")
}

/// The speaker line currently collecting merged bodies.
struct SpeakerRun {
    speaker: String,
    line_index: usize,
}

/// An open code fence: its character (`` ` `` or `~`) and length.
#[derive(Debug, Clone, Copy)]
struct Fence {
    marker: char,
    length: usize,
}

impl Fence {
    /// The fence opened by `line`, if it is a fence line (``` or ~~~, any indentation).
    fn opened_by(line: &str) -> Option<Fence> {
        let trimmed = line.trim_start();
        let marker = trimmed.chars().next().filter(|c| *c == '`' || *c == '~')?;
        let length = trimmed.chars().take_while(|c| *c == marker).count();
        if length < 3 {
            return None;
        }
        // A backtick fence's info string may not contain backticks (CommonMark).
        let info = &trimmed[length * marker.len_utf8()..];
        if marker == '`' && info.contains('`') {
            return None;
        }
        Some(Fence { marker, length })
    }

    /// Whether `line` closes this fence: the same character, at least as many, nothing else.
    fn is_closed_by(&self, line: &str) -> bool {
        let trimmed = line.trim();
        let count = trimmed.chars().take_while(|c| *c == self.marker).count();
        count >= self.length && trimmed.chars().all(|c| c == self.marker)
    }
}

/// Whether `line` (non-empty, end-trimmed, outside code fences) is a markdown block line
/// that must never be merged: indented code, heading, list item, table row, block quote,
/// horizontal rule or HTML.
fn is_markdown_block_line(line: &str) -> bool {
    if line.starts_with("    ") || line.starts_with('\t') {
        return true;
    }
    let trimmed = line.trim_start();
    is_heading(trimmed)
        || is_list_item(trimmed)
        || is_horizontal_rule(trimmed)
        || trimmed.starts_with('|')
        || trimmed.starts_with('>')
        || trimmed.starts_with('<')
}

/// `#` to `######` followed by a space or the end of the line.
fn is_heading(trimmed: &str) -> bool {
    let hashes = trimmed.chars().take_while(|c| *c == '#').count();
    (1..=6).contains(&hashes) && matches!(trimmed[hashes..].chars().next(), None | Some(' ' | '\t'))
}

/// `- `, `* `, `+ `, `1. ` or `1) ` (or the marker alone on its line).
fn is_list_item(trimmed: &str) -> bool {
    let followed_by_space_or_end =
        |rest: &str| matches!(rest.chars().next(), None | Some(' ' | '\t'));
    if let Some(rest) = trimmed
        .strip_prefix('-')
        .or_else(|| trimmed.strip_prefix('*'))
        .or_else(|| trimmed.strip_prefix('+'))
    {
        return followed_by_space_or_end(rest);
    }
    let digits = trimmed.chars().take_while(char::is_ascii_digit).count();
    if !(1..=9).contains(&digits) {
        return false;
    }
    let rest = &trimmed[digits..];
    match rest.strip_prefix('.').or_else(|| rest.strip_prefix(')')) {
        Some(after_marker) => followed_by_space_or_end(after_marker),
        None => false,
    }
}

/// Three or more `-`, `*` or `_` (the same one), optionally separated by spaces.
fn is_horizontal_rule(trimmed: &str) -> bool {
    let mut marker = None;
    let mut count = 0;
    for c in trimmed.chars() {
        match c {
            ' ' | '\t' => {}
            '-' | '*' | '_' if marker.is_none() || marker == Some(c) => {
                marker = Some(c);
                count += 1;
            }
            _ => return false,
        }
    }
    count >= 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_headings_and_lists_are_not_joined() {
        let text = "## Themes\n- Budget\n## Report\nBudget: x";
        assert_eq!(consolidate(text), text);
    }

    #[test]
    fn consecutive_lines_of_the_same_speaker_are_merged() {
        assert_eq!(
            consolidate("John : a\nJohn : b\nMarie : c\nJohn : d"),
            "John : a b\nMarie : c\nJohn : d"
        );
    }

    #[test]
    fn merging_keeps_the_first_prefix_as_written() {
        assert_eq!(consolidate("Marie:ok\nMarie :  fine"), "Marie:ok fine");
        assert_eq!(consolidate("John :\nJohn : b\nJohn :"), "John : b");
        assert_eq!(
            consolidate("Dr. Marie Curie : one\nDr. Marie Curie: two\nDr. Marie Curie：three"),
            "Dr. Marie Curie : one two three"
        );
    }

    #[test]
    fn speaker_labels_must_match_exactly() {
        assert_eq!(consolidate("john: a\nJohn: b"), "john: a\nJohn: b");
    }

    #[test]
    fn a_blank_line_breaks_a_merge() {
        assert_eq!(consolidate("John: a\n\nJohn: b"), "John: a\n\nJohn: b");
        assert_eq!(consolidate("John: a\n   \nJohn: b"), "John: a\n\nJohn: b");
    }

    #[test]
    fn a_plain_line_breaks_a_merge_and_is_kept() {
        assert_eq!(
            consolidate("John: a\nsome paragraph text\nJohn: b\nJohn: c"),
            "John: a\nsome paragraph text\nJohn: b c"
        );
        assert_eq!(
            consolidate("first sentence\nsecond sentence"),
            "first sentence\nsecond sentence"
        );
    }

    #[test]
    fn list_items_with_speakers_are_not_merged() {
        for text in [
            "- John: a\n- John: b",
            "* John: a\n* John: b",
            "+ John: a\n+ John: b",
            "1. John: a\n2. John: b",
            "1) John: a\n2) John: b",
        ] {
            assert_eq!(consolidate(text), text);
        }
        assert_eq!(consolidate("John: a\n- John: b"), "John: a\n- John: b");
        assert_eq!(consolidate("- John: a\nJohn: b"), "- John: a\nJohn: b");
    }

    #[test]
    fn nested_list_indentation_is_preserved() {
        let text = "- Topic\n  - John: a\n  - John: b\n    - Marie: c\n\t- Marie: d";
        assert_eq!(consolidate(text), text);
    }

    #[test]
    fn tables_are_untouched() {
        let text = "| Speaker | Point |\n|---|---|\n| John: a | x |\n| John: b | y |";
        assert_eq!(consolidate(text), text);
        let indented = "  | John: a |\n  | John: b |";
        assert_eq!(consolidate(indented), indented);
    }

    #[test]
    fn fenced_code_content_is_untouched() {
        let text = "```\nJohn: x\nJohn: y\n\n\n\nJohn: z\n```\nJohn: a\nJohn: b";
        assert_eq!(
            consolidate(text),
            "```\nJohn: x\nJohn: y\n\n\n\nJohn: z\n```\nJohn: a b"
        );
        let tilde = "~~~~ text\nJohn: x\n~~~\nJohn: y\n~~~~\nJohn: z";
        assert_eq!(consolidate(tilde), tilde);
    }

    #[test]
    fn an_unclosed_fence_runs_to_the_end() {
        let text = "John: a\n```python\nJohn: x\nJohn: y";
        assert_eq!(consolidate(text), text);
        assert_eq!(consolidate("```\nJohn: x\n\n\n"), "```\nJohn: x");
    }

    #[test]
    fn other_markdown_blocks_are_never_merged() {
        for text in [
            "# John: a\n# John: b",
            "###### John: a\nJohn: b",
            "> John: a\n> John: b",
            "John: a\n---\nJohn: b",
            "John: a\n***\nJohn: b",
            "John: a\n_ _ _\nJohn: b",
            "    John: a\n    John: b",
            "\tJohn: a\n\tJohn: b",
            "<div>John: a</div>\n<p>John: b</p>",
        ] {
            assert_eq!(consolidate(text), text, "{text:?}");
        }
    }

    #[test]
    fn hashtags_and_numbers_are_not_headings_or_lists() {
        assert!(!is_heading("#tag"));
        assert!(!is_heading("####### seven"));
        assert!(is_heading("#"));
        assert!(!is_list_item("-x"));
        assert!(!is_list_item("1.5 litres"));
        assert!(!is_list_item("1234567890. too many digits"));
        assert!(is_list_item("10. item"));
        assert!(!is_horizontal_rule("--"));
        assert!(!is_horizontal_rule("-*-"));
    }

    #[test]
    fn unicode_speakers_are_merged() {
        assert_eq!(
            consolidate("Jérôme : bonjour\nJérôme : à tous\nИван: привет\nИван: мир"),
            "Jérôme : bonjour à tous\nИван: привет мир"
        );
        assert_eq!(consolidate("张伟：我们\n张伟：开始"), "张伟：我们 开始");
    }

    #[test]
    fn crlf_is_treated_like_lf() {
        assert_eq!(
            consolidate("John : a\r\nJohn : b\r\n\r\n## Title\r\n"),
            "John : a b\n\n## Title"
        );
    }

    #[test]
    fn blank_lines_are_trimmed_and_collapsed() {
        assert_eq!(
            consolidate("\n\n  \n## A\n\n\n\ntext   \n\t\n\n- item  \n\n\n"),
            "## A\n\ntext\n\n- item"
        );
    }

    #[test]
    fn empty_and_whitespace_inputs() {
        assert_eq!(consolidate(""), "");
        assert_eq!(consolidate("   \n\t\n \r\n"), "");
        assert_eq!(consolidate(":"), ":");
        assert_eq!(consolidate("#"), "#");
    }

    #[test]
    fn urls_are_not_speakers() {
        let text = "http://a.example\nhttp://b.example";
        assert_eq!(consolidate(text), text);
    }

    #[test]
    fn consolidation_is_idempotent() {
        for text in [
            "John : a\nJohn : b\nMarie : c\nJohn : d",
            "## Themes\n- Budget\n\n\n## Report\nBudget: x\nBudget: y",
            "```\nJohn: x\n\n\nJohn: y\n```\n\nJohn :\nJohn : z",
            "\r\n  Jérôme : a  \r\nJérôme : b\r\n\r\n\r\n> quote\n1. A: b\n",
        ] {
            let once = consolidate(text);
            assert_eq!(consolidate(&once), once, "{text:?}");
        }
    }

    #[test]
    fn large_inputs_do_not_blow_up() {
        let text = "John: word\n".repeat(10_000);
        let merged = consolidate(&text);
        assert!(!merged.contains('\n'));
        assert!(merged.starts_with("John: word word"));
        let nested = format!("{}x", "> ".repeat(10_000));
        assert_eq!(consolidate(&nested), nested.trim_end());
    }
}
