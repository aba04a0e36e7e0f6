//! Fonts for the PDF (embedded DejaVu faces) and line wrapping by glyph advance widths.
//!
//! DejaVu covers Latin, Greek and Cyrillic (and more) but has no CJK glyphs: rendering
//! Chinese, Japanese or Korean would need a Noto CJK font (≈ 16 MB) embedded as well.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use allsorts::binary::read::ReadScope;
use allsorts::font_data::FontData;
use allsorts::subset::{subset, CmapTarget, SubsetProfile};
use printpdf::ParsedFont;

use super::DocumentError;

const REGULAR: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const BOLD: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");
const ITALIC: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Oblique.ttf");
const MONO: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");

/// A font face of the report.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Face {
    Regular = 0,
    Bold = 1,
    Italic = 2,
    Mono = 3,
}

/// All faces, in `Face` order.
pub(crate) const FACES: [Face; 4] = [Face::Regular, Face::Bold, Face::Italic, Face::Mono];

const FONT_FILES: [&[u8]; 4] = [REGULAR, BOLD, ITALIC, MONO];

/// The parsed faces, indexed by `Face`.
pub(crate) struct Fonts {
    faces: [ParsedFont; 4],
}

/// The faces, parsed once per process.
pub(crate) fn fonts() -> Result<&'static Fonts, DocumentError> {
    static FONTS: OnceLock<Option<Fonts>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            let parse = |bytes: &[u8]| ParsedFont::from_bytes(bytes, 0, &mut Vec::new());
            let [regular, bold, italic, mono] = FONT_FILES;
            Some(Fonts {
                faces: [parse(regular)?, parse(bold)?, parse(italic)?, parse(mono)?],
            })
        })
        .as_ref()
        .ok_or_else(|| DocumentError::Render("the embedded PDF font could not be read".into()))
}

impl Fonts {
    /// Advance width of a character in points.
    pub(crate) fn char_width(&self, face: Face, size: f32, c: char) -> f32 {
        let font = &self.faces[face as usize];
        let units = f32::from(font.units_per_em.max(1));
        let advance = font
            .lookup_glyph_index(c as u32)
            .or_else(|| font.lookup_glyph_index('?' as u32))
            .and_then(|gid| font.get_glyph_width(gid))
            .unwrap_or(font.units_per_em / 2);
        f32::from(advance) * size / units
    }

    /// A font holding only the glyphs of `chars` (plus `.notdef`), to embed: printpdf
    /// subsets only with its heavy `text_layout` feature, so it is done here with allsorts.
    pub(crate) fn subset(
        &self,
        face: Face,
        chars: &BTreeSet<char>,
    ) -> Result<ParsedFont, DocumentError> {
        let font = &self.faces[face as usize];
        let glyphs: BTreeSet<u16> = chars
            .iter()
            .filter_map(|&c| font.lookup_glyph_index(c as u32))
            .filter(|&gid| gid != 0)
            .collect();
        let ids: Vec<u16> = std::iter::once(0).chain(glyphs).collect();
        let failed = |e: &dyn std::fmt::Display| DocumentError::Render(format!("font subset: {e}"));
        let data = ReadScope::new(FONT_FILES[face as usize])
            .read::<FontData<'_>>()
            .map_err(|e| failed(&e))?;
        let provider = data.table_provider(0).map_err(|e| failed(&e))?;
        let bytes = subset(&provider, &ids, &SubsetProfile::Pdf, CmapTarget::Unicode)
            .map_err(|e| failed(&e))?;
        ParsedFont::from_bytes(&bytes, 0, &mut Vec::new())
            .ok_or_else(|| failed(&"the subset font cannot be read"))
    }

    /// Width of a string in points.
    pub(crate) fn width(&self, face: Face, size: f32, text: &str) -> f32 {
        text.chars().map(|c| self.char_width(face, size, c)).sum()
    }
}

/// Formatting of a span of text.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) struct Format {
    pub face: Face,
    pub size: f32,
    pub color: (f32, f32, f32),
    pub strike: bool,
}

/// A span of text to wrap; `\n` forces a line break.
pub(crate) struct Span {
    pub text: String,
    pub format: Format,
}

/// A piece of a wrapped line at an x offset.
pub(crate) struct Piece {
    pub x: f32,
    pub width: f32,
    pub text: String,
    pub format: Format,
}

/// A wrapped line.
#[derive(Default)]
pub(crate) struct Line {
    pub pieces: Vec<Piece>,
    /// Largest font size on the line.
    pub size: f32,
}

enum Token {
    Word(Vec<(char, Format)>),
    Space(Format),
    Break,
}

/// Wraps spans to `width` points: breaks at spaces, breaks a word longer than a line
/// between characters (at least one character per line, so it always progresses).
pub(crate) fn wrap(fonts: &Fonts, spans: &[Span], width: f32) -> Vec<Line> {
    wrap_with(fonts, spans, width, false)
}

/// Wraps preformatted text: spaces are kept as characters, lines break where full.
pub(crate) fn wrap_preformatted(fonts: &Fonts, spans: &[Span], width: f32) -> Vec<Line> {
    wrap_with(fonts, spans, width, true)
}

