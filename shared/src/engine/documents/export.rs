//! `GET /api/v1/jobs/{id}/export/{docx|pdf|html}` and `POST /jobs/{id}/export-preview`:
//! a completed job's result (any version) rendered into a document with a template.
//!
//! The template is `template_id`, else the service's default, else the global default,
//! else the built-in report. Its placeholders get the standard values and the job's
//! extracted metadata; fields the job never extracted are extracted just in time with the
//! flavor's extraction prompt (one LLM call, bounded so the export still answers within
//! API Gateway's 29 s) and cached on the job per template and version. An extraction that
//! fails leaves those placeholders empty: it never blocks the export.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::templates::{resolve, DocumentTemplate};
use super::values::{
    is_standard, metadata_values, parse_timezone, safe_file_stem, standard_values,
};
use crate::documents::{inspect_template, render_docx, render_html, render_pdf, ExportDocument};
use crate::domain::{now_timestamp, Job};
use crate::engine::catalog::entity::{load, Scope};
use crate::engine::catalog::flavors::flavor_by_id;
use crate::engine::catalog::prompts::Prompt;
use crate::engine::error::{EngineError, EngineResult, Location};
use crate::engine::versions::{completed_job, version_with_content};
use crate::engine::worker::call::finishing_max_tokens;
use crate::engine::{FileResponse, Gateway, JsonResponse};
use crate::llm::{chat_with_retries, ChatMessage, ChatRequest};
use crate::ports::keys;
use crate::postprocess::answer::parse_json_object;
use crate::postprocess::extraction::{fill_prompt, select_fields};
use crate::postprocess::FINISHING_TEMPERATURE;

/// Larger exports are stored and answered with a URL (a Lambda response is at most 6 MB,
/// and a file goes out base64-encoded).
pub const EXPORT_INLINE_BYTES: usize = 4_000_000;
/// How long an export URL stays valid.
const URL_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// The bound on a just-in-time extraction (API Gateway answers 504 after 29 s).
const EXTRACTION_DEADLINE: Duration = Duration::from_secs(20);

/// A document format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Docx,
    Pdf,
    Html,
}

impl ExportFormat {
    /// The format of the path segment (400 naming `format` otherwise).
    pub fn parse(raw: &str) -> EngineResult<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "docx" => Ok(ExportFormat::Docx),
            "pdf" => Ok(ExportFormat::Pdf),
            "html" => Ok(ExportFormat::Html),
            _ => Err(EngineError::invalid_field(
                "format",
                format!("'{raw}' is not an export format: use docx, pdf or html"),
            )),
        }
    }

    fn extension(self) -> &'static str {
        match self {
            ExportFormat::Docx => "docx",
            ExportFormat::Pdf => "pdf",
            ExportFormat::Html => "html",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Docx => super::templates::DOCX_MEDIA_TYPE,
            ExportFormat::Pdf => "application/pdf",
            ExportFormat::Html => "text/html; charset=utf-8",
        }
    }
}

/// The query of an export.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    pub template_id: Option<Uuid>,
    pub version_number: Option<u32>,
    pub timezone: Option<String>,
    /// Answer with a URL to the stored file even when it is small.
    pub by_url: bool,
}

/// What an export fills its template with.
struct Filling {
    job: Job,
    template: Option<DocumentTemplate>,
    template_bytes: Vec<u8>,
    version: u32,
    content: String,
    /// Non-standard placeholder names of the template, in order.
    fields: Vec<String>,
    /// Metadata known for this template and version.
    metadata: Map<String, Value>,
}

