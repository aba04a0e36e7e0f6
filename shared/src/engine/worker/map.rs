//! The map phase of a `map_reduce` job: chunks of turns, without rolling context, are
//! summarised concurrently, at most `map_concurrency` at once, each chunk one message in
//! its own message group (chunk `n` is step `n`). The job record is the only shared
//! state: every change to it (chunks sent, a chunk counted) is a write conditional on
//! the job's step, which counts the chunks done, re-read and retried on conflict. So two
//! chunks that finish at once are both counted, each once, and only the write that counts
//! the last chunk moves the job on (reduce, or the joined output): exactly once.

use super::*;
use crate::domain::{MapChunk, MapState};
use crate::engine::turns::read_turns;

/// A message of a `map_reduce` job in its planning or map phase.
pub(super) async fn process(
    gateway: &Gateway,
    job: Job,
    message: &StepMessage,
) -> IoResult<StepOutcome> {
    let counter = counter_or_default(gateway, &job.settings.tokenizer).await;
    if message.chunk {
        return run_chunk(gateway, job, message, &counter).await;
    }
    // The first message (step 0), or a step sent again by the sweeper.
    if job.progress.phase == Phase::Planning && message.step != 0 {
        return Ok(StepOutcome::Skipped("stale step message"));
    }
    let job = match plan_if_needed(gateway, job, message.step, &counter).await? {
        Ok(job) => job,
        Err(outcome) => return Ok(outcome),
    };
    start(gateway, job).await
}

/// Sends the first chunks; when they were sent already, sends those in flight again (SQS
/// drops a copy within five minutes, and a chunk counted meanwhile is skipped).
async fn start(gateway: &Gateway, mut job: Job) -> IoResult<StepOutcome> {
    for _ in 0..MAX_WRITE_TRIES {
        if let Some(map) = &job.progress.map {
            let steps: Vec<u32> = map.in_flight.iter().map(|chunk| chunk.step).collect();
            send_chunks(gateway, &job, &steps).await?;
            return Ok(StepOutcome::Skipped("chunks in flight sent again"));
        }
        let expected = job.progress.step;
        let mut map = MapState::default();
        let sent = fill_window(gateway, &mut job, &mut map).await?;
        job.progress.map = Some(map);
        job.status = JobStatus::Processing;
        job.started_at.get_or_insert_with(now_timestamp);
        job.updated_at = now_timestamp();
        if gateway.jobs.replace(&job, expected).await? {
            send_chunks(gateway, &job, &sent).await?;
            tracing::info!(
                chunks = job.progress.total_batches,
                sent = sent.len(),
                "map phase started"
            );
            return Ok(StepOutcome::Advanced { next_step: 0 });
        }
        match reread(gateway, &job).await? {
            Some(current) => job = current,
            None => return Ok(StepOutcome::Skipped("job finished meanwhile")),
        }
    }
    Err(IoError::new("start map phase", "the job kept changing"))
}

/// Runs one chunk (unless its output is stored) and counts it.
async fn run_chunk(
    gateway: &Gateway,
    job: Job,
    message: &StepMessage,
    counter: &TokenCounter,
) -> IoResult<StepOutcome> {
    if chunk_turns(&job, message.step).is_err() {
        return Ok(StepOutcome::Skipped("chunk already counted"));
    }
    let (stored, call) = tokio::join!(
        load_step_output(gateway, &job, message.step),
        build_call(gateway, &job, message, counter)
    );
    let output = match stored? {
        Some(stored) => stored,
        None => match run_llm_step(gateway, &job, message, call?, counter).await? {
            Ok(output) => output,
            Err(StepFailure::Fatal(error)) => {
                fail_job(gateway, job, error).await?;
                return Ok(StepOutcome::Failed);
            }
            Err(StepFailure::Provider(failure)) => {
                return recovery::after_chunk_failure(gateway, job, message, failure).await;
            }
        },
    };
    count_chunk(gateway, job, message.step, output, counter).await
}

