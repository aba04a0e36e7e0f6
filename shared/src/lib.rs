//! LLM Gateway core (`gateway-core`): domain types, text processing, token counting, the
//! job step engine, and the AWS adapters behind small I/O traits. No Lambda types here.

pub mod api;
pub mod aws;
pub mod cached;
#[cfg(feature = "documents")]
pub mod documents;
pub mod domain;
pub mod engine;
pub mod llm;
pub mod logging;
#[cfg(any(test, feature = "test-util"))]
pub mod memory;
pub mod ports;
pub mod postprocess;
pub mod text;
pub mod tokens;
