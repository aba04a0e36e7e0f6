//! The job step queues: priority lanes and the message of one step.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Job;

/// The job queue a job's steps travel on. SQS has no message priority, so priorities are
/// served by separate queues ("lanes"): a consumer takes work from a more urgent lane
/// first (locally, strictly), and on AWS each lane has its own event source mapping, so
/// urgent work never waits behind a backlog of bulk jobs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum QueueLane {
    /// Priorities 0–2.
    Urgent,
    /// Priorities 3–6 (the default 5 included).
    Standard,
    /// Priorities 7–9.
    Bulk,
}

impl QueueLane {
    /// Every lane, most urgent first.
    pub const ALL: [QueueLane; 3] = [QueueLane::Urgent, QueueLane::Standard, QueueLane::Bulk];

    /// The lane's name as serialized (`"urgent"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            QueueLane::Urgent => "urgent",
            QueueLane::Standard => "standard",
            QueueLane::Bulk => "bulk",
        }
    }

    /// The lane of a flavor priority (0 = most urgent; values above 9 count as 9).
    pub fn for_priority(priority: u8) -> Self {
        match priority {
            0..=2 => QueueLane::Urgent,
            3..=6 => QueueLane::Standard,
            _ => QueueLane::Bulk,
        }
    }
}

/// The queue message for one step of one job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepMessage {
    pub job_id: Uuid,
    pub step: u32,
    /// Rolling context: the last output lines before this step.
    #[serde(default)]
    pub context: Vec<String>,
    /// The job's message group generation ([`JobProgress::generation`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u32,
    /// A chunk of a `map_reduce` job: step `step` is chunk `step`, run concurrently
    /// with the other chunks in flight (each in its own message group).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chunk: bool,
}

pub(super) fn is_zero(value: &u32) -> bool {
    *value == 0
}

impl StepMessage {
    /// The message of step `step` of job `job_id` in its first message group.
    pub fn new(job_id: Uuid, step: u32, context: Vec<String>) -> Self {
        StepMessage {
            job_id,
            step,
            context,
            generation: 0,
            chunk: false,
        }
    }

    /// The message of step `step` of `job`, in the job's current message group.
    pub fn of(job: &Job, step: u32, context: Vec<String>) -> Self {
        StepMessage {
            generation: job.progress.generation,
            ..StepMessage::new(job.id, step, context)
        }
    }

    /// The message of chunk `step` of a `map_reduce` job.
    pub fn chunk_of(job: &Job, step: u32) -> Self {
        StepMessage {
            chunk: true,
            ..StepMessage::of(job, step, Vec::new())
        }
    }

    /// SQS FIFO deduplication id: one message per (job, step or chunk, generation).
    pub fn deduplication_id(&self) -> String {
        let chunk = if self.chunk { "c" } else { "" };
        match self.generation {
            0 => format!("{}:{chunk}{}", self.job_id, self.step),
            n => format!("{}:{chunk}{}:g{n}", self.job_id, self.step),
        }
    }

    /// SQS FIFO message group: the job (one message in flight at a time), per generation.
    pub fn group_id(&self) -> String {
        // Chunks each have their own group: a FIFO group hands out one message at a time.
        let job = match self.chunk {
            true => format!("{}:c{}", self.job_id, self.step),
            false => self.job_id.to_string(),
        };
        match self.generation {
            0 => job,
            n => format!("{job}:g{n}"),
        }
    }
}
