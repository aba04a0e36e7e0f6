//! Usage analytics in the reference's shapes: `/services/{id}/stats`,
//! `/services/{id}/flavor-stats`, `/flavors/{id}/stats`, `/flavors/{id}/usage-history` and
//! `/analytics/dashboard`. They read the aggregates the jobs stream keeps
//! ([`record_change`]), never the jobs table: a few queries whatever the job count.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use super::entity::{list, load, Scope};
use super::flavors::{flavors_of, load_flavor};
use crate::domain::{
    health, now_timestamp, organization_key, percentage, Job, JobUsage, Period, Service,
    UsageCounts, UsageSeries,
};
use crate::engine::error::{EngineError, EngineResult, Location};
use crate::engine::{Gateway, JsonResponse};
use crate::ports::IoResult;

/// Failures listed on the dashboard.
const RECENT_FAILURES: usize = 5;

/// Largest `limit` of a usage history page.
pub const MAX_HISTORY_LIMIT: usize = 1_000;

/// Counts a job change in the aggregates when it finishes the job (completed, failed or
/// cancelled), once per job whatever the replays: `true` when it was counted now.
pub async fn record_change(gateway: &Gateway, old: Option<&Job>, new: &Job) -> IoResult<bool> {
    match JobUsage::of_change(old, new) {
        Some(usage) => gateway.usage.record(&usage).await,
        None => Ok(false),
    }
}

/// The `period` query parameter (default `24h`; 422 naming it otherwise).
pub fn parse_period(value: Option<&str>) -> EngineResult<Period> {
    let value = value.unwrap_or("24h");
    Period::parse(value).ok_or_else(|| {
        EngineError::validation(
            Location::Query,
            "period",
            "must be one of 24h, 7d, 30d, all",
        )
    })
}

/// The aggregates of `series` over `period` ending `now`: hours for 24h, days otherwise.
async fn buckets(
    gateway: &Gateway,
    series: &str,
    period: Period,
    now: DateTime<Utc>,
) -> IoResult<Vec<(String, UsageCounts)>> {
    let (from, to) = period.buckets(now);
    gateway.usage.aggregates(series, &from, &to).await
}

/// The sum of some counters.
fn sum<'a>(counts: impl IntoIterator<Item = &'a UsageCounts>) -> UsageCounts {
    let mut total = UsageCounts::default();
    for counts in counts {
        total.add(counts);
    }
    total
}

/// The summed counters of `series` over `period`.
async fn total(
    gateway: &Gateway,
    series: &str,
    period: Period,
    now: DateTime<Utc>,
) -> IoResult<UsageCounts> {
    let buckets = buckets(gateway, series, period, now).await?;
    Ok(sum(buckets.iter().map(|(_, counts)| counts)))
}

/// The summed counters of `series` over `period`, and its time series: one point per hour
/// (24h) or day (7d, 30d, every day with jobs for `all`).
async fn totals(
    gateway: &Gateway,
    series: &str,
    period: Period,
    now: DateTime<Utc>,
) -> IoResult<(UsageCounts, Vec<Value>)> {
    let buckets = buckets(gateway, series, period, now).await?;
    let total = sum(buckets.iter().map(|(_, counts)| counts));
    let point = |bucket: &str, counts: Option<&UsageCounts>| {
        let counts = counts.cloned().unwrap_or_default();
        let stamp = bucket.get(2..).unwrap_or_default();
        let timestamp = if stamp.len() == 13 {
            format!("{stamp}:00:00Z")
        } else {
            format!("{stamp}T00:00:00Z")
        };
        json!({"timestamp": timestamp, "requests": counts.requests,
               "tokens": counts.total_tokens(), "cost": counts.cost()})
    };
    let find = |bucket: &str| buckets.iter().find(|(b, _)| b == bucket).map(|(_, c)| c);
    let series_points = match period {
        Period::All => buckets.iter().map(|(b, c)| point(b, Some(c))).collect(),
        Period::Day => (0..24)
            .rev()
            .map(|hours| crate::domain::hour_key(&(now - Duration::hours(hours)).to_rfc3339()))
            .map(|bucket| point(&bucket, find(&bucket)))
            .collect(),
        Period::Week | Period::Month => {
            let days = if period == Period::Week { 7 } else { 30 };
            (0..days)
                .rev()
                .map(|back| crate::domain::day_key(&(now - Duration::days(back)).to_rfc3339()))
                .map(|bucket| point(&bucket, find(&bucket)))
                .collect()
        }
    };
    Ok((total, series_points))
}

