//! A job's normalised turns, stored in pages of about [`PAGE_BYTES`] so that a step reads
//! only the page(s) of its batch, whatever the size of the input; and the planning of a
//! large input streamed from the blob store in pieces, so that it is never held whole in
//! memory.
//!
//! The job record keeps the first turn index of every page of its current revision
//! (`progress.turn_pages`): a step finds its page without an index object. Turns are
//! lines, normalised independently of each other, so normalising a transcript piece by
//! piece (cut at line breaks) gives exactly the turns of normalising it whole.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use uuid::Uuid;

use super::Gateway;
use crate::domain::{Job, JobError, JobSettings, Phase, ProcessingMode};
use crate::ports::{keys, BlobStore, IoError, IoResult};
use crate::text::batching::BatchBudget;
use crate::text::normalize::{normalize_transcript, NormalizeLimits, NormalizedTurn};
use crate::tokens::TokenCounter;

/// Text bytes gathered in one page before it is written.
pub const PAGE_BYTES: usize = 512 * 1024;
/// Bytes of input read per request when planning from the blob store.
pub const PLAN_PIECE_BYTES: u64 = 4 * 1024 * 1024;
/// A line longer than this many pieces is cut (at a space if it has one): a step could
/// not send it whole anyway, and planning memory stays bounded.
const MAX_LINE_PIECES: u64 = 4;
/// Page writes in flight at once.
const PUTS_IN_FLIGHT: usize = 4;
/// Rolling-context size assumed per output line when estimating batches.
const ESTIMATED_TOKENS_PER_CONTEXT_LINE: usize = 40;

type PendingPut = Pin<Box<dyn Future<Output = IoResult<()>> + Send>>;

/// What a [`PageWriter`] stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredTurns {
    /// The first turn index of every page.
    pub pages: Vec<u32>,
    /// The tokens of every turn written, in order.
    pub tokens: Vec<u32>,
}

/// Writes the turns of one revision, page after page, as they come.
pub struct PageWriter {
    blobs: Arc<dyn BlobStore>,
    job: Uuid,
    revision: u32,
    next_turn: u32,
    page: Vec<NormalizedTurn>,
    page_bytes: usize,
    /// Text bytes that fill a page ([`PAGE_BYTES`]).
    page_limit: usize,
    stored: StoredTurns,
    puts: FuturesUnordered<PendingPut>,
}

impl PageWriter {
    /// A writer of revision `revision` of `job`'s turns, whose first turn is `first_turn`
    /// (0 at planning; the cursor when a failover cuts the rest again).
    pub fn new(gateway: &Gateway, job: Uuid, revision: u32, first_turn: u32) -> Self {
        PageWriter {
            blobs: gateway.blobs.clone(),
            job,
            revision,
            next_turn: first_turn,
            page: Vec::new(),
            page_bytes: 0,
            page_limit: PAGE_BYTES,
            stored: StoredTurns::default(),
            puts: FuturesUnordered::new(),
        }
    }

    /// Adds turns; a full page is written (a few writes in flight at once).
    pub async fn extend(
        &mut self,
        turns: impl IntoIterator<Item = NormalizedTurn>,
    ) -> IoResult<()> {
        for turn in turns {
            if self.page.is_empty() {
                self.stored.pages.push(self.next_turn);
            }
            self.next_turn += 1;
            self.page_bytes += turn.text.len();
            self.stored.tokens.push(turn.tokens);
            self.page.push(turn);
            if self.page_bytes >= self.page_limit {
                self.write_page().await?;
            }
        }
        Ok(())
    }

    /// Writes the last page and waits for every write.
    pub async fn finish(mut self) -> IoResult<StoredTurns> {
        if !self.page.is_empty() {
            self.write_page().await?;
        }
        while let Some(done) = self.puts.next().await {
            done?;
        }
        Ok(self.stored)
    }

    async fn write_page(&mut self) -> IoResult<()> {
        if self.puts.len() >= PUTS_IN_FLIGHT {
            if let Some(done) = self.puts.next().await {
                done?;
            }
        }
        let number = self.stored.pages.len() as u32 - 1;
        let json = serde_json::to_vec(&std::mem::take(&mut self.page))
            .map_err(|e| IoError::new("encode turns", e))?;
        self.page_bytes = 0;
        let (blobs, key) = (
            self.blobs.clone(),
            keys::turn_page(self.job, self.revision, number),
        );
        self.puts.push(Box::pin(async move {
            blobs.put(&key, json, "application/json").await
        }));
        Ok(())
    }
}

