//! DOCX rendering: placeholders of a Word template replaced, the body `{{output}}` paragraph
//! replaced by the markdown as Word structure (styles, numbering, hyperlinks).

use std::collections::HashSet;

use super::docx_body::{abstract_nums, nums, BodyWriter, StyleIds};
use super::markdown::{self, Block};
use super::placeholders::{self, Paragraph};
use super::template::{is_header_or_footer, Package, DOCUMENT};
use super::xml::{self, attr, tag_name, Tok};
use super::{DocumentError, ExportDocument, Placeholder, TemplateInfo};
use crate::postprocess::plain_text::markdown_to_text;

const STYLES: &str = "word/styles.xml";
const NUMBERING: &str = "word/numbering.xml";
const DOCUMENT_RELS: &str = "word/_rels/document.xml.rels";
const CONTENT_TYPES: &str = "[Content_Types].xml";
const XML_DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n";
const W_NS: &str = "http://schemas.openxmlformats.org/wordprocessingml/2006/main";
const REL_NS: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
const PACKAGE_REL_NS: &str = "http://schemas.openxmlformats.org/package/2006/relationships";

/// Lists the placeholders of a template: body, headers, footers; unique, document order.
pub(crate) fn inspect(docx: &[u8]) -> Result<TemplateInfo, DocumentError> {
    let package = Package::read(docx)?;
    let mut placeholders: Vec<Placeholder> = Vec::new();
    for name in scanned_parts(&package) {
        let mut toks = xml::parse(&name, package.get(&name).unwrap_or_default())?;
        placeholders::normalize_text_slots(&mut toks);
        for paragraph in placeholders::paragraphs(&toks) {
            for found in placeholders::find(&paragraph.text(&toks)) {
                match placeholders.iter_mut().find(|p| p.name == found.name) {
                    Some(existing) => {
                        if existing.hint.is_none() {
                            existing.hint = found.hint;
                        }
                    }
                    None => placeholders.push(Placeholder {
                        name: found.name,
                        hint: found.hint,
                    }),
                }
            }
        }
    }
    Ok(TemplateInfo { placeholders })
}

/// The document part first, then headers and footers by name.
fn scanned_parts(package: &Package) -> Vec<String> {
    let mut others: Vec<String> = package
        .names()
        .filter(|n| is_header_or_footer(n))
        .map(str::to_string)
        .collect();
    // Headers before footers, each by name.
    others.sort_by_key(|n| (n.starts_with("word/footer"), n.clone()));
    let mut parts = vec![DOCUMENT.to_string()];
    parts.extend(others);
    parts
}

/// Renders a document from a template.
pub(crate) fn render(template: &[u8], doc: &ExportDocument) -> Result<Vec<u8>, DocumentError> {
    let mut package = Package::read(template)?;
    let plain_output = markdown_to_text(&markdown::preprocess(&doc.markdown));
    for name in scanned_parts(&package) {
        let body = name == DOCUMENT;
        let mut toks = xml::parse(&name, package.get(&name).unwrap_or_default())?;
        placeholders::normalize_text_slots(&mut toks);
        let mut output_paragraphs = Vec::new();
        for paragraph in placeholders::paragraphs(&toks) {
            let text = paragraph.text(&toks);
            let found = placeholders::find(&text);
            if found.is_empty() {
                continue;
            }
            let whole_output = body
                && !paragraph.in_cell
                && !paragraph.nested
                && found.len() == 1
                && found[0].name == "output"
                && text.get(found[0].range.clone()) == Some(text.trim());
            if whole_output {
                output_paragraphs.push(paragraph);
                continue;
            }
            let edits: Vec<_> = found
                .into_iter()
                .map(|m| {
                    let value = if m.name == "output" {
                        plain_output.clone()
                    } else {
                        doc.values.get(&m.name).cloned().unwrap_or_default()
                    };
                    (m.range, value)
                })
                .collect();
            placeholders::rewrite(&mut toks, &paragraph, &edits);
        }
        if !output_paragraphs.is_empty() {
            let blocks = markdown::parse(&markdown::preprocess(&doc.markdown));
            let generated = generate(&mut package, &blocks)?;
            // Later paragraphs first so earlier indices stay valid.
            output_paragraphs.sort_by_key(|p| std::cmp::Reverse(p.start));
            for paragraph in &output_paragraphs {
                replace_paragraph(&mut toks, paragraph, &generated);
            }
        }
        package.set(&name, xml::write(&toks));
    }
    package.write()
}

