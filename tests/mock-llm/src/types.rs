//! Public data types: fault rules and request-log entries (JSON on the wire).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a fault rule does to a matching completion request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    /// Answer with `status` and an OpenAI-style error body.
    Status,
    /// Never answer; the request stays open until the client disconnects.
    Hang,
    /// Answer 200 with a truncated, non-JSON body.
    Malformed,
    /// Sleep `latency_ms`, then answer normally.
    Latency,
    /// Answer normally, but with `content` instead of the derived answer (a scripted
    /// answer, e.g. the JSON of an extraction prompt).
    Reply,
    /// A streamed answer sends `after_deltas` deltas (default 1), then the connection
    /// drops: a failure after the first token. A whole (not streamed) answer gets a 500.
    Break,
}

fn default_times() -> u32 {
    1
}

fn default_status() -> u16 {
    500
}

/// A fault-injection rule; queued rules are consumed first-match-first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRule {
    /// The kind of fault.
    pub kind: FaultKind,
    /// HTTP status for [`FaultKind::Status`] (default 500; ignored otherwise).
    #[serde(default = "default_status")]
    pub status: u16,
    /// Adds a `Retry-After: <secs>` header to a status fault.
    #[serde(default)]
    pub retry_after_secs: Option<u64>,
    /// Delay for [`FaultKind::Latency`].
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// How many matching requests this rule applies to (default 1).
    #[serde(default = "default_times")]
    pub times: u32,
    /// Only requests whose last user message contains this substring match.
    #[serde(default)]
    pub match_prompt: Option<String>,
    /// The answer of a [`FaultKind::Reply`] rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Only every n-th request (by sequence number) matches: a steady share of faults for
    /// chaos runs (e.g. `every: 7` with a large `times`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
    /// Only requests for this model match (one "provider" down while another answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_model: Option<String>,
    /// Deltas a [`FaultKind::Break`] rule lets through before the connection drops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_deltas: Option<u32>,
}

impl FaultRule {
    fn new(kind: FaultKind) -> Self {
        Self {
            kind,
            status: default_status(),
            retry_after_secs: None,
            latency_ms: None,
            times: 1,
            match_prompt: None,
            content: None,
            every: None,
            match_model: None,
            after_deltas: None,
        }
    }

    /// A rule answering with HTTP `status` and an OpenAI error body.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            ..Self::new(FaultKind::Status)
        }
    }

    /// A rule that never answers.
    pub fn hang() -> Self {
        Self::new(FaultKind::Hang)
    }

    /// A rule answering 200 with a truncated, non-JSON body.
    pub fn malformed() -> Self {
        Self::new(FaultKind::Malformed)
    }

    /// A rule that delays the (normal) answer by `latency`.
    pub fn latency(latency: Duration) -> Self {
        Self {
            latency_ms: Some(u64::try_from(latency.as_millis()).unwrap_or(u64::MAX)),
            ..Self::new(FaultKind::Latency)
        }
    }

    /// A rule answering 200 with `content` as the assistant message.
    pub fn reply(content: impl Into<String>) -> Self {
        Self {
            content: Some(content.into()),
            ..Self::new(FaultKind::Reply)
        }
    }

    /// A rule that breaks a streamed answer off after `deltas` deltas.
    pub fn break_after(deltas: u32) -> Self {
        Self {
            after_deltas: Some(deltas),
            ..Self::new(FaultKind::Break)
        }
    }

    /// Sets how many matching requests the rule applies to.
    pub fn times(mut self, times: u32) -> Self {
        self.times = times;
        self
    }

    /// Restricts the rule to prompts containing `needle`.
    pub fn matching(mut self, needle: impl Into<String>) -> Self {
        self.match_prompt = Some(needle.into());
        self
    }

    /// Adds a `Retry-After` header (status faults).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// Restricts the rule to every `n`-th request.
    pub fn every(mut self, n: u64) -> Self {
        self.every = Some(n);
        self
    }

    /// Restricts the rule to requests for `model`.
    pub fn for_model(mut self, model: impl Into<String>) -> Self {
        self.match_model = Some(model.into());
        self
    }

    /// Whether the rule applies to request number `seq` for `model` with this last user
    /// message.
    pub fn matches(&self, seq: u64, model: &str, prompt: &str) -> bool {
        self.times > 0
            && self.every.is_none_or(|n| n > 0 && seq.is_multiple_of(n))
            && self
                .match_model
                .as_deref()
                .is_none_or(|wanted| wanted == model)
            && self
                .match_prompt
                .as_deref()
                .is_none_or(|needle| prompt.contains(needle))
    }

    /// Checks the rule is usable (valid status code, `times >= 1`).
    pub fn validate(&self) -> Result<(), String> {
        if self.times == 0 {
            return Err("times must be >= 1".into());
        }
        if self.every == Some(0) {
            return Err("every must be >= 1".into());
        }
        if self.kind == FaultKind::Reply && self.content.is_none() {
            return Err("a reply rule needs content".into());
        }
        if self.kind == FaultKind::Status && !(100..=599).contains(&self.status) {
            return Err(format!("status {} is not a valid HTTP status", self.status));
        }
        Ok(())
    }
}

/// How a logged completion request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// A normal completion was returned.
    Answered,
    /// A fault (status or malformed body) was returned.
    Fault,
    /// The client went away before an answer was produced.
    Aborted,
    /// Still in progress (latency or hang).
    Pending,
}

/// One entry of the request log (`GET /_mock/requests`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestLogEntry {
    /// Monotonic sequence number (starts at 1, not reset by clearing).
    pub seq: u64,
    /// `model` from the request (`mock-model` if absent).
    pub model: String,
    /// The last user message.
    pub prompt: String,
    /// Number of messages in the request.
    pub messages_count: usize,
    /// The bearer token sent (`Authorization: Bearer ...`), if any.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Arrival time, milliseconds since the Unix epoch.
    pub received_at_ms: u64,
    /// How the request ended.
    pub outcome: Outcome,
    /// HTTP status sent, once known.
    #[serde(default)]
    pub status: Option<u16>,
    /// `usage.prompt_tokens` of an answered request.
    #[serde(default)]
    pub prompt_tokens: Option<u32>,
    /// `usage.completion_tokens` of an answered request.
    #[serde(default)]
    pub completion_tokens: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nth_request_matches() {
        let rule = FaultRule::status(500).every(3).times(100);
        let matched: Vec<u64> = (1..=9).filter(|seq| rule.matches(*seq, "m", "p")).collect();
        assert_eq!(matched, [3, 6, 9]);
        assert!(FaultRule::status(500).every(0).validate().is_err());
        let needle = FaultRule::status(500).matching("x").every(1);
        assert!(needle.matches(4, "m", "a x b") && !needle.matches(4, "m", "nope"));
        let down = FaultRule::status(503).for_model("primary");
        assert!(down.matches(1, "primary", "p") && !down.matches(1, "backup", "p"));
    }
}
