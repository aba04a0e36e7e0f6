//! The jobs handler against the emulator: job detail with tenant isolation, and listings
//! newest first with filters and cursor pagination.

use gateway_core::engine::JsonResponse;
use gateway_test_support::{api_request, seeds, TestStack};
use uuid::Uuid;

async fn get(stack: &TestStack, id: &str, query: &[(&str, &str)]) -> JsonResponse {
    let request = api_request(
        "GET",
        "/api/v1/jobs/{id}",
        &format!("/api/v1/jobs/{id}"),
        &[("id", id)],
        query,
        None,
    );
    jobs::handle(&stack.gateway, request).await
}

async fn list(stack: &TestStack, query: &[(&str, &str)]) -> JsonResponse {
    let request = api_request("GET", "/api/v1/jobs", "/api/v1/jobs", &[], query, None);
    jobs::handle(&stack.gateway, request).await
}

async fn submit_for(stack: &TestStack, organization_id: Option<&str>, flavor: &str) -> Uuid {
    stack
        .submit(flavor, organization_id, "A : hello there.\nB : hi.".into())
        .await
        .id
}

#[tokio::test]
async fn job_detail_is_isolated_by_organization() {
    let stack = TestStack::start().await;
    let id = submit_for(&stack, Some("org-a"), "iterative")
        .await
        .to_string();

    let response = get(&stack, &id, &[("organization_id", "org-a")]).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.body["id"], id);
    assert_eq!(response.body["status"], "queued");
    assert_eq!(response.body["progress"]["percentage"], 0);
    assert_eq!(response.body["progress"]["total_turns"], 2);
    assert_eq!(response.body["progress"]["total_batches"], 1);
    assert!(response.body["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(response.body.get("result").is_none());

    for query in [vec![("organization_id", "org-b")], vec![]] {
        let response = get(&stack, &id, &query).await;
        assert_eq!(response.status, 404, "{query:?}");
        assert_eq!(response.body["error_code"], "JOB_NOT_FOUND");
    }
    assert_eq!(
        get(&stack, &Uuid::new_v4().to_string(), &[]).await.status,
        404
    );
    assert_eq!(get(&stack, "not-a-uuid", &[]).await.status, 404);
    let bad_org = get(&stack, &id, &[("organization_id", "")]).await;
    assert_eq!(
        (bad_org.status, bad_org.body["field"].as_str()),
        (400, Some("organization_id"))
    );
}

#[tokio::test]
async fn listing_is_newest_first_filtered_and_paginated() {
    let stack = TestStack::start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let flavor = if i % 2 == 0 {
            "iterative"
        } else {
            "single-pass"
        };
        ids.push(
            submit_for(&stack, Some("org-list"), flavor)
                .await
                .to_string(),
        );
    }
    submit_for(&stack, Some("org-other"), "iterative").await;

    let response = list(&stack, &[("organization_id", "org-list")]).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let listed: Vec<&str> = response.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(listed, newest_first);
    assert!(response.body["next_cursor"].is_null());

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("organization_id", "org-list"), ("page_size", "2")];
        if let Some(c) = &cursor {
            query.push(("cursor", c.as_str()));
        }
        let page = list(&stack, &query).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let items = page.body["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|j| j["id"].as_str().unwrap().to_string()));
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ids.iter().rev().cloned().collect::<Vec<_>>());

    // The reference's numbered pages: 5 jobs, 2 a page.
    let newest: Vec<String> = ids.iter().rev().cloned().collect();
    for (page, expected) in [
        ("1", &newest[0..2]),
        ("3", &newest[4..5]),
        ("4", &newest[5..5]),
    ] {
        let numbered = list(
            &stack,
            &[
                ("organization_id", "org-list"),
                ("page_size", "2"),
                ("page", page),
            ],
        )
        .await;
        assert_eq!(numbered.status, 200, "{}", numbered.body);
        let items: Vec<&str> = numbered.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap())
            .collect();
        assert_eq!(items, expected, "page {page}");
        assert_eq!(
            (
                &numbered.body["total"],
                &numbered.body["total_pages"],
                &numbered.body["page_size"]
            ),
            (
                &serde_json::json!(5),
                &serde_json::json!(3),
                &serde_json::json!(2)
            )
        );
        assert_eq!(numbered.body["page"], page.parse::<u64>().unwrap());
    }

    // A well-formed cursor of another query is a 400 naming `cursor`, refused before
    // DynamoDB sees it (a foreign start key used to come back from DynamoDB as a 503).
    let first = list(
        &stack,
        &[("organization_id", "org-list"), ("page_size", "2")],
    )
    .await;
    let foreign = first.body["next_cursor"]
        .as_str()
        .expect("a cursor")
        .to_string();
    for other in [
        vec![("organization_id", "org-other")],
        vec![],
        vec![("organization_id", "org-list"), ("status", "queued")],
    ] {
        let mut query = other.clone();
        query.push(("cursor", foreign.as_str()));
        let response = list(&stack, &query).await;
        assert_eq!(response.status, 400, "{other:?}: {}", response.body);
        assert_eq!(response.body["field"], "cursor", "{}", response.body);
        assert_eq!(response.body["error_code"], "INVALID_REQUEST");
    }

    let queued = list(
        &stack,
        &[
            ("organization_id", "org-list"),
            ("status", "queued"),
            ("service_id", &seeds::SUMMARIZE_SERVICE_ID.to_string()),
        ],
    )
    .await;
    assert_eq!(queued.body["items"].as_array().unwrap().len(), 5);
    let completed = list(
        &stack,
        &[("organization_id", "org-list"), ("status", "completed")],
    )
    .await;
    assert_eq!(completed.body["items"].as_array().unwrap().len(), 0);
    let other_service = list(
        &stack,
        &[
            ("organization_id", "org-list"),
            ("service_id", &Uuid::new_v4().to_string()),
        ],
    )
    .await;
    assert_eq!(other_service.body["items"].as_array().unwrap().len(), 0);

    for (query, field) in [
        (vec![("status", "canceled")], "status"),
        (vec![("service_id", "x")], "service_id"),
        (vec![("page_size", "0")], "page_size"),
        (vec![("page_size", "101")], "page_size"),
        (vec![("cursor", "garbage!")], "cursor"),
        (vec![("page", "0")], "page"),
        (vec![("page", "two")], "page"),
        (vec![("page", "1"), ("cursor", "abc")], "page"),
        (vec![("organization_id", " ")], "organization_id"),
    ] {
        let response = list(&stack, &query).await;
        assert_eq!(response.status, 400, "{query:?}: {}", response.body);
        assert_eq!(response.body["field"], field);
    }
    // Every status the API returns is a filter (the reference spells it "cancelled").
    let cancelled = list(
        &stack,
        &[("organization_id", "org-list"), ("status", "cancelled")],
    )
    .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.body["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn healthcheck_reads_every_dependency() {
    let stack = TestStack::start().await;
    let request = api_request("GET", "/healthcheck", "/healthcheck", &[], &[], None);
    let healthy = jobs::handle(&stack.gateway, request).await;
    assert_eq!(healthy.status, 200, "{}", healthy.body);
    assert_eq!(healthy.body["status"], "healthy");
    for dependency in ["database", "storage", "queue"] {
        assert_eq!(healthy.body[dependency], "connected", "{dependency}");
    }
    assert!(healthy.body["pending_steps"]["standard"].is_u64());

    // A gateway whose bucket does not exist: storage is down, the status a load balancer
    // reads is 503.
    let mut broken = stack.env.clone();
    broken.bucket = format!("{}-missing", broken.bucket);
    let gateway = gateway_core::aws::gateway(broken, &stack.clients, stack.gateway.limits);
    let request = api_request("GET", "/healthcheck", "/healthcheck", &[], &[], None);
    let unhealthy = jobs::handle(&gateway, request).await;
    assert_eq!(unhealthy.status, 503, "{}", unhealthy.body);
    assert_eq!(
        (
            unhealthy.body["status"].as_str(),
            unhealthy.body["storage"].as_str()
        ),
        (Some("unhealthy"), Some("disconnected"))
    );
    assert_eq!(unhealthy.body["database"], "connected");
}

