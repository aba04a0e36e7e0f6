//! `llmgw jobs list|get|cancel|delete`.

use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::JobsCommand;
use crate::client::ApiClient;
use crate::error::{CliError, CliResult};
use crate::follow::{get_job, segment};
use crate::output::Output;
use crate::progress::{thousands, Snapshot};
use crate::table;

/// Largest page of the jobs list.
const MAX_PAGE_SIZE: u64 = 100;

/// Runs a `jobs` subcommand.
pub async fn run(client: &ApiClient, out: &Output, command: &JobsCommand) -> CliResult<()> {
    match command {
        JobsCommand::List { status, limit } => {
            let (items, pages) = list(client, status.as_deref(), *limit).await?;
            if out.json {
                // One page: the API's answer; several: the items and the last cursor.
                match pages.as_slice() {
                    [one] => out.json_value(one),
                    _ => out.json_value(&json!({
                        "items": items,
                        "next_cursor": pages.last().and_then(|p| p.get("next_cursor")).cloned(),
                    })),
                }
            } else if items.is_empty() {
                out.line("no jobs")
            } else {
                out.line(&render_list(&items))
            }
        }
        JobsCommand::Get { id } => {
            let job = get_job(client, id).await?;
            out.either(&job, || render_job(&job))
        }
        JobsCommand::Cancel { id } => {
            let path = format!("/api/v1/jobs/{}/cancel", segment(id));
            let job = client.json(Method::POST, &path, &[], None).await?;
            out.either(&job, || {
                format!(
                    "job {id} {}",
                    job.get("status")
                        .and_then(Value::as_str)
                        .unwrap_or("cancelled")
                )
            })
        }
        JobsCommand::Delete { id } => {
            let path = format!("/api/v1/jobs/{}", segment(id));
            let answer = client.json(Method::DELETE, &path, &[], None).await?;
            out.either(&answer, || format!("job {id} deleted"))
        }
    }
}

/// Up to `limit` jobs, newest first, following `next_cursor`; also the raw pages.
pub async fn list(
    client: &ApiClient,
    status: Option<&str>,
    limit: u64,
) -> CliResult<(Vec<Value>, Vec<Value>)> {
    let mut items = Vec::new();
    let mut pages = Vec::new();
    let mut cursor = String::new();
    while (items.len() as u64) < limit {
        let wanted = (limit - items.len() as u64).min(MAX_PAGE_SIZE);
        let page = client
            .get(
                "/api/v1/jobs",
                &[
                    ("status", status.unwrap_or_default().to_string()),
                    ("page_size", wanted.to_string()),
                    ("cursor", cursor.clone()),
                ],
            )
            .await?;
        let page_items = page
            .get("items")
            .and_then(Value::as_array)
            .ok_or_else(|| CliError::Protocol("the job list has no `items`".into()))?;
        items.extend(page_items.iter().take(wanted as usize).cloned());
        let next = page
            .get("next_cursor")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let empty = page_items.is_empty();
        pages.push(page);
        if next.is_empty() || empty {
            break;
        }
        cursor = next;
    }
    Ok((items, pages))
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("-")
}

/// The job list as a table.
pub fn render_list(items: &[Value]) -> String {
    let rows = items
        .iter()
        .map(|job| {
            let snapshot = Snapshot::from_job(job);
            vec![
                text(job, "id").to_string(),
                snapshot.status.clone(),
                format!("{}%", snapshot.percentage),
                text(job, "service_name").to_string(),
                text(job, "flavor_name").to_string(),
                snapshot.tokens.map_or("-".into(), thousands),
                text(job, "created_at").to_string(),
            ]
        })
        .collect::<Vec<_>>();
    table::render(
        &[
            "ID", "STATUS", "DONE", "SERVICE", "FLAVOR", "TOKENS", "CREATED",
        ],
        &rows,
    )
}

/// One job for people: its fields, then its result or error.
pub fn render_job(job: &Value) -> String {
    let snapshot = Snapshot::from_job(job);
    let mut lines = vec![
        format!("job       {}", text(job, "id")),
        format!("status    {}", snapshot.status),
        format!(
            "service   {} ({})",
            text(job, "service_name"),
            text(job, "flavor_name")
        ),
        format!("progress  {}", snapshot.line()),
        format!("created   {}", text(job, "created_at")),
    ];
    if let Some(done) = job.get("completed_at").and_then(Value::as_str) {
        lines.push(format!("finished  {done}"));
    }
    if let Some(code) = job.get("error_code").and_then(Value::as_str) {
        lines.push(format!("error     {code}: {}", text(job, "error")));
    }
    let result = job.get("result").unwrap_or(&Value::Null);
    if let Some(output) = result.get("output").and_then(Value::as_str) {
        lines.push(String::new());
        lines.push(output.trim_end().to_string());
    } else if let Some(url) = result.get("url").and_then(Value::as_str) {
        lines.push(format!("result    {url}"));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_shows_status_progress_and_tokens() {
        let text = render_list(&[json!({
            "id": "j1", "status": "processing", "service_name": "summarize", "flavor_name": "iterative",
            "created_at": "2026-12-01T10:00:00Z",
            "progress": {"percentage": 42}, "token_metrics": {"total_tokens": 1960}
        })]);
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let cells: Vec<_> = lines[1].split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "j1",
                "processing",
                "42%",
                "summarize",
                "iterative",
                "1,960",
                "2026-12-01T10:00:00Z"
            ]
        );
    }

    #[test]
    fn a_job_shows_its_result_or_error() {
        let done = render_job(&json!({
            "id": "j1", "status": "completed", "result": {"output": "# Summary\n"},
            "progress": {"percentage": 100}, "completed_at": "t"
        }));
        assert!(done.contains("status    completed"));
        assert!(done.ends_with("\n\n# Summary"));
        let failed = render_job(&json!({
            "id": "j2", "status": "failed", "error_code": "LLM_ERROR", "error": "boom"
        }));
        assert!(failed.contains("error     LLM_ERROR: boom"));
    }
}