impl Filling {
    async fn load(
        gateway: &Gateway,
        organization_id: Option<&str>,
        job_id: Uuid,
        template_id: Option<Uuid>,
        version_number: Option<u32>,
    ) -> EngineResult<Self> {
        let job = completed_job(gateway, job_id, organization_id).await?;
        let version = version_number.unwrap_or(job.current_version);
        let (_, content) = version_with_content(gateway, &job, version).await?;
        let scope = Scope::new(organization_id.or(job.organization_id.as_deref()));
        let (template, template_bytes) =
            resolve(gateway, &scope, template_id, job.service_id).await?;
        let names: Vec<String> = match &template {
            Some(template) => template.placeholder_names().map(str::to_string).collect(),
            None => inspect_template(&template_bytes)
                .map(|info| info.placeholders.into_iter().map(|p| p.name).collect())
                .unwrap_or_default(),
        };
        let mut fields: Vec<String> = Vec::new();
        for name in names {
            if !is_standard(&name) && !fields.contains(&name) {
                fields.push(name);
            }
        }
        let mut filling = Filling {
            job,
            template,
            template_bytes,
            version,
            content,
            fields,
            metadata: Map::new(),
        };
        filling.metadata = filling.known_metadata();
        Ok(filling)
    }

    /// The cache key of this template and version.
    fn cache_key(&self) -> String {
        let template = self
            .template
            .as_ref()
            .map_or_else(|| "builtin".to_string(), |t| t.id.to_string());
        format!("{template}:v{}", self.version)
    }

    /// The job's own extraction (for version 1, the output it was made from) and what
    /// was extracted for this template and version before.
    fn known_metadata(&self) -> Map<String, Value> {
        let mut known = Map::new();
        if self.version == 1 {
            if let Some(metadata) = &self.job.extracted_metadata {
                known.extend(metadata.clone());
            }
        }
        if let Some(cached) = self.job.export_extractions.get(&self.cache_key()) {
            known.extend(cached.clone());
        }
        known
    }

    /// Template fields with no known value (a known null counts as known).
    fn missing(&self) -> Vec<String> {
        self.fields
            .iter()
            .filter(|name| !self.metadata.contains_key(*name))
            .cloned()
            .collect()
    }