/// Counts chunk `step` as done, sends the next chunk(s) to keep the window full, and
/// after the last chunk moves the job on.
async fn count_chunk(
    gateway: &Gateway,
    mut job: Job,
    step: u32,
    output: StepOutput,
    counter: &TokenCounter,
) -> IoResult<StepOutcome> {
    for _ in 0..MAX_WRITE_TRIES {
        let Some(mut map) = job.progress.map.clone() else {
            return Ok(StepOutcome::Skipped("map phase over"));
        };
        let Some(index) = map.in_flight.iter().position(|chunk| chunk.step == step) else {
            return Ok(StepOutcome::Skipped("chunk already counted"));
        };
        map.in_flight.remove(index);
        let expected = job.progress.step;
        let mut moved = job.clone();
        count_output(&mut moved, &output);
        moved.progress.step += 1;
        let sent = fill_window(gateway, &mut moved, &mut map).await?;
        let outcome = if map.in_flight.is_empty() {
            // The last chunk: every output is stored under steps 0..n.
            moved.progress.map = None;
            moved.progress.total_batches = moved.progress.step;
            moved.progress.phase_total = moved.progress.step;
            let next = after_processing(gateway, &mut moved, counter).await?;
            commit_next(gateway, moved, expected, next).await?
        } else {
            moved.progress.map = Some(map);
            if gateway.jobs.replace(&moved, expected).await? {
                send_chunks(gateway, &moved, &sent).await?;
                Some(StepOutcome::Advanced {
                    next_step: sent.first().copied().unwrap_or(step),
                })
            } else {
                None
            }
        };
        if let Some(outcome) = outcome {
            return Ok(outcome);
        }
        match reread(gateway, &job).await? {
            Some(current) => job = current,
            None => return Ok(StepOutcome::Skipped("job finished meanwhile")),
        }
    }
    Err(IoError::new("count chunk", "the job kept changing"))
}

/// Cuts chunks from the job's cursor until `map_concurrency` are in flight or the turns
/// run out; returns their steps. Only the pages of the new chunks are read.
async fn fill_window(gateway: &Gateway, job: &mut Job, map: &mut MapState) -> IoResult<Vec<u32>> {
    let window = job.settings.map_concurrency.max(1) as usize;
    let wanted = window.saturating_sub(map.in_flight.len());
    let cursor = job.progress.cursor;
    if wanted == 0 || cursor >= job.progress.total_turns {
        return Ok(Vec::new());
    }
    let max_turns = (job.settings.max_new_turns as usize).max(1);
    let turns = read_turns(gateway, job, cursor, wanted * max_turns).await?;
    let tokens: Vec<u32> = turns.iter().map(|turn| turn.tokens).collect();
    let budget = BatchBudget::from(&job.settings);
    let mut sent = Vec::with_capacity(wanted);
    let mut start = 0;
    while sent.len() < wanted && start < tokens.len() {
        let end = budget.next_batch_end(&tokens, start, 0);
        let step = map.sent;
        map.in_flight.push(MapChunk {
            step,
            turns: cursor + start as u32..cursor + end as u32,
            failures: 0,
            failing_since: None,
        });
        map.sent += 1;
        sent.push(step);
        start = end;
    }
    job.progress.cursor = cursor + start as u32;
    Ok(sent)
}

/// The turns of chunk `step` while it is in flight.
pub(super) fn chunk_turns(job: &Job, step: u32) -> IoResult<Range<u32>> {
    job.progress
        .map
        .as_ref()
        .and_then(|map| map.in_flight.iter().find(|chunk| chunk.step == step))
        .map(|chunk| chunk.turns.clone())
        .ok_or_else(|| IoError::new("plan chunk", format!("chunk {step} is not in flight")))
}

async fn send_chunks(gateway: &Gateway, job: &Job, steps: &[u32]) -> IoResult<()> {
    futures_util::future::try_join_all(steps.iter().map(|step| async move {
        let message = StepMessage::chunk_of(job, *step);
        gateway.queue.send(&message, job.lane()).await
    }))
    .await?;
    Ok(())
}

/// The job as stored now, unless it is gone or finished.
async fn reread(gateway: &Gateway, job: &Job) -> IoResult<Option<Job>> {
    Ok(gateway
        .jobs
        .get(job.id)
        .await?
        .filter(|current| !current.status.is_terminal()))
}
