//! Documents (the `export` function): Word templates and exports of a job's result to
//! DOCX, PDF and HTML, rendered natively by [`crate::documents`].

pub mod export;
pub mod templates;
pub mod values;