fn wrap_with(fonts: &Fonts, spans: &[Span], width: f32, preformatted: bool) -> Vec<Line> {
    let mut tokens = Vec::new();
    let mut word: Vec<(char, Format)> = Vec::new();
    for span in spans {
        for c in span.text.chars() {
            match c {
                '\n' => {
                    flush_word(&mut tokens, &mut word);
                    tokens.push(Token::Break);
                }
                c if c.is_whitespace() && !preformatted => {
                    flush_word(&mut tokens, &mut word);
                    tokens.push(Token::Space(span.format));
                }
                '\t' => word.extend([(' ', span.format); 4]),
                c if c.is_control() => {}
                c => word.push((c, span.format)),
            }
        }
    }
    flush_word(&mut tokens, &mut word);

    let mut builder = LineBuilder {
        width: width.max(1.0),
        lines: Vec::new(),
        current: Line::default(),
        x: 0.0,
    };
    let mut pending_space: Option<Format> = None;
    for token in tokens {
        match token {
            Token::Break => {
                builder.finish();
                pending_space = None;
            }
            Token::Space(format) => {
                if builder.x > 0.0 {
                    pending_space = Some(format);
                }
            }
            Token::Word(chars) => {
                let word_width: f32 = chars
                    .iter()
                    .map(|(c, f)| fonts.char_width(f.face, f.size, *c))
                    .sum();
                let space = pending_space
                    .take()
                    .map(|f| (f, fonts.char_width(f.face, f.size, ' ')));
                let space_width = space.map_or(0.0, |(_, w)| w);
                if builder.x > 0.0 && builder.x + space_width + word_width <= builder.width {
                    if let Some((format, w)) = space {
                        builder.push(' ', format, w);
                    }
                } else if builder.x > 0.0 {
                    builder.finish();
                }
                for (c, format) in chars {
                    let w = fonts.char_width(format.face, format.size, c);
                    if builder.x > 0.0 && builder.x + w > builder.width {
                        builder.finish();
                    }
                    builder.push(c, format, w);
                }
            }
        }
    }
    if !builder.current.pieces.is_empty() || builder.lines.is_empty() {
        builder.finish();
    }
    builder.lines
}

fn flush_word(tokens: &mut Vec<Token>, word: &mut Vec<(char, Format)>) {
    if !word.is_empty() {
        tokens.push(Token::Word(std::mem::take(word)));
    }
}

struct LineBuilder {
    width: f32,
    lines: Vec<Line>,
    current: Line,
    x: f32,
}

impl LineBuilder {
    fn push(&mut self, c: char, format: Format, w: f32) {
        match self.current.pieces.last_mut() {
            Some(last) if last.format == format => {
                last.text.push(c);
                last.width += w;
            }
            _ => self.current.pieces.push(Piece {
                x: self.x,
                width: w,
                text: c.to_string(),
                format,
            }),
        }
        self.current.size = self.current.size.max(format.size);
        self.x += w;
    }

    fn finish(&mut self) {
        let mut line = std::mem::take(&mut self.current);
        // Trailing spaces add nothing visible.
        if let Some(last) = line.pieces.last_mut() {
            let trimmed = last.text.trim_end_matches(' ').len();
            last.text.truncate(trimmed);
        }
        self.lines.push(line);
        self.x = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regular(text: &str) -> Span {
        Span {
            text: text.into(),
            format: Format {
                face: Face::Regular,
                size: 10.0,
                color: (0.0, 0.0, 0.0),
                strike: false,
            },
        }
    }

    #[test]
    fn wraps_at_spaces_within_width() {
        let fonts = fonts().expect("fonts");
        let text = "lorem ipsum dolor sit amet ".repeat(20);
        let lines = wrap(fonts, &[regular(&text)], 200.0);
        assert!(lines.len() > 5);
        for line in &lines {
            let end = line.pieces.last().map_or(0.0, |p| p.x + p.width);
            assert!(end <= 200.0 + 0.01, "line overflows: {end}");
            let text: String = line.pieces.iter().map(|p| p.text.as_str()).collect();
            assert!(!text.starts_with(' '));
        }
    }

    #[test]
    fn breaks_a_word_longer_than_the_line() {
        let fonts = fonts().expect("fonts");
        let lines = wrap(fonts, &[regular(&"x".repeat(5000))], 100.0);
        let total: usize = lines
            .iter()
            .flat_map(|l| &l.pieces)
            .map(|p| p.text.chars().count())
            .sum();
        assert_eq!(total, 5000);
        assert!(lines.len() > 50);
        // Even narrower than one character: one character per line, no loop.
        assert_eq!(wrap(fonts, &[regular("abc")], 0.0).len(), 3);
    }

    #[test]
    fn preformatted_text_keeps_its_spaces() {
        let fonts = fonts().expect("fonts");
        let span = Span {
            text: "    indented  code".into(),
            format: Format {
                face: Face::Mono,
                ..regular("").format
            },
        };
        let lines = wrap_preformatted(fonts, std::slice::from_ref(&span), 500.0);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].pieces[0].text, "    indented  code");
        let narrow = wrap_preformatted(fonts, &[span], 30.0);
        assert!(narrow.len() > 3);
    }

    #[test]
    fn widths_come_from_the_font() {
        let fonts = fonts().expect("fonts");
        let narrow = fonts.width(Face::Regular, 10.0, "iiii");
        let wide = fonts.width(Face::Regular, 10.0, "MMMM");
        assert!(wide > narrow * 1.5);
        // Mono: every character the same width.
        assert_eq!(
            fonts.width(Face::Mono, 10.0, "iiii"),
            fonts.width(Face::Mono, 10.0, "MMMM")
        );
    }
}
