//! The circuit breaker of a provider and model, shared by every worker: it opens after
//! [`super::Limits::breaker_failures`] failed steps within the window, and while open no
//! step calls that provider (it fails over at once when the flavor has a failover, else
//! it waits in the queue) instead of burning retries. After the cool-down it is half
//! open: the next calls are probes, and the first success closes it.

use std::time::Duration;

use super::Gateway;
use crate::domain::{now_timestamp, JobSettings};
use crate::ports::IoResult;

/// What the breaker says before a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Breaker {
    Closed,
    /// Open: no call until this time (RFC 3339), which is this far away.
    Open {
        until: String,
        wait: Duration,
    },
    /// Was open; the cool-down passed: this call is a probe.
    HalfOpen,
}

fn key(settings: &JobSettings) -> String {
    format!("{}#{}", settings.provider_id, settings.model_identifier)
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The breaker of the job's provider and model now.
pub(super) async fn state(gateway: &Gateway, settings: &JobSettings) -> IoResult<Breaker> {
    let Some(until) = gateway.breakers.open_until(&key(settings)).await? else {
        return Ok(Breaker::Closed);
    };
    let now = chrono::Utc::now();
    let wait = chrono::DateTime::parse_from_rfc3339(&until)
        .ok()
        .and_then(|until| (until.with_timezone(&chrono::Utc) - now).to_std().ok());
    Ok(match wait {
        Some(wait) if !wait.is_zero() => Breaker::Open { until, wait },
        _ => Breaker::HalfOpen,
    })
}

/// Counts a failed step of the provider; opens the breaker once the window holds enough.
pub(super) async fn failed(gateway: &Gateway, settings: &JobSettings) -> IoResult<()> {
    let limits = &gateway.limits;
    let now = chrono::Utc::now();
    let window = chrono::Duration::from_std(limits.breaker_window).unwrap_or_default();
    let key = key(settings);
    let failures = gateway
        .breakers
        .record_failure(&key, &timestamp(now), &timestamp(now - window))
        .await?;
    if failures >= limits.breaker_failures {
        let cool_down = chrono::Duration::from_std(limits.breaker_cool_down).unwrap_or_default();
        gateway
            .breakers
            .open(&key, &timestamp(now + cool_down))
            .await?;
        tracing::warn!(provider = %settings.provider_name, model = %settings.model_identifier, failures, "circuit breaker opened");
    }
    Ok(())
}

/// A call succeeded: a half-open breaker closes.
pub(super) async fn succeeded(
    gateway: &Gateway,
    settings: &JobSettings,
    before: &Breaker,
) -> IoResult<()> {
    if *before == Breaker::HalfOpen {
        gateway.breakers.close(&key(settings)).await?;
        tracing::info!(provider = %settings.provider_name, at = %now_timestamp(), "circuit breaker closed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryGateway;

    #[tokio::test]
    async fn opens_after_enough_failures_in_the_window_then_half_opens_and_closes() {
        let mut memory = MemoryGateway::new();
        memory.gateway.limits.breaker_failures = 3;
        memory.gateway.limits.breaker_cool_down = Duration::from_millis(50);
        let gateway = &memory.gateway;
        let settings = JobSettings {
            model_identifier: "m".into(),
            ..JobSettings::default()
        };
        assert_eq!(state(gateway, &settings).await.unwrap(), Breaker::Closed);
        failed(gateway, &settings).await.unwrap();
        failed(gateway, &settings).await.unwrap();
        assert_eq!(state(gateway, &settings).await.unwrap(), Breaker::Closed);
        failed(gateway, &settings).await.unwrap();
        assert!(matches!(
            state(gateway, &settings).await.unwrap(),
            Breaker::Open { .. }
        ));
        let other = JobSettings {
            model_identifier: "other".into(),
            ..JobSettings::default()
        };
        assert_eq!(
            state(gateway, &other).await.unwrap(),
            Breaker::Closed,
            "per model"
        );
        tokio::time::sleep(Duration::from_millis(80)).await;
        let probing = state(gateway, &settings).await.unwrap();
        assert_eq!(probing, Breaker::HalfOpen);
        succeeded(gateway, &settings, &probing).await.unwrap();
        assert_eq!(state(gateway, &settings).await.unwrap(), Breaker::Closed);
    }
}
