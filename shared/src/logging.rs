//! Structured JSON logs (one object per line) via `tracing`. Job work runs inside a span
//! carrying `job_id` and `organization_id`, so every line of it names the job.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber (level from `RUST_LOG`, default `info`). Safe to call twice.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .try_init();
}

/// The span for all work on one job.
pub fn job_span(job_id: &uuid::Uuid, organization_id: Option<&str>) -> tracing::Span {
    tracing::info_span!("job", job_id = %job_id, organization_id = organization_id.unwrap_or(""))
}
