//! PDF rendering: an A4 report (title, metadata table, the markdown) laid out with the
//! embedded DejaVu fonts, subset on save; "Page n of m" in every footer.

use std::collections::BTreeSet;

use printpdf::{
    Color, FontId, Line as PdfLine, LinePoint, Mm, Op, PaintMode, PdfDocument, PdfFont,
    PdfFontHandle, PdfPage, PdfSaveOptions, Point, Pt, Rect, Rgb, TextItem, TextMatrix,
};

use super::markdown::{self, is_external_link, Block, Inline, Item};
use super::pdf_text::{fonts, wrap, wrap_preformatted, Face, Fonts, Format, Line, Span, FACES};
use super::{DocumentError, ExportDocument};

const PAGE_WIDTH: f32 = 595.28;
const PAGE_HEIGHT: f32 = 841.89;
/// 20 mm.
const MARGIN: f32 = 56.7;
const CONTENT_WIDTH: f32 = PAGE_WIDTH - 2.0 * MARGIN;
const BODY_SIZE: f32 = 10.5;
const LINE_FACTOR: f32 = 1.35;
const TEXT: (f32, f32, f32) = (0.13, 0.13, 0.13);
const ACCENT: (f32, f32, f32) = (0.12, 0.22, 0.39);
const MUTED: (f32, f32, f32) = (0.45, 0.45, 0.45);
const LINK: (f32, f32, f32) = (0.02, 0.39, 0.76);
const RULE: (f32, f32, f32) = (0.7, 0.7, 0.7);
const SHADE: (f32, f32, f32) = (0.95, 0.95, 0.95);
const CELL_PAD: f32 = 4.0;
const INDENT: f32 = 18.0;

/// Renders the report.
pub(crate) fn render(doc: &ExportDocument) -> Result<Vec<u8>, DocumentError> {
    let fonts = fonts()?;
    let mut layout = Layout {
        fonts,
        ids: FACES.iter().map(|_| FontId::new()).collect(),
        used: Default::default(),
        pages: vec![Vec::new()],
        y: PAGE_HEIGHT - MARGIN,
        bars: Vec::new(),
    };
    layout.header(doc);
    let blocks = markdown::parse(&markdown::preprocess(&doc.markdown));
    layout.blocks(&blocks, 0.0, 0);
    let total = layout.pages.len();
    let pages = std::mem::take(&mut layout.pages)
        .into_iter()
        .enumerate()
        .map(|(index, mut ops)| {
            layout.footer(&mut ops, &format!("Page {} of {total}", index + 1));
            PdfPage::new(Mm(210.0), Mm(297.0), ops)
        })
        .collect();
    let mut pdf = PdfDocument::new(&doc.title);
    for (face, id) in FACES.iter().zip(&layout.ids) {
        let chars = &layout.used[*face as usize];
        if !chars.is_empty() {
            let font = PdfFont::new(fonts.subset(*face, chars)?);
            pdf.resources.fonts.map.insert(id.clone(), font);
        }
    }
    let options = PdfSaveOptions {
        subset_fonts: true,
        ..Default::default()
    };
    Ok(pdf.with_pages(pages).save(&options, &mut Vec::new()))
}

struct Layout {
    fonts: &'static Fonts,
    ids: Vec<FontId>,
    /// Characters drawn per face (what the embedded subsets must hold).
    used: [BTreeSet<char>; 4],
    pages: Vec<Vec<Op>>,
    /// Top of the free space on the current page.
    y: f32,
    /// x positions of the bars of the open block quotes.
    bars: Vec<f32>,
}

fn format(face: Face, size: f32, color: (f32, f32, f32)) -> Format {
    Format {
        face,
        size,
        color,
        strike: false,
    }
}

fn rgb((r, g, b): (f32, f32, f32)) -> Color {
    Color::Rgb(Rgb {
        r,
        g,
        b,
        icc_profile: None,
    })
}

fn point(x: f32, y: f32) -> LinePoint {
    LinePoint {
        p: Point { x: Pt(x), y: Pt(y) },
        bezier: false,
    }
}

