//! A job's progress: one snapshot read from a WebSocket `job_update` or a `GET /jobs/{id}`
//! answer, its one-line rendering, and the progress bar on stderr.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

/// What the bar shows of a job at one moment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// `queued`, `processing`, `completed`, `failed` or `cancelled`.
    pub status: String,
    /// `processing`, `reducing`, `extracting`, `categorizing`, ...
    pub phase: Option<String>,
    /// Call of the current phase.
    pub current_batch: u64,
    /// Calls of the current phase.
    pub total_batches: u64,
    /// 0 to 100.
    pub percentage: u64,
    /// Prompt + completion tokens so far.
    pub tokens: Option<u64>,
    /// Estimated cost so far.
    pub cost: Option<f64>,
}

fn u64_at(value: &Value, pointer: &str) -> Option<u64> {
    let found = value.pointer(pointer)?;
    found.as_u64().or_else(|| {
        found
            .as_f64()
            .filter(|f| *f >= 0.0)
            .map(|f| f.round() as u64)
    })
}

fn progress_fields(value: &Value, status: String) -> Snapshot {
    Snapshot {
        status,
        phase: value
            .pointer("/progress/phase")
            .and_then(Value::as_str)
            .map(str::to_string),
        current_batch: u64_at(value, "/progress/current_batch").unwrap_or(0),
        total_batches: u64_at(value, "/progress/total_batches").unwrap_or(0),
        percentage: u64_at(value, "/progress/percentage").unwrap_or(0).min(100),
        tokens: None,
        cost: None,
    }
}

impl Snapshot {
    /// From a WebSocket message: a `job_update` of `job_id`, else `None`.
    pub fn from_update(message: &Value, job_id: &str) -> Option<Snapshot> {
        if message.get("type").and_then(Value::as_str) != Some("job_update")
            || message.get("job_id").and_then(Value::as_str) != Some(job_id)
        {
            return None;
        }
        let status = message.get("status").and_then(Value::as_str)?.to_string();
        let mut snapshot = progress_fields(message, status);
        snapshot.tokens = u64_at(message, "/tokens/total");
        snapshot.cost = message.get("estimated_cost").and_then(Value::as_f64);
        Some(snapshot)
    }

    /// From the job of `GET /api/v1/jobs/{id}`.
    pub fn from_job(job: &Value) -> Snapshot {
        let status = job
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string();
        let mut snapshot = progress_fields(job, status);
        snapshot.tokens = u64_at(job, "/token_metrics/total_tokens");
        snapshot.cost = job
            .pointer("/token_metrics/total_estimated_cost")
            .and_then(Value::as_f64);
        snapshot
    }

    /// Whether the job will not change any more.
    pub fn is_terminal(&self) -> bool {
        is_terminal(&self.status)
    }

    /// One line: `processing  call 3/21  42%  1,960 tokens  $0.0039` (while running, the
    /// call in flight: finished calls of the phase + 1).
    pub fn line(&self) -> String {
        let mut parts = Vec::new();
        let stage = match (&self.phase, self.status.as_str()) {
            (_, "queued" | "completed" | "failed" | "cancelled") | (None, _) => self.status.clone(),
            (Some(phase), _) => phase.clone(),
        };
        parts.push(format!("{stage:<12}"));
        if self.total_batches > 0 && !matches!(self.status.as_str(), "queued") {
            // `current_batch` counts the phase's finished calls: a running job is on the next.
            let call = if self.is_terminal() {
                self.current_batch
            } else {
                self.current_batch.saturating_add(1)
            };
            parts.push(format!(
                "call {}/{}",
                call.min(self.total_batches),
                self.total_batches
            ));
        }
        parts.push(format!("{:>3}%", self.percentage));
        if let Some(tokens) = self.tokens {
            parts.push(format!("{} tokens", thousands(tokens)));
        }
        if let Some(cost) = self.cost {
            parts.push(format!("${cost:.4}"));
        }
        parts.join("  ").trim_end().to_string()
    }
}

