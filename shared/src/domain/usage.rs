//! Usage analytics: what a finished job adds to the aggregates (per organization, service,
//! flavor, hour and day), the keys of those aggregates, and the statistics read from them.
//! Pure: the store applies [`UsageEntry`]s; the engine reads [`UsageCounts`] back.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Job, JobStatus};

/// Upper bounds (ms) of the job duration histogram; the last bucket is unbounded.
pub const LATENCY_BUCKETS_MS: [u64; 11] = [
    1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_800_000, 3_600_000,
];

/// Buckets of the histogram: one per bound, plus the one above the last.
pub const HISTOGRAM_LEN: usize = LATENCY_BUCKETS_MS.len() + 1;

/// The organization key of aggregates over every organization (the operator's view).
pub const ALL_ORGANIZATIONS: &str = "*";

/// The organization key of jobs submitted without an organization.
pub const NO_ORGANIZATION: &str = "-";

/// Counters of one aggregate (or of one job: every count 0 or 1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageCounts {
    /// Finished jobs.
    pub requests: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Cost in micro-units of the account's currency (integer, so additions are exact).
    pub cost_micros: u64,
    /// Sum of the finished jobs' durations (submission to end).
    pub duration_ms: u64,
    /// How many durations fell in each bucket of [`LATENCY_BUCKETS_MS`].
    pub histogram: [u64; HISTOGRAM_LEN],
}

impl UsageCounts {
    /// Adds `other` to these counters.
    pub fn add(&mut self, other: &UsageCounts) {
        self.requests += other.requests;
        self.completed += other.completed;
        self.failed += other.failed;
        self.cancelled += other.cancelled;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cost_micros += other.cost_micros;
        self.duration_ms += other.duration_ms;
        for (bucket, count) in self.histogram.iter_mut().zip(other.histogram) {
            *bucket += count;
        }
    }

    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    pub fn cost(&self) -> f64 {
        self.cost_micros as f64 / 1_000_000.0
    }

    /// Completed jobs as a percentage of finished ones (0 without any).
    pub fn success_rate(&self) -> f64 {
        percentage(self.completed, self.requests)
    }

    pub fn avg_latency_ms(&self) -> f64 {
        ratio(self.duration_ms, self.requests)
    }

    /// The duration under which `quantile` (0–1) of the jobs finished, as the upper bound
    /// of its histogram bucket (the last bucket reports the largest bound). 0 without jobs.
    pub fn latency_quantile_ms(&self, quantile: f64) -> u64 {
        let total: u64 = self.histogram.iter().sum();
        if total == 0 {
            return 0;
        }
        let wanted = ((quantile * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in self.histogram.iter().enumerate() {
            seen += count;
            if seen >= wanted {
                return LATENCY_BUCKETS_MS[index.min(LATENCY_BUCKETS_MS.len() - 1)];
            }
        }
        LATENCY_BUCKETS_MS[LATENCY_BUCKETS_MS.len() - 1]
    }
}

/// `part` as a percentage of `whole`, rounded to 0.01 (0 when `whole` is 0).
pub fn percentage(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 10_000.0 / whole as f64).round() / 100.0
}

fn ratio(sum: u64, count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        (sum as f64 * 100.0 / count as f64).round() / 100.0
    }
}

/// One finished job, as the analytics see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobUsage {
    pub job_id: Uuid,
    pub organization_id: Option<String>,
    pub service_id: Uuid,
    pub service_name: String,
    /// The flavor that finished the job (the last failover's target, else its own).
    pub flavor_id: Uuid,
    pub flavor_name: String,
    pub status: JobStatus,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: Option<f64>,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it finished (RFC 3339).
    pub finished_at: String,
    /// A chat session's answer number: each answer of a session counts as one request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<u32>,
}

impl JobUsage {
    /// The usage a job change adds: a job that becomes completed, failed or cancelled
    /// (from any other status, or created finished), or a chat session's new answer (its
    /// tokens and cost since the previous one). None for every other change, so replaying
    /// progress updates adds nothing.
    pub fn of_change(old: Option<&Job>, new: &Job) -> Option<JobUsage> {
        if new.chat.is_some() {
            return Self::of_chat_answer(old, new);
        }
        if !new.status.is_terminal() || old.is_some_and(|old| old.status.is_terminal()) {
            return None;
        }
        Some(Self::of_finished(new))
    }

