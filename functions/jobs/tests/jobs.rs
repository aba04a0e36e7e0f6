//! The jobs handler against the emulator: job detail with tenant isolation, and listings
//! newest first with filters and cursor pagination.

use gateway_core::engine::execute::{submit, ExecuteRequest};
use gateway_core::error::JsonResponse;
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
    let request = ExecuteRequest {
        input: "A : hello there.\nB : hi.".into(),
        flavor_id: None,
        flavor_name: Some(flavor.into()),
        organization_id: organization_id.map(str::to_string),
        context: None,
    };
    submit(&stack.gateway, seeds::SUMMARIZE_SERVICE_ID, request)
        .await
        .unwrap()
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
        (vec![("status", "cancelled")], "status"),
        (vec![("service_id", "x")], "service_id"),
        (vec![("page_size", "0")], "page_size"),
        (vec![("page_size", "101")], "page_size"),
        (vec![("cursor", "garbage!")], "cursor"),
    ] {
        let response = list(&stack, &query).await;
        assert_eq!(response.status, 400, "{query:?}: {}", response.body);
        assert_eq!(response.body["field"], field);
    }
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
}