/// `GET /services/{id}/stats?period=` → `{service_id, service_name, period, stats{...},
/// flavor_breakdown[], time_series[], generated_at}`.
pub async fn service_stats(
    gateway: &Gateway,
    scope: &Scope,
    service_id: Uuid,
    period: Period,
) -> EngineResult<JsonResponse> {
    let service: Service = load(gateway.records.as_ref(), service_id, scope).await?;
    let org = organization_key(scope.organization_id.as_deref());
    let now = Utc::now();
    let (total, time_series) = totals(
        gateway,
        &UsageSeries::Service(service_id).key(org),
        period,
        now,
    )
    .await?;
    let flavors = per_flavor(gateway, org, service_id, period, now).await?;
    let used: Vec<&(crate::domain::Flavor, UsageCounts)> = flavors
        .iter()
        .filter(|(_, counts)| counts.requests > 0)
        .collect();
    let most_used = used
        .iter()
        .max_by_key(|(_, counts)| counts.requests)
        .map(|(flavor, _)| flavor.name.clone());
    let breakdown: Vec<Value> = used
        .iter()
        .map(|(flavor, counts)| {
            json!({"flavor_id": flavor.id, "flavor_name": flavor.name, "requests": counts.requests,
                   "percentage": percentage(counts.requests, total.requests)})
        })
        .collect();
    Ok(JsonResponse::new(
        200,
        json!({
            "service_id": service.id,
            "service_name": service.name,
            "period": period.name(),
            "stats": {
                "total_requests": total.requests,
                "successful_requests": total.completed,
                "failed_requests": total.failed,
                "cancelled_requests": total.cancelled,
                "success_rate": total.success_rate(),
                "total_tokens": total.total_tokens(),
                "total_estimated_cost": total.cost(),
                "avg_latency_ms": total.avg_latency_ms(),
                "flavors_used": used.len(),
                "most_used_flavor": most_used,
            },
            "flavor_breakdown": breakdown,
            "time_series": time_series,
            "generated_at": now_timestamp(),
        }),
    ))
}

/// Each flavor of the service with its counters over the period (one query per flavor).
async fn per_flavor(
    gateway: &Gateway,
    org: &str,
    service_id: Uuid,
    period: Period,
    now: DateTime<Utc>,
) -> EngineResult<Vec<(crate::domain::Flavor, UsageCounts)>> {
    let mut flavors = Vec::new();
    for flavor in flavors_of(gateway, service_id).await? {
        let series = UsageSeries::Flavor(flavor.id).key(org);
        let counts = total(gateway, &series, period, now).await?;
        flavors.push((flavor, counts));
    }
    Ok(flavors)
}

