//! Tests of the document renderers against real parsers: zip + XML for DOCX, `pdftotext`
//! (poppler-utils) for PDF.

mod docx;
mod pdf;

use std::io::{Cursor, Read, Write};

use zip::write::SimpleFileOptions;
use zip::{ZipArchive, ZipWriter};

use super::xml::{self, Tok};

/// A zip of the given parts.
pub(super) fn zip_of(parts: &[(&str, &str)]) -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, content) in parts {
        zip.start_file(*name, SimpleFileOptions::default())
            .expect("start file");
        zip.write_all(content.as_bytes()).expect("write");
    }
    zip.finish().expect("finish").into_inner()
}

/// All parts of a zip, by name.
pub(super) fn unzip(bytes: &[u8]) -> Vec<(String, String)> {
    let mut archive = ZipArchive::new(Cursor::new(bytes)).expect("output is a zip");
    (0..archive.len())
        .map(|i| {
            let mut entry = archive.by_index(i).expect("entry");
            let mut text = String::new();
            entry.read_to_string(&mut text).expect("utf-8 part");
            (entry.name().to_string(), text)
        })
        .collect()
}

/// The named part of unzipped parts.
pub(super) fn part<'a>(parts: &'a [(String, String)], name: &str) -> &'a str {
    parts
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t.as_str())
        .unwrap_or_else(|| panic!("{name} missing"))
}

/// Values of an attribute on every element with this name.
pub(super) fn attr_values(part_xml: &str, element: &str, attribute: &str) -> Vec<String> {
    xml::parse("test", part_xml.as_bytes())
        .expect("well-formed XML")
        .iter()
        .filter_map(|t| match t {
            Tok::Start(s) | Tok::Empty(s) if xml::tag_name(s) == element.as_bytes() => {
                xml::attr(s, attribute)
            }
            _ => None,
        })
        .collect()
}

mod properties {
    use proptest::prelude::*;

    use crate::documents::{
        builtin_template, render_docx, render_html, render_pdf, ExportDocument,
    };

    /// Markdown-ish text: structure characters, accents, control characters, long words.
    fn markdownish() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("# ".to_string()),
            Just("\n".to_string()),
            Just("\n\n".to_string()),
            Just("- ".to_string()),
            Just("  1. ".to_string()),
            Just("> ".to_string()),
            Just("```".to_string()),
            Just("| a | b |\n|---|---|\n| c |".to_string()),
            Just("**".to_string()),
            Just("_".to_string()),
            Just("`".to_string()),
            Just("~~".to_string()),
            Just("[x](javascript:y)".to_string()),
            Just("<b>{{output}}</b>".to_string()),
            Just("\\".to_string()),
            Just("\u{0}\u{b}\u{feff}".to_string()),
            "[a-zA-Zéжλ中 ]{0,12}",
            "x{0,300}",
        ];
        prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn renderers_accept_any_markdown(markdown in markdownish(), title in "\\PC{0,20}") {
            let doc = ExportDocument {
                title,
                fields: vec![("Job".into(), "<&>".into())],
                markdown,
                ..Default::default()
            };
            let docx = render_docx(builtin_template(), &doc).expect("docx renders");
            for (name, text) in super::unzip(&docx) {
                if name.ends_with(".xml") || name.ends_with(".rels") {
                    prop_assert!(super::xml::parse(&name, text.as_bytes()).is_ok(), "{name}");
                }
            }
            let pdf = render_pdf(&doc).expect("pdf renders");
            prop_assert!(pdf.starts_with(b"%PDF-"));
            let html = render_html(&doc);
            prop_assert!(!html.to_ascii_lowercase().contains("href=\"javascript"));
        }
    }
}