impl Layout {
    fn ops(&mut self) -> &mut Vec<Op> {
        if self.pages.is_empty() {
            self.pages.push(Vec::new());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.y = PAGE_HEIGHT - MARGIN;
    }

    /// Starts a new page unless `height` fits above the bottom margin.
    fn ensure(&mut self, height: f32) {
        if self.y - height < MARGIN && self.y < PAGE_HEIGHT - MARGIN {
            self.new_page();
        }
    }

    /// Vertical space (quote bars continue through it).
    fn gap(&mut self, height: f32) {
        let height = height.min(self.y - MARGIN).max(0.0);
        self.draw_bars(self.y, height);
        self.y -= height;
    }

    fn draw_bars(&mut self, top: f32, height: f32) {
        for x in self.bars.clone() {
            self.rect(x, top - height, 2.0, height, (0.75, 0.75, 0.75));
        }
    }

    fn rect(&mut self, x: f32, y: f32, width: f32, height: f32, color: (f32, f32, f32)) {
        let mut rectangle = Rect::from_xywh(Pt(x), Pt(y), Pt(width), Pt(height));
        rectangle.mode = Some(PaintMode::Fill);
        let ops = self.ops();
        ops.push(Op::SetFillColor { col: rgb(color) });
        ops.push(Op::DrawRectangle { rectangle });
    }

    fn line(&mut self, from: (f32, f32), to: (f32, f32), color: (f32, f32, f32), width: f32) {
        let ops = self.ops();
        ops.push(Op::SetOutlineColor { col: rgb(color) });
        ops.push(Op::SetOutlineThickness { pt: Pt(width) });
        ops.push(Op::DrawLine {
            line: PdfLine {
                points: vec![point(from.0, from.1), point(to.0, to.1)],
                is_closed: false,
            },
        });
    }

    /// Draws one wrapped line with its top at `top`, starting at `x`.
    fn draw_line(&mut self, line: &Line, x: f32, top: f32) {
        let height = line.size * LINE_FACTOR;
        let baseline = top - line.size * 1.05;
        let mut strikes = Vec::new();
        let ids = self.ids.clone();
        for piece in &line.pieces {
            self.used[piece.format.face as usize].extend(piece.text.chars());
        }
        let ops = self.ops();
        ops.push(Op::StartTextSection);
        for piece in line.pieces.iter().filter(|p| !p.text.is_empty()) {
            let format = piece.format;
            ops.push(Op::SetFont {
                font: PdfFontHandle::External(ids[format.face as usize].clone()),
                size: Pt(format.size),
            });
            ops.push(Op::SetFillColor {
                col: rgb(format.color),
            });
            ops.push(Op::SetTextMatrix {
                matrix: TextMatrix::Translate(Pt(x + piece.x), Pt(baseline)),
            });
            ops.push(Op::ShowText {
                items: vec![TextItem::Text(piece.text.clone())],
            });
            if format.strike {
                let y = baseline + format.size * 0.3;
                strikes.push((
                    (x + piece.x, y),
                    (x + piece.x + piece.width, y),
                    format.color,
                ));
            }
        }
        ops.push(Op::EndTextSection);
        for (from, to, color) in strikes {
            self.line(from, to, color, 0.7);
        }
        self.draw_bars(top, height);
    }

    /// Wraps spans at `x` within `width` and draws them, breaking pages as needed.
    fn text(&mut self, spans: &[Span], x: f32, width: f32) {
        for line in wrap(self.fonts, spans, width) {
            let height = line.size.max(BODY_SIZE) * LINE_FACTOR;
            self.ensure(height);
            self.draw_line(&line, x, self.y);
            self.y -= height;
        }
    }

    fn header(&mut self, doc: &ExportDocument) {
        let title = [Span {
            text: doc.title.clone(),
            format: format(Face::Bold, 20.0, ACCENT),
        }];
        self.text(&title, MARGIN, CONTENT_WIDTH);
        self.gap(6.0);
        if !doc.fields.is_empty() {
            let label_width = doc
                .fields
                .iter()
                .map(|(label, _)| self.fonts.width(Face::Bold, 9.5, label))
                .fold(0.0f32, f32::max)
                .min(CONTENT_WIDTH * 0.35)
                + 2.0 * CELL_PAD;
            let rows: Vec<Vec<Vec<Span>>> = doc
                .fields
                .iter()
                .map(|(label, value)| {
                    vec![
                        vec![Span {
                            text: label.clone(),
                            format: format(Face::Bold, 9.5, TEXT),
                        }],
                        vec![Span {
                            text: value.clone(),
                            format: format(Face::Regular, 9.5, TEXT),
                        }],
                    ]
                })
                .collect();
            let widths = [label_width, CONTENT_WIDTH - label_width];
            for row in &rows {
                self.table_row(row, &widths, MARGIN, Some(SHADE), None);
            }
        }
        self.gap(8.0);
        self.line(
            (MARGIN, self.y),
            (MARGIN + CONTENT_WIDTH, self.y),
            ACCENT,
            1.2,
        );
        self.gap(12.0);
    }

    fn footer(&mut self, ops: &mut Vec<Op>, text: &str) {
        let size = 8.5;
        self.used[Face::Regular as usize].extend(text.chars());
        let width = self.fonts.width(Face::Regular, size, text);
        ops.push(Op::StartTextSection);
        ops.push(Op::SetFont {
            font: PdfFontHandle::External(self.ids[Face::Regular as usize].clone()),
            size: Pt(size),
        });
        ops.push(Op::SetFillColor { col: rgb(MUTED) });
        ops.push(Op::SetTextMatrix {
            matrix: TextMatrix::Translate(Pt((PAGE_WIDTH - width) / 2.0), Pt(MARGIN / 2.0)),
        });
        ops.push(Op::ShowText {
            items: vec![TextItem::Text(text.to_string())],
        });
        ops.push(Op::EndTextSection);
    }

    fn blocks(&mut self, blocks: &[Block], indent: f32, depth: usize) {
        for block in blocks {
            self.block(block, indent, depth);
        }
    }

    fn block(&mut self, block: &Block, indent: f32, depth: usize) {
        let x = MARGIN + indent;
        let width = CONTENT_WIDTH - indent;
        match block {
            Block::Heading { level, inlines } => {
                let size =
                    [17.0, 14.5, 12.5, 11.5, 11.0, 10.5][usize::from(level.clamp(&1, &6) - 1)];
                self.gap(size * 0.6);
                // Keep the heading with at least two lines of what follows.
                self.ensure(size * LINE_FACTOR + 2.0 * BODY_SIZE * LINE_FACTOR);
                let spans = spans(inlines, Face::Bold, size, ACCENT);
                self.text(&spans, x, width);
                self.gap(3.0);
            }
            Block::Paragraph(inlines) => {
                self.text(&spans(inlines, Face::Regular, BODY_SIZE, TEXT), x, width);
                self.gap(5.0);
            }
            Block::List { start, items } => self.list(*start, items, indent, depth),
            Block::Table { header, rows } => self.table(header, rows, x, width),
            Block::Quote(inner) => {
                self.bars.push(x);
                self.blocks(inner, indent + 12.0, depth);
                self.bars.pop();
                self.gap(3.0);
            }
            Block::Code(lines) => self.code(lines, x, width),
            Block::Rule => {
                self.gap(4.0);
                self.line((x, self.y), (x + width, self.y), RULE, 0.8);
                self.gap(8.0);
            }
        }
    }

    fn list(&mut self, start: Option<u64>, items: &[Item], indent: f32, depth: usize) {
        let markers: Vec<String> = (0..items.len() as u64)
            .map(|i| match start {
                Some(first) => format!("{}.", first.saturating_add(i)),
                None => ["•", "◦", "▪"][depth % 3].to_string(),
            })
            .collect();
        let marker_width = markers
            .iter()
            .map(|m| self.fonts.width(Face::Regular, BODY_SIZE, m))
            .fold(0.0f32, f32::max)
            + 6.0;
        let text_indent = indent + marker_width.clamp(INDENT, CONTENT_WIDTH / 3.0);
        for (item, marker) in items.iter().zip(markers) {
            let mut blocks = item.blocks.iter().peekable();
            let first = match blocks.peek() {
                Some(Block::Paragraph(inlines)) => {
                    blocks.next();
                    Some(spans(inlines, Face::Regular, BODY_SIZE, TEXT))
                }
                _ => None,
            };
            let lines = wrap(
                self.fonts,
                first.as_deref().unwrap_or_default(),
                CONTENT_WIDTH - text_indent,
            );
            let mut marker_line = Line {
                size: BODY_SIZE,
                ..Default::default()
            };
            marker_line.pieces.push(super::pdf_text::Piece {
                x: 0.0,
                width: 0.0,
                text: marker,
                format: format(Face::Regular, BODY_SIZE, TEXT),
            });
            for (index, line) in lines.iter().enumerate() {
                let height = line.size.max(BODY_SIZE) * LINE_FACTOR;
                self.ensure(height);
                if index == 0 {
                    let bars = std::mem::take(&mut self.bars);
                    self.draw_line(&marker_line, MARGIN + indent, self.y);
                    self.bars = bars;
                }
                self.draw_line(line, MARGIN + text_indent, self.y);
                self.y -= height;
            }
            let mut nested = false;
            for block in blocks {
                self.block(block, text_indent, depth + 1);
                nested = true;
            }
            // Nested content ends with its own spacing.
            if !nested {
                self.gap(1.5);
            }
        }
        if depth == 0 {
            self.gap(4.0);
        }
    }

    fn code(&mut self, lines: &[String], x: f32, width: f32) {
        let size = 9.0;
        let height = size * LINE_FACTOR;
        self.gap(2.0);
        for line in lines {
            let spans = [Span {
                text: line.clone(),
                format: format(Face::Mono, size, (0.2, 0.2, 0.2)),
            }];
            for wrapped in wrap_preformatted(self.fonts, &spans, width - 8.0) {
                self.ensure(height);
                self.rect(x, self.y - height, width, height, SHADE);
                self.draw_line(&wrapped, x + 4.0, self.y);
                self.y -= height;
            }
        }
        self.gap(7.0);
    }

    fn table(&mut self, header: &[Vec<Inline>], rows: &[Vec<Vec<Inline>>], x: f32, width: f32) {
        let columns = super::markdown::column_count(header, rows);
        let cell_spans = |cells: &[Vec<Inline>], face: Face| -> Vec<Vec<Span>> {
            (0..columns)
                .map(|i| {
                    spans(
                        cells.get(i).map(Vec::as_slice).unwrap_or_default(),
                        face,
                        9.5,
                        TEXT,
                    )
                })
                .collect()
        };
        let header = (!header.is_empty()).then(|| cell_spans(header, Face::Bold));
        let body: Vec<Vec<Vec<Span>>> = rows.iter().map(|r| cell_spans(r, Face::Regular)).collect();
        let widths = self.column_widths(header.iter().chain(&body), columns, width);
        self.gap(2.0);
        if let Some(header) = &header {
            self.table_row(header, &widths, x, Some(SHADE), None);
        }
        for row in &body {
            self.table_row(row, &widths, x, None, header.as_ref());
        }
        self.gap(8.0);
    }

    /// Column widths from content: natural width capped, shares of the available width.
    fn column_widths<'r>(
        &self,
        rows: impl Iterator<Item = &'r Vec<Vec<Span>>>,
        columns: usize,
        width: f32,
    ) -> Vec<f32> {
        let mut natural = vec![24.0f32; columns];
        for row in rows {
            for (i, cell) in row.iter().enumerate() {
                let w: f32 = cell
                    .iter()
                    .map(|s| self.fonts.width(s.format.face, s.format.size, &s.text))
                    .sum::<f32>()
                    + 2.0 * CELL_PAD;
                natural[i] = natural[i].max(w.min(width));
            }
        }
        let floor = width / columns as f32 * 0.4;
        let weights: Vec<f32> = natural.iter().map(|n| n.max(floor)).collect();
        let total: f32 = weights.iter().sum();
        weights.iter().map(|w| w / total * width).collect()
    }

