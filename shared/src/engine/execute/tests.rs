//! Submission on the in-memory ports: a single-pass input that does not fit follows the
//! `fallback_flavor_id` chain (each re-checked), then the service's iterative flavor when
//! allowed, and only then is refused; an organization past its share of active jobs runs
//! its further jobs on the bulk lane.

use uuid::Uuid;

use super::*;
use crate::memory::MemoryGateway;

fn long_transcript() -> String {
    (0..2500)
        .map(|i| {
            format!(
                "Speaker{} : Turn {i} is about the budget of item {i}.",
                i % 4
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn request_on(flavor: &Flavor) -> ExecuteRequest {
    ExecuteRequest {
        input: long_transcript(),
        flavor_id: Some(flavor.id),
        ..ExecuteRequest::default()
    }
}

#[tokio::test]
async fn the_fallback_chain_is_followed_until_a_flavor_fits() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    // single-pass → "also-single" (single pass too: does not fit either) → iterative.
    let mut also_single = seeded.single_pass.clone();
    also_single.id = Uuid::new_v4();
    also_single.name = "also-single".into();
    also_single.is_default = false;
    also_single.fallback_flavor_id = Some(seeded.iterative.id);
    let mut requested = seeded.single_pass.clone();
    requested.id = Uuid::new_v4();
    requested.name = "requested".into();
    requested.is_default = false;
    requested.fallback_flavor_id = Some(also_single.id);
    requested.auto_fallback_to_iterative = false;
    memory.insert(&also_single).await.unwrap();
    memory.insert(&requested).await.unwrap();

    let planned = plan(
        &memory.gateway,
        requested.service_id,
        &request_on(&requested).await,
    )
    .await
    .unwrap();
    let job = &planned.job;
    assert_eq!(
        job.flavor_id, seeded.iterative.id,
        "the first flavor that fits"
    );
    assert_eq!(job.processing_mode, ProcessingMode::Iterative);
    let fallback = job.fallback.as_ref().unwrap();
    assert_eq!(fallback.original_flavor_id, requested.id);
    assert!(fallback.input_tokens > fallback.context_available);
    assert!(
        fallback.reason.contains("fallback_flavor_id 'iterative'"),
        "{}",
        fallback.reason
    );
    let accepted = accepted_json(job);
    assert_eq!(accepted["fallback_applied"], true);
    assert_eq!(accepted["original_flavor_name"], "requested");
}

#[tokio::test]
async fn without_any_flavor_that_fits_the_input_is_refused() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let mut strict = seeded.single_pass.clone();
    strict.id = Uuid::new_v4();
    strict.name = "strict".into();
    strict.is_default = false;
    strict.auto_fallback_to_iterative = false;
    // A fallback cycle back to itself through another strict flavor is followed once.
    let mut other = strict.clone();
    other.id = Uuid::new_v4();
    other.name = "other".into();
    other.fallback_flavor_id = Some(strict.id);
    strict.fallback_flavor_id = Some(other.id);
    memory.insert(&other).await.unwrap();
    memory.insert(&strict).await.unwrap();
    let error = plan(
        &memory.gateway,
        strict.service_id,
        &request_on(&strict).await,
    )
    .await
    .err()
    .expect("refused");
    assert_eq!((error.status(), error.code()), (400, "CONTEXT_EXCEEDED"));

    // The same input on the seeded single-pass flavor falls back automatically.
    let planned = plan(
        &memory.gateway,
        seeded.single_pass.service_id,
        &request_on(&seeded.single_pass).await,
    )
    .await
    .unwrap();
    assert_eq!(planned.job.flavor_id, seeded.iterative.id);
    assert!(planned
        .job
        .fallback
        .unwrap()
        .reason
        .contains("automatically"));
}

#[tokio::test]
async fn an_organization_past_its_share_runs_on_the_bulk_lane() {
    let mut memory = MemoryGateway::new();
    memory.gateway.limits.organization_share = 2;
    let seeded = memory.seed().await;
    let submit_for = |organization: &str| ExecuteRequest {
        input: "John : hello".into(),
        flavor_id: Some(seeded.single_pass.id),
        organization_id: Some(organization.into()),
        ..ExecuteRequest::default()
    };
    let mut lanes = Vec::new();
    for organization in ["org-a", "org-a", "org-a", "org-b"] {
        let job = submit(&memory.gateway, seeded.service.id, submit_for(organization))
            .await
            .unwrap();
        lanes.push((organization, job.overflow, job.lane()));
    }
    use crate::domain::QueueLane::{Bulk, Standard};
    assert_eq!(
        lanes,
        [
            ("org-a", false, Standard),
            ("org-a", false, Standard),
            ("org-a", true, Bulk),
            ("org-b", false, Standard),
        ],
        "the third job of org-a overflows; org-b keeps its lane"
    );
    let sent: Vec<_> = memory
        .queue
        .sent()
        .into_iter()
        .map(|(_, lane)| lane)
        .collect();
    assert_eq!(sent, [Standard, Standard, Bulk, Standard]);
}
