//! Result versions through the jobs handler against the emulator: a job run to completion
//! by the worker, then edit, list, get, restore and delete over API Gateway events, and
//! two concurrent edits (DynamoDB's conditional write decides; nothing is lost).

use gateway_core::engine::JsonResponse;
use gateway_test_support::{api_request, TestStack};
use serde_json::{json, Value};
use uuid::Uuid;

const ORG: &str = "org-versions";

/// A request to `/api/v1/jobs/{id}/{rest}` (the `{proxy+}` resource).
async fn call(
    stack: &TestStack,
    method: &str,
    id: &str,
    rest: &str,
    body: Option<Value>,
) -> JsonResponse {
    call_as(stack, method, id, rest, body, ORG).await
}

async fn call_as(
    stack: &TestStack,
    method: &str,
    id: &str,
    rest: &str,
    body: Option<Value>,
    org: &str,
) -> JsonResponse {
    let body = body.map(|body| body.to_string());
    let request = api_request(
        method,
        "/api/v1/jobs/{id}/{proxy+}",
        &format!("/api/v1/jobs/{id}/{rest}"),
        &[("id", id), ("proxy", rest)],
        &[("organization_id", org)],
        body.as_deref().map(str::as_bytes),
    );
    jobs::handle(&stack.gateway, request).await
}

async fn edit(stack: &TestStack, id: &str, content: &str) -> JsonResponse {
    call(
        stack,
        "PATCH",
        id,
        "result",
        Some(json!({ "content": content })),
    )
    .await
}

async fn version_numbers(stack: &TestStack, id: &str) -> Vec<u64> {
    let list = call(stack, "GET", id, "versions", None).await;
    assert_eq!(list.status, 200, "{}", list.body);
    list.body
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version_number"].as_u64().unwrap())
        .collect()
}

/// A single-pass job run to completion by the worker; its id and output.
async fn completed_job(stack: &TestStack) -> (Uuid, String) {
    let job = stack
        .submit("single-pass", Some(ORG), "A : hello there.\nB : hi.".into())
        .await;
    stack.run_worker_steps(10).await;
    let request = api_request(
        "GET",
        "/api/v1/jobs/{id}",
        &format!("/api/v1/jobs/{}", job.id),
        &[("id", &job.id.to_string())],
        &[("organization_id", ORG)],
        None,
    );
    let detail = jobs::handle(&stack.gateway, request).await;
    assert_eq!(detail.body["status"], "completed", "{}", detail.body);
    let output = detail.body["result"]["output"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!output.is_empty());
    (job.id, output)
}

#[tokio::test]
async fn edit_list_get_restore_and_delete_versions() {
    let stack = TestStack::start().await;
    let (id, output) = completed_job(&stack).await;
    let id_text = id.to_string();

    let never_edited = call(&stack, "GET", &id_text, "versions", None).await;
    assert_eq!(never_edited.status, 200, "{}", never_edited.body);
    let implied = &never_edited.body[0];
    assert_eq!(never_edited.body.as_array().unwrap().len(), 1);
    assert_eq!(
        (
            implied["version_number"].as_u64(),
            implied["created_by"].as_str()
        ),
        (Some(1), Some("system"))
    );
    assert_eq!(implied["content_length"], output.chars().count());

    let edited = edit(&stack, &id_text, "Edited minutes.").await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    assert_eq!(edited.body["id"], id_text);
    assert_eq!(edited.body["current_version"], 2);
    assert_eq!(edited.body["result"]["output"], "Edited minutes.");
    assert!(edited.body["last_edited_at"].is_string());

    let list = call(&stack, "GET", &id_text, "versions", None).await;
    assert_eq!(list.status, 200);
    let versions = list.body.as_array().unwrap();
    assert_eq!(versions.len(), 2);
    for version in versions {
        let mut fields: Vec<&str> = version
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "content_length",
                "created_at",
                "created_by",
                "version_number"
            ]
        );
    }
    assert_eq!(versions[1]["created_by"], "user");
    assert_eq!(versions[1]["content_length"], 15);

    let one = call(&stack, "GET", &id_text, "versions/1", None).await;
    assert_eq!(
        (one.status, one.body["content"].as_str()),
        (200, Some(output.as_str()))
    );
    let two = call(&stack, "GET", &id_text, "versions/2", None).await;
    assert_eq!(two.body["content"], "Edited minutes.");
    assert_eq!(two.body["version_number"], 2);

    let unknown = call(&stack, "GET", &id_text, "versions/9", None).await;
    assert_eq!(
        (
            unknown.status,
            unknown.body["error_code"].as_str(),
            unknown.body["field"].as_str()
        ),
        (404, Some("VERSION_NOT_FOUND"), Some("version_number"))
    );
    assert_eq!(unknown.body["detail"], "Version 9 not found");
    for bad in ["versions/abc", "versions/0", "versions/-2"] {
        let response = call(&stack, "GET", &id_text, bad, None).await;
        assert_eq!(
            (response.status, response.body["field"].as_str()),
            (400, Some("version_number")),
            "{bad}: {}",
            response.body
        );
    }

    let restored = call(&stack, "POST", &id_text, "versions/1/restore", None).await;
    assert_eq!(restored.status, 200, "{}", restored.body);
    assert_eq!(restored.body["current_version"], 3);
    assert_eq!(restored.body["result"]["output"], output.as_str());
    let current = call(&stack, "POST", &id_text, "versions/3/restore", None).await;
    assert_eq!(
        (current.status, current.body["error_code"].as_str()),
        (400, Some("CURRENT_VERSION"))
    );

    let original = call(&stack, "DELETE", &id_text, "versions/1", None).await;
    assert_eq!(
        (original.status, original.body["error_code"].as_str()),
        (400, Some("ORIGINAL_VERSION"))
    );
    let current = call(&stack, "DELETE", &id_text, "versions/3", None).await;
    assert_eq!(
        (current.status, current.body["error_code"].as_str()),
        (400, Some("CURRENT_VERSION"))
    );
    let v2_key = stack.gateway.jobs.get(id).await.unwrap().unwrap().versions[1]
        .key
        .clone();
    assert!(stack.gateway.blobs.get(&v2_key).await.unwrap().is_some());
    let deleted = call(&stack, "DELETE", &id_text, "versions/2", None).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(
        deleted.body,
        json!({"status": "success", "message": "Version 2 deleted", "version_number": 2})
    );
    assert!(
        stack.gateway.blobs.get(&v2_key).await.unwrap().is_none(),
        "S3 object deleted"
    );
    assert_eq!(version_numbers(&stack, &id_text).await, [1, 3]);
    assert_eq!(
        call(&stack, "DELETE", &id_text, "versions/2", None)
            .await
            .status,
        404
    );

    let missing = call(&stack, "PATCH", &id_text, "result", Some(json!({}))).await;
    assert_eq!(
        (missing.status, missing.body["field"].as_str()),
        (422, Some("content")),
        "{}",
        missing.body
    );
    assert_eq!(missing.body["detail"][0]["loc"], json!(["body", "content"]));
    let not_string = call(
        &stack,
        "PATCH",
        &id_text,
        "result",
        Some(json!({"content": 1})),
    )
    .await;
    assert_eq!(not_string.status, 422);

    let foreign = call_as(&stack, "GET", &id_text, "versions", None, "org-other").await;
    assert_eq!(
        (foreign.status, foreign.body["error_code"].as_str()),
        (404, Some("JOB_NOT_FOUND"))
    );
    let wrong_method = call(&stack, "POST", &id_text, "result", None).await;
    assert_eq!(wrong_method.status, 405);

    let queued = stack
        .submit("single-pass", Some(ORG), "A : not run yet.".into())
        .await;
    let refused = edit(&stack, &queued.id.to_string(), "too early").await;
    assert_eq!(
        (
            refused.status,
            refused.body["error_code"].as_str(),
            refused.body["status"].as_str()
        ),
        (400, Some("JOB_NOT_COMPLETED"), Some("queued"))
    );
}

