//! Markdown rendered as plain text (`GET /jobs/{id}?format=text`): markup removed, the
//! structure kept as lines (headings and paragraphs separated by a blank line, list items
//! as `- ` or `1. ` lines, table cells separated by ` | `).

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// Renders markdown as plain text.
pub fn markdown_to_text(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len());
    // One entry per open list: the next number of an ordered list, None for bullets.
    let mut lists: Vec<Option<u64>> = Vec::new();
    let mut cell_in_row = 0usize;
    let block_break = |out: &mut String| {
        let trimmed = out.trim_end_matches([' ', '\n']).len();
        out.truncate(trimmed);
        if !out.is_empty() {
            out.push_str("\n\n");
        }
    };
    let line_break = |out: &mut String| {
        let trimmed = out.trim_end_matches(' ').len();
        out.truncate(trimmed);
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
    };
    for event in Parser::new_ext(
        markdown,
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH,
    ) {
        match event {
            Event::Start(
                Tag::Paragraph
                | Tag::Heading { .. }
                | Tag::CodeBlock(_)
                | Tag::BlockQuote(_)
                | Tag::Table(_),
            ) if lists.is_empty() => block_break(&mut out),
            Event::Start(Tag::List(first)) => {
                if lists.is_empty() {
                    block_break(&mut out);
                }
                lists.push(first);
            }
            Event::End(TagEnd::List(_)) => {
                lists.pop();
            }
            Event::Start(Tag::Item) => {
                line_break(&mut out);
                out.push_str(&"  ".repeat(lists.len().saturating_sub(1)));
                match lists.last_mut() {
                    Some(Some(number)) => {
                        out.push_str(&format!("{number}. "));
                        *number += 1;
                    }
                    _ => out.push_str("- "),
                }
            }
            Event::Start(Tag::TableRow | Tag::TableHead) => {
                line_break(&mut out);
                cell_in_row = 0;
            }
            Event::Start(Tag::TableCell) => {
                if cell_in_row > 0 {
                    out.push_str(" | ");
                }
                cell_in_row += 1;
            }
            Event::Text(text) | Event::Code(text) => out.push_str(&text),
            Event::SoftBreak | Event::HardBreak => line_break(&mut out),
            Event::Rule => {
                block_break(&mut out);
            }
            _ => {}
        }
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_goes_and_structure_stays() {
        let markdown = "# Minutes\n\nThe **budget** was *approved*.\n\n## Actions\n\n- Marie: send the `report`\n- John: book [the room](http://x)\n  1. first\n  2. second\n\n| Who | What |\n|---|---|\n| Ahmed | slides |\n\n```\ncode line\n```";
        assert_eq!(
            markdown_to_text(markdown),
            "Minutes\n\nThe budget was approved.\n\nActions\n\n- Marie: send the report\n- John: book the room\n  1. first\n  2. second\n\nWho | What\nAhmed | slides\n\ncode line"
        );
        assert_eq!(
            markdown_to_text("plain line\nnext line"),
            "plain line\nnext line"
        );
        assert_eq!(markdown_to_text(""), "");
    }
}
