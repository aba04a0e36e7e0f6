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

/// A timestamp after `previous`: now, or `previous` + 1 µs when the clock is not ahead
/// of it, so every change gives a record a new `updated_at` (what conditional writes
/// compare).
pub fn fresh_timestamp(previous: &str) -> String {
    let now = now_timestamp();
    if now.as_str() > previous {
        return now;
    }
    chrono::DateTime::parse_from_rfc3339(previous).map_or(now, |previous| {
        (previous.with_timezone(&chrono::Utc) + chrono::Duration::microseconds(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    })
}

#[cfg(test)]
mod tests;
