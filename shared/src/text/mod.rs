//! Pure text processing: turns, sentences, normalisation, batching and prompt filling.

pub mod batching;
pub mod normalize;
pub mod prompt;
pub mod sentences;
pub mod turns;