    /// Draws a row of wrapped cells with a grid, splitting it across pages when needed;
    /// `repeat` is the header row drawn again at the top of a new page.
    fn table_row(
        &mut self,
        cells: &[Vec<Span>],
        widths: &[f32],
        x: f32,
        fill: Option<(f32, f32, f32)>,
        repeat: Option<&Vec<Vec<Span>>>,
    ) {
        let wrapped: Vec<Vec<Line>> = cells
            .iter()
            .zip(widths)
            .map(|(spans, w)| wrap(self.fonts, spans, w - 2.0 * CELL_PAD))
            .collect();
        let line_height = |line: &Line| line.size.max(9.5) * LINE_FACTOR;
        let row_height = |from: usize, to: &[usize]| -> f32 {
            wrapped
                .iter()
                .zip(to)
                .map(|(lines, &end)| {
                    lines
                        .get(from.min(end)..end)
                        .unwrap_or_default()
                        .iter()
                        .map(line_height)
                        .sum::<f32>()
                })
                .fold(0.0f32, f32::max)
                + 2.0 * CELL_PAD
        };
        let counts: Vec<usize> = wrapped.iter().map(Vec::len).collect();
        let full = row_height(0, &counts);
        let page_room = PAGE_HEIGHT - 2.0 * MARGIN;
        if self.y - full < MARGIN && full <= page_room && self.y < PAGE_HEIGHT - MARGIN {
            self.new_page();
            if let Some(header) = repeat {
                self.table_row(header, widths, x, Some(SHADE), None);
            }
        }
        let mut from = 0usize;
        let max_lines = counts.iter().copied().max().unwrap_or(0);
        loop {
            // As many lines as fit on this page (at least one).
            let room = self.y - MARGIN - 2.0 * CELL_PAD;
            let mut end = from + 1;
            while end < max_lines {
                let next: Vec<usize> = counts.iter().map(|&c| c.min(end + 1)).collect();
                if row_height(from, &next) - 2.0 * CELL_PAD > room {
                    break;
                }
                end += 1;
            }
            let ends: Vec<usize> = counts.iter().map(|&c| c.min(end)).collect();
            let height = row_height(from, &ends);
            let top = self.y;
            if let Some(color) = fill {
                self.rect(x, top - height, widths.iter().sum(), height, color);
            }
            let mut cell_x = x;
            for ((lines, &w), &stop) in wrapped.iter().zip(widths).zip(&ends) {
                let mut y = top - CELL_PAD;
                for line in lines.get(from.min(stop)..stop).unwrap_or_default() {
                    let bars = std::mem::take(&mut self.bars);
                    self.draw_line(line, cell_x + CELL_PAD, y);
                    self.bars = bars;
                    y -= line_height(line);
                }
                cell_x += w;
            }
            self.grid(x, top, widths, height);
            self.draw_bars(top, height);
            self.y -= height;
            from = end;
            if from >= max_lines {
                break;
            }
            self.new_page();
        }
    }

