//! The markdown block model written as WordprocessingML body content (paragraphs, tables,
//! lists, hyperlinks) using the template's styles.

use std::collections::{BTreeMap, HashSet};

use super::markdown::{is_external_link, Block, Inline, Item};
use super::xml::escape;

/// Monospace font for code (Liberation Mono stands in for it in LibreOffice).
const MONO: &str = "Courier New";
/// Text width of the table grid in twentieths of a point (A4 minus ~2 cm margins).
const TABLE_WIDTH: u32 = 9_000;
/// Indentation step for nesting, in twips.
const INDENT: u32 = 720;
/// Deepest list level Word supports (0-based).
const MAX_LEVEL: usize = 8;

/// Paragraph style ids resolved in the template.
pub(crate) struct StyleIds {
    /// `Heading1`..`Heading6` (or the template's ids for "heading 1".."heading 6").
    pub headings: [String; 6],
    /// A quote style, if the template has one.
    pub quote: Option<String>,
}

/// Writes body XML, collecting the hyperlinks and list instances it needs.
pub(crate) struct BodyWriter<'a> {
    out: String,
    styles: &'a StyleIds,
    taken_rel_ids: &'a HashSet<String>,
    /// Hyperlink targets by relationship id.
    pub links: BTreeMap<String, String>,
    /// One entry per list instance: None for bullets, Some(start) for numbers.
    pub lists: Vec<Option<u64>>,
    first_num_id: u32,
}

#[derive(Clone, Copy, Default)]
struct Ctx {
    /// Left indentation in twips for plain paragraphs.
    indent: u32,
    /// Nesting depth of lists.
    level: usize,
    /// Inside a block quote.
    quote: bool,
}

impl<'a> BodyWriter<'a> {
    /// A writer whose list instances get numIds from `first_num_id` and whose hyperlink
    /// relationships avoid `taken_rel_ids`.
    pub(crate) fn new(
        styles: &'a StyleIds,
        taken_rel_ids: &'a HashSet<String>,
        first_num_id: u32,
    ) -> Self {
        Self {
            out: String::new(),
            styles,
            taken_rel_ids,
            links: BTreeMap::new(),
            lists: Vec::new(),
            first_num_id,
        }
    }

    /// Renders blocks and returns the XML.
    pub(crate) fn render(mut self, blocks: &[Block]) -> (String, Self) {
        self.blocks(blocks, Ctx::default());
        let out = std::mem::take(&mut self.out);
        (out, self)
    }

    fn blocks(&mut self, blocks: &[Block], ctx: Ctx) {
        for block in blocks {
            self.block(block, ctx);
        }
    }

    fn block(&mut self, block: &Block, ctx: Ctx) {
        match block {
            Block::Heading { level, inlines } => {
                let index = usize::from(level.clamp(&1, &6) - 1);
                let style = self.styles.headings[index].clone();
                let ppr = ParagraphProps {
                    style: Some(&style),
                    indent: ctx.indent,
                    ..Default::default()
                };
                self.paragraph(&ppr, inlines, false);
            }
            Block::Paragraph(inlines) => {
                let quote = self.styles.quote.clone();
                let ppr = ParagraphProps {
                    style: quote.as_deref().filter(|_| ctx.quote),
                    border: ctx.quote && quote.is_none(),
                    indent: ctx.indent,
                    ..Default::default()
                };
                self.paragraph(&ppr, inlines, false);
            }
            Block::List { start, items } => self.list(*start, items, ctx),
            Block::Table { header, rows } => self.table(header, rows),
            Block::Quote(inner) => {
                let ctx = Ctx {
                    indent: ctx.indent + INDENT,
                    quote: true,
                    ..ctx
                };
                self.blocks(inner, ctx);
            }
            Block::Code(lines) => self.code(lines, ctx),
            Block::Rule => self.out.push_str(
                "<w:p><w:pPr><w:pBdr><w:bottom w:val=\"single\" w:sz=\"6\" w:space=\"1\" \
                 w:color=\"999999\"/></w:pBdr></w:pPr></w:p>",
            ),
        }
    }

    fn list(&mut self, start: Option<u64>, items: &[Item], ctx: Ctx) {
        let num_id = num_id(self.first_num_id, self.lists.len());
        self.lists.push(start);
        let level = ctx.level.min(MAX_LEVEL);
        let inner = Ctx {
            indent: INDENT * (level as u32 + 1),
            level: ctx.level + 1,
            quote: ctx.quote,
        };
        for item in items {
            let mut blocks = item.blocks.iter();
            let numbered = ParagraphProps {
                num: Some((num_id, level)),
                ..Default::default()
            };
            match item.blocks.first() {
                Some(Block::Paragraph(inlines)) => {
                    blocks.next();
                    self.paragraph(&numbered, inlines, false);
                }
                _ => self.paragraph(&numbered, &[], false),
            }
            for block in blocks {
                self.block(block, inner);
            }
        }
    }

