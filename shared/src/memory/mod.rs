//! In-memory implementations of every port ([`crate::ports`]) and of [`LlmClient`], for
//! unit tests of the engine without the emulator. Each fake keeps the semantics of its
//! AWS adapter in [`crate::aws`] (conditional writes, atomic catalog changes, listing order
//! and cursors), and offers failure injection and inspection to tests.
//!
//! [`MemoryGateway::new`] wires them into an [`engine::Gateway`](crate::engine::Gateway)
//! and keeps typed handles to each fake; [`MemoryGateway::seed`] creates a provider, a
//! model, a service and its two flavors (single-pass and iterative) through
//! [`CatalogStore::write`], as the catalog API does.

mod catalog;
mod gateway;
mod jobs;
mod llm;
mod realtime;
mod stores;
mod support;
#[cfg(test)]
mod tests;
mod usage;

pub use catalog::MemoryCatalog;
pub use gateway::*;
pub use jobs::MemoryJobStore;
pub use llm::{deltas_of, LlmCall, MemoryLlm};
pub use realtime::{MemoryConnections, MemoryNotifier};
pub use stores::{MemoryBlobs, MemoryBreakers, MemoryQueue, MemorySecrets};
pub use usage::MemoryUsage;
