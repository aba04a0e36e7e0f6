//! The dry run's answer: the LLM calls of every phase of a planned job, with tokens and
//! cost for short, middling and full answers.

use serde_json::{json, Value};

use crate::domain::{Job, Phase};
use crate::engine::views::with_flavor_choice;
use crate::postprocess::reduce::estimate_calls;
use crate::postprocess::{categorization, extraction, FINISHING_MAX_TOKENS};
use crate::text::prompt::template_text;
use crate::tokens::TokenCounter;

/// The answer of a dry run whose plan fits: the figures, the LLM calls of every phase
/// and the estimated tokens and cost. The estimate assumes answers of half the generation
/// budget; the range goes from answers of no tokens to answers of the whole budget.
pub fn dry_run_json(job: &Job) -> Value {
    if job.progress.phase == Phase::Planning {
        return unplanned_json(job);
    }
    let settings = &job.settings;
    // Planning (just before, in this process) loaded the job's tokenizer.
    let counter =
        TokenCounter::cached(&settings.tokenizer).unwrap_or_else(TokenCounter::default_counter);
    let generation = u64::from(settings.max_generation_length);
    let expected = estimate(job, &counter, generation / 2);
    let low = estimate(job, &counter, 0);
    let high = estimate(job, &counter, generation);
    let mut body = target_json(job);
    let figures = json!({
        "input_tokens": job.input_tokens,
        "total_turns": job.progress.total_turns,
        "estimated_batches": job.progress.total_batches,
        "reason": match &job.fallback {
            Some(fallback) => fallback.reason.clone(),
            None => format!("the requested flavor '{}' fits the input", job.flavor_name),
        },
        "estimated_calls": {
            "processing": expected.processing_calls,
            "reduce": expected.reduce_calls,
            "extraction": expected.extraction_calls,
            "categorization": expected.categorization_calls,
            "total": expected.calls(),
        },
        "estimated_tokens": expected.tokens(),
        "estimated_tokens_range": {"min": low.tokens(), "max": high.tokens()},
        "estimated_cost": settings.cost_of(expected.prompt_tokens, expected.completion_tokens),
        "estimated_cost_range": {
            "min": settings.cost_of(low.prompt_tokens, low.completion_tokens),
            "max": settings.cost_of(high.prompt_tokens, high.completion_tokens),
        },
    });
    extend(&mut body, figures);
    with_flavor_choice(body, job)
}

/// The answer of a dry run over an upload too large to read before answering: the
/// target is checked, the counts come when the job's first step plans the input.
fn unplanned_json(job: &Job) -> Value {
    let mut body = target_json(job);
    extend(
        &mut body,
        json!({
            "input_tokens": null,
            "total_turns": null,
            "estimated_batches": null,
            "planning": "first_step",
            "reason": "the upload is too large to count before answering: the job's first step reads, counts and cuts it, so no estimate is given",
            "estimated_calls": null,
            "estimated_tokens": null,
            "estimated_cost": null,
        }),
    );
    with_flavor_choice(body, job)
}

/// What every dry run answers: the target and its context.
fn target_json(job: &Job) -> Value {
    json!({
        "valid": true,
        "service_id": job.service_id,
        "flavor_id": job.flavor_id,
        "flavor_name": job.flavor_name,
        "processing_mode": job.processing_mode,
        "context_available": job.context_available,
        "tokenizer": job.settings.tokenizer,
    })
}

fn extend(body: &mut Value, more: Value) {
    if let (Some(body), Value::Object(more)) = (body.as_object_mut(), more) {
        body.extend(more);
    }
}

/// LLM calls and tokens of a planned job, for one assumed answer length.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Estimate {
    processing_calls: u64,
    reduce_calls: u64,
    extraction_calls: u64,
    categorization_calls: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
}

impl Estimate {
    fn calls(&self) -> u64 {
        self.processing_calls
            + self.reduce_calls
            + self.extraction_calls
            + self.categorization_calls
    }
    fn tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// Every call of `job` when each answer is `answer` tokens: the batches (input plus their
/// prompt), the reduce levels over the batch answers, then one extraction and one
/// categorisation call over the final output.
fn estimate(job: &Job, counter: &TokenCounter, answer: u64) -> Estimate {
    let settings = &job.settings;
    let batches = u64::from(job.progress.total_batches);
    let mut estimate = Estimate {
        processing_calls: batches,
        prompt_tokens: u64::from(job.input_tokens) + batches * u64::from(settings.prompt_tokens),
        completion_tokens: batches * answer,
        ..Estimate::default()
    };
    let mut final_tokens = batches * answer;
    if settings.reduce_prompt.is_some() {
        let budget = u64::from(settings.context_length)
            .saturating_sub(u64::from(settings.max_generation_length))
            .saturating_sub(u64::from(settings.reduce_prompt_tokens));
        let calls = estimate_calls(batches, answer, budget, answer);
        estimate.reduce_calls = calls;
        // Each batch answer is read once, each reduce answer but the last once more.
        estimate.prompt_tokens += calls * u64::from(settings.reduce_prompt_tokens)
            + batches * answer
            + calls.saturating_sub(1) * answer;
        estimate.completion_tokens += calls * answer;
        final_tokens = answer;
    }
    let finishing_answer = answer.min(FINISHING_MAX_TOKENS);
    let mut finishing = |prompt: Option<&String>, extra: u64| {
        prompt.map(|prompt| {
            estimate.prompt_tokens +=
                counter.count(&prompt_text_only(prompt)) as u64 + final_tokens + extra;
            estimate.completion_tokens += finishing_answer;
        })
    };
    let fields_tokens = job.extraction_fields.as_ref().map_or(0, |fields| {
        counter.count(&serde_json::to_string(fields).unwrap_or_default()) as u64
    });
    if finishing(settings.extraction_prompt.as_ref(), fields_tokens).is_some() {
        estimate.extraction_calls = 1;
    }
    let tags_tokens = job.context.as_ref().map_or(0, |context| {
        counter.count(&serde_json::to_string_pretty(&context.tags).unwrap_or_default()) as u64
    });
    if finishing(settings.categorization_prompt.as_ref(), tags_tokens).is_some() {
        estimate.categorization_calls = 1;
    }
    estimate
}

/// A prompt without its placeholders and markers (what it adds to a call by itself).
fn prompt_text_only(prompt: &str) -> String {
    template_text(prompt)
        .replace(categorization::TAGS_MARKER, "")
        .replace(categorization::INPUT_MARKER, "")
        .replace(extraction::OUTPUT_MARKER, "")
        .replace(extraction::FIELDS_MARKER, "")
}