    /// Everything `job`, finished, has used.
    fn of_finished(new: &Job) -> JobUsage {
        let finished_at = new
            .completed_at
            .clone()
            .unwrap_or_else(|| new.updated_at.clone());
        let duration_ms = match (parse(&new.created_at), parse(&finished_at)) {
            (Some(start), Some(end)) => (end - start).num_milliseconds().max(0) as u64,
            _ => 0,
        };
        let (flavor_id, flavor_name) = new.final_flavor();
        JobUsage {
            job_id: new.id,
            organization_id: new.organization_id.clone(),
            service_id: new.service_id,
            service_name: new.service_name.clone(),
            flavor_id,
            flavor_name: flavor_name.to_string(),
            status: new.status,
            prompt_tokens: new.usage.prompt_tokens,
            completion_tokens: new.usage.completion_tokens,
            cost: new.estimated_cost(),
            duration_ms,
            error: new
                .error
                .as_ref()
                .map(|error| format!("{}: {}", error.code, error.message)),
            finished_at,
            answer: None,
        }
    }

    /// A chat job's change that adds an answer (its pass count grows): the answer's share.
    fn of_chat_answer(old: Option<&Job>, new: &Job) -> Option<JobUsage> {
        let (passes, prompt, completion, cost) = old.map_or((0, 0, 0, None), |old| {
            (
                old.usage.passes,
                old.usage.prompt_tokens,
                old.usage.completion_tokens,
                old.estimated_cost(),
            )
        });
        if !new.status.is_terminal() || new.usage.passes <= passes {
            return None;
        }
        let mut usage = Self::of_finished(new);
        usage.prompt_tokens = new.usage.prompt_tokens.saturating_sub(prompt);
        usage.completion_tokens = new.usage.completion_tokens.saturating_sub(completion);
        usage.cost = new
            .estimated_cost()
            .map(|total| (total - cost.unwrap_or(0.0)).max(0.0));
        usage.duration_ms = 0;
        usage.answer = Some(new.usage.passes);
        Some(usage)
    }

    /// What identifies this usage to the store, which counts each once: the job, or a
    /// chat session's answer.
    pub fn counted_key(&self) -> String {
        match self.answer {
            Some(answer) => format!("{}#{answer}", self.job_id),
            None => self.job_id.to_string(),
        }
    }

    /// The counters this job adds to each of its aggregates.
    pub fn counts(&self) -> UsageCounts {
        let mut histogram = [0; HISTOGRAM_LEN];
        let bucket = LATENCY_BUCKETS_MS
            .iter()
            .position(|&bound| self.duration_ms <= bound)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        histogram[bucket] = 1;
        UsageCounts {
            requests: 1,
            completed: u64::from(self.status == JobStatus::Completed),
            failed: u64::from(self.status == JobStatus::Failed),
            cancelled: u64::from(self.status == JobStatus::Cancelled),
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cost_micros: self
                .cost
                .map_or(0, |cost| (cost.max(0.0) * 1_000_000.0).round() as u64),
            duration_ms: self.duration_ms,
            histogram,
        }
    }

    /// The organization keys the job counts under: its own, and every organization's.
    fn organizations(&self) -> [String; 2] {
        [
            self.organization_id
                .clone()
                .unwrap_or_else(|| NO_ORGANIZATION.into()),
            ALL_ORGANIZATIONS.into(),
        ]
    }

    /// The aggregates this job adds to, and the per-job records it writes.
    pub fn entries(&self) -> Vec<UsageEntry> {
        let (hour, day) = (hour_key(&self.finished_at), day_key(&self.finished_at));
        let mut entries = Vec::new();
        for org in self.organizations() {
            let service = UsageSeries::Service(self.service_id).key(&org);
            let flavor = UsageSeries::Flavor(self.flavor_id).key(&org);
            let dashboard = UsageSeries::Services.key(&org);
            entries.extend([
                UsageEntry::Add {
                    series: service.clone(),
                    bucket: hour.clone(),
                },
                UsageEntry::Add {
                    series: service,
                    bucket: day.clone(),
                },
                UsageEntry::Add {
                    series: flavor.clone(),
                    bucket: hour.clone(),
                },
                UsageEntry::Add {
                    series: flavor,
                    bucket: day.clone(),
                },
                UsageEntry::Add {
                    series: dashboard,
                    bucket: format!("{hour}#{}", self.service_id),
                },
                UsageEntry::Record {
                    series: UsageSeries::FlavorJobs(self.flavor_id).key(&org),
                    bucket: format!("{}#{}", self.finished_at, self.counted_key()),
                },
            ]);
            if self.status == JobStatus::Failed {
                entries.push(UsageEntry::Record {
                    series: UsageSeries::Failures.key(&org),
                    bucket: format!("{}#{}", self.finished_at, self.job_id),
                });
            }
        }
        entries
    }
}

/// One write of a job's usage: counters added to an aggregate, or the job's own record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageEntry {
    /// Add the job's [`UsageCounts`] to the aggregate (`series`, `bucket`).
    Add { series: String, bucket: String },
    /// Store the [`JobUsage`] itself under (`series`, `bucket`).
    Record { series: String, bucket: String },
}

