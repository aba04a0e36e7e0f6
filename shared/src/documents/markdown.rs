//! Markdown parsed into a small block model shared by the DOCX and PDF renderers.

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

/// Deepest nesting of lists and quotes kept; deeper content is flattened into the
/// deepest level (keeps the renderers' recursion bounded on hostile input).
const MAX_DEPTH: usize = 12;

/// Inline formatting of a run.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub(crate) struct Style {
    pub bold: bool,
    pub italic: bool,
    pub code: bool,
    pub strike: bool,
}

/// A run of text with one style; `\n` inside `text` is a hard line break.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Inline {
    pub text: String,
    pub style: Style,
    /// Link target (any scheme; renderers decide what they accept).
    pub link: Option<String>,
}

/// A list item: its blocks (the first is usually the paragraph carrying the marker).
#[derive(Debug, PartialEq)]
pub(crate) struct Item {
    pub blocks: Vec<Block>,
}

/// A block of the document.
#[derive(Debug, PartialEq)]
pub(crate) enum Block {
    Heading {
        level: u8,
        inlines: Vec<Inline>,
    },
    Paragraph(Vec<Inline>),
    /// `start` is the first number of an ordered list, None for bullets.
    List {
        start: Option<u64>,
        items: Vec<Item>,
    },
    Table {
        header: Vec<Vec<Inline>>,
        rows: Vec<Vec<Vec<Inline>>>,
    },
    Quote(Vec<Block>),
    /// Code block lines.
    Code(Vec<String>),
    Rule,
}

