//! The prompts of the phases after processing
//! (reduce, extraction, categorisation), checked and frozen into the job.

use uuid::Uuid;

use super::ExecuteRequest;
use crate::domain::{Flavor, ProcessingMode};
use crate::engine::catalog::entity::{load, Scope};
use crate::engine::catalog::prompts::Prompt;
use crate::engine::catalog::validate::check_placeholders;
use crate::engine::error::{EngineError, EngineResult, Location, Rule};
use crate::engine::Gateway;
use crate::postprocess::{categorization, extraction};

/// The prompts of the phases after processing, frozen into the job.
pub(super) struct FinishingPrompts {
    pub(super) reduce: Option<String>,
    pub(super) extraction: Option<String>,
    pub(super) categorization: Option<String>,
}

/// The reduce prompt (iterative flavors with `reduce_summary`), and the extraction and
/// categorisation prompts when the request asks for those phases. A request phase the
/// flavor cannot run is refused, never ignored.
pub(super) async fn finishing_prompts(
    gateway: &Gateway,
    flavor: &Flavor,
    request: &ExecuteRequest,
) -> EngineResult<FinishingPrompts> {
    let incomplete = |field: &'static str, problem: String| {
        EngineError::refused(
            Rule::FlavorIncomplete,
            format!("flavor '{}': {problem}", flavor.name),
        )
        .about("field", field)
    };
    let reduce = if flavor.processing_mode != ProcessingMode::SinglePass && flavor.reduce_summary {
        let reduce = flavor
            .prompt_reduce_content
            .clone()
            .filter(|content| !content.trim().is_empty())
            .ok_or_else(|| {
                incomplete(
                    "reduce_prompt_id",
                    "reduce_summary is on but the flavor has no reduce prompt".into(),
                )
            })?;
        check_placeholders(ProcessingMode::SinglePass, &reduce, "prompt_reduce_content")?;
        Some(reduce)
    } else {
        None
    };
    let scope = Scope::new(request.organization_id.as_deref());
    let prompt = |field: &'static str, id: Option<Uuid>, request_field: &'static str| {
        let scope = &scope;
        async move {
            let Some(id) = id else {
                return Err(EngineError::validation(
                    Location::Body,
                    request_field,
                    format!(
                        "flavor '{}' has no {field}; this flavor cannot use {request_field}",
                        flavor.name
                    ),
                ));
            };
            match load::<Prompt>(gateway.records.as_ref(), id, scope).await {
                Ok(prompt) => Ok(prompt.content),
                Err(EngineError::NotFound { .. }) => {
                    Err(incomplete(field, format!("prompt '{id}' does not exist")))
                }
                Err(other) => Err(other),
            }
        }
    };
    let extraction = match &request.extraction_fields {
        None => None,
        Some(_) => {
            let content = prompt(
                "placeholder_extraction_prompt_id",
                flavor.placeholder_extraction_prompt_id,
                "extraction_fields",
            )
            .await?;
            if let Some(problem) = extraction::prompt_problem(&content) {
                return Err(incomplete("placeholder_extraction_prompt_id", problem));
            }
            Some(content)
        }
    };
    let categorization = match &request.context {
        None => None,
        Some(_) => {
            let content = prompt(
                "categorization_prompt_id",
                flavor.categorization_prompt_id,
                "context",
            )
            .await?;
            if let Some(problem) = categorization::prompt_problem(&content) {
                return Err(incomplete("categorization_prompt_id", problem));
            }
            Some(content)
        }
    };
    Ok(FinishingPrompts {
        reduce,
        extraction,
        categorization,
    })
}
