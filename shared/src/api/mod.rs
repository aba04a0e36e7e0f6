//! The REST edge of the core: requests decoded once ([`request`]), one route table per
//! function ([`catalog`], [`jobs`], [`execute`], [`export`], [`chat`]) from which both the
//! routing and the OpenAPI document ([`openapi`]) come, and the error bodies ([`response`]).

pub mod catalog;
pub mod chat;
pub mod execute;
pub mod export;
pub mod jobs;
pub mod multipart;
pub mod openapi;
pub mod request;
pub mod response;
pub mod routes;

pub use request::ApiRequest;

/// Every route table, for the OpenAPI document and the route checks.
pub const TABLES: &[&routes::RouteTable] = &[
    &execute::TABLE,
    &jobs::TABLE,
    &catalog::TABLE,
    &export::TABLE,
    &chat::TABLE,
];
