//! The catalog API: providers, models, prompts, services and flavors, service and prompt
//! types, flavor presets. Request and response JSON follow the reference implementation
//! (`{items, total, page, page_size, total_pages}` pages, `{"detail": ...}` errors, 422
//! validation errors whose `loc` names the field).
//!
//! Every resource is an [`Entity`] stored as a JSON record through
//! [`CatalogStore`](crate::ports::CatalogStore); names that must be unique are claimed in
//! the same atomic write as the record, so a conflict (409) writes nothing.

pub mod analytics;
pub mod entity;
pub mod failover;
pub mod flavors;
pub mod page;

pub use entity::{Entity, Scope};
pub use page::PageRequest;
pub mod live;
pub mod models;
pub mod presets;
pub mod prompts;
pub mod providers;
pub mod services;
pub mod tokenizers;
pub mod validate;