/// Cleans LLM output before parsing: strips a code fence wrapping the whole text
/// (`markdown`/`md` fence, inner code blocks allowed; or a bare fence without inner ones) and drops a trailing `\` at line ends.
pub(crate) fn preprocess(markdown: &str) -> String {
    let trimmed = markdown.trim();
    let mut body = trimmed;
    if let Some(rest) = trimmed.strip_prefix("```") {
        if let Some((info, inner)) = rest.split_once('\n') {
            let info = info.trim().to_ascii_lowercase();
            let markdown = matches!(info.as_str(), "markdown" | "md");
            if let Some(inner) = inner.trim_end().strip_suffix("```") {
                // Inner code blocks come in pairs of fences; a bare outer fence with
                // inner fences is ambiguous (it may be two code blocks) and is kept.
                let inner_fences = inner
                    .lines()
                    .filter(|l| l.trim_start().starts_with("```"))
                    .count();
                let wraps = if markdown {
                    inner_fences % 2 == 0
                } else {
                    info.is_empty() && inner_fences == 0
                };
                if wraps {
                    body = inner;
                }
            }
        }
    }
    let mut out = String::with_capacity(body.len());
    for line in body.lines() {
        let line = line.trim_end();
        out.push_str(line.strip_suffix('\\').unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Parses (preprocessed) markdown into blocks.
pub(crate) fn parse(markdown: &str) -> Vec<Block> {
    let mut builder = Builder::default();
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    for event in Parser::new_ext(markdown, options) {
        builder.event(event);
    }
    builder.finish()
}

enum Frame {
    Quote(Vec<Block>),
    List {
        start: Option<u64>,
        items: Vec<Item>,
    },
    Item(Vec<Block>),
    /// A list or quote past MAX_DEPTH, or an item of one: content goes to the parent.
    Flat,
}

enum InlineTarget {
    Paragraph,
    Heading(u8),
    Cell,
}

/// A table being read: header cells, body rows, the current row, inside the header.
type TableBuilder = (
    Vec<Vec<Inline>>,
    Vec<Vec<Vec<Inline>>>,
    Vec<Vec<Inline>>,
    bool,
);

#[derive(Default)]
struct Builder {
    root: Vec<Block>,
    frames: Vec<Frame>,
    inlines: Option<(InlineTarget, Vec<Inline>)>,
    code: Option<String>,
    table: Option<TableBuilder>,
    bold: usize,
    italic: usize,
    strike: usize,
    links: Vec<String>,
}

impl Builder {
    fn depth(&self) -> usize {
        self.frames
            .iter()
            .filter(|f| matches!(f, Frame::Quote(_) | Frame::List { .. }))
            .count()
    }

    fn push_block(&mut self, block: Block) {
        for frame in self.frames.iter_mut().rev() {
            match frame {
                Frame::Quote(blocks) | Frame::Item(blocks) => {
                    blocks.push(block);
                    return;
                }
                Frame::List { items, .. } => {
                    // Content directly in a list (after flattening): its own item.
                    items.push(Item {
                        blocks: vec![block],
                    });
                    return;
                }
                Frame::Flat => {}
            }
        }
        self.root.push(block);
    }

    fn style(&self, code: bool) -> Style {
        Style {
            bold: self.bold > 0,
            italic: self.italic > 0,
            code,
            strike: self.strike > 0,
        }
    }

    fn text(&mut self, text: &str, code: bool) {
        if let Some(buffer) = self.code.as_mut() {
            buffer.push_str(text);
            return;
        }
        let style = self.style(code);
        let link = self.links.last().cloned();
        let (_, inlines) = self
            .inlines
            .get_or_insert_with(|| (InlineTarget::Paragraph, Vec::new()));
        match inlines.last_mut() {
            Some(last) if last.style == style && last.link == link => last.text.push_str(text),
            _ => inlines.push(Inline {
                text: text.to_string(),
                style,
                link,
            }),
        }
    }

    fn flush_inlines(&mut self) {
        if let Some((target, inlines)) = self.inlines.take() {
            match target {
                InlineTarget::Paragraph if !inlines.is_empty() => {
                    self.push_block(Block::Paragraph(inlines))
                }
                InlineTarget::Heading(level) => self.push_block(Block::Heading { level, inlines }),
                InlineTarget::Cell => {
                    if let Some((_, _, row, _)) = self.table.as_mut() {
                        row.push(inlines);
                    }
                }
                InlineTarget::Paragraph => {}
            }
        }
    }

    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(text) => self.text(&text, false),
            Event::Code(text) => self.text(&text, true),
            Event::Html(html) | Event::InlineHtml(html) => self.text(&html, false),
            // Line breaks are kept, as the reference's `nl2br`: LLM answers often put one
            // item per line without list markup.
            Event::SoftBreak | Event::HardBreak => self.text("\n", false),
            Event::Rule => {
                self.flush_inlines();
                self.push_block(Block::Rule);
            }
            Event::TaskListMarker(done) => self.text(if done { "[x] " } else { "[ ] " }, false),
            Event::FootnoteReference(name) => self.text(&format!("[{name}]"), false),
            Event::InlineMath(text) | Event::DisplayMath(text) => self.text(&text, true),
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph => {
                self.flush_inlines();
                self.inlines = Some((InlineTarget::Paragraph, Vec::new()));
            }
            Tag::Heading { level, .. } => {
                self.flush_inlines();
                self.inlines = Some((InlineTarget::Heading(heading_level(level)), Vec::new()));
            }
            Tag::BlockQuote(_) => {
                self.flush_inlines();
                let frame = if self.depth() >= MAX_DEPTH {
                    Frame::Flat
                } else {
                    Frame::Quote(Vec::new())
                };
                self.frames.push(frame);
            }
            Tag::List(start) => {
                self.flush_inlines();
                let frame = if self.depth() >= MAX_DEPTH {
                    Frame::Flat
                } else {
                    Frame::List {
                        start,
                        items: Vec::new(),
                    }
                };
                self.frames.push(frame);
            }
            Tag::Item => {
                self.flush_inlines();
                let frame = match self.frames.last() {
                    Some(Frame::List { .. }) => Frame::Item(Vec::new()),
                    _ => Frame::Flat,
                };
                self.frames.push(frame);
            }
            Tag::CodeBlock(_) => {
                self.flush_inlines();
                self.code = Some(String::new());
            }
            Tag::Table(_) => {
                self.flush_inlines();
                self.table = Some((Vec::new(), Vec::new(), Vec::new(), false));
            }
            Tag::TableHead => {
                if let Some(table) = self.table.as_mut() {
                    table.3 = true;
                }
            }
            Tag::TableCell => self.inlines = Some((InlineTarget::Cell, Vec::new())),
            Tag::Emphasis => self.italic += 1,
            Tag::Strong => self.bold += 1,
            Tag::Strikethrough => self.strike += 1,
            Tag::Link { dest_url, .. } => self.links.push(dest_url.into_string()),
            Tag::Image { .. } => self.links.push(String::new()),
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph | TagEnd::Heading(_) | TagEnd::TableCell => self.flush_inlines(),
            TagEnd::BlockQuote(_) => {
                self.flush_inlines();
                if let Some(Frame::Quote(blocks)) = self.frames.pop() {
                    self.push_block(Block::Quote(blocks));
                }
            }
            TagEnd::List(_) => {
                self.flush_inlines();
                if let Some(Frame::List { start, items }) = self.frames.pop() {
                    self.push_block(Block::List { start, items });
                }
            }
            TagEnd::Item => {
                self.flush_inlines();
                if let Some(Frame::Item(blocks)) = self.frames.pop() {
                    if let Some(Frame::List { items, .. }) = self.frames.last_mut() {
                        items.push(Item { blocks });
                    }
                }
            }
            TagEnd::CodeBlock => {
                if let Some(code) = self.code.take() {
                    let lines = code.trim_end_matches('\n').lines().map(str::to_string);
                    self.push_block(Block::Code(lines.collect()));
                }
            }
            TagEnd::TableHead | TagEnd::TableRow => {
                if let Some((header, rows, row, in_head)) = self.table.as_mut() {
                    let cells = std::mem::take(row);
                    if *in_head {
                        *header = cells;
                        *in_head = false;
                    } else {
                        rows.push(cells);
                    }
                }
            }
            TagEnd::Table => {
                if let Some((header, rows, _, _)) = self.table.take() {
                    self.push_block(Block::Table { header, rows });
                }
            }
            TagEnd::Emphasis => self.italic = self.italic.saturating_sub(1),
            TagEnd::Strong => self.bold = self.bold.saturating_sub(1),
            TagEnd::Strikethrough => self.strike = self.strike.saturating_sub(1),
            TagEnd::Link | TagEnd::Image => {
                self.links.pop();
            }
            _ => {}
        }
    }

    fn finish(mut self) -> Vec<Block> {
        self.flush_inlines();
        while let Some(frame) = self.frames.pop() {
            match frame {
                Frame::Quote(blocks) => self.push_block(Block::Quote(blocks)),
                Frame::List { start, items } => self.push_block(Block::List { start, items }),
                Frame::Item(blocks) => {
                    if let Some(Frame::List { items, .. }) = self.frames.last_mut() {
                        items.push(Item { blocks });
                    }
                }
                Frame::Flat => {}
            }
        }
        self.root
    }
}

fn heading_level(level: HeadingLevel) -> u8 {
    match level {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

/// The plain text of inline runs.
#[cfg(test)]
pub(crate) fn plain(inlines: &[Inline]) -> String {
    inlines.iter().map(|i| i.text.as_str()).collect()
}

/// Whether a link target is safe to emit as a live link: http, https or mailto.
pub(crate) fn is_external_link(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("mailto:")
}

/// Columns of a table: its widest row (at least one).
pub(super) fn column_count(header: &[Vec<Inline>], rows: &[Vec<Vec<Inline>>]) -> usize {
    rows.iter()
        .map(Vec::len)
        .chain([header.len(), 1])
        .max()
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_wrapping_fence_and_trailing_backslashes() {
        let text = "```markdown\n# Title\nline one\\\nline two\n```\n";
        assert_eq!(preprocess(text), "# Title\nline one\nline two\n");
        // A fenced code block of another language is kept.
        let code = "```python\nprint(1)\n```";
        assert_eq!(preprocess(code), "```python\nprint(1)\n```\n");
        // Code blocks inside the wrapped text survive.
        let nested = "```md\ntext\n```sh\nls\n```\n```";
        assert_eq!(preprocess(nested), "text\n```sh\nls\n```\n");
        // Two separate code blocks are not one wrapping fence.
        let two = "```\na\n```\nmiddle\n```\nb\n```";
        assert_eq!(preprocess(two), format!("{two}\n"));
    }

    #[test]
    fn builds_nested_lists_tables_and_styles() {
        let blocks = parse(
            "# H\n\n- a **b**\n  1. c\n  2. d\n- e\n\n| x | y |\n|---|---|\n| 1 | *2* |\n\n> q\n\n```\nx\ny\n```\n",
        );
        assert!(matches!(&blocks[0], Block::Heading { level: 1, .. }));
        let Block::List { start: None, items } = &blocks[1] else {
            panic!("list expected: {blocks:?}")
        };
        assert_eq!(items.len(), 2);
        let Block::Paragraph(first) = &items[0].blocks[0] else {
            panic!("paragraph expected")
        };
        assert_eq!(plain(first), "a b");
        assert!(first[1].style.bold);
        assert!(
            matches!(&items[0].blocks[1], Block::List { start: Some(1), items } if items.len() == 2)
        );
        let Block::Table { header, rows } = &blocks[2] else {
            panic!("table expected")
        };
        assert_eq!(header.len(), 2);
        assert!(rows[0][1][0].style.italic);
        assert!(matches!(&blocks[3], Block::Quote(inner) if inner.len() == 1));
        assert_eq!(blocks[4], Block::Code(vec!["x".into(), "y".into()]));
    }

    #[test]
    fn deep_nesting_is_flattened() {
        let deep = format!("{}x", "> ".repeat(5000));
        let blocks = parse(&deep);
        fn depth(blocks: &[Block]) -> usize {
            blocks
                .iter()
                .map(|b| match b {
                    Block::Quote(inner) => 1 + depth(inner),
                    _ => 0,
                })
                .max()
                .unwrap_or(0)
        }
        assert!(depth(&blocks) <= MAX_DEPTH);
        assert!(!blocks.is_empty());
    }
}
