//! Document export (feature `documents`): a job result rendered as DOCX from a Word
//! template, as PDF, or as a standalone HTML page.
//!
//! Markdown is parsed once into a small block model (`markdown`) that the DOCX and PDF
//! renderers share; HTML goes through pulldown-cmark's HTML writer with raw HTML escaped
//! and unsafe link schemes dropped.

mod docx;
mod docx_body;
mod html;
mod markdown;
mod pdf;
mod pdf_text;
mod placeholders;
mod template;
mod xml;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use template::{MAX_TEMPLATE_BYTES, MAX_UNCOMPRESSED_BYTES};

/// Placeholders every template may use; `output` is the job result.
pub use crate::postprocess::extraction::STANDARD_PLACEHOLDERS;

/// A `{{name}}` or `{{name: hint}}` placeholder found in a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    pub name: String,
    pub hint: Option<String>,
}

/// What a template contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateInfo {
    /// Unique by name, in document order (body, then headers and footers).
    pub placeholders: Vec<Placeholder>,
}

/// What gets rendered.
#[derive(Debug, Clone, Default)]
pub struct ExportDocument {
    /// Document title (e.g. the service name); PDF/HTML title.
    pub title: String,
    /// Metadata shown in the PDF/HTML header table, in order: (label, value).
    pub fields: Vec<(String, String)>,
    /// Placeholder name -> value (job_id, service_name, extracted metadata...); not `output`.
    pub values: BTreeMap<String, String>,
    /// The job result as markdown (the `{{output}}` content).
    pub markdown: String,
}

/// Why a template could not be read or a document not rendered.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("not a .docx file: {0}")]
    NotADocx(String),
    #[error("{what} is too large (limit {limit_mb} MB)")]
    TooLarge { what: String, limit_mb: usize },
    #[error("not a Word document: {0} missing")]
    MissingPart(&'static str),
    #[error("invalid XML in {part}: {detail}")]
    InvalidXml { part: String, detail: String },
    #[error("document could not be rendered: {0}")]
    Render(String),
}

/// Validates a template and lists its placeholders.
pub fn inspect_template(docx: &[u8]) -> Result<TemplateInfo, DocumentError> {
    docx::inspect(docx)
}

/// Renders a DOCX from a template: placeholders replaced (unknown ones removed), a body
/// paragraph holding only `{{output}}` replaced by the markdown as Word structure.
pub fn render_docx(template: &[u8], doc: &ExportDocument) -> Result<Vec<u8>, DocumentError> {
    docx::render(template, doc)
}

/// Renders an A4 PDF report (title, metadata table, the markdown).
pub fn render_pdf(doc: &ExportDocument) -> Result<Vec<u8>, DocumentError> {
    pdf::render(doc)
}

/// Renders a standalone HTML page; raw HTML in the markdown is shown as text.
pub fn render_html(doc: &ExportDocument) -> String {
    html::render(doc)
}

/// The built-in report template (`seeds/templates/basic-report.docx`).
pub fn builtin_template() -> &'static [u8] {
    include_bytes!("../../../seeds/templates/basic-report.docx")
}
