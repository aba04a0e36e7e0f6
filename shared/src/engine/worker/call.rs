//! What one step sends to the LLM, built from the job's phase: a batch of turns with its
//! rolling context, a reduce group, or the final output for extraction or categorisation.

use super::*;
use crate::engine::turns::read_turns;

/// What one step sends to the LLM.
pub(super) struct Call {
    pub(super) prompt: String,
    pub(super) system: Option<String>,
    pub(super) temperature: f32,
    pub(super) max_tokens: u32,
    pub(super) pass_type: PassType,
    /// A call of the flavor's own prompts (not extraction or categorisation).
    pub(super) flavor_call: bool,
    /// Processing: the turns of the batch; reducing: the group of the level.
    pub(super) batch: Range<u32>,
}

/// Builds the call of the job's next step from its phase.
pub(super) async fn build_call(
    gateway: &Gateway,
    job: &Job,
    message: &StepMessage,
    counter: &TokenCounter,
) -> IoResult<Call> {
    let settings = &job.settings;
    let system = settings
        .prompt_system_content
        .clone()
        .filter(|s| !s.trim().is_empty());
    let flavor_call = |prompt: String, pass_type: PassType, batch: Range<u32>| Call {
        prompt,
        system: system.clone(),
        temperature: settings.temperature,
        max_tokens: settings.max_generation_length,
        pass_type,
        flavor_call: true,
        batch,
    };
    let finishing_call = |prompt: String, pass_type: PassType| Call {
        prompt,
        system: None,
        temperature: FINISHING_TEMPERATURE,
        max_tokens: finishing_max_tokens(job),
        pass_type,
        flavor_call: false,
        batch: 0..0,
    };
    Ok(match (job.progress.phase, job.processing_mode) {
        (Phase::Processing, ProcessingMode::SinglePass) => {
            let input = read_text(gateway, &keys::input(job.id), "read job input").await?;
            flavor_call(
                fill(&settings.prompt_user_content, &[&input]),
                PassType::SinglePass,
                0..1,
            )
        }
        (Phase::Processing, ProcessingMode::Iterative) => {
            // At most `max_new_turns` turns from the cursor: only their page(s) are read.
            let cursor = job.progress.cursor;
            let max_turns = (settings.max_new_turns as usize).max(1);
            let turns = read_turns(gateway, job, cursor, max_turns).await?;
            let tokens: Vec<u32> = turns.iter().map(|turn| turn.tokens).collect();
            let taken = BatchBudget::from(settings).next_batch_end(
                &tokens,
                0,
                context_tokens(&message.context, counter),
            );
            let batch: Vec<&str> = turns[..taken]
                .iter()
                .map(|turn| turn.text.as_str())
                .collect();
            let prompt = fill(
                &settings.prompt_user_content,
                &[&message.context.join("\n"), &batch.join("\n")],
            );
            let pass_type = if message.step == 0 {
                PassType::Initial
            } else {
                PassType::Continuation
            };
            flavor_call(prompt, pass_type, cursor..cursor + taken as u32)
        }
        (Phase::Processing, ProcessingMode::MapReduce) => {
            let turns = map::chunk_turns(job, message.step)?;
            let chunk = read_turns(gateway, job, turns.start, turns.len()).await?;
            let text: Vec<&str> = chunk.iter().map(|turn| turn.text.as_str()).collect();
            flavor_call(
                fill(&settings.prompt_user_content, &[&text.join("\n")]),
                PassType::Map,
                turns,
            )
        }
        (Phase::Planning, _) => {
            return Err(IoError::new(
                "plan step",
                "the job's input is not planned yet",
            ))
        }
        (Phase::Reducing, _) => {
            let (level, reduce) = reduce_step(job)?;
            let group = message.step - level.first_step;
            let key = keys::reduce_input(job.id, level.level, group);
            let text = read_text(gateway, &key, "read reduce input").await?;
            flavor_call(fill(reduce, &[&text]), PassType::Reduce, group..group + 1)
        }
        (Phase::Extracting, _) => {
            let result = read_text(gateway, &keys::result(job.id), "read result").await?;
            let prompt = extraction_prompt(job, &result)
                .ok_or_else(|| IoError::new("plan extraction", "job has no extraction prompt"))?;
            finishing_call(prompt, PassType::Extraction)
        }
        (Phase::Categorizing, _) => {
            let result = read_text(gateway, &keys::result(job.id), "read result").await?;
            let prompt = categorization_prompt(job, &result).ok_or_else(|| {
                IoError::new("plan categorization", "job has no categorization prompt")
            })?;
            finishing_call(prompt, PassType::Categorization)
        }
    })
}

/// The current reduce level and the reduce prompt of a reducing job.
pub(super) fn reduce_step(job: &Job) -> IoResult<(ReduceLevel, &str)> {
    match (job.progress.reduce, job.settings.reduce_prompt.as_deref()) {
        (Some(level), Some(prompt)) => Ok((level, prompt)),
        _ => Err(IoError::new(
            "plan reduce step",
            "the job is reducing without a reduce level or prompt",
        )),
    }
}

/// The `max_tokens` of a finishing call (extraction, categorisation) of `job`.
pub(crate) fn finishing_max_tokens(job: &Job) -> u32 {
    FINISHING_MAX_TOKENS.min(u64::from(job.settings.max_generation_length)) as u32
}

pub(super) fn extraction_prompt(job: &Job, result: &str) -> Option<String> {
    let template = job.settings.extraction_prompt.as_deref()?;
    let fields = job.extraction_fields.as_ref()?;
    Some(extraction::fill_prompt(template, fields, result))
}

pub(super) fn categorization_prompt(job: &Job, result: &str) -> Option<String> {
    let template = job.settings.categorization_prompt.as_deref()?;
    let context = job.context.as_ref()?;
    Some(categorization::fill_prompt(template, context, result))
}

pub(super) async fn read_text(
    gateway: &Gateway,
    key: &str,
    operation: &'static str,
) -> IoResult<String> {
    let bytes = gateway
        .blobs
        .get(key)
        .await?
        .ok_or_else(|| IoError::new(operation, format!("object {key} missing")))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
