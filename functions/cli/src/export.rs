//! `llmgw export`: a completed job's result as DOCX, PDF or HTML.

use std::path::Path;

use serde_json::{json, Value};

use crate::cli::ExportArgs;
use crate::client::ApiClient;
use crate::error::{CliError, CliResult};
use crate::files;
use crate::follow::segment;
use crate::output::Output;

/// The query of an export request.
pub fn query(args: &ExportArgs) -> Vec<(&'static str, String)> {
    vec![
        ("template_id", args.template.clone().unwrap_or_default()),
        (
            "version_number",
            args.version.map(|v| v.to_string()).unwrap_or_default(),
        ),
        ("timezone", args.timezone.clone().unwrap_or_default()),
    ]
}

/// Runs `llmgw export`: saves the file the API answers, or the one behind its
/// `{url, file_name}` answer (large files).
pub async fn run(client: &ApiClient, out: &Output, args: &ExportArgs) -> CliResult<()> {
    let ext = args.format.as_str();
    let path = format!("/api/v1/jobs/{}/export/{ext}", segment(&args.job));
    let answer = client.get_file_or_json(&path, &query(args)).await?;
    let (bytes, offered, link) = match answer {
        Err(download) => (download.bytes, download.file_name, None),
        Ok(link) => {
            let url = link
                .get("url")
                .and_then(Value::as_str)
                .ok_or_else(|| CliError::Protocol("the export answer has no url".into()))?;
            let bytes = client.download(url).await?;
            let name = link
                .get("file_name")
                .and_then(Value::as_str)
                .map(str::to_string);
            (bytes, name, Some(link))
        }
    };
    let target = files::export_path(args.output.as_deref(), offered.as_deref(), &args.job, ext);
    files::write_output(Some(&target), &bytes)?;
    let to_stdout = target == Path::new("-");
    if out.json && !to_stdout {
        let mut report = link.unwrap_or_else(|| json!({}));
        report["saved_to"] = json!(target.display().to_string());
        report["bytes"] = json!(bytes.len());
        out.json_value(&report)
    } else {
        if !to_stdout {
            eprintln!("saved {} ({} bytes)", target.display(), bytes.len());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Format;

    #[test]
    fn only_given_options_are_sent() {
        let mut args = ExportArgs {
            job: "j".into(),
            format: Format::Pdf,
            output: None,
            template: None,
            version: Some(2),
            timezone: Some("Europe/Paris".into()),
        };
        let sent: Vec<_> = query(&args)
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect();
        assert_eq!(
            sent,
            [
                ("version_number", "2".to_string()),
                ("timezone", "Europe/Paris".to_string())
            ]
        );
        args.template = Some("t1".into());
        assert_eq!(query(&args)[0], ("template_id", "t1".to_string()));
    }
}
