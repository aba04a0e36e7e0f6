//! `multipart/form-data` bodies (file uploads), decoded with `multer` from the bytes the
//! runtime delivered: text fields as strings, files with their name and bytes.

use std::collections::BTreeMap;

use crate::engine::error::{EngineError, EngineResult, Location};

/// An uploaded file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedFile {
    /// The file name the client gave (may be empty).
    pub file_name: String,
    pub content_type: Option<String>,
    pub bytes: Vec<u8>,
}

/// A decoded form: text fields (the last value of a repeated name wins) and files by
/// field name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    pub fields: BTreeMap<String, String>,
    pub files: BTreeMap<String, UploadedFile>,
}

impl Form {
    /// A text field, trimmed; None when absent or blank.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .map(|value| value.trim())
            .filter(|value| !value.is_empty())
    }
}

/// Decodes a `multipart/form-data` body declared with `content_type` (which carries the
/// boundary). A malformed body is a 422 naming the problem.
pub async fn parse_form(content_type: &str, body: &[u8]) -> EngineResult<Form> {
    let invalid = |problem: String| {
        EngineError::validation(Location::Body, "", format!("multipart body: {problem}"))
    };
    let boundary = multer::parse_boundary(content_type)
        .map_err(|error| invalid(format!("no usable boundary in Content-Type ({error})")))?;
    let bytes = bytes::Bytes::copy_from_slice(body);
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(bytes) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut form = Form::default();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|error| invalid(error.to_string()))?
    {
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field.file_name().map(str::to_string);
        let content_type = field.content_type().map(|mime| mime.to_string());
        let data = field
            .bytes()
            .await
            .map_err(|error| invalid(format!("field '{name}': {error}")))?;
        match file_name {
            Some(file_name) => {
                form.files.insert(
                    name,
                    UploadedFile {
                        file_name,
                        content_type,
                        bytes: data.to_vec(),
                    },
                );
            }
            None => {
                let text = String::from_utf8(data.to_vec()).map_err(|_| {
                    EngineError::validation(Location::Body, &name, "must be UTF-8 text")
                })?;
                form.fields.insert(name, text);
            }
        }
    }
    Ok(form)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A multipart body with the boundary `B`.
    pub fn body(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (name, file_name, data) in parts {
            body.extend_from_slice(b"--B\r\n");
            match file_name {
                Some(file) => body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
                ),
                None => body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                ),
            }
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--B--\r\n");
        body
    }

    #[tokio::test]
    async fn fields_and_files_are_decoded() {
        let raw = body(&[
            ("name_fr", None, "Compte rendu".as_bytes()),
            ("file", Some("t.docx"), &[0x50, 0x4b, 0x03, 0x04, 0xff]),
            ("is_default", None, b" true "),
        ]);
        let form = parse_form("multipart/form-data; boundary=B", &raw)
            .await
            .unwrap();
        assert_eq!(form.text("name_fr"), Some("Compte rendu"));
        assert_eq!(form.text("is_default"), Some("true"));
        assert_eq!(form.text("absent"), None);
        let file = &form.files["file"];
        assert_eq!(file.file_name, "t.docx");
        assert_eq!(file.bytes, [0x50, 0x4b, 0x03, 0x04, 0xff]);
    }

    #[tokio::test]
    async fn malformed_bodies_are_422s() {
        for (content_type, raw) in [
            ("multipart/form-data", b"--B\r\n".to_vec()),
            ("multipart/form-data; boundary=B", b"garbage".to_vec()),
            (
                "multipart/form-data; boundary=B",
                b"--B\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n\xff\xfe\r\n--B--\r\n"
                    .to_vec(),
            ),
        ] {
            let error = parse_form(content_type, &raw).await.unwrap_err();
            assert_eq!(error.status(), 422, "{content_type} {raw:?}: {error}");
        }
    }
}
