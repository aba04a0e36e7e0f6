//! A flat token model of an XML part: parsed with quick-xml, edited in place, written back
//! byte for byte except where tokens were changed. Text is kept decoded (entities resolved).

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use super::DocumentError;

/// One token of a part.
pub(crate) enum Tok {
    /// An opening tag.
    Start(BytesStart<'static>),
    /// A closing tag (qualified name).
    End(String),
    /// A self-closing tag.
    Empty(BytesStart<'static>),
    /// Character data, decoded. Inside `w:t`, `breaks` turns each `\n` into `<w:br/>`.
    Text { text: String, breaks: bool },
    /// Anything else (declaration, comment, processing instruction, CDATA, doctype), as written.
    Verbatim(Vec<u8>),
    /// Generated markup inserted as is (already well-formed).
    Raw(String),
}

/// The qualified name of an opening or self-closing tag.
pub(crate) fn tag_name<'a>(start: &'a BytesStart<'_>) -> &'a [u8] {
    start.name().into_inner()
}

/// The unescaped value of an attribute, if present and readable.
pub(crate) fn attr(start: &BytesStart<'_>, name: &str) -> Option<String> {
    start
        .attributes()
        .flatten()
        .find(|a| a.key.as_ref() == name.as_bytes())
        .and_then(|a| {
            a.normalized_value(XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
}

/// Parses a part into tokens; `part` names it in errors.
pub(crate) fn parse(part: &str, xml: &[u8]) -> Result<Vec<Tok>, DocumentError> {
    let invalid = |detail: String| DocumentError::InvalidXml {
        part: part.to_string(),
        detail,
    };
    let xml = xml.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(xml);
    let mut reader = Reader::from_reader(xml);
    reader.config_mut().check_end_names = true;
    let mut toks = Vec::new();
    let mut depth = 0usize;
    let mut roots = 0usize;
    let mut buf = Vec::new();
    loop {
        let position = reader.buffer_position();
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| invalid(format!("{e} at byte {}", reader.error_position())))?;
        match event {
            Event::Start(start) => {
                if depth == 0 {
                    roots += 1;
                }
                depth += 1;
                toks.push(Tok::Start(start.into_owned()));
            }
            Event::End(end) => {
                depth = depth.saturating_sub(1);
                let name = String::from_utf8_lossy(end.name().into_inner()).into_owned();
                toks.push(Tok::End(name));
            }
            Event::Empty(start) => {
                if depth == 0 {
                    roots += 1;
                }
                toks.push(Tok::Empty(start.into_owned()));
            }
            Event::Text(text) => {
                let decoded = text
                    .xml10_content()
                    .map_err(|e| invalid(format!("bad text encoding: {e}")))?;
                if depth == 0 && !decoded.trim().is_empty() {
                    return Err(invalid("text outside the root element".to_string()));
                }
                push_text(&mut toks, &decoded);
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => {
                        let name = reference
                            .decode()
                            .map_err(|e| invalid(format!("bad entity: {e}")))?;
                        resolve_predefined_entity(&name)
                            .ok_or_else(|| invalid(format!("unknown entity &{name};")))?
                            .to_string()
                    }
                    Err(e) => return Err(invalid(format!("bad character reference: {e}"))),
                };
                push_text(&mut toks, &resolved);
            }
            Event::Eof => break,
            Event::CData(_)
            | Event::Comment(_)
            | Event::Decl(_)
            | Event::PI(_)
            | Event::DocType(_) => {
                let end = reader.buffer_position();
                let raw = xml
                    .get(usize::try_from(position).unwrap_or(0)..usize::try_from(end).unwrap_or(0))
                    .unwrap_or_default();
                toks.push(Tok::Verbatim(raw.to_vec()));
            }
        }
        buf.clear();
    }
    if depth != 0 {
        return Err(invalid(
            "unexpected end of file (unclosed element)".to_string(),
        ));
    }
    if roots != 1 {
        return Err(invalid(format!("expected one root element, found {roots}")));
    }
    Ok(toks)
}

fn push_text(toks: &mut Vec<Tok>, text: &str) {
    if let Some(Tok::Text { text: last, .. }) = toks.last_mut() {
        last.push_str(text);
    } else {
        toks.push(Tok::Text {
            text: text.to_string(),
            breaks: false,
        });
    }
}

/// Writes tokens back as XML.
pub(crate) fn write(toks: &[Tok]) -> Vec<u8> {
    let mut out = Vec::with_capacity(toks.len() * 16);
    for tok in toks {
        match tok {
            Tok::Start(start) => {
                out.push(b'<');
                out.extend_from_slice(start);
                out.push(b'>');
            }
            Tok::End(name) => {
                out.extend_from_slice(b"</");
                out.extend_from_slice(name.as_bytes());
                out.push(b'>');
            }
            Tok::Empty(start) => {
                out.push(b'<');
                out.extend_from_slice(start);
                out.extend_from_slice(b"/>");
            }
            Tok::Text { text, breaks } => {
                if *breaks {
                    let mut lines = text.split('\n');
                    if let Some(first) = lines.next() {
                        out.extend_from_slice(escape(first).as_bytes());
                    }
                    for line in lines {
                        out.extend_from_slice(b"</w:t><w:br/><w:t xml:space=\"preserve\">");
                        out.extend_from_slice(escape(line).as_bytes());
                    }
                } else {
                    out.extend_from_slice(escape(text).as_bytes());
                }
            }
            Tok::Verbatim(raw) => out.extend_from_slice(raw),
            Tok::Raw(raw) => out.extend_from_slice(raw.as_bytes()),
        }
    }
    out
}

/// Escapes text for XML content or a double-quoted attribute, dropping characters XML 1.0
/// forbids (control characters other than tab, newline and carriage return).
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// Inserts `raw` just before the root element's closing tag.
pub(crate) fn append_to_root(toks: &mut Vec<Tok>, raw: String) {
    if let Some(index) = toks.iter().rposition(|t| matches!(t, Tok::End(_))) {
        toks.insert(index, Tok::Raw(raw));
    } else if let Some(index) = toks.iter().rposition(|t| matches!(t, Tok::Empty(_))) {
        // A self-closing root: open it so children fit.
        if let Some(Tok::Empty(start)) = toks.get(index) {
            let name = String::from_utf8_lossy(tag_name(start)).into_owned();
            let start = start.clone();
            toks[index] = Tok::Start(start);
            toks.insert(index + 1, Tok::Raw(raw));
            toks.insert(index + 2, Tok::End(name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_decodes_entities() {
        let source = "\u{feff}<?xml version=\"1.0\"?><!-- c --><a x=\"1 &amp; 2\"><b>x &lt; y &#233;&#x4E2D;</b><c/></a>";
        let toks = parse("t", source.as_bytes()).expect("parses");
        let text: String = toks
            .iter()
            .filter_map(|t| match t {
                Tok::Text { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(text, "x < y é中");
        let written = String::from_utf8(write(&toks)).expect("utf-8");
        assert_eq!(
            written,
            "<?xml version=\"1.0\"?><!-- c --><a x=\"1 &amp; 2\"><b>x &lt; y é中</b><c/></a>"
        );
        let a = toks.iter().find_map(|t| match t {
            Tok::Start(s) if tag_name(s) == b"a" => attr(s, "x"),
            _ => None,
        });
        assert_eq!(a.as_deref(), Some("1 & 2"));
    }

    #[test]
    fn escape_drops_characters_xml_forbids() {
        assert_eq!(escape("a\u{1}b\u{b}<\t>\"&"), "ab&lt;\t&gt;&quot;&amp;");
    }
}