/// A family of aggregates or records, for one organization key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageSeries {
    /// A service: buckets `H#{hour}` and `D#{day}`.
    Service(Uuid),
    /// A flavor: buckets `H#{hour}` and `D#{day}`.
    Flavor(Uuid),
    /// Every service, per hour: buckets `H#{hour}#{service_id}` (the dashboard).
    Services,
    /// A flavor's finished jobs: buckets `{finished_at}#{job_id}`.
    FlavorJobs(Uuid),
    /// Failed jobs: buckets `{finished_at}#{job_id}`.
    Failures,
}

impl UsageSeries {
    /// The series key for an organization key.
    pub fn key(self, organization: &str) -> String {
        match self {
            UsageSeries::Service(id) => format!("{organization}#service#{id}"),
            UsageSeries::Flavor(id) => format!("{organization}#flavor#{id}"),
            UsageSeries::Services => format!("{organization}#services"),
            UsageSeries::FlavorJobs(id) => format!("{organization}#flavor-jobs#{id}"),
            UsageSeries::Failures => format!("{organization}#failures"),
        }
    }
}

/// The organization key of a reader: its organization, or every organization.
pub fn organization_key(organization_id: Option<&str>) -> &str {
    organization_id.unwrap_or(ALL_ORGANIZATIONS)
}

fn parse(timestamp: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(timestamp)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

/// The hour bucket of a timestamp: `H#2026-12-01T20`.
pub fn hour_key(timestamp: &str) -> String {
    format!("H#{}", timestamp.get(..13).unwrap_or(timestamp))
}

/// The day bucket of a timestamp: `D#2026-12-01`.
pub fn day_key(timestamp: &str) -> String {
    format!("D#{}", timestamp.get(..10).unwrap_or(timestamp))
}

/// The period of a statistics request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
    Month,
    All,
}

impl Period {
    /// `24h`, `7d`, `30d` or `all`.
    pub fn parse(text: &str) -> Option<Period> {
        match text {
            "24h" => Some(Period::Day),
            "7d" => Some(Period::Week),
            "30d" => Some(Period::Month),
            "all" => Some(Period::All),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "24h",
            Period::Week => "7d",
            Period::Month => "30d",
            Period::All => "all",
        }
    }

    /// The bucket range read for this period ending at `now`: hours for 24 h, days
    /// otherwise (inclusive bounds; `all` from the first day there is).
    pub fn buckets(self, now: DateTime<Utc>) -> (String, String) {
        let stamp = |time: DateTime<Utc>| time.to_rfc3339();
        match self {
            Period::Day => (
                hour_key(&stamp(now - Duration::hours(23))),
                hour_key(&stamp(now)),
            ),
            Period::Week => (
                day_key(&stamp(now - Duration::days(6))),
                day_key(&stamp(now)),
            ),
            Period::Month => (
                day_key(&stamp(now - Duration::days(29))),
                day_key(&stamp(now)),
            ),
            Period::All => ("D#".into(), day_key(&stamp(now))),
        }
    }