/// Stores `turns` as revision 0 of `job`'s turns; returns the pages' first turns.
pub async fn store_turns(
    gateway: &Gateway,
    job: Uuid,
    turns: Vec<NormalizedTurn>,
) -> IoResult<Vec<u32>> {
    let mut writer = PageWriter::new(gateway, job, 0, 0);
    writer.extend(turns).await?;
    Ok(writer.finish().await?.pages)
}

/// The page holding turn `turn`, given the pages' first turns.
fn page_of(pages: &[u32], turn: u32) -> usize {
    pages
        .partition_point(|first| *first <= turn)
        .saturating_sub(1)
}

async fn read_page(gateway: &Gateway, job: &Job, page: usize) -> IoResult<Vec<NormalizedTurn>> {
    let key = keys::turn_page(job.id, job.progress.turns_revision, page as u32);
    let bytes = gateway
        .blobs
        .get(&key)
        .await?
        .ok_or_else(|| IoError::new("read job turns", format!("object {key} missing")))?;
    serde_json::from_slice(&bytes).map_err(|e| IoError::new("decode job turns", e))
}

/// Up to `max` turns of `job` from turn `from`: the page(s) holding them, nothing else.
pub async fn read_turns(
    gateway: &Gateway,
    job: &Job,
    from: u32,
    max: usize,
) -> IoResult<Vec<NormalizedTurn>> {
    let pages = &job.progress.turn_pages;
    let mut turns = Vec::new();
    let mut page = page_of(pages, from);
    while turns.len() < max && page < pages.len() {
        let skip = from.saturating_sub(pages[page]) as usize;
        let wanted = max - turns.len();
        turns.extend(
            read_page(gateway, job, page)
                .await?
                .into_iter()
                .skip(skip)
                .take(wanted),
        );
        page += 1;
    }
    Ok(turns)
}

/// Cuts the turns of `job` from `from` on again with `limits` and stores them as revision
/// `revision` (pages read and written one at a time): how a failover fits the rest of a
/// transcript to another model.
pub async fn recut_turns(
    gateway: &Gateway,
    job: &Job,
    from: u32,
    revision: u32,
    counter: &TokenCounter,
    limits: NormalizeLimits,
) -> IoResult<StoredTurns> {
    let pages = &job.progress.turn_pages;
    let mut writer = PageWriter::new(gateway, job.id, revision, from);
    let first = page_of(pages, from);
    for (page, first_turn) in pages.iter().enumerate().skip(first) {
        let skip = from.saturating_sub(*first_turn) as usize;
        let turns = read_page(gateway, job, page).await?;
        let rest: Vec<&str> = turns
            .iter()
            .skip(skip)
            .map(|turn| turn.text.as_str())
            .collect();
        writer
            .extend(normalize_transcript(&rest.join("\n"), counter, limits))
            .await?;
    }
    writer.finish().await
}

/// The batches a transcript of these turn counts is estimated to take: exact for the
/// chunks of `map_reduce`, which carry no rolling context.
pub fn estimate_batches(settings: &JobSettings, mode: ProcessingMode, tokens: &[u32]) -> u32 {
    let context_estimate = match mode {
        ProcessingMode::MapReduce => 0,
        _ => settings.summary_turns as usize * ESTIMATED_TOKENS_PER_CONTEXT_LINE,
    };
    BatchBudget::from(settings).estimate_batches(tokens, context_estimate) as u32
}

/// The normalisation limits of a job's settings.
pub fn normalize_limits(settings: &JobSettings) -> NormalizeLimits {
    NormalizeLimits {
        create_new_turn_after: settings.create_new_turn_after as usize,
        max_turn_tokens: BatchBudget::from(settings).max_turn_tokens(),
    }
}

/// Plans a job whose input was too large to plan before answering (`Phase::Planning`):
/// copies the upload to the job's input, reads it in pieces cut at line breaks, counts and
/// normalises each piece and writes the turns in pages. The job comes back in the
/// processing phase with its counts and pages (not yet written to the store); an input
/// that is not UTF-8 text, or holds none, is the job's error.
pub async fn plan_stored_input(
    gateway: &Gateway,
    job: Job,
    counter: &TokenCounter,
) -> IoResult<Result<Job, JobError>> {
    plan_in_pieces(gateway, job, counter, PLAN_PIECE_BYTES).await
}

