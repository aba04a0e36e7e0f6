//! `llmgw run`: submit a document, follow the job, print its result.

use serde_json::Value;

use crate::cli::RunArgs;
use crate::client::ApiClient;
use crate::error::{CliError, CliResult};
use crate::files;
use crate::follow;
use crate::output::Output;
use crate::progress::{thousands, Bar};
use crate::services;
use crate::submit;

/// Runs `llmgw run`.
pub async fn run(
    client: &ApiClient,
    ws: Option<&str>,
    out: &Output,
    args: &RunArgs,
) -> CliResult<()> {
    let text = files::read_input(&args.input)?;
    let service_id = services::resolve(client, &args.service).await?;
    let document = submit::stage(client, text).await?;
    let mut body = submit::execute_body(document, args.flavor.as_deref(), client.org());
    if args.no_cache {
        body["cache"] = Value::Bool(false);
    }
    let accepted = submit::execute(client, &service_id, &body).await?;
    let job_id = accepted
        .get("job_id")
        .and_then(Value::as_str)
        .ok_or_else(|| CliError::Protocol("the execute answer has no job_id".into()))?
        .to_string();

    let bar = Bar::new();
    bar.note(&accepted_line(&accepted, &job_id));
    let job = follow::follow(client, ws, &job_id, &bar).await?;

    if out.json {
        out.json_value(&job)?;
    }
    match job.get("status").and_then(Value::as_str) {
        Some("completed") => {
            if !out.json || args.output.is_some() {
                let result = result_bytes(client, &job).await?;
                files::write_output(args.output.as_deref(), &with_newline(result))?;
                if let Some(path) = &args.output {
                    bar.note(&format!("result written to {}", path.display()));
                }
            }
            Ok(())
        }
        status => Err(failure(&job_id, status.unwrap_or("unknown"), &job)),
    }
}

/// `job J queued: 1,234 input tokens, 40 turns, about 4 batches (iterative)`.
pub fn accepted_line(accepted: &Value, job_id: &str) -> String {
    let number = |key: &str| accepted.get(key).and_then(Value::as_u64);
    let mut line = format!(
        "job {job_id} {}",
        accepted
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("submitted")
    );
    let mut figures = Vec::new();
    if let Some(tokens) = number("input_tokens") {
        figures.push(format!("{} input tokens", thousands(tokens)));
    }
    if let Some(turns) = number("total_turns") {
        figures.push(format!("{turns} turns"));
    }
    if let Some(batches) = number("estimated_batches") {
        figures.push(format!("about {batches} batches"));
    }
    if accepted.get("planning").and_then(Value::as_str) == Some("first_step") {
        figures.push("the input is counted and cut by the job's first step".to_string());
    }
    if !figures.is_empty() {
        line.push_str(": ");
        line.push_str(&figures.join(", "));
    }
    if let Some(flavor) = accepted.get("flavor_name").and_then(Value::as_str) {
        line.push_str(&format!(" ({flavor})"));
    }
    line
}

/// The job's result: `result.output`, or the file behind `result.url` (large results).
pub async fn result_bytes(client: &ApiClient, job: &Value) -> CliResult<Vec<u8>> {
    let result = job.get("result").unwrap_or(&Value::Null);
    if let Some(output) = result.get("output").and_then(Value::as_str) {
        return Ok(output.as_bytes().to_vec());
    }
    if let Some(url) = result.get("url").and_then(Value::as_str) {
        return client.download(url).await;
    }
    Err(CliError::Protocol(
        "the completed job has neither result.output nor result.url".into(),
    ))
}

fn with_newline(mut bytes: Vec<u8>) -> Vec<u8> {
    if !bytes.ends_with(b"\n") {
        bytes.push(b'\n');
    }
    bytes
}

/// The error of a job that ended without a result.
pub fn failure(job_id: &str, status: &str, job: &Value) -> CliError {
    let text = |key: &str| job.get(key).and_then(Value::as_str).map(str::to_string);
    let reason = match (text("error_code"), text("error")) {
        (Some(code), Some(message)) => Some(format!("{code}: {message}")),
        (code, message) => code.or(message),
    };
    CliError::JobFailed {
        job_id: job_id.to_string(),
        status: status.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_accepted_line_gives_the_figures() {
        let accepted = json!({"job_id": "j1", "status": "queued", "input_tokens": 12345,
                              "total_turns": 40, "estimated_batches": 4, "flavor_name": "iterative"});
        assert_eq!(
            accepted_line(&accepted, "j1"),
            "job j1 queued: 12,345 input tokens, 40 turns, about 4 batches (iterative)"
        );
        assert_eq!(accepted_line(&json!({}), "j2"), "job j2 submitted");
    }

    #[test]
    fn a_failed_job_exits_1_with_its_error() {
        let job =
            json!({"status": "failed", "error_code": "LLM_UNAVAILABLE", "error": "provider down"});
        let error = failure("j1", "failed", &job);
        assert_eq!(error.exit_code(), 1);
        assert_eq!(
            error.to_string(),
            "job j1 failed: LLM_UNAVAILABLE: provider down"
        );
        let error = failure("j1", "cancelled", &json!({"status": "cancelled"}));
        assert_eq!(error.to_string(), "job j1 cancelled");
        assert_eq!(error.exit_code(), 1);
    }

    #[tokio::test]
    async fn an_inline_result_is_the_output() {
        let client = ApiClient::new(
            "http://127.0.0.1:9",
            None,
            crate::client::Deadline::after(None),
        )
        .unwrap();
        let job = json!({"status": "completed", "result": {"output": "# Summary"}});
        assert_eq!(result_bytes(&client, &job).await.unwrap(), b"# Summary");
        let error = result_bytes(&client, &json!({"result": null}))
            .await
            .unwrap_err();
        assert_eq!(error.exit_code(), 3);
    }

    #[test]
    fn an_input_planned_by_the_first_step_says_so() {
        let accepted = serde_json::json!({"status": "queued", "input_tokens": null,
            "total_turns": null, "estimated_batches": null, "planning": "first_step",
            "flavor_name": "iterative"});
        assert_eq!(
            accepted_line(&accepted, "j2"),
            "job j2 queued: the input is counted and cut by the job's first step (iterative)"
        );
    }
}
