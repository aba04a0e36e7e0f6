//! The circuit breaker of a provider and model, shared by every worker: it opens after
//! [`super::Limits::breaker_failures`] failed steps within the window, and while open no
//! step calls that provider (it fails over at once when the flavor has a failover, else
//! it waits in the queue) instead of burning retries. After the cool-down it is half
//! open: one worker claims the probe (a conditional write, so exactly one), the others
//! keep waiting; the probe's success closes the breaker, its failure reopens it.

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
    /// Was open; the cool-down passed and this call won the probe.
    HalfOpen,
}

fn key(settings: &JobSettings) -> String {
    format!("{}#{}", settings.provider_id, settings.model_identifier)
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The breaker of the job's provider and model now. Past the cool-down, only the caller
/// that claims the probe gets [`Breaker::HalfOpen`]; the probe holds the breaker for up to
/// a step deadline, and the others are told to wait.
pub(super) async fn state(gateway: &Gateway, settings: &JobSettings) -> IoResult<Breaker> {
    let key = key(settings);
    let Some(until) = gateway.breakers.open_until(&key).await? else {
        return Ok(Breaker::Closed);
    };
    let now = chrono::Utc::now();
    let wait = chrono::DateTime::parse_from_rfc3339(&until)
        .ok()
        .and_then(|until| (until.with_timezone(&chrono::Utc) - now).to_std().ok());
    if let Some(wait) = wait.filter(|wait| !wait.is_zero()) {
        return Ok(Breaker::Open { until, wait });
    }
    let limits = &gateway.limits;
    let lease =
        timestamp(now + chrono::Duration::from_std(limits.step_deadline).unwrap_or_default());
    if gateway.breakers.claim_probe(&key, &until, &lease).await? {
        return Ok(Breaker::HalfOpen);
    }
    // Another worker is probing: check again after a cool-down at most.
    Ok(Breaker::Open {
        until: lease,
        wait: limits.breaker_cool_down.min(limits.step_deadline),
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

/// A call ended: a probe's success closes the breaker, its failure reopens it for a
/// cool-down (the failure is also counted by [`failed`] like any other).
pub(super) async fn call_ended(
    gateway: &Gateway,
    settings: &JobSettings,
    before: &Breaker,
    success: bool,
) -> IoResult<()> {
    if *before != Breaker::HalfOpen {
        return Ok(());
    }
    let key = key(settings);
    if success {
        gateway.breakers.close(&key).await?;
        tracing::info!(provider = %settings.provider_name, model = %settings.model_identifier, at = %now_timestamp(), "circuit breaker closed");
    } else {
        let cool_down =
            chrono::Duration::from_std(gateway.limits.breaker_cool_down).unwrap_or_default();
        gateway
            .breakers
            .open(&key, &timestamp(chrono::Utc::now() + cool_down))
            .await?;
        tracing::warn!(provider = %settings.provider_name, model = %settings.model_identifier, "circuit breaker probe failed; reopened");
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
        assert!(
            matches!(
                state(gateway, &settings).await.unwrap(),
                Breaker::Open { .. }
            ),
            "a single probe: the next caller waits while it runs"
        );
        call_ended(gateway, &settings, &probing, true)
            .await
            .unwrap();
        assert_eq!(state(gateway, &settings).await.unwrap(), Breaker::Closed);
    }

    #[tokio::test]
    async fn a_failed_probe_reopens_the_breaker_for_a_cool_down() {
        let mut memory = MemoryGateway::new();
        memory.gateway.limits.breaker_failures = 1;
        memory.gateway.limits.breaker_cool_down = Duration::from_millis(50);
        let gateway = &memory.gateway;
        let settings = JobSettings::default();
        failed(gateway, &settings).await.unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        let probing = state(gateway, &settings).await.unwrap();
        assert_eq!(probing, Breaker::HalfOpen);
        call_ended(gateway, &settings, &probing, false)
            .await
            .unwrap();
        let Breaker::Open { wait, .. } = state(gateway, &settings).await.unwrap() else {
            panic!("a failed probe must reopen the breaker");
        };
        assert!(wait <= Duration::from_millis(50), "{wait:?}");
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(state(gateway, &settings).await.unwrap(), Breaker::HalfOpen);
    }
}