/// Replaces an `{{output}}` paragraph by generated blocks. Bookmarks inside it are kept
/// (as body-level elements); a paragraph carrying section properties is kept, emptied.
fn replace_paragraph(toks: &mut Vec<Tok>, paragraph: &Paragraph, generated: &str) {
    let range = paragraph.start..=paragraph.end;
    let section = toks[range.clone()]
        .iter()
        .any(|t| matches!(t, Tok::Start(s) | Tok::Empty(s) if tag_name(s) == b"w:sectPr"));
    if section {
        for &index in &paragraph.texts {
            toks[index] = Tok::Text {
                text: String::new(),
                breaks: false,
            };
        }
        toks.insert(paragraph.start, Tok::Raw(generated.to_string()));
        return;
    }
    let bookmarks: String = toks[range.clone()]
        .iter()
        .filter_map(|t| match t {
            Tok::Empty(s) if matches!(tag_name(s), b"w:bookmarkStart" | b"w:bookmarkEnd") => {
                Some(format!("<{}/>", String::from_utf8_lossy(s)))
            }
            _ => None,
        })
        .collect();
    toks.splice(range, [Tok::Raw(format!("{generated}{bookmarks}"))]);
}

/// Renders the blocks and adds what they need to the package: missing heading styles,
/// list numbering, hyperlink relationships (and the parts' relationships and content
/// types when the template lacks them).
fn generate(package: &mut Package, blocks: &[Block]) -> Result<String, DocumentError> {
    let (styles, missing_styles) = resolve_styles(package)?;
    let mut rels = Relationships::read(package)?;
    let numbering = match package.get(NUMBERING) {
        Some(bytes) => Some(xml::parse(NUMBERING, bytes)?),
        None => None,
    };
    let max_id = |element: &[u8], attribute: &str| -> u32 {
        numbering
            .iter()
            .flatten()
            .filter_map(|t| match t {
                Tok::Start(s) | Tok::Empty(s) if tag_name(s) == element => attr(s, attribute),
                _ => None,
            })
            .filter_map(|v| v.parse::<u32>().ok())
            .max()
            .unwrap_or(0)
    };
    let first_num_id = max_id(b"w:num", "w:numId").saturating_add(1);
    let bullet_id = max_id(b"w:abstractNum", "w:abstractNumId").saturating_add(1);
    let decimal_id = bullet_id.saturating_add(1);

    let taken = rels.ids.clone();
    let (xml_out, writer) = BodyWriter::new(&styles, &taken, first_num_id).render(blocks);
    for (id, target) in &writer.links {
        rels.add(format!(
            "<Relationship Id=\"{}\" Type=\"{REL_NS}/hyperlink\" Target=\"{}\" TargetMode=\"External\"/>",
            xml::escape(id),
            xml::escape(target)
        ));
    }
    if !writer.lists.is_empty() {
        let mut toks = match numbering {
            Some(toks) => toks,
            None => xml::parse(
                NUMBERING,
                format!("{XML_DECLARATION}<w:numbering xmlns:w=\"{W_NS}\"></w:numbering>")
                    .as_bytes(),
            )?,
        };
        let definitions = abstract_nums(bullet_id, decimal_id);
        // Schema order: every abstractNum before the first num.
        let first_num = toks
            .iter()
            .position(|t| matches!(t, Tok::Start(s) | Tok::Empty(s) if tag_name(s) == b"w:num"));
        match first_num {
            Some(index) => toks.insert(index, Tok::Raw(definitions)),
            None => xml::append_to_root(&mut toks, definitions),
        }
        xml::append_to_root(
            &mut toks,
            nums(&writer.lists, first_num_id, bullet_id, decimal_id),
        );
        package.set(NUMBERING, xml::write(&toks));
        link_part(package, &mut rels, "numbering")?;
    }
    if !missing_styles.is_empty() {
        let mut toks = match package.get(STYLES) {
            Some(bytes) => xml::parse(STYLES, bytes)?,
            None => xml::parse(
                STYLES,
                format!("{XML_DECLARATION}<w:styles xmlns:w=\"{W_NS}\"></w:styles>").as_bytes(),
            )?,
        };
        xml::append_to_root(&mut toks, missing_styles);
        package.set(STYLES, xml::write(&toks));
        link_part(package, &mut rels, "styles")?;
    }
    if rels.changed {
        package.set(DOCUMENT_RELS, xml::write(&rels.toks));
    }
    Ok(xml_out)
}

/// The document part's relationships.
struct Relationships {
    toks: Vec<Tok>,
    ids: HashSet<String>,
    types: Vec<String>,
    changed: bool,
}

