//! Deterministic OpenAI-compatible LLM server with fault injection.
//!
//! Used in-process by tests ([`MockLlm::start`]) and out-of-process by the
//! local demo and e2e tests (the `mock-llm` binary plus the `/_mock/*`
//! control endpoints). See [`answer_for`] for how answers are derived.
//! `stream: true` requests get the same answer as server-sent events, one
//! chunk per delta ([`deltas_of`]), usage in the last chunk when
//! `stream_options.include_usage` is set, then `data: [DONE]`.

#![warn(missing_docs)]

mod answer;
mod server;
mod stream;
mod types;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub use answer::{answer_for, count_tokens, deltas_of, prompt_tokens, WORDS_PER_TURN};
pub use types::{FaultKind, FaultRule, Outcome, RequestLogEntry};

use server::Shared;

/// Model id served by `GET /v1/models` and used when a request omits `model`.
pub const MODEL_ID: &str = "mock-model";

/// A running mock LLM server; shuts down gracefully when dropped.
pub struct MockLlm {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl MockLlm {
    /// Binds `addr` (port 0 picks a free port) and serves in a background task.
    pub async fn start(addr: SocketAddr) -> std::io::Result<MockLlm> {
        answer::warm_up();
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (release_tx, release_rx) = watch::channel(false);
        let shared = Arc::new(Shared::new(release_rx));
        let app = server::router(shared.clone());
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let graceful = async move {
                // Fires on an explicit shutdown or when the sender is dropped.
                let _ = shutdown_rx.await;
                // Release hanging requests so graceful shutdown can complete.
                let _ = release_tx.send(true);
            };
            if let Err(err) = axum::serve(listener, app)
                .with_graceful_shutdown(graceful)
                .await
            {
                tracing::error!(%err, "mock-llm server error");
            }
        });
        tracing::info!(%addr, "mock-llm started");
        Ok(MockLlm {
            addr,
            shared,
            shutdown: Some(shutdown_tx),
            task: Some(task),
        })
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// OpenAI base URL, e.g. `http://127.0.0.1:PORT/v1` (unspecified bind
    /// addresses are reported as loopback).
    pub fn base_url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() {
                Ipv4Addr::LOCALHOST.into()
            } else {
                Ipv6Addr::LOCALHOST.into()
            });
        }
        format!("http://{addr}/v1")
    }

    /// Snapshot of the request log, in arrival order.
    pub fn requests(&self) -> Vec<RequestLogEntry> {
        self.shared.requests()
    }

    /// Prompts of requests whose outcome is `answered`, in arrival order.
    pub fn answered_prompts(&self) -> Vec<String> {
        self.shared
            .requests()
            .into_iter()
            .filter(|e| e.outcome == Outcome::Answered)
            .map(|e| e.prompt)
            .collect()
    }

    /// Appends a fault rule to the queue.
    pub fn push_fault(&self, rule: FaultRule) {
        self.shared.push_faults(vec![rule]);
    }

    /// Sets the base latency applied to every completion request.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.set_latency(latency);
    }

    /// Sets the pause before each delta of a streamed answer after the first (so a client
    /// can see tokens arrive while the rest is still being "generated").
    pub fn set_delta_delay(&self, delay: Duration) {
        self.shared.set_delta_delay(delay);
    }

    /// Requires `Authorization: Bearer <key>` on every request (None: no check).
    pub fn require_api_key(&self, key: Option<&str>) {
        self.shared.set_api_key(key.map(str::to_owned));
    }

    /// Removes all queued fault rules.
    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.shared.clear_requests();
    }

    /// Clears fault rules and the request log, and resets latency and delta delay to zero.
    pub fn clear(&self) {
        self.shared.reset();
    }

    /// Shuts down gracefully and waits (up to 5 s) for the server task.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for MockLlm {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl std::fmt::Debug for MockLlm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockLlm").field("addr", &self.addr).finish()
    }
}
