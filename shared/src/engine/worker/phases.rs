//! The moves between phases once a phase's last step is done: reduce levels planned as
//! groups that fit one call, the output consolidated and stored, the finishing phases
//! entered (or skipped with a note), and the per-pass metrics written at the end.

use super::*;

/// A one-key object recording why a finishing phase gave no result.
pub(super) fn note(key: &str, message: String) -> Map<String, Value> {
    Map::from_iter([(key.to_string(), Value::String(message))])
}

/// After the last processing step: reduce the outputs (when the job reduces), else join
/// them into the output.
pub(super) async fn after_processing(
    gateway: &Gateway,
    job: &mut Job,
    counter: &TokenCounter,
) -> IoResult<Next> {
    let steps = 0..job.progress.step;
    if job.settings.reduce_prompt.is_some() {
        return plan_reduce_level(gateway, job, 0, steps, counter).await;
    }
    let outputs = load_outputs(gateway, job, steps).await?;
    let output = match job.processing_mode {
        ProcessingMode::SinglePass => outputs
            .first()
            .map(|output| tidy_answer(&output.output))
            .unwrap_or_default(),
        ProcessingMode::Iterative | ProcessingMode::MapReduce => {
            join_outputs(outputs.iter().map(|o| o.output.as_str()))
        }
    };
    finish_output(gateway, job, output, counter).await
}