/// `GET /services/{id}/flavor-stats?period=` → `{service_id, service_name, period,
/// flavors[{flavor_id, flavor_name, is_default, total_requests, success_rate, total_tokens,
/// avg_latency_ms, total_estimated_cost, usage_percentage}], totals, generated_at}`.
pub async fn service_flavor_stats(
    gateway: &Gateway,
    scope: &Scope,
    service_id: Uuid,
    period: Period,
) -> EngineResult<JsonResponse> {
    let service: Service = load(gateway.records.as_ref(), service_id, scope).await?;
    let org = organization_key(scope.organization_id.as_deref());
    let flavors = per_flavor(gateway, org, service_id, period, Utc::now()).await?;
    let total = sum(flavors.iter().map(|(_, counts)| counts));
    let items: Vec<Value> = flavors
        .iter()
        .map(|(flavor, counts)| {
            json!({
                "flavor_id": flavor.id, "flavor_name": flavor.name, "is_default": flavor.is_default,
                "total_requests": counts.requests, "success_rate": counts.success_rate(),
                "total_tokens": counts.total_tokens(), "avg_latency_ms": counts.avg_latency_ms(),
                "total_estimated_cost": counts.cost(),
                "usage_percentage": percentage(counts.requests, total.requests),
            })
        })
        .collect();
    Ok(JsonResponse::new(
        200,
        json!({
            "service_id": service.id,
            "service_name": service.name,
            "period": period.name(),
            "flavors": items,
            "totals": {"total_requests": total.requests, "total_tokens": total.total_tokens(),
                       "total_cost": total.cost()},
            "generated_at": now_timestamp(),
        }),
    ))
}

/// `GET /flavors/{id}/stats?period=` → `{flavor_id, flavor_name, period, stats{requests,
/// tokens, latency (avg, and min, max and percentiles at the histogram's bucket bounds),
/// cost, time_series}, generated_at}`.
pub async fn flavor_stats(
    gateway: &Gateway,
    scope: &Scope,
    service_id: Option<Uuid>,
    flavor_id: Uuid,
    period: Period,
) -> EngineResult<JsonResponse> {
    let (_, flavor) = load_flavor(gateway, scope, service_id, flavor_id).await?;
    let org = organization_key(scope.organization_id.as_deref());
    let series = UsageSeries::Flavor(flavor_id).key(org);
    let (total, time_series) = totals(gateway, &series, period, Utc::now()).await?;
    let average = |sum: u64| {
        if total.requests == 0 {
            0.0
        } else {
            (sum as f64 * 100.0 / total.requests as f64).round() / 100.0
        }
    };
    Ok(JsonResponse::new(
        200,
        json!({
            "flavor_id": flavor.id,
            "flavor_name": flavor.name,
            "period": period.name(),
            "stats": {
                "total_requests": total.requests,
                "successful_requests": total.completed,
                "failed_requests": total.failed,
                "success_rate": total.success_rate(),
                "total_input_tokens": total.prompt_tokens,
                "total_output_tokens": total.completion_tokens,
                "total_tokens": total.total_tokens(),
                "avg_input_tokens": average(total.prompt_tokens),
                "avg_output_tokens": average(total.completion_tokens),
                "avg_latency_ms": total.avg_latency_ms(),
                "min_latency_ms": total.latency_quantile_ms(0.0),
                "max_latency_ms": total.latency_quantile_ms(1.0),
                "p50_latency_ms": total.latency_quantile_ms(0.5),
                "p95_latency_ms": total.latency_quantile_ms(0.95),
                "p99_latency_ms": total.latency_quantile_ms(0.99),
                "total_estimated_cost": total.cost(),
                "avg_cost_per_request": if total.requests == 0 { 0.0 } else { total.cost() / total.requests as f64 },
                "time_series": time_series,
            },
            "generated_at": now_timestamp(),
        }),
    ))
}

