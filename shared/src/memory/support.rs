//! Helpers shared by the fakes: poison-proof locks, armed failures, JSON round trips.

use std::sync::{Mutex, MutexGuard};

use serde::de::DeserializeOwned;

use crate::ports::{IoError, IoResult};

/// Locks a fake's state; a panic in another test thread never hides the state.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Failures armed for one operation: each makes one matching call fail with an
/// [`IoError`] (target `None` matches every call).
#[derive(Debug, Default)]
pub(super) struct FailNext {
    armed: Mutex<Vec<(Option<String>, usize)>>,
}

impl FailNext {
    pub(super) fn arm(&self, target: Option<String>, times: usize) {
        lock(&self.armed).push((target, times));
    }

    /// Fails this call if a failure armed for `target` is left.
    pub(super) fn trip(&self, operation: &'static str, target: &str) -> IoResult<()> {
        let mut armed = lock(&self.armed);
        let hit = armed.iter_mut().find(|(key, remaining)| {
            *remaining > 0 && key.as_deref().is_none_or(|key| key == target)
        });
        match hit {
            Some((_, remaining)) => {
                *remaining -= 1;
                armed.retain(|(_, remaining)| *remaining > 0);
                Err(IoError::new(operation, "injected failure"))
            }
            None => Ok(()),
        }
    }
}

/// Round-trips a value through JSON, as the adapters do through their stored format.
pub(super) fn round_trip<T: serde::Serialize + DeserializeOwned>(
    value: &T,
    operation: &'static str,
) -> IoResult<T> {
    serde_json::to_value(value)
        .and_then(serde_json::from_value)
        .map_err(|e| IoError::new(operation, e))
}
