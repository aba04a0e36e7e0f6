//! Result versions (placeholder until the versions module lands).

use crate::domain::Job;
use crate::ports::keys;

/// The blob key of the job's current result version.
pub fn current_result_key(job: &Job) -> String {
    job.versions
        .iter()
        .find(|version| version.version_number == job.current_version)
        .map_or_else(|| keys::result(job.id), |version| version.key.clone())
}
