//! A .docx package: read from a zip with size limits, validated, written back.

use std::io::{Cursor, Read, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use super::DocumentError;

/// Largest accepted template, compressed: it arrives in a request body, so within
/// `engine::MAX_REQUEST_BODY_BYTES` (API Gateway base64-encodes it for Lambda).
pub const MAX_TEMPLATE_BYTES: usize = 4 * 1024 * 1024;
/// Largest accepted total of the template's uncompressed parts (zip bomb guard).
pub const MAX_UNCOMPRESSED_BYTES: u64 = 50 * 1024 * 1024;
/// Most parts accepted in one template.
const MAX_PARTS: usize = 5_000;

/// The main document part.
pub(crate) const DOCUMENT: &str = "word/document.xml";

/// The parts of a package, in archive order.
pub(crate) struct Package {
    parts: Vec<(String, Vec<u8>)>,
}

impl Package {
    /// Reads and validates a .docx: a zip within the limits holding `word/document.xml`.
    pub(crate) fn read(docx: &[u8]) -> Result<Self, DocumentError> {
        if docx.len() > MAX_TEMPLATE_BYTES {
            return Err(DocumentError::TooLarge {
                what: "the template file".to_string(),
                limit_mb: MAX_TEMPLATE_BYTES / (1024 * 1024),
            });
        }
        let mut archive = ZipArchive::new(Cursor::new(docx))
            .map_err(|e| DocumentError::NotADocx(e.to_string()))?;
        if archive.len() > MAX_PARTS {
            return Err(DocumentError::NotADocx(format!(
                "{} entries (at most {MAX_PARTS})",
                archive.len()
            )));
        }
        let too_large = || DocumentError::TooLarge {
            what: "the template's uncompressed content".to_string(),
            limit_mb: (MAX_UNCOMPRESSED_BYTES / (1024 * 1024)) as usize,
        };
        let mut total = 0u64;
        let mut parts = Vec::with_capacity(archive.len());
        for index in 0..archive.len() {
            let entry = archive
                .by_index(index)
                .map_err(|e| DocumentError::NotADocx(e.to_string()))?;
            if entry.is_dir() {
                continue;
            }
            let name = entry.name().to_string();
            if entry.size() > MAX_UNCOMPRESSED_BYTES - total {
                return Err(too_large());
            }
            // The declared size may lie: read at most one byte past the remaining budget.
            let mut bytes = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
            entry
                .take(MAX_UNCOMPRESSED_BYTES - total + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| DocumentError::NotADocx(format!("cannot read {name}: {e}")))?;
            total += bytes.len() as u64;
            if total > MAX_UNCOMPRESSED_BYTES {
                return Err(too_large());
            }
            parts.push((name, bytes));
        }
        let package = Self { parts };
        let document = package
            .get(DOCUMENT)
            .ok_or(DocumentError::MissingPart(DOCUMENT))?;
        super::xml::parse(DOCUMENT, document)?;
        Ok(package)
    }

    /// The bytes of a part.
    pub(crate) fn get(&self, name: &str) -> Option<&[u8]> {
        self.parts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
    }

    /// Names of all parts.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().map(|(n, _)| n.as_str())
    }

    /// Replaces a part, or adds it at the end.
    pub(crate) fn set(&mut self, name: &str, bytes: Vec<u8>) {
        match self.parts.iter_mut().find(|(n, _)| n == name) {
            Some((_, existing)) => *existing = bytes,
            None => self.parts.push((name.to_string(), bytes)),
        }
    }

    /// Writes the package as a zip.
    pub(crate) fn write(&self) -> Result<Vec<u8>, DocumentError> {
        let render = |e: &dyn std::fmt::Display| DocumentError::Render(e.to_string());
        let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(6));
        for (name, bytes) in &self.parts {
            zip.start_file(name.as_str(), options)
                .map_err(|e| render(&e))?;
            zip.write_all(bytes).map_err(|e| render(&e))?;
        }
        Ok(zip.finish().map_err(|e| render(&e))?.into_inner())
    }
}

/// Whether a part is a header or footer (`word/header1.xml`, `word/footer2.xml`, ...).
pub(crate) fn is_header_or_footer(name: &str) -> bool {
    name.strip_prefix("word/")
        .filter(|rest| !rest.contains('/'))
        .is_some_and(|rest| {
            (rest.starts_with("header") || rest.starts_with("footer")) && rest.ends_with(".xml")
        })
}
