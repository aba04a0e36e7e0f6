//! The values an export fills a template with: the standard placeholders (dates in the
//! requested IANA time zone) and the job's extracted metadata as text.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};

use crate::domain::Job;
use crate::engine::error::{EngineError, EngineResult};
use crate::postprocess::extraction::STANDARD_PLACEHOLDERS;

/// The `timezone` query parameter: an IANA zone name (400 naming it otherwise); none
/// means UTC.
pub fn parse_timezone(raw: Option<&str>) -> EngineResult<Tz> {
    match raw.map(str::trim).filter(|zone| !zone.is_empty()) {
        None => Ok(Tz::UTC),
        Some(zone) => zone.parse::<Tz>().map_err(|_| {
            EngineError::invalid_field(
                "timezone",
                format!("'{zone}' is not an IANA time zone (for example Europe/Paris or UTC)"),
            )
        }),
    }
}

/// Whether `name` is one of the placeholders the gateway fills itself.
pub fn is_standard(name: &str) -> bool {
    STANDARD_PLACEHOLDERS.contains(&name)
}

/// The standard placeholders but `output`: `job_id`, `job_date` (the day it completed),
/// `service_name`, `flavor_name`, `organization_name` and `generated_at` (`now`), dates in
/// `zone`.
pub fn standard_values(job: &Job, zone: Tz, now: DateTime<Utc>) -> BTreeMap<String, String> {
    let completed = job
        .completed_at
        .as_deref()
        .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
        .map_or(now, |at| at.with_timezone(&Utc));
    let (_, flavor_name) = job.final_flavor();
    BTreeMap::from([
        ("job_id".to_string(), job.id.to_string()),
        (
            "job_date".to_string(),
            completed
                .with_timezone(&zone)
                .format("%Y-%m-%d")
                .to_string(),
        ),
        ("service_name".to_string(), job.service_name.clone()),
        ("flavor_name".to_string(), flavor_name.to_string()),
        (
            "organization_name".to_string(),
            job.organization_id.clone().unwrap_or_default(),
        ),
        (
            "generated_at".to_string(),
            now.with_timezone(&zone)
                .format("%Y-%m-%d %H:%M")
                .to_string(),
        ),
    ])
}

/// Extracted metadata as placeholder text: keys starting with `_` and standard names are
/// skipped; a list of objects becomes one line per item (its values joined by " - "),
/// another list its items joined by ", "; null becomes "".
pub fn metadata_values(metadata: &Map<String, Value>) -> BTreeMap<String, String> {
    metadata
        .iter()
        .filter(|(name, _)| !name.starts_with('_') && !is_standard(name))
        .map(|(name, value)| (name.clone(), as_text(value)))
        .collect()
}

fn as_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        Value::Array(items) if items.iter().all(Value::is_object) && !items.is_empty() => items
            .iter()
            .map(|item| {
                item.as_object()
                    .map(|fields| {
                        fields
                            .values()
                            .map(as_text)
                            .filter(|text| !text.is_empty())
                            .collect::<Vec<_>>()
                            .join(" - ")
                    })
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Array(items) => items
            .iter()
            .map(as_text)
            .filter(|text| !text.is_empty())
            .collect::<Vec<_>>()
            .join(", "),
        Value::Object(fields) => fields
            .iter()
            .map(|(key, value)| format!("{key}: {}", as_text(value)))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// A file name made safe for `Content-Disposition`: ASCII letters, digits, `-`, `_` and
/// `.`; everything else becomes `_`, runs collapse, and the result is at most 120 bytes.
pub fn safe_file_stem(raw: &str) -> String {
    let mut stem = String::with_capacity(raw.len());
    for c in raw.chars() {
        let keep = c.is_ascii_alphanumeric() || matches!(c, '-' | '.');
        let next = if keep { c } else { '_' };
        if next == '_' && stem.ends_with('_') {
            continue;
        }
        stem.push(next);
    }
    let stem = stem.trim_matches(['_', '.']);
    let stem: String = stem.chars().take(120).collect();
    if stem.is_empty() {
        "export".to_string()
    } else {
        stem
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::JobStatus;
    use crate::memory::sample_job;
    use serde_json::json;

    #[test]
    fn time_zones_are_iana_names_or_a_400_naming_the_field() {
        assert_eq!(parse_timezone(None).unwrap(), Tz::UTC);
        assert_eq!(parse_timezone(Some(" ")).unwrap(), Tz::UTC);
        assert_eq!(
            parse_timezone(Some("Europe/Paris")).unwrap(),
            Tz::Europe__Paris
        );
        let error = parse_timezone(Some("Mars/Olympus")).unwrap_err();
        assert_eq!((error.status(), error.field()), (400, Some("timezone")));
    }

    #[test]
    fn standard_values_use_the_zone_for_both_dates() {
        let mut job = sample_job(JobStatus::Completed, "2026-12-01T22:00:00Z");
        job.service_name = "Minutes".into();
        job.flavor_name = "iterative".into();
        job.organization_id = Some("org-1".into());
        job.completed_at = Some("2026-12-01T23:30:00Z".into());
        let now = DateTime::parse_from_rfc3339("2026-12-01T23:45:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let utc = standard_values(&job, Tz::UTC, now);
        assert_eq!(utc["job_date"], "2026-12-01");
        assert_eq!(utc["generated_at"], "2026-12-01 23:45");
        let paris = standard_values(&job, Tz::Europe__Paris, now);
        assert_eq!(paris["job_date"], "2026-12-02", "00:30 in Paris");
        assert_eq!(paris["generated_at"], "2026-12-02 00:45");
        assert_eq!(paris["service_name"], "Minutes");
        assert_eq!(paris["flavor_name"], "iterative");
        assert_eq!(paris["organization_name"], "org-1");
        assert_eq!(paris["job_id"], job.id.to_string());
        assert!(!paris.contains_key("output"));
    }

    #[test]
    fn metadata_becomes_text_without_private_or_standard_keys() {
        let metadata = json!({
            "title": "Budget review",
            "participants": ["Ann", "Bob", null],
            "actions": [{"owner": "Ann", "task": "send the figures"}, {"owner": "Bob", "task": "book"}],
            "count": 3,
            "missing": null,
            "_extraction_template_id": "x",
            "job_id": "forged",
        });
        let values = metadata_values(metadata.as_object().unwrap());
        assert_eq!(values["title"], "Budget review");
        assert_eq!(values["participants"], "Ann, Bob");
        assert_eq!(values["actions"], "Ann - send the figures\nBob - book");
        assert_eq!(values["count"], "3");
        assert_eq!(values["missing"], "");
        assert!(!values.contains_key("_extraction_template_id"));
        assert!(!values.contains_key("job_id"));
    }

    #[test]
    fn file_stems_are_safe_for_a_header() {
        assert_eq!(
            safe_file_stem("Réunion \"board\"/2026"),
            "R_union_board_2026"
        );
        assert_eq!(safe_file_stem("a\r\nb.c"), "a_b.c");
        assert_eq!(safe_file_stem("../.."), "export");
        assert_eq!(safe_file_stem(&"x".repeat(500)).len(), 120);
    }
}
