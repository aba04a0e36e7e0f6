//! Pure post-processing of a job's outputs: hierarchical reduce planning, speaker
//! consolidation, field extraction and categorisation (prompts and answers).

pub mod answer;
pub mod categorization;
pub mod consolidate;
pub mod extraction;
pub mod plain_text;
pub mod reduce;

/// Most tokens an extraction or categorisation answer may have (capped by the model's
/// generation length).
pub const FINISHING_MAX_TOKENS: u64 = 2000;
/// Sampling temperature of extraction and categorisation calls (near-deterministic JSON).
pub const FINISHING_TEMPERATURE: f32 = 0.1;
