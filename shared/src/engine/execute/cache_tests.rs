//! The result cache on the in-memory ports: a repeated execute of the same input and
//! settings in the same organization is a completed job at once with no LLM call; any
//! difference, `cache: false`, another organization or a deleted job is a miss.

use super::*;
use crate::engine::views::{job_detail, ResultFormat};
use crate::memory::MemoryGateway;
use crate::ports::BlobStore;

const INPUT: &str = "Ann : We approve the budget.\nBob : I will send the figures.";

fn request(flavor: &Flavor, organization: &str) -> ExecuteRequest {
    ExecuteRequest {
        input: INPUT.to_string(),
        flavor_id: Some(flavor.id),
        organization_id: Some(organization.to_string()),
        use_cache: true,
        ..ExecuteRequest::default()
    }
}

#[tokio::test]
async fn a_repeated_execute_is_answered_from_the_cache_without_a_call() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let flavor = &seeded.single_pass;
    let first = submit(&memory.gateway, flavor.service_id, request(flavor, "org-a"))
        .await
        .unwrap();
    assert!(first.cached_from.is_none());
    memory.run_queue().await;
    let calls = memory.llm.calls().len();
    assert_eq!(calls, 1);

    let second = submit(&memory.gateway, flavor.service_id, request(flavor, "org-a"))
        .await
        .unwrap();
    assert_ne!(second.id, first.id, "a job of its own");
    assert_eq!(second.status, JobStatus::Completed);
    assert_eq!(second.cached_from, Some(first.id));
    assert_eq!(second.usage.passes, 0);
    assert!(memory.queue.drain().is_empty(), "nothing to run");
    assert_eq!(memory.llm.calls().len(), calls, "no LLM call");
    let first_view = job_detail(&memory.gateway, first.id, Some("org-a"), ResultFormat::Raw)
        .await
        .unwrap();
    let view = job_detail(&memory.gateway, second.id, Some("org-a"), ResultFormat::Raw)
        .await
        .unwrap();
    assert_eq!(view["cache_hit"], true);
    assert_eq!(view["cached_from"], first.id.to_string());
    assert_eq!(view["status"], "completed");
    assert_eq!(view["result"]["output"], first_view["result"]["output"]);
    assert!(view["result"]["output"]
        .as_str()
        .is_some_and(|o| !o.is_empty()));
    assert_eq!(view["token_metrics"]["passes"], serde_json::json!([]));
    assert!(memory
        .blobs
        .get(&keys::cache_entry(second.cache_key.as_deref().unwrap()))
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn any_difference_is_a_miss() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let flavor = &seeded.single_pass;
    let first = submit(&memory.gateway, flavor.service_id, request(flavor, "org-a"))
        .await
        .unwrap();

    // Not completed yet: nothing to answer with.
    let pending = submit(&memory.gateway, flavor.service_id, request(flavor, "org-a"))
        .await
        .unwrap();
    assert!(pending.cached_from.is_none());
    memory.run_queue().await;

    let mut opted_out = request(flavor, "org-a");
    opted_out.use_cache = false;
    let mut other_input = request(flavor, "org-a");
    other_input.input.push_str("\nCid : One more thing.");
    let mut other_flavor = flavor.clone();
    other_flavor.id = uuid::Uuid::new_v4();
    other_flavor.name = "warmer".into();
    other_flavor.is_default = false;
    other_flavor.temperature = 0.9;
    memory.insert(&other_flavor).await.unwrap();
    for (what, request) in [
        ("cache: false", opted_out),
        ("another organization", request(flavor, "org-b")),
        ("another input", other_input),
        ("another temperature", request(&other_flavor, "org-a")),
    ] {
        let job = submit(&memory.gateway, flavor.service_id, request)
            .await
            .unwrap();
        assert!(job.cached_from.is_none(), "{what}");
        assert_eq!(job.status, JobStatus::Queued, "{what}");
    }

    // The cached job is gone: a miss, never an error.
    memory.run_queue().await;
    crate::engine::lifecycle::delete(&memory.gateway, first.id, Some("org-a"))
        .await
        .unwrap();
    crate::engine::lifecycle::delete(&memory.gateway, pending.id, Some("org-a"))
        .await
        .unwrap();
    let after_delete = submit(&memory.gateway, flavor.service_id, request(flavor, "org-a"))
        .await
        .unwrap();
    assert!(after_delete.cached_from.is_none());
}
