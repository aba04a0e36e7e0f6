use std::collections::BTreeMap;

use super::{attr_values, part, unzip, zip_of};
use crate::documents::markdown::{self, plain, Block};
use crate::documents::placeholders;
use crate::documents::xml::{self, tag_name, Tok};
use crate::documents::{
    builtin_template, inspect_template, render_docx, DocumentError, ExportDocument, Placeholder,
};

const NS: &str = "xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\" \
                  xmlns:r=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships\"";

const CONTENT_TYPES: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
<Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">\
<Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>\
<Default Extension=\"xml\" ContentType=\"application/xml\"/>\
<Override PartName=\"/word/document.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml\"/>\
</Types>";

const PACKAGE_RELS: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
<Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">\
<Relationship Id=\"rId1\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument\" Target=\"word/document.xml\"/>\
</Relationships>";

/// A template whose placeholders Word split across runs, with proofing and bookmark
/// elements between the pieces: body, table cell, header, footer.
fn split_template() -> Vec<u8> {
    let document = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
<w:document {NS}><w:body>\
<w:p><w:r><w:t xml:space=\"preserve\">Dear </w:t></w:r><w:r><w:t>{{{{</w:t></w:r>\
<w:proofErr w:type=\"spellStart\"/><w:r><w:rPr><w:b/></w:rPr><w:t>customer</w:t></w:r>\
<w:proofErr w:type=\"spellEnd\"/><w:bookmarkStart w:id=\"0\" w:name=\"mark\"/>\
<w:r><w:t xml:space=\"preserve\">: the client }}}}</w:t></w:r><w:bookmarkEnd w:id=\"0\"/>\
<w:r><w:t>, welcome &amp; enjoy.</w:t></w:r></w:p>\
<w:tbl><w:tr><w:tc><w:p><w:r><w:t xml:space=\"preserve\">Job: {{{{ job</w:t></w:r>\
<w:proofErr w:type=\"gramStart\"/><w:r><w:t>_id</w:t></w:r><w:r><w:t xml:space=\"preserve\"> }}}}</w:t></w:r></w:p>\
<w:p><w:r><w:t>{{{{output}}}}</w:t></w:r></w:p></w:tc></w:tr></w:tbl>\
<w:p><w:bookmarkStart w:id=\"1\" w:name=\"out\"/><w:r><w:t>{{{{out</w:t></w:r><w:r><w:t>put}}}}</w:t></w:r><w:bookmarkEnd w:id=\"1\"/></w:p>\
<w:sectPr><w:headerReference w:type=\"default\" r:id=\"rIdH\"/><w:footerReference w:type=\"default\" r:id=\"rIdF\"/></w:sectPr>\
</w:body></w:document>"
    );
    let header = format!(
        "<w:hdr {NS}><w:p><w:r><w:t>{{</w:t></w:r><w:r><w:t>{{serv</w:t></w:r><w:proofErr w:type=\"spellStart\"/>\
<w:r><w:rPr><w:i/></w:rPr><w:t>ice_name</w:t></w:r><w:r><w:t>}}</w:t></w:r><w:r><w:t>}}</w:t></w:r></w:p></w:hdr>"
    );
    let footer = format!(
        "<w:ftr {NS}><w:p><w:r><w:t xml:space=\"preserve\">{{{{unknown_</w:t></w:r><w:r><w:t>thing}}}} at </w:t></w:r>\
<w:r><w:t>{{{{ generated_at :</w:t></w:r><w:r><w:t xml:space=\"preserve\"> when it was made }}}}</w:t></w:r></w:p></w:ftr>"
    );
    let rels = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
<Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">\
<Relationship Id=\"rIdH\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/header\" Target=\"header1.xml\"/>\
<Relationship Id=\"rIdF\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/footer\" Target=\"footer1.xml\"/>\
</Relationships>";
    zip_of(&[
        ("[Content_Types].xml", CONTENT_TYPES),
        ("_rels/.rels", PACKAGE_RELS),
        ("word/document.xml", &document),
        ("word/_rels/document.xml.rels", rels),
        ("word/header1.xml", &header),
        ("word/footer1.xml", &footer),
    ])
}

