//! `{{name}}` / `{{name: hint}}` placeholders inside WordprocessingML paragraphs, also when
//! Word split them across runs: each paragraph's `w:t` texts are joined, placeholders are
//! found in the joined text, and the replacement is written into the run where the
//! placeholder starts while the consumed characters are removed from the following runs.

use std::ops::Range;
use std::sync::LazyLock;

use quick_xml::events::BytesStart;
use regex::Regex;

use super::xml::{tag_name, Tok};

static PATTERN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?::\s*([^{}]*?)\s*)?\}\}")
        .unwrap_or_else(|e| unreachable!("constant pattern: {e}"))
});

/// A placeholder occurrence in a paragraph's joined text.
pub(crate) struct Match {
    /// Byte range in the joined text.
    pub range: Range<usize>,
    pub name: String,
    pub hint: Option<String>,
}

/// Placeholders in a text, in order.
pub(crate) fn find(text: &str) -> Vec<Match> {
    PATTERN
        .captures_iter(text)
        .filter_map(|c| {
            let whole = c.get(0)?;
            Some(Match {
                range: whole.range(),
                name: c.get(1)?.as_str().to_string(),
                hint: c
                    .get(2)
                    .map(|h| h.as_str().to_string())
                    .filter(|h| !h.is_empty()),
            })
        })
        .collect()
}

/// A paragraph (`w:p`) of a part.
pub(crate) struct Paragraph {
    /// Index of the `w:p` opening token.
    pub start: usize,
    /// Index of its closing token.
    pub end: usize,
    /// Indices of the text tokens of its own `w:t` elements (not nested paragraphs').
    pub texts: Vec<usize>,
    /// Inside a table cell.
    pub in_cell: bool,
    /// Inside another paragraph (a text box).
    pub nested: bool,
}

impl Paragraph {
    /// The joined text of the paragraph's runs.
    pub(crate) fn text(&self, toks: &[Tok]) -> String {
        self.texts
            .iter()
            .filter_map(|&i| match toks.get(i) {
                Some(Tok::Text { text, .. }) => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// Makes every `w:t` hold exactly one text token (possibly empty) so it can be rewritten.
pub(crate) fn normalize_text_slots(toks: &mut Vec<Tok>) {
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Empty(start) if tag_name(start) == b"w:t" => {
                let start = start.clone();
                toks[i] = Tok::Start(start);
                toks.insert(i + 1, empty_text());
                toks.insert(i + 2, Tok::End("w:t".to_string()));
                i += 2;
            }
            Tok::Start(start) if tag_name(start) == b"w:t" => {
                if !matches!(toks.get(i + 1), Some(Tok::Text { .. })) {
                    toks.insert(i + 1, empty_text());
                }
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
}

fn empty_text() -> Tok {
    Tok::Text {
        text: String::new(),
        breaks: false,
    }
}

/// All paragraphs of a part, in document order of their closing tags.
pub(crate) fn paragraphs(toks: &[Tok]) -> Vec<Paragraph> {
    let mut open: Vec<Paragraph> = Vec::new();
    let mut done = Vec::new();
    let mut cells = 0usize;
    let mut in_t = false;
    for (i, tok) in toks.iter().enumerate() {
        match tok {
            Tok::Start(start) => match tag_name(start) {
                b"w:p" => open.push(Paragraph {
                    start: i,
                    end: i,
                    texts: Vec::new(),
                    in_cell: cells > 0,
                    nested: !open.is_empty(),
                }),
                b"w:tc" => cells += 1,
                b"w:t" => in_t = true,
                _ => {}
            },
            Tok::End(name) => match name.as_str() {
                "w:p" => {
                    if let Some(mut paragraph) = open.pop() {
                        paragraph.end = i;
                        done.push(paragraph);
                    }
                }
                "w:tc" => cells = cells.saturating_sub(1),
                "w:t" => in_t = false,
                _ => {}
            },
            Tok::Text { .. } if in_t => {
                if let Some(paragraph) = open.last_mut() {
                    paragraph.texts.push(i);
                }
            }
            _ => {}
        }
    }
    done
}

/// Replaces each match (by byte range of the joined text) with its replacement text,
/// keeping the formatting of the run where the placeholder starts.
pub(crate) fn rewrite(toks: &mut [Tok], paragraph: &Paragraph, edits: &[(Range<usize>, String)]) {
    let joined = paragraph.text(toks);
    let mut offset = 0usize;
    for &index in &paragraph.texts {
        let len = match toks.get(index) {
            Some(Tok::Text { text, .. }) => text.len(),
            _ => continue,
        };
        let node = offset..offset + len;
        offset += len;
        if !edits
            .iter()
            .any(|(r, _)| r.start < node.end && r.end > node.start)
        {
            continue;
        }
        let mut out = String::with_capacity(len);
        let mut cursor = node.start;
        for (range, replacement) in edits {
            if range.end <= node.start || range.start >= node.end {
                continue;
            }
            if range.start > cursor {
                out.push_str(joined.get(cursor..range.start).unwrap_or_default());
            }
            if range.start >= node.start {
                out.push_str(replacement);
            }
            cursor = cursor.max(range.end.min(node.end));
        }
        if cursor < node.end {
            out.push_str(joined.get(cursor..node.end).unwrap_or_default());
        }
        if let Some(tok) = toks.get_mut(index) {
            *tok = Tok::Text {
                text: out,
                breaks: true,
            };
        }
        if let Some(tok @ Tok::Start(_)) = index.checked_sub(1).and_then(|i| toks.get_mut(i)) {
            let mut start = BytesStart::new("w:t");
            start.push_attribute(("xml:space", "preserve"));
            *tok = Tok::Start(start);
        }
    }
}