impl Relationships {
    fn read(package: &Package) -> Result<Self, DocumentError> {
        let toks = match package.get(DOCUMENT_RELS) {
            Some(bytes) => xml::parse(DOCUMENT_RELS, bytes)?,
            None => xml::parse(
                DOCUMENT_RELS,
                format!("<Relationships xmlns=\"{PACKAGE_REL_NS}\"></Relationships>").as_bytes(),
            )?,
        };
        let mut ids = HashSet::new();
        let mut types = Vec::new();
        for tok in &toks {
            if let Tok::Start(s) | Tok::Empty(s) = tok {
                if tag_name(s) == b"Relationship" {
                    ids.extend(attr(s, "Id"));
                    types.extend(attr(s, "Type"));
                }
            }
        }
        Ok(Self {
            toks,
            ids,
            types,
            changed: false,
        })
    }

    fn add(&mut self, relationship: String) {
        xml::append_to_root(&mut self.toks, relationship);
        self.changed = true;
    }
}

/// Makes sure `word/{kind}.xml` is referenced from the document and has a content type.
fn link_part(
    package: &mut Package,
    rels: &mut Relationships,
    kind: &str,
) -> Result<(), DocumentError> {
    let rel_type = format!("{REL_NS}/{kind}");
    if !rels.types.contains(&rel_type) {
        let mut id = format!("rIdGw{kind}");
        while rels.ids.contains(&id) {
            id.push('x');
        }
        rels.add(format!(
            "<Relationship Id=\"{id}\" Type=\"{rel_type}\" Target=\"{kind}.xml\"/>"
        ));
        rels.ids.insert(id);
        rels.types.push(rel_type);
    }
    let Some(bytes) = package.get(CONTENT_TYPES) else {
        return Ok(());
    };
    let mut toks = xml::parse(CONTENT_TYPES, bytes)?;
    let part = format!("/word/{kind}.xml");
    let declared = toks.iter().any(|t| {
        matches!(t, Tok::Start(s) | Tok::Empty(s)
            if tag_name(s) == b"Override"
                && attr(s, "PartName").is_some_and(|p| p.eq_ignore_ascii_case(&part)))
    });
    if !declared {
        xml::append_to_root(
            &mut toks,
            format!(
                "<Override PartName=\"{part}\" ContentType=\"application/vnd.openxmlformats-officedocument.wordprocessingml.{kind}+xml\"/>"
            ),
        );
        package.set(CONTENT_TYPES, xml::write(&toks));
    }
    Ok(())
}

/// Finds the template's heading and quote styles; returns the ids to use and the
/// definitions of heading styles to add.
fn resolve_styles(package: &Package) -> Result<(StyleIds, String), DocumentError> {
    let mut styles: Vec<(String, String)> = Vec::new(); // (id, lowercase name)
    if let Some(bytes) = package.get(STYLES) {
        let toks = xml::parse(STYLES, bytes)?;
        let mut current: Option<usize> = None;
        for tok in &toks {
            match tok {
                Tok::Start(s) if tag_name(s) == b"w:style" => {
                    styles.push((attr(s, "w:styleId").unwrap_or_default(), String::new()));
                    current = Some(styles.len() - 1);
                }
                Tok::End(name) if name == "w:style" => current = None,
                Tok::Empty(s) if tag_name(s) == b"w:name" => {
                    if let Some(entry) = current.and_then(|i| styles.get_mut(i)) {
                        entry.1 = attr(s, "w:val").unwrap_or_default().to_lowercase();
                    }
                }
                _ => {}
            }
        }
    }
    let find = |name: &str, id: &str| {
        styles
            .iter()
            .find(|(i, n)| n == name || i.eq_ignore_ascii_case(id))
            .map(|(i, _)| i.clone())
    };
    let mut missing = String::new();
    let headings = std::array::from_fn(|index| {
        let level = index + 1;
        find(&format!("heading {level}"), &format!("Heading{level}")).unwrap_or_else(|| {
            missing.push_str(&heading_style(level));
            format!("Heading{level}")
        })
    });
    let quote = find("quote", "Quote");
    Ok((StyleIds { headings, quote }, missing))
}

fn heading_style(level: usize) -> String {
    let size = [36, 30, 26, 24, 22, 22][level.clamp(1, 6) - 1];
    format!(
        "<w:style w:type=\"paragraph\" w:styleId=\"Heading{level}\"><w:name w:val=\"heading {level}\"/>\
         <w:next w:val=\"Normal\"/><w:uiPriority w:val=\"9\"/><w:qFormat/><w:pPr><w:keepNext/>\
         <w:keepLines/><w:spacing w:before=\"240\" w:after=\"80\"/><w:outlineLvl w:val=\"{}\"/></w:pPr>\
         <w:rPr><w:b/><w:bCs/><w:color w:val=\"1F3864\"/><w:sz w:val=\"{size}\"/><w:szCs w:val=\"{size}\"/></w:rPr></w:style>",
        level - 1
    )
}