fn doc(markdown: &str) -> ExportDocument {
    let values: BTreeMap<String, String> = [
        ("customer", "ACME & <Sons>\nsecond line"),
        ("job_id", "J-42"),
        ("service_name", "Summarizer"),
        ("generated_at", "2026-01-02 10:00"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    ExportDocument {
        title: "Summarizer".into(),
        fields: vec![],
        values,
        markdown: markdown.into(),
    }
}

/// Joined text of every paragraph of a part.
fn paragraph_texts(part_xml: &str) -> Vec<String> {
    let mut toks = xml::parse("test", part_xml.as_bytes()).expect("well-formed XML");
    placeholders::normalize_text_slots(&mut toks);
    placeholders::paragraphs(&toks)
        .iter()
        .map(|p| p.text(&toks))
        .collect()
}

#[test]
fn finds_split_placeholders_with_hints_everywhere() {
    let info = inspect_template(&split_template()).expect("valid template");
    let expected = [
        ("customer", Some("the client")),
        ("job_id", None),
        ("output", None),
        ("service_name", None),
        ("unknown_thing", None),
        ("generated_at", Some("when it was made")),
    ];
    let expected: Vec<Placeholder> = expected
        .iter()
        .map(|(name, hint)| Placeholder {
            name: name.to_string(),
            hint: hint.map(str::to_string),
        })
        .collect();
    assert_eq!(info.placeholders, expected);
}

#[test]
fn replaces_split_placeholders_in_body_cells_headers_and_footers() {
    let out = render_docx(&split_template(), &doc("Some **result** text.")).expect("renders");
    let parts = unzip(&out);
    for (name, text) in &parts {
        assert!(
            !text.contains("{{"),
            "{name} still has a placeholder: {text}"
        );
        assert!(
            !text.contains("}}"),
            "{name} still has a placeholder end: {text}"
        );
    }
    let document = part(&parts, "word/document.xml");
    let texts = paragraph_texts(document);
    assert_eq!(texts[0], "Dear ACME & <Sons>second line, welcome & enjoy.");
    assert!(document
        .contains("ACME &amp; &lt;Sons&gt;</w:t><w:br/><w:t xml:space=\"preserve\">second line"));
    assert!(texts.contains(&"Job: J-42".to_string()));
    // In a cell the output is plain text; the body paragraph became real paragraphs.
    assert!(texts.contains(&"Some result text.".to_string()));
    assert!(document.contains("<w:b/><w:bCs/></w:rPr><w:t xml:space=\"preserve\">result</w:t>"));
    // Bookmarks of the replaced paragraph are kept, the section properties too.
    assert_eq!(
        attr_values(document, "w:bookmarkStart", "w:name"),
        ["mark", "out"]
    );
    assert_eq!(attr_values(document, "w:bookmarkEnd", "w:id"), ["0", "1"]);
    assert!(document.contains("<w:sectPr>"));
    assert_eq!(
        paragraph_texts(part(&parts, "word/header1.xml")),
        ["Summarizer"]
    );
    assert_eq!(
        paragraph_texts(part(&parts, "word/footer1.xml")),
        [" at 2026-01-02 10:00"]
    );
    inspect_template(&out).expect("the output is a valid template");
}

const RICH: &str = "```markdown\n# Rapport annuel\n\nIntro with **bold**, *italic*, `code`, ~~old~~ and a [link](https://example.com/a?b=1&c=2) and [bad](javascript:alert(1)).\\\n\n## Détails\n\n- premier élément\n  - sous-élément imbriqué\n    1. numéro un\n    2. numéro deux\n- second élément\n\n1. étape une\n2. étape deux\n\n### Tableau\n\n| Nom | Valeur |\n|-----|--------|\n| Café | 3 € |\n| Thé | **4 €** |\n\n> Une citation célèbre.\n\n```\nfn main() {\n    println!(\"ça\");\n}\n```\n\n---\n\nFin du rapport.\n```";

/// Paragraph-level texts of the parsed markdown (what must reappear in the document).
fn expected_texts(blocks: &[Block], out: &mut Vec<String>) {
    for block in blocks {
        match block {
            Block::Heading { inlines, .. } | Block::Paragraph(inlines) => out.push(plain(inlines)),
            Block::List { items, .. } => {
                for item in items {
                    expected_texts(&item.blocks, out);
                }
            }
            Block::Table { header, rows } => {
                out.extend(header.iter().map(|c| plain(c)));
                out.extend(rows.iter().flatten().map(|c| plain(c)));
            }
            Block::Quote(inner) => expected_texts(inner, out),
            Block::Code(lines) => out.push(lines.concat()),
            Block::Rule => {}
        }
    }
}

/// Per paragraph of document.xml: (text, pStyle, numId).
fn paragraph_props(document: &str) -> Vec<(String, Option<String>, Option<String>)> {
    let mut toks = xml::parse("document", document.as_bytes()).expect("well-formed");
    placeholders::normalize_text_slots(&mut toks);
    placeholders::paragraphs(&toks)
        .iter()
        .map(|p| {
            let find = |name: &[u8]| {
                toks[p.start..=p.end].iter().find_map(|t| match t {
                    Tok::Empty(s) if tag_name(s) == name => xml::attr(s, "w:val"),
                    _ => None,
                })
            };
            (p.text(&toks), find(b"w:pStyle"), find(b"w:numId"))
        })
        .collect()
}

fn check_rich_render(template: &[u8]) {
    let out = render_docx(template, &doc(RICH)).expect("renders");
    let parts = unzip(&out);
    let document = part(&parts, "word/document.xml");
    let props = paragraph_props(document);
    let texts: Vec<&str> = props.iter().map(|(t, _, _)| t.as_str()).collect();
    assert!(
        !document.contains("{{output}}"),
        "output paragraph still there"
    );

    let mut expected = Vec::new();
    expected_texts(&markdown::parse(&markdown::preprocess(RICH)), &mut expected);
    assert!(expected.len() > 15);
    for text in &expected {
        assert!(
            texts.contains(&text.as_str()),
            "{text:?} missing from {texts:#?}"
        );
    }
    assert!(texts.iter().any(|t| t.contains("Café")));

    // Headings carry style ids defined in styles.xml.
    let style_ids = attr_values(part(&parts, "word/styles.xml"), "w:style", "w:styleId");
    for (heading, level) in [("Rapport annuel", 1), ("Détails", 2), ("Tableau", 3)] {
        let (_, style, _) = props
            .iter()
            .find(|(t, _, _)| t == heading)
            .expect("heading");
        let style = style.as_deref().expect("heading style");
        assert!(
            style_ids.iter().any(|s| s == style),
            "{style} not in styles.xml"
        );
        assert!(style.ends_with(&level.to_string()));
    }

    // List items carry numPr whose numId exists in numbering.xml; nesting sets ilvl.
    let num_ids = attr_values(part(&parts, "word/numbering.xml"), "w:num", "w:numId");
    for item in [
        "premier élément",
        "sous-élément imbriqué",
        "numéro deux",
        "étape une",
    ] {
        let (_, _, num) = props.iter().find(|(t, _, _)| t == item).expect("item");
        let num = num.as_deref().expect("list item has numId");
        assert!(num_ids.iter().any(|n| n == num), "numId {num} not defined");
    }
    let levels = attr_values(document, "w:ilvl", "w:val");
    assert!(
        levels.iter().any(|l| l == "2"),
        "nested level missing: {levels:?}"
    );

    // The http link is a hyperlink with a relationship; the javascript one is plain text.
    let rel_ids = attr_values(document, "w:hyperlink", "r:id");
    assert_eq!(rel_ids.len(), 1);
    let rels = part(&parts, "word/_rels/document.xml.rels");
    let targets = attr_values(rels, "Relationship", "Target");
    let ids = attr_values(rels, "Relationship", "Id");
    let index = ids
        .iter()
        .position(|i| *i == rel_ids[0])
        .expect("relationship");
    assert_eq!(targets[index], "https://example.com/a?b=1&c=2");
    assert!(!rels.contains("javascript"));

    // The numbering and styles parts are referenced and declared.
    let types = attr_values(rels, "Relationship", "Type");
    for kind in ["numbering", "styles"] {
        let rel_type =
            format!("http://schemas.openxmlformats.org/officeDocument/2006/relationships/{kind}");
        assert_eq!(
            types.iter().filter(|t| **t == rel_type).count(),
            1,
            "{kind} relationship"
        );
        let overrides = attr_values(part(&parts, "[Content_Types].xml"), "Override", "PartName");
        let name = format!("/word/{kind}.xml");
        assert_eq!(
            overrides.iter().filter(|p| **p == name).count(),
            1,
            "{kind} content type"
        );
    }

    // Formatting, table, code, numbering declared in the content types.
    assert!(document.contains("<w:tbl>") && document.contains("<w:tblBorders>"));
    assert!(document.contains("<w:strike/>") && document.contains("<w:i/>"));
    assert!(document.contains("w:ascii=\"Courier New\""));
    assert!(part(&parts, "[Content_Types].xml").contains("/word/numbering.xml"));
    inspect_template(&out).expect("the output is a valid template");
}

#[test]
fn renders_markdown_as_word_structure_into_a_bare_template() {
    // No styles.xml, numbering.xml or hyperlinks yet: all get created.
    check_rich_render(&split_template());
}

#[test]
fn renders_markdown_into_the_builtin_template() {
    let info = inspect_template(builtin_template()).expect("built-in template is valid");
    let names: Vec<&str> = info.placeholders.iter().map(|p| p.name.as_str()).collect();
    for standard in crate::documents::STANDARD_PLACEHOLDERS {
        assert!(
            names.contains(&standard),
            "{standard} missing from the built-in template"
        );
    }
    check_rich_render(builtin_template());
    // Heading styles come from the template itself (none added).
    let out = render_docx(builtin_template(), &doc(RICH)).expect("renders");
    let styles = part(&unzip(&out), "word/styles.xml").to_string();
    let original = part(&unzip(builtin_template()), "word/styles.xml").to_string();
    assert_eq!(styles, original);
}

#[test]
fn rejects_bad_templates_with_named_errors() {
    let not_zip = inspect_template(b"hello, not a zip").unwrap_err();
    assert!(matches!(not_zip, DocumentError::NotADocx(_)), "{not_zip}");
    assert!(not_zip.to_string().starts_with("not a .docx file"));

    let no_document = inspect_template(&zip_of(&[("hello.txt", "hi")])).unwrap_err();
    assert!(
        matches!(no_document, DocumentError::MissingPart(_)),
        "{no_document}"
    );
    assert!(no_document
        .to_string()
        .contains("word/document.xml missing"));

    for broken in [
        "<w:document><w:body>",
        "<a></b>",
        "not xml at all",
        "<a>&bogus;</a>",
    ] {
        let err = inspect_template(&zip_of(&[("word/document.xml", broken)])).unwrap_err();
        assert!(
            matches!(&err, DocumentError::InvalidXml { part, .. } if part == "word/document.xml"),
            "{broken}: {err}"
        );
    }
    let broken_header = zip_of(&[
        ("word/document.xml", "<w:document/>"),
        ("word/header1.xml", "<w:hdr>"),
    ]);
    let err = render_docx(&broken_header, &doc("x")).unwrap_err();
    assert!(err.to_string().contains("word/header1.xml"), "{err}");

    let oversized = vec![0u8; crate::documents::MAX_TEMPLATE_BYTES + 1];
    let err = inspect_template(&oversized).unwrap_err();
    assert!(matches!(err, DocumentError::TooLarge { .. }), "{err}");
}

#[test]
fn rejects_zip_bombs() {
    // 51 MB of spaces compress to a few dozen KB.
    let bomb = " ".repeat(51 * 1024 * 1024);
    let zip = zip_of(&[
        ("word/document.xml", "<w:document/>"),
        ("word/media/x.xml", &bomb),
    ]);
    assert!(zip.len() < 1024 * 1024);
    let err = inspect_template(&zip).unwrap_err();
    assert!(matches!(err, DocumentError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("uncompressed"));
}

#[test]
fn inline_output_is_plain_text_and_section_breaks_survive() {
    let document = format!(
        "<w:document {NS}><w:body>\
<w:p><w:r><w:t xml:space=\"preserve\">Intro {{{{output}}}} end</w:t></w:r></w:p>\
<w:p><w:pPr><w:sectPr><w:pgSz w:w=\"11906\" w:h=\"16838\"/></w:sectPr></w:pPr><w:r><w:t>{{{{output}}}}</w:t></w:r></w:p>\
</w:body></w:document>"
    );
    let template = zip_of(&[("word/document.xml", &document)]);
    let out = render_docx(&template, &doc("# Head\n\nBody *text*")).expect("renders");
    let parts = unzip(&out);
    let document = part(&parts, "word/document.xml");
    let props = paragraph_props(document);
    let texts: Vec<&str> = props.iter().map(|(t, _, _)| t.as_str()).collect();
    // Inline: the plain text, its lines separated by breaks.
    assert_eq!(texts, ["Intro HeadBody text end", "Head", "Body text", ""]);
    assert!(document.contains("Intro Head</w:t><w:br/>"));
    assert!(document.contains("<w:br/><w:t xml:space=\"preserve\">Body text end"));
    assert_eq!(props[1].1.as_deref(), Some("Heading1"));
    assert_eq!(document.matches("<w:sectPr>").count(), 1);
    assert!(document.contains("<w:pgSz w:w=\"11906\""));
    // A template without content types or relationships still gets its styles linked.
    let rels = part(&parts, "word/_rels/document.xml.rels");
    assert!(rels.contains("relationships/styles"));
}

#[test]
fn lines_of_a_paragraph_stay_lines_in_every_format() {
    let markdown = "• first point\n• second point";
    let docx = render_docx(builtin_template(), &doc(markdown)).expect("rendered");
    let parts = unzip(&docx);
    let document = part(&parts, "word/document.xml");
    let at = document.find("first point").expect("first line");
    let between = &document[at..document.find("second point").expect("second line")];
    assert!(
        between.contains("<w:br/>"),
        "a line break, not a space: {between}"
    );
    let html = crate::documents::render_html(&doc(markdown));
    assert!(html.contains("first point<br />"), "{html}");
}