    /// The flavor's extraction prompt: the one frozen into the job, else the flavor's now.
    async fn extraction_prompt(&self, gateway: &Gateway) -> EngineResult<Option<String>> {
        if let Some(prompt) = &self.job.settings.extraction_prompt {
            return Ok(Some(prompt.clone()));
        }
        let Some(flavor) = flavor_by_id(gateway, self.job.flavor_id).await? else {
            return Ok(None);
        };
        let Some(prompt_id) = flavor.placeholder_extraction_prompt_id else {
            return Ok(None);
        };
        let scope = Scope::new(self.job.organization_id.as_deref());
        match load::<Prompt>(gateway.records.as_ref(), prompt_id, &scope).await {
            Ok(prompt) => Ok(Some(prompt.content)),
            Err(EngineError::NotFound { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// Extracts the missing fields in one bounded call and caches the answer on the job
    /// (with its tokens and cost in the job's usage). A provider failure or an unreadable
    /// answer is logged and leaves the fields empty; the caller does the same with an error
    /// of the stores.
    async fn extract_missing(&mut self, gateway: &Gateway) -> EngineResult<()> {
        let missing = self.missing();
        if missing.is_empty() {
            return Ok(());
        }
        let Some(template) = self.extraction_prompt(gateway).await? else {
            return Ok(());
        };
        let fields: BTreeMap<String, String> = missing
            .iter()
            .map(|name| (name.clone(), self.hint(name)))
            .collect();
        let Some(provider) = gateway
            .catalog
            .provider(self.job.settings.provider_id)
            .await?
        else {
            tracing::warn!(job_id = %self.job.id, "export extraction skipped: the provider was deleted");
            return Ok(());
        };
        let endpoint = gateway.endpoint_of(provider).await?;
        let request = ChatRequest::for_job(
            &self.job.settings,
            vec![ChatMessage::new(
                "user",
                fill_prompt(&template, &fields, &self.content),
            )],
            FINISHING_TEMPERATURE,
            finishing_max_tokens(&self.job),
            false,
        );
        let deadline = tokio::time::Instant::now() + EXTRACTION_DEADLINE;
        let started = std::time::Instant::now();
        let completion = match chat_with_retries(
            gateway.llm.as_ref(),
            &endpoint,
            &request,
            gateway.limits.retry,
            deadline,
        )
        .await
        {
            Ok(completion) => completion,
            Err(failure) => {
                tracing::warn!(job_id = %self.job.id, error = %failure, "export extraction failed; placeholders left empty");
                return Ok(());
            }
        };
        let found = match parse_json_object(&completion.content) {
            Ok(answer) => select_fields(&answer, &fields),
            Err(error) => {
                tracing::warn!(job_id = %self.job.id, %error, "export extraction answer unreadable; placeholders left empty");
                return Ok(());
            }
        };
        self.metadata.extend(found.clone());
        self.remember(gateway, found, &completion, started.elapsed())
            .await
    }

    fn hint(&self, name: &str) -> String {
        self.template
            .as_ref()
            .and_then(|template| {
                template
                    .placeholder_parts()
                    .find_map(|(field, hint)| hint.filter(|_| field == name))
            })
            .unwrap_or_default()
            .to_string()
    }

    /// Stores the extracted fields and the call's usage on the job; a concurrent change
    /// of the job only costs the cache.
    async fn remember(
        &mut self,
        gateway: &Gateway,
        found: Map<String, Value>,
        completion: &crate::llm::ChatCompletion,
        took: Duration,
    ) -> EngineResult<()> {
        let mut job = self.job.clone();
        let expected = job.updated_at.clone();
        job.export_extractions
            .entry(self.cache_key())
            .or_default()
            .extend(found);
        let prompt_tokens = u64::from(completion.prompt_tokens.unwrap_or(0));
        let completion_tokens = u64::from(completion.completion_tokens.unwrap_or(0));
        job.usage.prompt_tokens += prompt_tokens;
        job.usage.completion_tokens += completion_tokens;
        job.usage.duration_ms += took.as_millis() as u64;
        job.usage.passes += 1;
        if let Some(cost) = job.settings.cost_of(prompt_tokens, completion_tokens) {
            job.usage.cost = Some(job.usage.cost.unwrap_or(0.0) + cost);
        }
        job.updated_at = now_timestamp();
        if gateway.jobs.replace_completed(&job, &expected).await? {
            self.job = job;
        } else {
            tracing::info!(job_id = %self.job.id, "job changed during the export; extraction not cached");
        }
        Ok(())
    }

    /// The document to render.
    fn document(&self, values: BTreeMap<String, String>) -> ExportDocument {
        let label = |name: &str| values.get(name).cloned().unwrap_or_default();
        let fields = [
            ("Job", "job_id"),
            ("Date", "job_date"),
            ("Flavor", "flavor_name"),
            ("Organization", "organization_name"),
            ("Generated", "generated_at"),
        ]
        .into_iter()
        .map(|(title, name)| (title.to_string(), label(name)))
        .filter(|(_, value)| !value.is_empty())
        .collect();
        ExportDocument {
            title: self.job.service_name.clone(),
            fields,
            values,
            markdown: self.content.clone(),
        }
    }
}

/// `GET /jobs/{id}/export/{format}`: the document as an attachment, or (above
/// [`EXPORT_INLINE_BYTES`] or with `delivery=url`) `{url, expires_at, ...}` to the stored
/// file. A job that is not completed → 400; unknown template or version → 404.
pub async fn export(
    gateway: &Gateway,
    organization_id: Option<&str>,
    job_id: Uuid,
    format: ExportFormat,
    options: &ExportOptions,
) -> EngineResult<JsonResponse> {
    let zone = parse_timezone(options.timezone.as_deref())?;
    let mut filling = Filling::load(
        gateway,
        organization_id,
        job_id,
        options.template_id,
        options.version_number,
    )
    .await?;
    if let Err(error) = filling.extract_missing(gateway).await {
        tracing::warn!(job_id = %job_id, %error, "export extraction failed; placeholders left empty");
    }
    let mut values = standard_values(&filling.job, zone, chrono::Utc::now());
    for (name, value) in metadata_values(&filling.metadata) {
        values.entry(name).or_insert(value);
    }
    let document = filling.document(values);
    let template_bytes = std::mem::take(&mut filling.template_bytes);
    let bytes = tokio::task::spawn_blocking(move || match format {
        ExportFormat::Docx => render_docx(&template_bytes, &document),
        ExportFormat::Pdf => render_pdf(&document),
        ExportFormat::Html => Ok(render_html(&document).into_bytes()),
    })
    .await
    .map_err(|error| EngineError::internal("render", error))?
    .map_err(|error| match format {
        // Only a template (an uploaded file) can make a DOCX fail: say which.
        ExportFormat::Docx => EngineError::validation(
            Location::Query,
            "template_id",
            format!("the template cannot be filled: {error}"),
        ),
        _ => EngineError::internal("render", error),
    })?;
    let file_name = format!(
        "{}_{}.{}",
        safe_file_stem(&filling.job.service_name),
        job_id,
        format.extension()
    );
    tracing::info!(job_id = %job_id, format = format.extension(), bytes = bytes.len(), template_id = ?filling.template.as_ref().map(|t| t.id), "exported");
    if !options.by_url && bytes.len() <= EXPORT_INLINE_BYTES {
        return Ok(JsonResponse::file(FileResponse {
            content_type: format.content_type().to_string(),
            file_name,
            bytes,
        }));
    }
    let size = bytes.len();
    let key = keys::export(job_id, Uuid::new_v4(), &file_name);
    gateway
        .blobs
        .put(&key, bytes, format.content_type())
        .await?;
    let url = gateway.blobs.presigned_get(&key, URL_LIFETIME).await?;
    let expires_at =
        chrono::Utc::now() + chrono::Duration::from_std(URL_LIFETIME).unwrap_or_default();
    Ok(JsonResponse::new(
        200,
        json!({
            "url": url,
            "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "file_name": file_name,
            "content_type": format.content_type(),
            "size": size,
        }),
    ))
}

/// `POST /jobs/{id}/export-preview?template_id`: each placeholder of the template with
/// its status (`available`, `extraction_required`, `missing`) and value (first 100
/// characters), and what an export would extract.
pub async fn preview(
    gateway: &Gateway,
    organization_id: Option<&str>,
    job_id: Uuid,
    template_id: Option<Uuid>,
    version_number: Option<u32>,
) -> EngineResult<JsonResponse> {
    let filling = Filling::load(
        gateway,
        organization_id,
        job_id,
        template_id,
        version_number,
    )
    .await?;
    let standard = standard_values(&filling.job, chrono_tz::Tz::UTC, chrono::Utc::now());
    let metadata = metadata_values(&filling.metadata);
    let can_extract = filling.extraction_prompt(gateway).await?.is_some();
    let mut placeholders = vec![
        json!({"name": "output", "status": "available", "value": truncated(&filling.content)}),
    ];
    placeholders.extend(standard.iter().map(
        |(name, value)| json!({"name": name, "status": "available", "value": truncated(value)}),
    ));
    let missing = filling.missing();
    for name in &filling.fields {
        let entry = match metadata.get(name) {
            Some(value) => json!({"name": name, "status": "available", "value": truncated(value)}),
            None if can_extract => {
                json!({"name": name, "status": "extraction_required", "value": null})
            }
            None => json!({"name": name, "status": "missing", "value": null}),
        };
        placeholders.push(entry);
    }
    let extraction_required = can_extract && !missing.is_empty();
    let cached_elsewhere =
        filling.job.export_extractions.keys().any(|key| {
            key.ends_with(&format!(":v{}", filling.version)) && *key != filling.cache_key()
        });
    Ok(JsonResponse::new(
        200,
        json!({
            "template_id": filling.template.as_ref().map(|t| t.id),
            "template_name": filling.template.as_ref().map_or("Built-in report", |t| t.display_name()),
            "version_number": filling.version,
            "placeholders": placeholders,
            "extraction_required": extraction_required,
            "estimated_extraction_tokens": extraction_required.then_some(filling.content.len() / 4),
            "template_changed": cached_elsewhere && !filling.job.export_extractions.contains_key(&filling.cache_key()),
        }),
    ))
}

fn truncated(value: &str) -> String {
    value.chars().take(100).collect()
}
