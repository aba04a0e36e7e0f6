//! Document export benchmark: a ~50-page result rendered as DOCX (built-in template) and
//! PDF; median wall time of several runs, output sizes, peak RSS (a re-executed child per
//! measurement reads its `VmHWM`), and the LibreOffice baseline (`soffice --headless
//! --convert-to pdf` of the same DOCX).
//!
//! `cargo bench -p gateway-core --features documents --bench export`
//! Outputs are left in `$TMPDIR/gateway-export-bench/`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use gateway_core::documents::{builtin_template, render_docx, render_pdf, ExportDocument};

const CHILD: &str = "EXPORT_BENCH_CHILD";

fn main() {
    if let Ok(what) = std::env::var(CHILD) {
        child(&what);
        return;
    }
    let doc = sample();
    let dir = std::env::temp_dir().join("gateway-export-bench");
    std::fs::create_dir_all(&dir).expect("bench dir");
    println!(
        "input: {} KB markdown, {} lines",
        doc.markdown.len() / 1024,
        doc.markdown.lines().count()
    );

    let (docx_ms, docx) = median(7, || render_docx(builtin_template(), &doc).expect("docx"));
    let (pdf_ms, pdf) = median(5, || render_pdf(&doc).expect("pdf"));
    std::fs::write(dir.join("sample.docx"), &docx).expect("write docx");
    std::fs::write(dir.join("sample.pdf"), &pdf).expect("write pdf");
    println!("docx: {docx_ms:.1} ms median, {} KB", docx.len() / 1024);
    println!(
        "pdf:  {pdf_ms:.1} ms median, {} KB, {} pages",
        pdf.len() / 1024,
        page_count(&dir.join("sample.pdf")).map_or("?".to_string(), |n| n.to_string())
    );
    println!("docx + pdf: {:.1} ms", docx_ms + pdf_ms);

    for what in ["none", "docx", "pdf", "both"] {
        match peak_rss_of_child(what) {
            Some(kb) => println!("peak RSS ({what:>4}): {:.1} MB", kb as f64 / 1024.0),
            None => println!("peak RSS ({what:>4}): unavailable"),
        }
    }

    match soffice(&dir) {
        Some((cold, warm)) => {
            println!(
                "baseline soffice --convert-to pdf: {:.0} ms cold, {:.0} ms warm",
                ms(cold),
                ms(warm)
            );
            println!(
                "ratio soffice(warm) / ours: {:.1}x vs pdf, {:.1}x vs docx + pdf",
                ms(warm) / pdf_ms,
                ms(warm) / (docx_ms + pdf_ms)
            );
        }
        None => {
            println!("baseline: soffice not available (apt-get install libreoffice-writer-nogui)")
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median wall time in ms of `runs` calls, and the last output.
fn median(runs: usize, mut f: impl FnMut() -> Vec<u8>) -> (f64, Vec<u8>) {
    let mut times = Vec::with_capacity(runs);
    let mut out = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        out = f();
        times.push(ms(started.elapsed()));
    }
    times.sort_by(f64::total_cmp);
    (times[runs / 2], out)
}

/// Child mode: render once and print the peak resident set size in kB.
fn child(what: &str) {
    let doc = sample();
    if matches!(what, "docx" | "both") {
        std::hint::black_box(render_docx(builtin_template(), &doc).expect("docx"));
    }
    if matches!(what, "pdf" | "both") {
        std::hint::black_box(render_pdf(&doc).expect("pdf"));
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    println!("{peak}");
}

fn peak_rss_of_child(what: &str) -> Option<u64> {
    let exe = std::env::current_exe().ok()?;
    let output = Command::new(exe).env(CHILD, what).output().ok()?;
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

fn page_count(pdf: &Path) -> Option<usize> {
    let output = Command::new("pdfinfo").arg(pdf).output().ok()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Cold and warm wall time of converting the DOCX with LibreOffice.
fn soffice(dir: &Path) -> Option<(Duration, Duration)> {
    let profile = dir.join("lo-profile");
    let run = || -> Option<Duration> {
        let started = Instant::now();
        let status = Command::new("soffice")
            .arg(format!(
                "-env:UserInstallation=file://{}",
                profile.display()
            ))
            .args(["--headless", "--convert-to", "pdf", "--outdir"])
            .arg(dir.join("soffice"))
            .arg(dir.join("sample.docx"))
            .output()
            .ok()?;
        status.status.success().then(|| started.elapsed())
    };
    let cold = run()?;
    let warm = run()?;
    Some((cold, warm))
}

/// A report of about 50 pages: headings, paragraphs, nested lists, tables, quotes, code.
fn sample() -> ExportDocument {
    let mut md = String::from("# Rapport d'analyse détaillé\n\n");
    for section in 1..=62 {
        md.push_str(&format!("## Section {section} : résultats et synthèse\n\n"));
        for p in 0..3 {
            md.push_str(&format!(
                "Paragraphe {p} de la section {section}. L'équipe a analysé les données \
                 **déterminantes** du trimestre, avec une attention particulière à la \
                 *qualité* des mesures, aux coûts de `traitement` et à la fiabilité des \
                 prévisions. Les écarts observés restent modérés ; voir \
                 [la référence](https://example.com/ref/{section}). Ça coûte 12,5 € par \
                 unité, soit une hausse de 3 % — naïveté, Größe, Привет, Καλημέρα.\n\n"
            ));
        }
        md.push_str("### Points clés\n\n");
        md.push_str(
            "- Première observation importante\n  - détail imbriqué numéro un\n  \
             - détail imbriqué numéro deux\n    1. sous-étape a\n    2. sous-étape b\n\
             - Deuxième observation\n- Troisième observation avec un texte un peu plus long \
             qui doit revenir à la ligne dans le rendu final du document\n\n",
        );
        md.push_str("| Indicateur | Valeur | Évolution | Commentaire |\n|---|---:|---|---|\n");
        for row in 0..5 {
            md.push_str(&format!(
                "| Mesure {row} | {} | +{row},5 % | Stable, conforme aux prévisions |\n",
                row * 137 + section
            ));
        }
        md.push('\n');
        if section % 4 == 0 {
            md.push_str(
                "> Une citation qui résume la section : « la mesure précède l'action ».\n\n",
            );
            md.push_str("```\nfn main() {\n    println!(\"résultat\");\n}\n```\n\n");
        }
    }
    let values: BTreeMap<String, String> = [
        ("service_name", "Analyse de rapports"),
        ("job_id", "job-2026-0042"),
        ("job_date", "2026-03-14"),
        ("flavor_name", "Précis"),
        ("organization_name", "Société Exemple"),
        ("generated_at", "2026-03-14 10:32 UTC"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    ExportDocument {
        title: "Analyse de rapports".into(),
        fields: vec![
            ("Job".into(), "job-2026-0042".into()),
            ("Date".into(), "2026-03-14".into()),
            ("Flavor".into(), "Précis".into()),
            ("Organization".into(), "Société Exemple".into()),
        ],
        values,
        markdown: md,
    }
}
