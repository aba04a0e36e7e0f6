//! [`UsageStore`] in memory: aggregates and records in ordered maps, and the jobs counted.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;

use super::support::lock;
use crate::domain::{JobUsage, UsageCounts, UsageEntry};
use crate::ports::{IoResult, UsageStore};

/// Usage analytics in memory, applied like the DynamoDB table: all of a job or nothing.
#[derive(Debug, Default)]
pub struct MemoryUsage {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    counted: HashSet<String>,
    aggregates: BTreeMap<(String, String), UsageCounts>,
    records: BTreeMap<(String, String), JobUsage>,
}

impl MemoryUsage {
    /// Jobs counted so far.
    pub fn counted(&self) -> usize {
        lock(&self.state).counted.len()
    }
}

#[async_trait]
impl UsageStore for MemoryUsage {
    async fn record(&self, usage: &JobUsage) -> IoResult<bool> {
        let mut state = lock(&self.state);
        if !state.counted.insert(usage.counted_key()) {
            return Ok(false);
        }
        let counts = usage.counts();
        for entry in usage.entries() {
            match entry {
                UsageEntry::Add { series, bucket } => {
                    state
                        .aggregates
                        .entry((series, bucket))
                        .or_default()
                        .add(&counts);
                }
                UsageEntry::Record { series, bucket } => {
                    state.records.insert((series, bucket), usage.clone());
                }
            }
        }
        Ok(true)
    }

    async fn aggregates(
        &self,
        series: &str,
        from: &str,
        to: &str,
    ) -> IoResult<Vec<(String, UsageCounts)>> {
        let upper = format!("{to}\u{10FFFF}");
        Ok(lock(&self.state)
            .aggregates
            .iter()
            .filter(|((s, bucket), _)| s == series && bucket.as_str() >= from && *bucket <= upper)
            .map(|((_, bucket), counts)| (bucket.clone(), counts.clone()))
            .collect())
    }

    async fn records(
        &self,
        series: &str,
        since: Option<&str>,
        limit: usize,
    ) -> IoResult<Vec<JobUsage>> {
        Ok(lock(&self.state)
            .records
            .iter()
            .rev()
            .filter(|((s, bucket), _)| {
                s == series && since.is_none_or(|since| bucket.as_str() >= since)
            })
            .map(|(_, record)| record.clone())
            .take(limit)
            .collect())
    }

    async fn count_records(&self, series: &str, since: Option<&str>) -> IoResult<u64> {
        Ok(lock(&self.state)
            .records
            .keys()
            .filter(|(s, bucket)| s == series && since.is_none_or(|since| bucket.as_str() >= since))
            .count() as u64)
    }
}