    fn code(&mut self, lines: &[String], ctx: Ctx) {
        let ppr = ParagraphProps {
            shading: true,
            indent: ctx.indent,
            ..Default::default()
        };
        self.out.push_str("<w:p>");
        ppr.write(&mut self.out);
        self.out.push_str("<w:r>");
        self.out.push_str(&format!(
            "<w:rPr><w:rFonts w:ascii=\"{MONO}\" w:hAnsi=\"{MONO}\" w:cs=\"{MONO}\"/>\
             <w:sz w:val=\"19\"/></w:rPr>"
        ));
        for (i, line) in lines.iter().enumerate() {
            if i > 0 {
                self.out.push_str("<w:br/>");
            }
            text_element(&mut self.out, line);
        }
        self.out.push_str("</w:r></w:p>");
    }

    fn table(&mut self, header: &[Vec<Inline>], rows: &[Vec<Vec<Inline>>]) {
        let columns = super::markdown::column_count(header, rows);
        let width = TABLE_WIDTH / columns as u32;
        let border = |side: &str| {
            format!("<w:{side} w:val=\"single\" w:sz=\"4\" w:space=\"0\" w:color=\"999999\"/>")
        };
        self.out
            .push_str("<w:tbl><w:tblPr><w:tblW w:w=\"5000\" w:type=\"pct\"/><w:tblBorders>");
        for side in ["top", "left", "bottom", "right", "insideH", "insideV"] {
            self.out.push_str(&border(side));
        }
        self.out.push_str(
            "</w:tblBorders><w:tblCellMar><w:top w:w=\"40\" w:type=\"dxa\"/>\
             <w:left w:w=\"80\" w:type=\"dxa\"/><w:bottom w:w=\"40\" w:type=\"dxa\"/>\
             <w:right w:w=\"80\" w:type=\"dxa\"/></w:tblCellMar></w:tblPr><w:tblGrid>",
        );
        for _ in 0..columns {
            self.out.push_str(&format!("<w:gridCol w:w=\"{width}\"/>"));
        }
        self.out.push_str("</w:tblGrid>");
        if !header.is_empty() {
            self.row(header, columns, width, true);
        }
        for row in rows {
            self.row(row, columns, width, false);
        }
        self.out.push_str("</w:tbl>");
        // Keeps two consecutive tables apart (Word would merge them).
        self.out.push_str("<w:p/>");
    }

    fn row(&mut self, cells: &[Vec<Inline>], columns: usize, width: u32, header: bool) {
        // Rows stay on one page; the header row repeats on every page.
        self.out.push_str(if header {
            "<w:tr><w:trPr><w:cantSplit/><w:tblHeader/></w:trPr>"
        } else {
            "<w:tr><w:trPr><w:cantSplit/></w:trPr>"
        });
        for index in 0..columns {
            self.out.push_str(&format!(
                "<w:tc><w:tcPr><w:tcW w:w=\"{width}\" w:type=\"dxa\"/>{}</w:tcPr>",
                if header {
                    "<w:shd w:val=\"clear\" w:color=\"auto\" w:fill=\"F2F2F2\"/>"
                } else {
                    ""
                }
            ));
            let inlines = cells.get(index).map(Vec::as_slice).unwrap_or_default();
            let ppr = ParagraphProps {
                compact: true,
                ..Default::default()
            };
            self.paragraph(&ppr, inlines, header);
            self.out.push_str("</w:tc>");
        }
        self.out.push_str("</w:tr>");
    }

    fn paragraph(&mut self, ppr: &ParagraphProps<'_>, inlines: &[Inline], bold: bool) {
        self.out.push_str("<w:p>");
        ppr.write(&mut self.out);
        for inline in inlines {
            self.inline(inline, bold);
        }
        self.out.push_str("</w:p>");
    }

    fn inline(&mut self, inline: &Inline, bold: bool) {
        if inline.text.is_empty() {
            return;
        }
        let link = inline
            .link
            .as_deref()
            .filter(|url| is_external_link(url))
            .map(|url| self.link_id(url.trim()));
        if let Some(id) = &link {
            self.out.push_str(&format!(
                "<w:hyperlink xmlns:r=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships\" r:id=\"{id}\">"
            ));
        }
        self.out.push_str("<w:r><w:rPr>");
        let style = inline.style;
        if style.code {
            self.out.push_str(&format!(
                "<w:rFonts w:ascii=\"{MONO}\" w:hAnsi=\"{MONO}\" w:cs=\"{MONO}\"/>"
            ));
        }
        if style.bold || bold {
            self.out.push_str("<w:b/><w:bCs/>");
        }
        if style.italic {
            self.out.push_str("<w:i/><w:iCs/>");
        }
        if style.strike {
            self.out.push_str("<w:strike/>");
        }
        if link.is_some() {
            self.out.push_str("<w:color w:val=\"0563C1\"/>");
        }
        if style.code {
            self.out.push_str("<w:sz w:val=\"19\"/>");
        }
        if link.is_some() {
            self.out.push_str("<w:u w:val=\"single\"/>");
        }
        if style.code {
            self.out
                .push_str("<w:shd w:val=\"clear\" w:color=\"auto\" w:fill=\"F2F2F2\"/>");
        }
        self.out.push_str("</w:rPr>");
        for (i, line) in inline.text.split('\n').enumerate() {
            if i > 0 {
                self.out.push_str("<w:br/>");
            }
            text_element(&mut self.out, line);
        }
        self.out.push_str("</w:r>");
        if link.is_some() {
            self.out.push_str("</w:hyperlink>");
        }
    }