/// Whether a job status is final.
pub fn is_terminal(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "cancelled")
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The progress bar on stderr; hidden when stderr is not a terminal.
pub struct Bar {
    bar: ProgressBar,
    visible: bool,
}

impl Bar {
    /// A bar for one job, visible only on a terminal.
    pub fn new() -> Bar {
        let visible = std::io::stderr().is_terminal();
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(100), target);
        if let Ok(style) = ProgressStyle::with_template("{spinner} [{bar:24}] {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(120));
        Bar { bar, visible }
    }

    /// Shows `snapshot`.
    pub fn update(&self, snapshot: &Snapshot) {
        self.bar.set_position(snapshot.percentage);
        self.bar.set_message(snapshot.line());
    }

    /// A line of information above the bar (or plain on stderr when there is no bar).
    pub fn note(&self, message: &str) {
        if self.visible {
            self.bar.suspend(|| eprintln!("{message}"));
        } else {
            eprintln!("{message}");
        }
    }

    /// Leaves the final state on screen.
    pub fn finish(&self, snapshot: &Snapshot) {
        self.update(snapshot);
        self.bar.finish();
    }
}

impl Default for Bar {
    fn default() -> Self {
        Bar::new()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn update() -> Value {
        json!({"type":"job_update","job_id":"j1","event_type":"progress","status":"processing",
               "progress":{"current":24,"total":244,"percentage":9,"phase":"processing","current_batch":2,
                           "total_batches":21,"completed_turns":24,"total_turns":244},
               "tokens":{"prompt":1700,"completion":260,"total":1960},"estimated_cost":0.00392})
    }

    #[test]
    fn a_websocket_update_renders_phase_call_percentage_tokens_and_cost() {
        let snapshot = Snapshot::from_update(&update(), "j1").unwrap();
        // Two calls of the phase done: the third is in flight.
        assert_eq!(
            snapshot.line(),
            "processing    call 3/21    9%  1,960 tokens  $0.0039"
        );
        assert!(!snapshot.is_terminal());

        let mut reducing = update();
        reducing["progress"]["phase"] = json!("reducing");
        reducing["progress"]["current_batch"] = json!(0);
        reducing["progress"]["total_batches"] = json!(1);
        reducing["progress"]["percentage"] = json!(96);
        assert_eq!(
            Snapshot::from_update(&reducing, "j1").unwrap().line(),
            "reducing      call 1/1   96%  1,960 tokens  $0.0039"
        );
    }

    #[test]
    fn other_messages_are_not_progress() {
        assert_eq!(Snapshot::from_update(&update(), "other-job"), None);
        let error =
            json!({"type": "error", "detail": "bad message", "error_code": "INVALID_MESSAGE"});
        assert_eq!(Snapshot::from_update(&error, "j1"), None);
        assert_eq!(Snapshot::from_update(&json!("text"), "j1"), None);
    }

    #[test]
    fn queued_and_finished_jobs_show_their_status() {
        let queued = json!({"type":"job_update","job_id":"j1","status":"queued",
                            "progress":{"percentage":0,"phase":"processing","current_batch":0,"total_batches":21},
                            "tokens":{"total":0},"estimated_cost":0.0});
        assert_eq!(
            Snapshot::from_update(&queued, "j1").unwrap().line(),
            "queued          0%  0 tokens  $0.0000"
        );
        let job = json!({"id":"j1","status":"completed",
                         "progress":{"percentage":100,"phase":"reducing","current_batch":1,"total_batches":1},
                         "token_metrics":{"total_tokens":1234567,"total_estimated_cost":1.5}});
        let snapshot = Snapshot::from_job(&job);
        assert!(snapshot.is_terminal());
        assert_eq!(
            snapshot.line(),
            "completed     call 1/1  100%  1,234,567 tokens  $1.5000"
        );
        // A job without figures still renders.
        assert_eq!(Snapshot::from_job(&json!({})).line(), "unknown         0%");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