/// `GET /flavors/{id}/usage-history?period=&limit=&offset=` → `{total, items[{id,
/// flavor_id, job_id, input_tokens, output_tokens, total_tokens, latency_ms,
/// estimated_cost, success, error_message, executed_at}]}`, newest first.
pub async fn usage_history(
    gateway: &Gateway,
    scope: &Scope,
    flavor_id: Uuid,
    period: Period,
    limit: usize,
    offset: usize,
) -> EngineResult<JsonResponse> {
    load_flavor(gateway, scope, None, flavor_id).await?;
    let org = organization_key(scope.organization_id.as_deref());
    let series = UsageSeries::FlavorJobs(flavor_id).key(org);
    let since = period.since(Utc::now());
    let total = gateway
        .usage
        .count_records(&series, since.as_deref())
        .await?;
    let records = gateway
        .usage
        .records(&series, since.as_deref(), offset + limit)
        .await?;
    let items: Vec<Value> = records
        .into_iter()
        .skip(offset)
        .map(|record| {
            json!({
                "id": record.job_id, "flavor_id": record.flavor_id, "job_id": record.job_id,
                "input_tokens": record.prompt_tokens, "output_tokens": record.completion_tokens,
                "total_tokens": record.prompt_tokens + record.completion_tokens,
                "latency_ms": record.duration_ms, "estimated_cost": record.cost,
                "success": record.status == crate::domain::JobStatus::Completed,
                "status": record.status, "error_message": record.error,
                "executed_at": record.finished_at,
            })
        })
        .collect();
    Ok(JsonResponse::new(
        200,
        json!({"total": total, "items": items}),
    ))
}

/// `GET /analytics/dashboard`: the last 24 hours → `{period: "24h", overview{total_jobs,
/// successful_jobs, failed_jobs, success_rate, total_tokens, total_cost, active_services,
/// avg_latency_ms}, services[{service_id, service_name, requests_24h, success_rate,
/// status}], recent_failures[≤5], generated_at}`. Health: no requests is `inactive`, ≥95 %
/// `healthy`, ≥80 % `degraded`, else `unhealthy`.
pub async fn dashboard(gateway: &Gateway, scope: &Scope) -> EngineResult<JsonResponse> {
    let org = organization_key(scope.organization_id.as_deref());
    let now = Utc::now();
    let buckets = buckets(gateway, &UsageSeries::Services.key(org), Period::Day, now).await?;
    let overall = sum(buckets.iter().map(|(_, counts)| counts));
    let mut by_service: std::collections::HashMap<Uuid, UsageCounts> = Default::default();
    for (bucket, counts) in &buckets {
        if let Some(id) = bucket
            .rsplit('#')
            .next()
            .and_then(|id| Uuid::parse_str(id).ok())
        {
            by_service.entry(id).or_default().add(counts);
        }
    }
    let mut services: Vec<Service> = list(gateway.records.as_ref(), scope).await?;
    services.sort_by_key(|service| service.name.to_lowercase());
    let summaries: Vec<Value> = services
        .iter()
        .map(|service| {
            let counts = by_service.get(&service.id).cloned().unwrap_or_default();
            json!({"service_id": service.id, "service_name": service.name,
                   "requests_24h": counts.requests, "success_rate": counts.success_rate(),
                   "status": health(&counts)})
        })
        .collect();
    let since = Period::Day.since(now);
    let failures = gateway
        .usage
        .records(
            &UsageSeries::Failures.key(org),
            since.as_deref(),
            RECENT_FAILURES,
        )
        .await?;
    let recent: Vec<Value> = failures
        .iter()
        .map(|failure| {
            json!({"job_id": failure.job_id, "service_name": failure.service_name,
                   "error": failure.error, "timestamp": failure.finished_at})
        })
        .collect();
    Ok(JsonResponse::new(
        200,
        json!({
            "period": "24h",
            "overview": {
                "total_jobs": overall.requests,
                "successful_jobs": overall.completed,
                "failed_jobs": overall.failed,
                "success_rate": overall.success_rate(),
                "total_tokens": overall.total_tokens(),
                "total_cost": overall.cost(),
                "active_services": by_service.values().filter(|c| c.requests > 0).count(),
                "avg_latency_ms": overall.avg_latency_ms(),
            },
            "services": summaries,
            "recent_failures": recent,
            "generated_at": now_timestamp(),
        }),
    ))
}

#[cfg(test)]
#[path = "analytics_tests.rs"]
mod tests;
