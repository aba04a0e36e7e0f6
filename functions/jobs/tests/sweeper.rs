//! The sweeper against the emulator: the heartbeat and the sparse activity index in
//! DynamoDB, the scheduled event of the template, and the cleanup routes.

use gateway_core::domain::StepMessage;
use gateway_core::engine::JsonResponse;
use gateway_test_support::{api_request, repo_root, TestStack};

const LONG_AGO: &str = "2020-01-01T00:00:00.000000Z";

async fn cleanup(stack: &TestStack, route: &str, query: &[(&str, &str)]) -> JsonResponse {
    let path = format!("/api/v1/jobs/{route}");
    let request = api_request(
        "POST",
        "/api/v1/jobs/{id}",
        &path,
        &[("id", route)],
        query,
        None,
    );
    jobs::handle(&stack.gateway, request).await
}

#[test]
fn the_schedule_sends_the_sample_sweep_event() {
    let template = std::fs::read_to_string(repo_root().join("infra/template.yaml")).unwrap();
    let sweep = template.find("        Sweep:").expect("a Sweep schedule");
    let input_line = template[sweep..]
        .lines()
        .find_map(|line| line.trim().strip_prefix("Input: '"))
        .expect("an Input");
    let input: serde_json::Value = serde_json::from_str(input_line.trim_end_matches('\'')).unwrap();
    let sample: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("events/jobs-scheduled-sweep.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(input, sample);
}

#[tokio::test]
async fn a_silent_step_is_sent_again_by_the_scheduled_sweep() {
    let stack = TestStack::start().await;
    let job = stack
        .submit("single-pass", Some("org-s"), "A : hello.".into())
        .await;
    let queue = &stack.env.job_queues.standard;
    let first = stack.receive_event(queue).await.expect("step 0 queued");

    // A worker takes the step: heartbeats hold only for the job's current step.
    assert!(stack
        .gateway
        .jobs
        .heartbeat(job.id, 0, LONG_AGO)
        .await
        .unwrap());
    assert!(!stack
        .gateway
        .jobs
        .heartbeat(job.id, 3, LONG_AGO)
        .await
        .unwrap());
    let stale = stack
        .gateway
        .jobs
        .stale_active("2021-01-01T00:00:00.000000Z", 10)
        .await
        .unwrap();
    assert_eq!(stale.len(), 1, "the sparse index has the active job");
    assert_eq!(stale[0].heartbeat_at.as_deref(), Some(LONG_AGO));

    // ... and dies. The scheduled event sends the step again.
    let event =
        std::fs::read_to_string(repo_root().join("events/jobs-scheduled-sweep.json")).unwrap();
    let response = jobs::handle(
        &stack.gateway,
        lambda_http::request::from_str(&event).unwrap(),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.body["requeued_count"], 1, "{}", response.body);
    assert_eq!(response.body["cleaned_count"], 1);
    let resent = loop {
        // The original message is still in flight (invisible); the re-send is not.
        let event = stack.receive_event(queue).await.expect("step sent again");
        let message: StepMessage =
            serde_json::from_str(event.records[0].body.as_deref().unwrap()).unwrap();
        if message.generation == 1 {
            break message;
        }
    };
    assert_eq!((resent.job_id, resent.step), (job.id, 0));
    assert_ne!(
        first.records[0].message_id,
        Some(resent.deduplication_id()),
        "a new message"
    );

    // Nothing is stale any more; a finished job leaves the index.
    let again = cleanup(&stack, "cleanup-orphaned", &[]).await;
    assert_eq!(again.body["requeued_count"], 0, "{}", again.body);
    let response = batch_worker_step(&stack, &resent).await;
    assert!(response, "the re-sent step completes the job");
    let stale = stack
        .gateway
        .jobs
        .stale_active("2999-01-01T00:00:00.000000Z", 10)
        .await
        .unwrap();
    assert!(
        stale.is_empty(),
        "completed jobs are not in the activity index"
    );
}

/// Runs one step message through the worker engine.
async fn batch_worker_step(stack: &TestStack, message: &StepMessage) -> bool {
    matches!(
        gateway_core::engine::worker::process_step(&stack.gateway, message)
            .await
            .unwrap(),
        gateway_core::engine::worker::StepOutcome::Completed
    )
}

#[tokio::test]
async fn cleanup_routes_are_for_the_operator_and_validate_their_query() {
    let stack = TestStack::start().await;
    let forbidden = cleanup(&stack, "cleanup-orphaned", &[("organization_id", "org-a")]).await;
    assert_eq!(forbidden.status, 403, "{}", forbidden.body);
    let bad = cleanup(&stack, "cleanup-stale", &[("timeout_minutes", "2")]).await;
    assert_eq!(
        (bad.status, bad.body["field"].as_str()),
        (400, Some("timeout_minutes"))
    );
    let stale = cleanup(&stack, "cleanup-stale", &[("timeout_minutes", "5")]).await;
    assert_eq!(stale.status, 200, "{}", stale.body);
    assert_eq!(stale.body["marked_count"], 0);

    let job = stack
        .submit("single-pass", Some("org-e"), "A : hello.".into())
        .await;
    let mut expired = stack.gateway.jobs.get(job.id).await.unwrap().unwrap();
    expired.expires_at = Some(1);
    assert!(stack.gateway.jobs.replace(&expired, 0).await.unwrap());
    let deleted = cleanup(&stack, "cleanup-expired", &[]).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(deleted.body["deleted_count"], 1);
    assert!(stack.gateway.jobs.get(job.id).await.unwrap().is_none());
}