    fn link_id(&mut self, url: &str) -> String {
        if let Some((id, _)) = self.links.iter().find(|(_, target)| *target == url) {
            return id.clone();
        }
        let mut n = self.links.len() + 1;
        loop {
            let id = format!("rIdGwLink{n}");
            if !self.taken_rel_ids.contains(&id) && !self.links.contains_key(&id) {
                self.links.insert(id.clone(), url.to_string());
                return id;
            }
            n += 1;
        }
    }
}

fn text_element(out: &mut String, text: &str) {
    if !text.is_empty() {
        out.push_str("<w:t xml:space=\"preserve\">");
        out.push_str(&escape(text));
        out.push_str("</w:t>");
    }
}

/// Paragraph properties, written in schema order.
#[derive(Default)]
struct ParagraphProps<'s> {
    style: Option<&'s str>,
    num: Option<(u32, usize)>,
    border: bool,
    shading: bool,
    compact: bool,
    indent: u32,
}

impl ParagraphProps<'_> {
    fn write(&self, out: &mut String) {
        out.push_str("<w:pPr>");
        if let Some(style) = self.style {
            out.push_str(&format!("<w:pStyle w:val=\"{}\"/>", escape(style)));
        }
        if let Some((id, level)) = self.num {
            out.push_str(&format!(
                "<w:numPr><w:ilvl w:val=\"{level}\"/><w:numId w:val=\"{id}\"/></w:numPr>"
            ));
        }
        if self.border {
            out.push_str(
                "<w:pBdr><w:left w:val=\"single\" w:sz=\"18\" w:space=\"8\" w:color=\"BBBBBB\"/></w:pBdr>",
            );
        }
        if self.shading {
            out.push_str("<w:shd w:val=\"clear\" w:color=\"auto\" w:fill=\"F2F2F2\"/>");
        }
        if self.compact {
            out.push_str("<w:spacing w:before=\"0\" w:after=\"0\"/>");
        } else if self.num.is_some() {
            out.push_str("<w:spacing w:after=\"60\"/>");
        }
        if self.indent > 0 {
            out.push_str(&format!("<w:ind w:left=\"{}\"/>", self.indent));
        }
        out.push_str("</w:pPr>");
    }
}

fn num_id(first: u32, index: usize) -> u32 {
    first.saturating_add(u32::try_from(index).unwrap_or(u32::MAX))
}

/// `w:abstractNum` definitions for bullets and decimal numbers, nine levels each.
pub(crate) fn abstract_nums(bullet_id: u32, decimal_id: u32) -> String {
    let mut out = String::new();
    for (id, bullet) in [(bullet_id, true), (decimal_id, false)] {
        out.push_str(&format!(
            "<w:abstractNum w:abstractNumId=\"{id}\"><w:multiLevelType w:val=\"hybridMultilevel\"/>"
        ));
        for level in 0..=MAX_LEVEL {
            let (format, text) = if bullet {
                ("bullet", ["•", "◦", "▪"][level % 3].to_string())
            } else {
                ("decimal", format!("%{}.", level + 1))
            };
            let left = INDENT * (level as u32 + 1);
            out.push_str(&format!(
                "<w:lvl w:ilvl=\"{level}\"><w:start w:val=\"1\"/><w:numFmt w:val=\"{format}\"/>\
                 <w:lvlText w:val=\"{text}\"/><w:lvlJc w:val=\"left\"/>\
                 <w:pPr><w:ind w:left=\"{left}\" w:hanging=\"360\"/></w:pPr></w:lvl>"
            ));
        }
        out.push_str("</w:abstractNum>");
    }
    out
}

/// `w:num` instances for the lists a writer used.
pub(crate) fn nums(
    lists: &[Option<u64>],
    first_num_id: u32,
    bullet_id: u32,
    decimal_id: u32,
) -> String {
    let mut out = String::new();
    for (index, start) in lists.iter().enumerate() {
        let id = num_id(first_num_id, index);
        let start = start.map(|s| s.min(32_767));
        match start {
            None => out.push_str(&format!(
                "<w:num w:numId=\"{id}\"><w:abstractNumId w:val=\"{bullet_id}\"/></w:num>"
            )),
            Some(start) => {
                out.push_str(&format!(
                    "<w:num w:numId=\"{id}\"><w:abstractNumId w:val=\"{decimal_id}\"/>"
                ));
                for level in 0..=MAX_LEVEL {
                    out.push_str(&format!(
                        "<w:lvlOverride w:ilvl=\"{level}\"><w:startOverride w:val=\"{start}\"/></w:lvlOverride>"
                    ));
                }
                out.push_str("</w:num>");
            }
        }
    }
    out
}
