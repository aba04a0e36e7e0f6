use serde_json::json;

use super::*;
use crate::domain::{JobError, JobStatus};
use crate::memory::MemoryGateway;

/// Finishes a job of `flavor` for `org` with `status`, through the stream's path.
async fn finish(
    memory: &MemoryGateway,
    flavor: &crate::domain::Flavor,
    org: Option<&str>,
    status: JobStatus,
    tokens: (u64, u64),
) -> Job {
    let mut job = memory
        .submit(flavor, "Jean : Bonjour à tous.")
        .await
        .unwrap();
    job.organization_id = org.map(str::to_string);
    let queued = job.clone();
    job.status = status;
    job.usage.prompt_tokens = tokens.0;
    job.usage.completion_tokens = tokens.1;
    job.completed_at = Some(now_timestamp());
    if status == JobStatus::Failed {
        job.error = Some(JobError {
            code: "PROVIDER_ERROR".into(),
            message: "boom".into(),
        });
    }
    assert!(record_change(&memory.gateway, Some(&queued), &job)
        .await
        .unwrap());
    assert!(
        !record_change(&memory.gateway, Some(&queued), &job)
            .await
            .unwrap(),
        "a replayed record counts nothing"
    );
    job
}

#[tokio::test]
async fn service_and_flavor_statistics_come_from_the_aggregates() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let gateway = &memory.gateway;
    finish(
        &memory,
        &seeded.single_pass,
        Some("org-a"),
        JobStatus::Completed,
        (100, 20),
    )
    .await;
    finish(
        &memory,
        &seeded.single_pass,
        Some("org-a"),
        JobStatus::Completed,
        (300, 40),
    )
    .await;
    finish(
        &memory,
        &seeded.iterative,
        Some("org-a"),
        JobStatus::Failed,
        (50, 0),
    )
    .await;
    finish(
        &memory,
        &seeded.iterative,
        Some("org-b"),
        JobStatus::Cancelled,
        (0, 0),
    )
    .await;
    assert_eq!(memory.usage.counted(), 4);

    let org_a = Scope::new(Some("org-a"));
    let stats = service_stats(gateway, &org_a, seeded.service.id, Period::Day)
        .await
        .unwrap();
    let body = &stats.body["stats"];
    assert_eq!(body["total_requests"], 3, "{}", stats.body);
    assert_eq!(body["successful_requests"], 2);
    assert_eq!(body["failed_requests"], 1);
    assert_eq!(body["success_rate"], 66.67);
    assert_eq!(body["total_tokens"], 510);
    assert_eq!(body["flavors_used"], 2);
    assert_eq!(body["most_used_flavor"], "single-pass");
    assert_eq!(stats.body["time_series"].as_array().unwrap().len(), 24);
    let last_hour = &stats.body["time_series"][23];
    assert_eq!(last_hour["requests"], 3, "{last_hour}");
    let breakdown = &stats.body["flavor_breakdown"];
    assert!(breakdown
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["flavor_name"] == "single-pass" && f["percentage"] == 66.67));

    let operator = service_stats(gateway, &Scope::default(), seeded.service.id, Period::All)
        .await
        .unwrap();
    assert_eq!(operator.body["stats"]["total_requests"], 4);
    assert_eq!(operator.body["stats"]["cancelled_requests"], 1);

    let compared = service_flavor_stats(gateway, &org_a, seeded.service.id, Period::Week)
        .await
        .unwrap();
    assert_eq!(compared.body["totals"]["total_requests"], 3);
    assert_eq!(compared.body["flavors"].as_array().unwrap().len(), 2);

    let flavor = flavor_stats(gateway, &org_a, None, seeded.single_pass.id, Period::Month)
        .await
        .unwrap();
    let body = &flavor.body["stats"];
    assert_eq!(
        (
            body["total_input_tokens"].as_u64(),
            body["total_output_tokens"].as_u64()
        ),
        (Some(400), Some(60))
    );
    assert_eq!(body["avg_input_tokens"], 200.0);
    assert_eq!(body["time_series"].as_array().unwrap().len(), 30);
    assert!(body["p95_latency_ms"].as_u64().unwrap() >= body["p50_latency_ms"].as_u64().unwrap());

    let history = usage_history(gateway, &org_a, seeded.single_pass.id, Period::All, 1, 1)
        .await
        .unwrap();
    assert_eq!(history.body["total"], 2);
    let items = history.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "offset 1, limit 1");
    assert_eq!(
        items[0]["input_tokens"], 100,
        "newest first: the older one is second"
    );
    assert_eq!(items[0]["success"], true);

    // Another organization sees nothing of org-a's; a hidden flavor is a 404.
    let org_b = flavor_stats(
        gateway,
        &Scope::new(Some("org-b")),
        None,
        seeded.single_pass.id,
        Period::All,
    )
    .await
    .unwrap();
    assert_eq!(org_b.body["stats"]["total_requests"], 0);
    let missing = flavor_stats(gateway, &org_a, None, Uuid::new_v4(), Period::All)
        .await
        .unwrap_err();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        parse_period(Some("1y")).unwrap_err().field(),
        Some("period")
    );
}

#[tokio::test]
async fn the_dashboard_rates_each_services_health() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let gateway = &memory.gateway;
    let empty = dashboard(gateway, &Scope::default()).await.unwrap();
    assert_eq!(empty.body["overview"]["total_jobs"], 0);
    assert_eq!(empty.body["services"][0]["status"], "inactive");

    for _ in 0..19 {
        finish(
            &memory,
            &seeded.single_pass,
            None,
            JobStatus::Completed,
            (10, 1),
        )
        .await;
    }
    let failed = finish(
        &memory,
        &seeded.single_pass,
        None,
        JobStatus::Failed,
        (10, 0),
    )
    .await;
    let board = dashboard(gateway, &Scope::default()).await.unwrap();
    let overview = &board.body["overview"];
    assert_eq!(overview["total_jobs"], 20);
    assert_eq!(overview["success_rate"], 95.0);
    assert_eq!(overview["active_services"], 1);
    assert_eq!(
        board.body["services"][0],
        json!({"service_id": seeded.service.id, "service_name": "summarize",
               "requests_24h": 20, "success_rate": 95.0, "status": "healthy"})
    );
    assert_eq!(board.body["recent_failures"][0]["job_id"], json!(failed.id));
    assert_eq!(
        board.body["recent_failures"][0]["error"],
        "PROVIDER_ERROR: boom"
    );
    for _ in 0..2 {
        finish(
            &memory,
            &seeded.single_pass,
            None,
            JobStatus::Failed,
            (10, 0),
        )
        .await;
    }
    let board = dashboard(gateway, &Scope::default()).await.unwrap();
    assert_eq!(board.body["services"][0]["status"], "degraded", "19 of 22");
    assert_eq!(board.body["recent_failures"].as_array().unwrap().len(), 3);
}