/// Plans reduce level `level` over the outputs of `inputs` (steps): groups that each fit
/// one call, stored as the inputs of the next steps. A level must need fewer calls than
/// the one before, so a reduce always ends.
pub(super) async fn plan_reduce_level(
    gateway: &Gateway,
    job: &mut Job,
    level: u32,
    inputs: Range<u32>,
    counter: &TokenCounter,
) -> IoResult<Next> {
    let input_count = inputs.len() as u32;
    let outputs = load_outputs(gateway, job, inputs).await?;
    let texts: Vec<&str> = outputs
        .iter()
        .map(|output| output.output.as_str())
        .collect();
    let settings = &job.settings;
    let budget = (settings.context_length as usize)
        .saturating_sub(settings.max_generation_length as usize)
        .saturating_sub(settings.reduce_prompt_tokens as usize);
    let groups = plan_groups(&texts, budget, counter);
    if groups.is_empty() {
        return finish_output(gateway, job, String::new(), counter).await;
    }
    let group_count = groups.len() as u32;
    if level > 0 && (group_count >= input_count || level >= MAX_LEVELS) {
        return Ok(Next::Fail(JobError {
            code: "REDUCE_NOT_CONVERGING".into(),
            message: format!(
                "reduce level {level} would need {group_count} calls for the {input_count} answers of level {}: \
                 the model's answers are too long for the {budget} tokens of input a reduce call can take; \
                 use a model with a larger context or a shorter max_generation_length",
                level - 1
            ),
        }));
    }
    let job_id = job.id;
    futures_util::stream::iter(groups.into_iter().enumerate())
        .map(|(group, text)| async move {
            gateway
                .blobs
                .put(
                    &keys::reduce_input(job_id, level, group as u32),
                    text.into_bytes(),
                    "text/plain; charset=utf-8",
                )
                .await
        })
        .buffer_unordered(BLOB_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    tracing::info!(level, groups = group_count, budget, "reduce level planned");
    if job.progress.phase != Phase::Reducing {
        job.progress.phase = Phase::Reducing;
        job.progress.phase_step = 0;
        job.progress.phase_total = 0;
    }
    job.progress.phase_total = job.progress.phase_step + group_count;
    job.progress.reduce = Some(ReduceLevel {
        level,
        first_step: job.progress.step,
        groups: group_count,
    });
    Ok(Next::Step(Vec::new()))
}

/// Stores the job's output (consolidated when the flavor asks) as the result, then moves
/// to extraction, categorisation or completion.
pub(super) async fn finish_output(
    gateway: &Gateway,
    job: &mut Job,
    output: String,
    counter: &TokenCounter,
) -> IoResult<Next> {
    let output = if job.settings.consolidate {
        consolidate(&output)
    } else {
        output
    };
    gateway
        .blobs
        .put(
            &keys::result(job.id),
            output.as_bytes().to_vec(),
            "text/plain; charset=utf-8",
        )
        .await?;
    job.progress.reduce = None;
    Ok(enter_finishing(job, Phase::Extracting, &output, counter))
}

/// Moves the job to the first finishing phase from `from` on that it runs. A phase whose
/// prompt would not fit the model is skipped with a warning on the job, never failing it.
pub(super) fn enter_finishing(
    job: &mut Job,
    from: Phase,
    result: &str,
    counter: &TokenCounter,
) -> Next {
    let context_length = job.settings.context_length as usize;
    let answer_tokens = finishing_max_tokens(job) as usize;
    let candidates = [
        (
            Phase::Extracting,
            extraction_prompt(job, result),
            "_extraction_warning",
        ),
        (
            Phase::Categorizing,
            categorization_prompt(job, result),
            "_categorization_warning",
        ),
    ];
    for (phase, prompt, warning_key) in candidates {
        let Some(prompt) = prompt.filter(|_| phase >= from) else {
            continue;
        };
        let prompt_tokens = counter.count(&prompt);
        if prompt_tokens + answer_tokens <= context_length {
            job.progress.phase = phase;
            job.progress.phase_step = 0;
            job.progress.phase_total = 1;
            return Next::Step(Vec::new());
        }
        let warning = note(
            warning_key,
            format!(
                "skipped: the prompt with the result is {prompt_tokens} tokens, and with {answer_tokens} for the answer it exceeds the model's context of {context_length}"
            ),
        );
        tracing::warn!(
            ?phase,
            prompt_tokens,
            context_length,
            "finishing phase skipped: too large"
        );
        match phase {
            Phase::Extracting => job.extracted_metadata = Some(warning),
            _ => job.categorization = Some(Value::Object(warning)),
        }
    }
    Next::Complete
}

/// Reads the outputs of `steps`, in order.
pub(super) async fn load_outputs(
    gateway: &Gateway,
    job: &Job,
    steps: Range<u32>,
) -> IoResult<Vec<StepOutput>> {
    futures_util::stream::iter(steps)
        .map(|step| async move {
            load_step_output(gateway, job, step).await?.ok_or_else(|| {
                IoError::new("read step output", format!("step {step} output missing"))
            })
        })
        .buffered(BLOB_CONCURRENCY)
        .try_collect()
        .await
}

/// Stores the per-pass token metrics of every step of the job.
pub(super) async fn write_metrics(gateway: &Gateway, job: &Job) -> IoResult<()> {
    let outputs = load_outputs(gateway, job, 0..job.progress.step).await?;
    let passes: Vec<_> = outputs
        .iter()
        .map(|output| {
            let total = output.prompt_tokens + output.completion_tokens;
            json!({
                "pass_number": output.step + 1,
                "pass_type": output.pass_type,
                "started_at": output.started_at,
                "completed_at": output.completed_at,
                "duration_ms": output.duration_ms,
                "prompt_tokens": output.prompt_tokens,
                "completion_tokens": output.completion_tokens,
                "total_tokens": total,
                "input_chars": output.input_chars,
                "output_chars": output.output.chars().count(),
                "batch_start": output.batch_start,
                "batch_end": output.batch_end,
                "estimated_cost": output.estimated_cost.or_else(|| job.settings.cost_of(
                    u64::from(output.prompt_tokens),
                    u64::from(output.completion_tokens),
                )),
                "model": output.model,
            })
        })
        .collect();
    let metrics = serde_json::to_vec(&passes).map_err(|e| IoError::new("encode metrics", e))?;
    gateway
        .blobs
        .put(&keys::metrics(job.id), metrics, "application/json")
        .await
}
