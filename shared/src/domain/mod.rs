//! Domain types: catalog entities (provider, model, service, flavor), jobs and their
//! progress and metrics, and the queue message of one job step.

mod catalog;
mod failover;
mod job;
mod queue;
mod usage;

pub use catalog::*;
pub use failover::*;
pub use job::*;
pub use queue::*;
pub use usage::*;

/// Rounds to 6 decimals (cost figures).
pub fn round6(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}

/// Current time as RFC 3339 UTC with microseconds (fixed width).
pub fn now_timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests;
