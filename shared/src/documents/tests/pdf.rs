use std::process::Command;
use std::time::{Duration, Instant};

use crate::documents::{render_pdf, ExportDocument};

/// Text of a PDF via `pdftotext` (poppler-utils), which CI installs: a missing tool fails
/// the test instead of skipping it.
fn pdftotext(pdf: &[u8]) -> String {
    let path = std::env::temp_dir().join(format!(
        "gateway-documents-{}-{}.pdf",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    std::fs::write(&path, pdf).expect("write temp pdf");
    let output = Command::new("pdftotext")
        .args(["-enc", "UTF-8"])
        .arg(&path)
        .arg("-")
        .output();
    let _ = std::fs::remove_file(&path);
    let output = output.unwrap_or_else(|e| {
        panic!("pdftotext could not run ({e}): install poppler-utils (apt-get install -y poppler-utils)")
    });
    assert!(
        output.status.success(),
        "pdftotext failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 text")
}

fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn doc(markdown: String) -> ExportDocument {
    ExportDocument {
        title: "Résumé — Сводка".into(),
        fields: vec![
            ("Job".into(), "job-123".into()),
            ("Organization".into(), "Société Générale".into()),
        ],
        markdown,
        ..Default::default()
    }
}

const LINES: &[&str] = &[
    "Crème brûlée à la façon de Noël",
    "Привет мир, это проверка",
    "Καλημέρα κόσμε και ευχαριστώ",
    "Größe Übermaß Ærø Łódź",
];

#[test]
fn pdf_text_includes_accents_cyrillic_and_greek() {
    let markdown = format!(
        "# Titre principal\n\n{}\n\n- {}\n  - {}\n\n1. {}\n\n| Colonne | Valeur |\n|---|---|\n| {} | 42 |\n\n> {}\n\n```\ncode ligne un\n```\n",
        LINES[0], LINES[1], LINES[2], LINES[3], LINES[0], LINES[2]
    );
    let pdf = render_pdf(&doc(markdown)).expect("renders");
    assert!(pdf.starts_with(b"%PDF-"));
    let text = squash(&pdftotext(&pdf));
    for expected in LINES
        .iter()
        .chain(&[
            "Titre principal",
            "code ligne un",
            "Colonne",
            "Valeur",
            "42",
        ])
        .chain(&[
            "Résumé — Сводка",
            "job-123",
            "Société Générale",
            "Page 1 of 1",
        ])
    {
        assert!(
            text.contains(expected),
            "{expected:?} missing from {text:?}"
        );
    }
}

#[test]
fn long_content_breaks_pages_with_numbers() {
    let mut markdown = String::new();
    for i in 0..150 {
        markdown.push_str(&format!("## Section {i}\n\nParagraph number {i} with enough words to fill a line or two of the page, café naïve.\n\n"));
    }
    let pdf = render_pdf(&doc(markdown)).expect("renders");
    let text = pdftotext(&pdf);
    let pages = text.matches("Page ").count();
    assert!(pages >= 5, "expected several pages: {pages}");
    let total = text
        .split("Page 1 of ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<usize>().ok())
        .expect("Page 1 of N");
    assert!(total >= 5);
    assert!(text.contains(&format!("Page {total} of {total}")));
    assert!(squash(&text).contains("Paragraph number 149 with enough words"));
}

#[test]
fn a_huge_word_is_broken_not_looped() {
    let word = "x".repeat(5000);
    let started = Instant::now();
    let pdf = render_pdf(&doc(format!(
        "{word}\n\n| {word} | b |\n|---|---|\n| c | d |\n\n- {word}\n"
    )))
    .expect("renders");
    assert!(started.elapsed() < Duration::from_secs(30));
    let text = pdftotext(&pdf);
    let xs: usize = text.chars().filter(|&c| c == 'x').count();
    assert!(xs >= 3 * 5000, "the word must be fully rendered: {xs}");
    assert!(
        text.lines().all(|l| l.chars().count() < 200),
        "a line overflows"
    );
}
