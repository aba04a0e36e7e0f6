//! State shared by the WebSocket front door: its configuration, limits and live connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;

use super::events::ConnectionContext;
use crate::invoke::Invoker;

/// Largest message a client may send and the management API accepts (API Gateway's
/// 128 KB WebSocket message limit). Larger client messages close the socket with 1009.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

/// Function the WebSocket API invokes by default.
pub const DEFAULT_WS_FUNCTION: &str = "ws";

/// Routes (values of the frame's `action`) other than `$default`, by default.
pub const DEFAULT_WS_ROUTES: [&str; 2] = ["subscribe", "unsubscribe"];

/// Messages up to this size are read by the WebSocket layer, so that the ones over
/// [`MAX_MESSAGE_BYTES`] are answered with a 1009 close instead of a protocol error.
pub const TRANSPORT_MAX_MESSAGE_BYTES: usize = 1 << 20;

/// How long a server-initiated close waits for the client's close frame.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Configuration of the WebSocket front door.
#[derive(Clone, Debug)]
pub struct WsFrontDoor {
    /// Invoke API client.
    pub invoker: Invoker,
    /// Function handling `$connect`, `$disconnect` and every route.
    pub function: String,
    /// Route keys selectable by the frame's `action` (besides `$default`).
    pub routes: Vec<String>,
}

pub(super) enum Outgoing {
    Text(String),
    Binary(Vec<u8>),
    Close(u16, &'static str),
}

pub(super) struct Connection {
    pub(super) context: ConnectionContext,
    pub(super) outgoing: mpsc::UnboundedSender<Outgoing>,
    pub(super) last_active_ms: AtomicI64,
}

impl Connection {
    pub(super) fn touch(&self) {
        self.last_active_ms
            .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
    }
}

pub(super) struct WsState {
    pub(super) front_door: WsFrontDoor,
    pub(super) domain_name: String,
    pub(super) connections: Mutex<HashMap<String, Arc<Connection>>>,
    /// Connection tasks still running (their `$disconnect` not yet invoked).
    pub(super) live: AtomicUsize,
}

impl WsState {
    pub(super) fn get(&self, id: &str) -> Option<Arc<Connection>> {
        self.connections
            .lock()
            .ok()
            .and_then(|connections| connections.get(id).cloned())
    }

    pub(super) fn register(&self, connection: Arc<Connection>) {
        if let Ok(mut connections) = self.connections.lock() {
            connections.insert(connection.context.connection_id.clone(), connection);
        }
    }

    pub(super) fn unregister(&self, id: &str) -> Option<Arc<Connection>> {
        self.connections
            .lock()
            .ok()
            .and_then(|mut connections| connections.remove(id))
    }

    /// Asks every connection to close with `code`; they unregister at once.
    pub(super) fn close_all(&self, code: u16, reason: &'static str) {
        let all: Vec<Arc<Connection>> = self
            .connections
            .lock()
            .map(|mut connections| connections.drain().map(|(_, c)| c).collect())
            .unwrap_or_default();
        for connection in all {
            let _ = connection.outgoing.send(Outgoing::Close(code, reason));
        }
    }
}

pub(super) fn new_state(front_door: WsFrontDoor, domain_name: &str) -> Arc<WsState> {
    Arc::new(WsState {
        front_door,
        domain_name: domain_name.to_string(),
        connections: Mutex::new(HashMap::new()),
        live: AtomicUsize::new(0),
    })
}