    /// The earliest finish time of this period ending at `now` (None for `all`).
    pub fn since(self, now: DateTime<Utc>) -> Option<String> {
        let start = match self {
            Period::Day => now - Duration::hours(24),
            Period::Week => now - Duration::days(7),
            Period::Month => now - Duration::days(30),
            Period::All => return None,
        };
        // The format of the jobs' timestamps, so that record keys compare as times.
        Some(start.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    }
}

/// A service's health from its last 24 hours: no requests is `inactive`, a success rate of
/// at least 95 % `healthy`, at least 80 % `degraded`, else `unhealthy`.
pub fn health(counts: &UsageCounts) -> &'static str {
    if counts.requests == 0 {
        return "inactive";
    }
    match counts.success_rate() {
        rate if rate >= 95.0 => "healthy",
        rate if rate >= 80.0 => "degraded",
        _ => "unhealthy",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::sample_job;

    fn finished(status: JobStatus) -> (Job, Job) {
        let mut running = sample_job(JobStatus::Processing, "2026-12-01T10:00:00.000000Z");
        running.organization_id = Some("org-a".into());
        let mut done = running.clone();
        done.status = status;
        done.completed_at = Some("2026-12-01T10:00:07.500000Z".into());
        done.usage.prompt_tokens = 100;
        done.usage.completion_tokens = 20;
        done.usage.cost = Some(0.001234);
        (running, done)
    }

    #[test]
    fn only_the_change_that_finishes_a_job_counts() {
        let (running, done) = finished(JobStatus::Completed);
        let usage = JobUsage::of_change(Some(&running), &done).expect("finishes");
        assert_eq!(usage.duration_ms, 7_500);
        assert!(
            JobUsage::of_change(Some(&done), &done).is_none(),
            "already finished"
        );
        assert!(
            JobUsage::of_change(Some(&running), &running).is_none(),
            "progress"
        );
        assert!(
            JobUsage::of_change(None, &done).is_some(),
            "created finished"
        );
        let counts = usage.counts();
        assert_eq!(
            (counts.requests, counts.completed, counts.failed),
            (1, 1, 0)
        );
        assert_eq!(counts.cost_micros, 1_234);
        assert_eq!(counts.histogram[3], 1, "7.5 s is in the 5-10 s bucket");
    }

    #[test]
    fn each_answer_of_a_chat_session_counts_as_one_request_with_its_own_tokens() {
        let (_, mut first) = finished(JobStatus::Completed);
        first.chat = Some(crate::domain::ChatRecord::default());
        first.usage.passes = 1;
        let created = JobUsage::of_change(None, &first).expect("the first answer");
        assert_eq!((created.prompt_tokens, created.answer), (100, Some(1)));
        let mut second = first.clone();
        second.usage.passes = 2;
        second.usage.prompt_tokens = 250;
        second.usage.completion_tokens = 30;
        second.usage.cost = Some(0.002);
        let added = JobUsage::of_change(Some(&first), &second).expect("a new answer");
        assert_eq!((added.prompt_tokens, added.completion_tokens), (150, 10));
        assert!((added.cost.unwrap() - 0.000766).abs() < 1e-9);
        assert_eq!(added.counted_key(), format!("{}#2", second.id));
        assert_eq!(added.counts().requests, 1);
        assert!(
            JobUsage::of_change(Some(&second), &second).is_none(),
            "no new answer"
        );
    }

    #[test]
    fn a_job_counts_for_its_organization_and_all_of_them() {
        let (running, done) = finished(JobStatus::Failed);
        let entries = JobUsage::of_change(Some(&running), &done)
            .unwrap()
            .entries();
        let series: Vec<&str> = entries
            .iter()
            .map(|entry| match entry {
                UsageEntry::Add { series, .. } | UsageEntry::Record { series, .. } => {
                    series.as_str()
                }
            })
            .collect();
        assert_eq!(series.iter().filter(|s| s.starts_with("org-a#")).count(), 7);
        assert_eq!(series.iter().filter(|s| s.starts_with("*#")).count(), 7);
        assert!(entries.contains(&UsageEntry::Add {
            series: format!("org-a#service#{}", done.service_id),
            bucket: "H#2026-12-01T10".into(),
        }));
        assert!(series.contains(&"*#failures"));
    }

    #[test]
    fn statistics_from_counters() {
        let mut counts = UsageCounts::default();
        assert_eq!(
            (counts.success_rate(), counts.latency_quantile_ms(0.5)),
            (0.0, 0)
        );
        for (status, duration) in [
            (JobStatus::Completed, 500),
            (JobStatus::Completed, 1_500),
            (JobStatus::Completed, 4_000),
            (JobStatus::Failed, 45_000),
        ] {
            let (running, mut done) = finished(status);
            done.completed_at = None;
            let mut usage = JobUsage::of_change(Some(&running), &done).unwrap();
            usage.duration_ms = duration;
            counts.add(&usage.counts());
        }
        assert_eq!(counts.success_rate(), 75.0);
        assert_eq!(counts.avg_latency_ms(), 12_750.0);
        assert_eq!(counts.latency_quantile_ms(0.5), 2_000);
        assert_eq!(counts.latency_quantile_ms(0.99), 60_000);
        assert_eq!(counts.latency_quantile_ms(0.0), 1_000);
        assert_eq!(health(&counts), "unhealthy");
        assert_eq!(health(&UsageCounts::default()), "inactive");
        let healthy = UsageCounts {
            requests: 20,
            completed: 19,
            ..Default::default()
        };
        let degraded = UsageCounts {
            requests: 10,
            completed: 8,
            ..Default::default()
        };
        assert_eq!(
            (health(&healthy), health(&degraded)),
            ("healthy", "degraded")
        );
    }

    #[test]
    fn periods_name_their_buckets() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T20:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            Period::Day.buckets(now),
            ("H#2026-11-30T21".into(), "H#2026-12-01T20".into())
        );
        assert_eq!(
            Period::Week.buckets(now),
            ("D#2026-11-25".into(), "D#2026-12-01".into())
        );
        assert_eq!(Period::Month.buckets(now).0, "D#2026-11-02");
        assert_eq!(Period::All.since(now), None);
        assert_eq!(
            Period::Day.since(now).as_deref(),
            Some("2026-11-30T20:30:00.000000Z")
        );
        assert_eq!(Period::parse("1y"), None);
    }
}