#[tokio::test]
async fn concurrent_edits_never_lose_one() {
    let stack = TestStack::start().await;
    let (id, _) = completed_job(&stack).await;
    let id_text = id.to_string();
    // Never edited: v1 is implied, and the first edit stores it, so the count holds.
    let mut count = version_numbers(&stack, &id_text).await.len();
    let mut conflicts = 0;
    for round in 0..3 {
        let (content_a, content_b) = (
            format!("round {round} edit A"),
            format!("round {round} edit B"),
        );
        let (a, b) = tokio::join!(
            edit(&stack, &id_text, &content_a),
            edit(&stack, &id_text, &content_b)
        );
        let mut refused = Vec::new();
        for (name, response) in [("A", &a), ("B", &b)] {
            match response.status {
                200 => count += 1,
                409 => {
                    assert_eq!(response.body["error_code"], "RESULT_CHANGED");
                    let detail = response.body["detail"].as_str().unwrap();
                    assert!(
                        detail.contains("reload") && detail.contains("retry"),
                        "{detail}"
                    );
                    refused.push(name);
                }
                other => panic!("edit {name}: {other} {}", response.body),
            }
        }
        assert!(
            refused.len() < 2,
            "round {round}: at least one edit succeeds"
        );
        let numbers = version_numbers(&stack, &id_text).await;
        assert_eq!(
            numbers.len(),
            count,
            "round {round}: one new version per 200: {numbers:?}"
        );

        conflicts += refused.len();
        for name in refused {
            let retry = edit(
                &stack,
                &id_text,
                &format!("round {round} edit {name} retried"),
            )
            .await;
            assert_eq!(retry.status, 200, "a retry succeeds: {}", retry.body);
            count += 1;
        }
        let numbers = version_numbers(&stack, &id_text).await;
        assert_eq!(numbers.len(), count, "round {round}: {numbers:?}");
        let mut contents = Vec::new();
        for number in &numbers {
            let version = call(&stack, "GET", &id_text, &format!("versions/{number}"), None).await;
            contents.push(version.body["content"].as_str().unwrap().to_string());
        }
        for name in ["A", "B"] {
            let prefix = format!("round {round} edit {name}");
            assert_eq!(
                contents.iter().filter(|c| c.starts_with(&prefix)).count(),
                1,
                "round {round}: edit {name} kept once: {contents:?}"
            );
        }
    }
    eprintln!("concurrent edits: {conflicts} conflict(s) in 3 rounds");
}

#[tokio::test]
async fn sample_events_are_routed() {
    let stack = TestStack::start().await;
    for name in ["jobs-edit-result.json", "jobs-versions.json"] {
        let text =
            std::fs::read_to_string(gateway_test_support::repo_root().join("events").join(name))
                .unwrap();
        let response = jobs::handle(
            &stack.gateway,
            lambda_http::request::from_str(&text).unwrap(),
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
