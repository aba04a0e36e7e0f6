//! Builds the built-in report template `seeds/templates/basic-report.docx` with docx-rs:
//! a Title `{{service_name}}`, a metadata table, the body paragraph `{{output}}`, a footer
//! with `{{service_name}}` and the page number; heading, quote and title styles.
//!
//! `cargo run -p gateway-core --example build_default_template --features documents`

use docx_rs::{
    AlignmentType, BorderType, Docx, Footer, LineSpacing, NumPages, PageMargin, PageNum, Paragraph,
    Run, RunFonts, Shading, Style, StyleType, Table, TableBorder, TableBorderPosition,
    TableBorders, TableCell, TableRow, WidthType,
};

const FONT: &str = "Arial";
const ACCENT: &str = "1F3864";
/// A4 text width in twips with 2 cm margins.
const TEXT_WIDTH: usize = 11_906 - 2 * 1_134;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../seeds/templates/basic-report.docx");
    let mut docx = Docx::new()
        .page_size(11_906, 16_838)
        .page_margin(
            PageMargin::new()
                .top(1_134)
                .bottom(1_134)
                .left(1_134)
                .right(1_134)
                .header(567)
                .footer(567),
        )
        .default_fonts(RunFonts::new().ascii(FONT).hi_ansi(FONT).cs(FONT))
        .default_size(21)
        .default_line_spacing(LineSpacing::new().after(120).line(264))
        .add_style(
            Style::new("Title", StyleType::Paragraph)
                .name("Title")
                .size(48)
                .bold()
                .color(ACCENT),
        )
        .add_style(
            Style::new("Quote", StyleType::Paragraph)
                .name("Quote")
                .italic()
                .color("555555")
                .indent(Some(567), None, None, None),
        );
    for (level, size) in [
        (1usize, 36usize),
        (2, 30),
        (3, 26),
        (4, 24),
        (5, 22),
        (6, 21),
    ] {
        docx = docx.add_style(
            Style::new(format!("Heading{level}"), StyleType::Paragraph)
                .name(format!("heading {level}"))
                .next("Normal")
                .q_format(true)
                .size(size)
                .bold()
                .color(ACCENT)
                .line_spacing(LineSpacing::new().before(240).after(80))
                .outline_lvl(level - 1),
        );
    }

    let title = Paragraph::new()
        .style("Title")
        .add_run(Run::new().add_text("{{service_name}}"));
    let rows = [
        ("Job", "{{job_id}}"),
        ("Date", "{{job_date}}"),
        ("Flavor", "{{flavor_name}}"),
        ("Organization", "{{organization_name}}"),
        ("Generated", "{{generated_at}}"),
    ];
    let label_width = 2_400;
    let rows = rows
        .iter()
        .map(|(label, value)| {
            TableRow::new(vec![
                TableCell::new()
                    .width(label_width, WidthType::Dxa)
                    .shading(Shading::new().fill("F2F2F2"))
                    .add_paragraph(Paragraph::new().add_run(Run::new().add_text(*label).bold())),
                TableCell::new()
                    .width(TEXT_WIDTH - label_width, WidthType::Dxa)
                    .add_paragraph(Paragraph::new().add_run(Run::new().add_text(*value))),
            ])
        })
        .collect();
    let mut borders = TableBorders::new();
    for position in [
        TableBorderPosition::Top,
        TableBorderPosition::Left,
        TableBorderPosition::Bottom,
        TableBorderPosition::Right,
        TableBorderPosition::InsideH,
        TableBorderPosition::InsideV,
    ] {
        borders = borders.set(
            TableBorder::new(position)
                .border_type(BorderType::Single)
                .size(4)
                .color("BFBFBF"),
        );
    }
    let table = Table::new(rows)
        .set_grid(vec![label_width, TEXT_WIDTH - label_width])
        .width(TEXT_WIDTH, WidthType::Dxa)
        .set_borders(borders);

    let footer = Footer::new().add_paragraph(
        Paragraph::new()
            .align(AlignmentType::Center)
            .add_run(
                Run::new()
                    .add_text("{{service_name}} · Page ")
                    .size(16)
                    .color("777777"),
            )
            .add_page_num(PageNum::new())
            .add_run(Run::new().add_text(" of ").size(16).color("777777"))
            .add_num_pages(NumPages::new()),
    );

    let file = std::fs::File::create(&path)?;
    docx.add_paragraph(title)
        .add_table(table)
        .add_paragraph(Paragraph::new())
        .add_paragraph(Paragraph::new().add_run(Run::new().add_text("{{output}}")))
        .footer(footer)
        .build()
        .pack(file)?;
    println!("wrote {}", path.display());
    Ok(())
}