#[tokio::test]
async fn sample_events_are_routed() {
    let stack = TestStack::start().await;
    let read = |name: &str| {
        std::fs::read_to_string(gateway_test_support::repo_root().join("events").join(name))
            .unwrap()
    };
    let get = jobs::handle(
        &stack.gateway,
        lambda_http::request::from_str(&read("jobs-get.json")).unwrap(),
    )
    .await;
    assert_eq!(
        (get.status, get.body["error_code"].as_str()),
        (404, Some("JOB_NOT_FOUND")),
        "{}",
        get.body
    );
    let list = jobs::handle(
        &stack.gateway,
        lambda_http::request::from_str(&read("jobs-list.json")).unwrap(),
    )
    .await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.body["page_size"], 20);
    for name in ["jobs-cancel.json", "jobs-delete.json"] {
        let response = jobs::handle(
            &stack.gateway,
            lambda_http::request::from_str(&read(name)).unwrap(),
        )
        .await;
        assert_eq!(
            (response.status, response.body["error_code"].as_str()),
            (404, Some("JOB_NOT_FOUND")),
            "{name}: {}",
            response.body
        );
    }
}

async fn action(
    stack: &TestStack,
    method: &str,
    id: &str,
    proxy: Option<&str>,
    org: &str,
) -> JsonResponse {
    let (resource, path, params) = match proxy {
        Some(action) => (
            "/api/v1/jobs/{id}/{proxy+}",
            format!("/api/v1/jobs/{id}/{action}"),
            vec![("id", id), ("proxy", action)],
        ),
        None => (
            "/api/v1/jobs/{id}",
            format!("/api/v1/jobs/{id}"),
            vec![("id", id)],
        ),
    };
    let request = api_request(
        method,
        resource,
        &path,
        &params,
        &[("organization_id", org)],
        None,
    );
    jobs::handle(&stack.gateway, request).await
}