    fn grid(&mut self, x: f32, top: f32, widths: &[f32], height: f32) {
        let right = x + widths.iter().sum::<f32>();
        let bottom = top - height;
        self.line((x, top), (right, top), RULE, 0.6);
        self.line((x, bottom), (right, bottom), RULE, 0.6);
        let mut edge = x;
        self.line((edge, top), (edge, bottom), RULE, 0.6);
        for w in widths {
            edge += w;
            self.line((edge, top), (edge, bottom), RULE, 0.6);
        }
    }
}

/// Inline runs as spans: bold, italic (bold wins), code in mono, links coloured.
fn spans(inlines: &[Inline], base: Face, size: f32, color: (f32, f32, f32)) -> Vec<Span> {
    inlines
        .iter()
        .map(|inline| {
            let style = inline.style;
            let face = if style.code {
                Face::Mono
            } else if style.bold || base == Face::Bold {
                Face::Bold
            } else if style.italic {
                Face::Italic
            } else {
                base
            };
            let linked = inline.link.as_deref().is_some_and(is_external_link);
            Span {
                text: inline.text.clone(),
                format: Format {
                    face,
                    size: if style.code { size * 0.92 } else { size },
                    color: if linked { LINK } else { color },
                    strike: style.strike,
                },
            }
        })
        .collect()
}