async fn plan_in_pieces(
    gateway: &Gateway,
    mut job: Job,
    counter: &TokenCounter,
    piece_bytes: u64,
) -> IoResult<Result<Job, JobError>> {
    let input = keys::input(job.id);
    if let Some(upload) = job.input_upload_id {
        if gateway.blobs.size(&input).await?.is_none() {
            gateway
                .blobs
                .copy(&keys::upload_data(upload), &input)
                .await?;
        }
    }
    let limits = normalize_limits(&job.settings);
    let mut writer = PageWriter::new(gateway, job.id, 0, 0);
    let (mut input_tokens, mut input_chars) = (0u64, 0u64);
    let mut pieces = LinePieces::new(gateway.blobs.clone(), input, piece_bytes);
    while let Some(piece) = pieces.next().await? {
        let text = match piece {
            Ok(text) => text,
            Err(offset) => {
                return Ok(Err(JobError {
                    code: "INPUT_NOT_UTF8".into(),
                    message: format!(
                        "the input is not UTF-8 text (invalid byte at offset {offset})"
                    ),
                }))
            }
        };
        input_tokens += counter.count(&text) as u64;
        input_chars += text.chars().count() as u64;
        writer
            .extend(normalize_transcript(&text, counter, limits))
            .await?;
    }
    let stored = writer.finish().await?;
    if stored.tokens.is_empty() {
        return Ok(Err(JobError {
            code: "INPUT_EMPTY".into(),
            message: "the input holds no text".into(),
        }));
    }
    let total_batches = estimate_batches(&job.settings, job.processing_mode, &stored.tokens);
    job.input_tokens = input_tokens.min(u64::from(u32::MAX)) as u32;
    job.input_chars = input_chars;
    let progress = &mut job.progress;
    progress.phase = Phase::Processing;
    progress.total_turns = stored.tokens.len() as u32;
    progress.total_batches = total_batches;
    progress.phase_total = total_batches;
    progress.turn_pages = stored.pages;
    Ok(Ok(job))
}

/// A stored text read in pieces of about `piece_bytes`, each ending at a line
/// break (the last one at the end of the text).
struct LinePieces {
    blobs: Arc<dyn BlobStore>,
    key: String,
    piece_bytes: u64,
    offset: u64,
    carry: Vec<u8>,
    done: bool,
}

impl LinePieces {
    fn new(blobs: Arc<dyn BlobStore>, key: String, piece_bytes: u64) -> Self {
        LinePieces {
            blobs,
            key,
            piece_bytes,
            offset: 0,
            carry: Vec::new(),
            done: false,
        }
    }

    /// The next piece: its text, or the offset of its first byte that is not UTF-8.
    async fn next(&mut self) -> IoResult<Option<Result<String, u64>>> {
        while !self.done {
            let bytes = self
                .blobs
                .get_range(&self.key, self.offset, self.piece_bytes)
                .await?
                .ok_or_else(|| {
                    IoError::new("read job input", format!("object {} missing", self.key))
                })?;
            self.done = (bytes.len() as u64) < self.piece_bytes;
            self.offset += bytes.len() as u64;
            self.carry.extend_from_slice(&bytes);
            let cut = if self.done {
                Some(self.carry.len())
            } else {
                piece_end(
                    &self.carry,
                    self.carry.len() as u64 >= self.piece_bytes * MAX_LINE_PIECES,
                )
            };
            if let Some(cut) = cut {
                let start = self.offset - self.carry.len() as u64;
                let rest = self.carry.split_off(cut);
                let piece = std::mem::replace(&mut self.carry, rest);
                return Ok(Some(
                    String::from_utf8(piece)
                        .map_err(|error| start + error.utf8_error().valid_up_to() as u64),
                ));
            }
        }
        Ok(None)
    }
}

/// Where a piece of `bytes` ends: after its last line break; or, for a line too long to
/// wait for its end (`force`), after its last space, else at its last character boundary.
fn piece_end(bytes: &[u8], force: bool) -> Option<usize> {
    if let Some(at) = bytes.iter().rposition(|byte| *byte == b'\n') {
        return Some(at + 1);
    }
    if !force {
        return None;
    }
    if let Some(at) = bytes.iter().rposition(|byte| *byte == b' ') {
        return Some(at + 1);
    }
    // Back to the start of the last (possibly incomplete) UTF-8 character.
    (1..bytes.len())
        .rev()
        .find(|at| bytes[*at] & 0b1100_0000 != 0b1000_0000)
}

#[cfg(test)]
#[path = "turns_tests.rs"]
mod tests;
