//! Local files: reading the input document, writing results and exports, and file names
//! from `Content-Disposition`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{CliError, CliResult};

/// Reads the document to process: a file, or stdin for `-`.
pub fn read_input(source: &str) -> CliResult<String> {
    let bytes = if source == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| CliError::io("stdin", e))?;
        bytes
    } else {
        std::fs::read(source).map_err(|e| CliError::io(source, e))?
    };
    let name = if source == "-" { "stdin" } else { source };
    let text =
        String::from_utf8(bytes).map_err(|_| CliError::Usage(format!("{name}: not UTF-8 text")))?;
    if text.trim().is_empty() {
        return Err(CliError::Usage(format!("{name}: the document is empty")));
    }
    Ok(text)
}

/// Writes `bytes` to `path`, or to stdout when `path` is `None` or `-`.
pub fn write_output(path: Option<&Path>, bytes: &[u8]) -> CliResult<()> {
    match path {
        Some(path) if path != Path::new("-") => {
            std::fs::write(path, bytes).map_err(|e| CliError::io(path.display().to_string(), e))
        }
        _ => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(bytes)
                .and_then(|()| stdout.flush())
                .map_err(|e| CliError::io("stdout", e))
        }
    }
}

/// The file name of a `Content-Disposition` value (`filename*=UTF-8''...` preferred over
/// `filename="..."`), reduced to a safe base name.
pub fn disposition_file_name(value: &str) -> Option<String> {
    let mut plain = None;
    let mut extended = None;
    for part in value.split(';').map(str::trim) {
        let Some((key, raw)) = part.split_once('=') else {
            continue;
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "filename" => plain = Some(raw.trim().trim_matches('"').to_string()),
            "filename*" => {
                let raw = raw.trim();
                let encoded = raw.splitn(3, '\'').nth(2).unwrap_or(raw);
                extended = Some(percent_decode(encoded));
            }
            _ => {}
        }
    }
    extended.or(plain).and_then(|name| safe_file_name(&name))
}

/// A base name that cannot leave the current directory: no separators, not `.`/`..`, no
/// control characters.
pub fn safe_file_name(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let base: String = base.chars().filter(|c| !c.is_control()).collect();
    let base = base.trim();
    if base.is_empty() || base == "." || base == ".." {
        return None;
    }
    Some(base.to_string())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where an export goes: `-o`, else the gateway's file name, else `{job}.{ext}`.
pub fn export_path(output: Option<&Path>, offered: Option<&str>, job: &str, ext: &str) -> PathBuf {
    if let Some(path) = output {
        return path.to_path_buf();
    }
    offered
        .and_then(safe_file_name)
        .or_else(|| safe_file_name(&format!("{job}.{ext}")))
        .map_or_else(|| PathBuf::from(format!("export.{ext}")), PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_from_content_disposition() {
        assert_eq!(
            disposition_file_name(r#"attachment; filename="summarize_abc.pdf""#).as_deref(),
            Some("summarize_abc.pdf")
        );
        assert_eq!(
            disposition_file_name("attachment; filename=plain.docx").as_deref(),
            Some("plain.docx")
        );
        assert_eq!(
            disposition_file_name(
                r#"attachment; filename="r.pdf"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"#
            )
            .as_deref(),
            Some("résumé.pdf")
        );
        // Never outside the current directory.
        assert_eq!(
            disposition_file_name(r#"attachment; filename="../../etc/passwd""#).as_deref(),
            Some("passwd")
        );
        assert_eq!(disposition_file_name(r#"attachment; filename="..""#), None);
        assert_eq!(disposition_file_name("inline"), None);
    }

    #[test]
    fn export_paths() {
        assert_eq!(
            export_path(Some(Path::new("f.pdf")), Some("x.pdf"), "j", "pdf"),
            PathBuf::from("f.pdf")
        );
        assert_eq!(
            export_path(None, Some("x.pdf"), "j", "pdf"),
            PathBuf::from("x.pdf")
        );
        assert_eq!(
            export_path(None, None, "j1", "html"),
            PathBuf::from("j1.html")
        );
    }

    #[test]
    fn inputs_must_exist_and_hold_text() {
        let missing = read_input("/nonexistent/llmgw-input.txt").unwrap_err();
        assert!(missing
            .to_string()
            .starts_with("/nonexistent/llmgw-input.txt: "));
        let dir = std::env::temp_dir().join(format!("llmgw-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.txt");
        std::fs::write(&empty, "  \n").unwrap();
        assert!(read_input(empty.to_str().unwrap())
            .unwrap_err()
            .to_string()
            .ends_with("the document is empty"));
        let text = dir.join("t.txt");
        std::fs::write(&text, "Alice: hi\n").unwrap();
        assert_eq!(read_input(text.to_str().unwrap()).unwrap(), "Alice: hi\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