async fn submit_transcript(stack: &TestStack, org: &str, turns: usize) -> Uuid {
    stack
        .submit(
            "iterative",
            Some(org),
            gateway_test_support::transcript(turns),
        )
        .await
        .id
}

#[tokio::test]
async fn cancel_mid_job_stops_llm_calls_and_delete_removes_everything() {
    let stack = TestStack::start().await;
    let id = submit_transcript(&stack, "org-c", 60).await;
    let id_text = id.to_string();
    assert_eq!(stack.run_worker_steps(2).await, 2);
    assert_eq!(stack.mock.requests().len(), 2);

    let still_running = action(&stack, "DELETE", &id_text, None, "org-c").await;
    assert_eq!(
        (
            still_running.status,
            still_running.body["error_code"].as_str()
        ),
        (400, Some("JOB_NOT_FINISHED"))
    );

    let foreign = action(&stack, "POST", &id_text, Some("cancel"), "org-other").await;
    assert_eq!(foreign.status, 404);
    let cancelled = action(&stack, "POST", &id_text, Some("cancel"), "org-c").await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(
        cancelled.body["progress"]["current_batch"], 2,
        "progress kept"
    );

    // The next step message is dropped: no further LLM call.
    stack.run_worker_steps(5).await;
    assert_eq!(stack.mock.requests().len(), 2, "no LLM call after cancel");
    let detail = get(&stack, &id_text, &[("organization_id", "org-c")]).await;
    assert_eq!(detail.body["status"], "cancelled");
    let again = action(&stack, "POST", &id_text, Some("cancel"), "org-c").await;
    assert_eq!(
        (again.status, again.body["error_code"].as_str()),
        (400, Some("JOB_ALREADY_FINISHED"))
    );

    let deleted = action(&stack, "DELETE", &id_text, None, "org-c").await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert!(
        deleted.body["objects_deleted"].as_u64().unwrap() >= 4,
        "input, turns, 2 step outputs"
    );
    assert!(stack
        .gateway
        .blobs
        .get(&gateway_core::ports::keys::input(id))
        .await
        .unwrap()
        .is_none());
    assert!(stack
        .gateway
        .blobs
        .get(&gateway_core::ports::keys::step(id, 0))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        get(&stack, &id_text, &[("organization_id", "org-c")])
            .await
            .status,
        404
    );
    assert_eq!(
        action(&stack, "DELETE", &id_text, None, "org-c")
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn a_step_in_flight_when_cancelled_is_not_applied() {
    let stack = TestStack::start().await;
    let id = submit_transcript(&stack, "org-f", 30).await;
    let event = stack
        .receive_event(&stack.env.job_queues.standard)
        .await
        .unwrap();
    let message: gateway_core::domain::StepMessage =
        serde_json::from_str(event.records[0].body.as_deref().unwrap()).unwrap();
    stack
        .mock
        .set_latency(std::time::Duration::from_millis(500));
    let gateway = stack.gateway.clone();
    let in_flight = tokio::spawn(async move {
        gateway_core::engine::worker::process_step(&gateway, &message).await
    });
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let cancelled = action(&stack, "POST", &id.to_string(), Some("cancel"), "org-f").await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    let outcome = in_flight.await.unwrap().unwrap();
    assert_eq!(
        outcome,
        gateway_core::engine::worker::StepOutcome::Skipped("job advanced concurrently")
    );
    let job = stack.gateway.jobs.get(id).await.unwrap().unwrap();
    assert_eq!(job.status, gateway_core::domain::JobStatus::Cancelled);
    assert_eq!(job.progress.step, 0, "the in-flight step was not applied");
    assert!(
        stack
            .receive_event(&stack.env.job_queues.standard)
            .await
            .is_none(),
        "no next step enqueued"
    );
}

#[tokio::test]
async fn wrong_methods_and_actions() {
    let stack = TestStack::start().await;
    let id = submit_transcript(&stack, "org-m", 3).await.to_string();
    assert_eq!(action(&stack, "PUT", &id, None, "org-m").await.status, 405);
    assert_eq!(
        action(&stack, "GET", &id, Some("cancel"), "org-m")
            .await
            .status,
        405
    );
    assert_eq!(
        action(&stack, "POST", &id, Some("explode"), "org-m")
            .await
            .status,
        404
    );
    let list = api_request("POST", "/api/v1/jobs", "/api/v1/jobs", &[], &[], None);
    assert_eq!(jobs::handle(&stack.gateway, list).await.status, 405);
}
