//! The execute handler against the emulator: accepted jobs are stored and enqueued;
//! rejected requests get a 4xx naming the problem and write nothing.

use gateway_core::domain::{Flavor, JobStatus, Service};
use gateway_core::engine::JsonResponse;
use gateway_core::ports::{keys, Catalog, JobQuery};
use gateway_test_support::{api_request, seeds, transcript, TestStack};
use uuid::Uuid;

/// Service id, body, expected status, error code and named field.
type RejectedCase = (String, Vec<u8>, u16, &'static str, Option<&'static str>);

const RESOURCE: &str = "/api/v1/services/{id}/execute";

async fn execute(stack: &TestStack, service_id: &str, body: &[u8]) -> JsonResponse {
    let path = format!("/api/v1/services/{service_id}/execute");
    let request = api_request(
        "POST",
        RESOURCE,
        &path,
        &[("id", service_id)],
        &[],
        Some(body),
    );
    execute::handle(&stack.gateway, request).await
}

async fn queued_messages(stack: &TestStack) -> usize {
    match stack.receive_event(&stack.env.job_queues.standard).await {
        Some(event) => event.records.len(),
        None => 0,
    }
}

async fn job_count(stack: &TestStack, organization_id: Option<&str>) -> usize {
    let query = JobQuery {
        organization_id: organization_id.map(str::to_string),
        page_size: 100,
        ..Default::default()
    };
    stack.gateway.jobs.list(&query).await.unwrap().jobs.len()
}

#[tokio::test]
async fn accepted_job_is_stored_and_enqueued() {
    let stack = TestStack::start().await;
    let service = seeds::SUMMARIZE_SERVICE_ID.to_string();
    let body = serde_json::json!({"input": transcript(40), "organization_id": "org-a"}).to_string();
    let response = execute(&stack, &service, body.as_bytes()).await;
    assert_eq!(response.status, 202, "{}", response.body);
    let job_id: Uuid = response.body["job_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(response.body["status"], "queued");
    assert_eq!(
        response.body["flavor_name"], "iterative",
        "the default flavor"
    );
    assert_eq!(response.body["processing_mode"], "iterative");
    assert!(response.body["input_tokens"].as_u64().unwrap() > 100);
    assert!(response.body["total_turns"].as_u64().unwrap() >= 40);
    assert!(response.body["estimated_batches"].as_u64().unwrap() >= 4);

    let job = stack
        .gateway
        .jobs
        .get(job_id)
        .await
        .unwrap()
        .expect("job stored");
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.organization_id.as_deref(), Some("org-a"));
    assert_eq!(job.settings.tokenizer, "cl100k_base");
    let input = stack
        .gateway
        .blobs
        .get(&keys::input(job_id))
        .await
        .unwrap()
        .expect("input stored");
    assert_eq!(String::from_utf8(input).unwrap(), transcript(40));
    assert_eq!(
        job.progress.turn_pages,
        vec![0],
        "40 short turns fit one page"
    );
    let page = stack
        .gateway
        .blobs
        .get(&keys::turn_page(job_id, 0, 0))
        .await
        .unwrap()
        .expect("turns stored");
    let turns: Vec<serde_json::Value> = serde_json::from_slice(&page).unwrap();
    assert_eq!(turns.len() as u32, job.progress.total_turns);

    let event = stack
        .receive_event(&stack.env.job_queues.standard)
        .await
        .expect("first step enqueued");
    assert_eq!(event.records.len(), 1);
    let message: serde_json::Value =
        serde_json::from_str(event.records[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(message["job_id"], job_id.to_string());
    assert_eq!(message["step"], 0);
    assert_eq!(
        event.records[0].attributes.get("MessageGroupId"),
        Some(&job_id.to_string())
    );
}

#[tokio::test]
async fn flavor_by_name_and_by_id() {
    let stack = TestStack::start().await;
    let service = seeds::SUMMARIZE_SERVICE_ID.to_string();
    let by_name =
        serde_json::json!({"input": "A : hello", "flavor_name": "single-pass"}).to_string();
    let response = execute(&stack, &service, by_name.as_bytes()).await;
    assert_eq!(response.status, 202, "{}", response.body);
    assert_eq!(response.body["processing_mode"], "single_pass");
    let by_id = serde_json::json!({"input": "A : hello", "flavor_id": seeds::ITERATIVE_FLAVOR_ID})
        .to_string();
    let response = execute(&stack, &service, by_id.as_bytes()).await;
    assert_eq!(response.status, 202, "{}", response.body);
    assert_eq!(
        response.body["flavor_id"],
        seeds::ITERATIVE_FLAVOR_ID.to_string()
    );
}

#[tokio::test]
async fn rejected_requests_name_the_problem_and_write_nothing() {
    let stack = TestStack::start().await;
    // A second service with its own flavor, to try it on the summarize service.
    let other: Service = serde_json::from_value(serde_json::json!({
        "id": Uuid::new_v4(),
        "name": "other",
        "route": "other",
        "service_type": "summary",
    }))
    .unwrap();
    stack.catalog.put_service(&other).await.unwrap();
    let foreign_flavor: Flavor = serde_json::from_value(serde_json::json!({
        "id": Uuid::new_v4(),
        "service_id": other.id,
        "name": "foreign",
        "model_id": seeds::MODEL_ID,
        "is_default": true,
        "temperature": 0.2,
        "processing_mode": "single_pass",
        "prompt_user_content": "{}",
    }))
    .unwrap();
    stack.catalog.put_flavor(&foreign_flavor).await.unwrap();

    let summarize = seeds::SUMMARIZE_SERVICE_ID.to_string();
    let huge = format!(r#"{{"input":"{}"}}"#, "a ".repeat(3_000_000));
    let cases: Vec<RejectedCase> = vec![
        (
            summarize.clone(),
            b"{not json".to_vec(),
            422,
            "INVALID_JSON",
            None,
        ),
        (summarize.clone(), b"".to_vec(), 422, "INVALID_JSON", None),
        (
            summarize.clone(),
            b"{}".to_vec(),
            422,
            "VALIDATION_ERROR",
            Some("input"),
        ),
        (
            summarize.clone(),
            br#"{"input": ""}"#.to_vec(),
            422,
            "VALIDATION_ERROR",
            Some("input"),
        ),
        (
            summarize.clone(),
            br#"{"input": ["x"]}"#.to_vec(),
            422,
            "VALIDATION_ERROR",
            Some("input"),
        ),
        (
            summarize.clone(),
            b"{\"input\": \"caf\xe9\"}".to_vec(),
            400,
            "INVALID_ENCODING",
            None,
        ),
        (
            summarize.clone(),
            huge.into_bytes(),
            413,
            "INPUT_TOO_LARGE",
            Some("body"),
        ),
        (
            Uuid::new_v4().to_string(),
            br#"{"input": "x"}"#.to_vec(),
            404,
            "SERVICE_NOT_FOUND",
            None,
        ),
        (
            summarize.clone(),
            br#"{"input": "A : x", "context": {"tags": [{"name": "", "description": "d"}]}}"#
                .to_vec(),
            422,
            "VALIDATION_ERROR",
            Some("context.tags[0].name"),
        ),
        (
            summarize.clone(),
            br#"{"input": "A : x", "extraction_fields": {"job_id": "id"}}"#.to_vec(),
            422,
            "VALIDATION_ERROR",
            Some("extraction_fields.job_id"),
        ),
        (
            other.id.to_string(),
            br#"{"input": "A : x", "extraction_fields": {"title": ""}}"#.to_vec(),
            422,
            "VALIDATION_ERROR",
            Some("extraction_fields"),
        ),
        (
            other.id.to_string(),
            br#"{"input": "A : x", "context": {"tags": [{"name": "a", "description": "b"}]}}"#
                .to_vec(),
            422,
            "VALIDATION_ERROR",
            Some("context"),
        ),
        (
            summarize.clone(),
            br#"{"input": "A : x", "organization_id": " "}"#.to_vec(),
            422,
            "VALIDATION_ERROR",
            Some("organization_id"),
        ),
        (
            "not-a-uuid".into(),
            br#"{"input": "x"}"#.to_vec(),
            404,
            "SERVICE_NOT_FOUND",
            None,
        ),
        (
            summarize.clone(),
            br#"{"input": "x", "flavor_name": "nope"}"#.to_vec(),
            404,
            "FLAVOR_NOT_FOUND",
            Some("flavor_name"),
        ),
        (
            summarize.clone(),
            format!(r#"{{"input": "x", "flavor_id": "{}"}}"#, Uuid::new_v4()).into_bytes(),
            404,
            "FLAVOR_NOT_FOUND",
            Some("flavor_id"),
        ),
        (
            summarize.clone(),
            format!(r#"{{"input": "x", "flavor_id": "{}"}}"#, foreign_flavor.id).into_bytes(),
            404,
            "FLAVOR_NOT_FOUND",
            Some("flavor_id"),
        ),
    ];
    for (service, body, status, code, field) in cases {
        let response = execute(&stack, &service, &body).await;
        let label = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        assert_eq!(response.status, status, "{label}: {}", response.body);
        assert_eq!(response.body["error_code"], code, "{label}");
        // A string, or FastAPI's list of validation errors for a 422.
        let detail = &response.body["detail"];
        assert!(
            detail.as_str().is_some_and(|d| !d.is_empty())
                || detail.as_array().is_some_and(|errors| !errors.is_empty()),
            "{label}"
        );
        assert_eq!(
            response.body.get("field").and_then(|f| f.as_str()),
            field,
            "{label}"
        );
    }

    let path = format!("/api/v1/services/{summarize}/execute");
    // A body declared in another media type than JSON is 415 naming the header.
    for content_type in ["text/plain", "application/xml; charset=utf-8"] {
        let mut request = api_request(
            "POST",
            RESOURCE,
            &path,
            &[("id", &summarize)],
            &[],
            Some(br#"{"input": "A : x"}"#),
        );
        request.headers_mut().insert(
            lambda_http::http::header::CONTENT_TYPE,
            content_type.parse().unwrap(),
        );
        let response = execute::handle(&stack.gateway, request).await;
        assert_eq!(response.status, 415, "{content_type}: {}", response.body);
        assert_eq!(response.body["error_code"], "UNSUPPORTED_MEDIA_TYPE");
        assert_eq!(response.body["field"], "content-type");
    }
    // Without a Content-Type the body is read as JSON.
    let mut untyped = api_request(
        "POST",
        "/api/v1/services/{id}/validate-execution",
        &format!("/api/v1/services/{summarize}/validate-execution"),
        &[("id", &summarize)],
        &[],
        Some(br#"{"input": "A : x"}"#),
    );
    untyped
        .headers_mut()
        .remove(lambda_http::http::header::CONTENT_TYPE);
    let response = execute::handle(&stack.gateway, untyped).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let wrong_method = api_request("GET", RESOURCE, &path, &[("id", &summarize)], &[], None);
    assert_eq!(
        execute::handle(&stack.gateway, wrong_method).await.status,
        405
    );

    assert_eq!(
        job_count(&stack, None).await,
        0,
        "no job written for rejected requests"
    );
    assert_eq!(
        queued_messages(&stack).await,
        0,
        "no message sent for rejected requests"
    );
}

#[tokio::test]
async fn single_pass_input_over_the_context_falls_back_or_is_refused() {
    let stack = TestStack::start().await;
    let service = seeds::SUMMARIZE_SERVICE_ID.to_string();
    // The seeded single-pass flavor allows the automatic fallback to the iterative one.
    let body = serde_json::json!({"input": transcript(1200), "flavor_name": "single-pass", "organization_id": "org-x"}).to_string();
    let accepted = execute(&stack, &service, body.as_bytes()).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    assert_eq!(accepted.body["fallback_applied"], true);
    assert_eq!(accepted.body["original_flavor_name"], "single-pass");
    assert_eq!(
        accepted.body["original_flavor_id"],
        seeds::SINGLE_PASS_FLAVOR_ID.to_string()
    );
    assert_eq!(accepted.body["flavor_name"], "iterative");
    assert_eq!(accepted.body["processing_mode"], "iterative");
    let reason = accepted.body["fallback_reason"].as_str().unwrap();
    assert!(
        reason.contains("does not fit flavor 'single-pass'"),
        "{reason}"
    );
    let job_id: Uuid = accepted.body["job_id"].as_str().unwrap().parse().unwrap();
    let job = stack.gateway.jobs.get(job_id).await.unwrap().unwrap();
    assert_eq!(job.flavor_id, seeds::ITERATIVE_FLAVOR_ID);
    assert!(job.fallback.is_some());

    // A flavor that does not allow it is refused with the figures and a suggestion.
    use gateway_core::ports::Catalog;
    let mut strict = stack
        .catalog
        .flavor(seeds::SUMMARIZE_SERVICE_ID, seeds::SINGLE_PASS_FLAVOR_ID)
        .await
        .unwrap()
        .unwrap();
    strict.id = Uuid::new_v4();
    strict.name = "strict".into();
    strict.is_default = false;
    strict.auto_fallback_to_iterative = false;
    stack.catalog.put_flavor(&strict).await.unwrap();
    let body = serde_json::json!({"input": transcript(1200), "flavor_name": "strict", "organization_id": "org-y"}).to_string();
    let response = execute(&stack, &service, body.as_bytes()).await;
    assert_eq!(response.status, 400, "{}", response.body);
    assert_eq!(response.body["error_code"], "CONTEXT_EXCEEDED");
    let input_tokens = response.body["input_tokens"].as_u64().unwrap();
    let available = response.body["available_tokens"].as_u64().unwrap();
    assert!(input_tokens > available, "{}", response.body);
    assert_eq!(response.body["context_length"], 8192);
    assert_eq!(response.body["max_generation_length"], 2048);
    assert!(response.body["suggestion"]
        .as_str()
        .unwrap()
        .contains("iterative"));
    assert_eq!(job_count(&stack, Some("org-y")).await, 0);
}

#[tokio::test]
async fn service_of_another_organization_is_not_found() {
    let stack = TestStack::start().await;
    let private: Service = serde_json::from_value(serde_json::json!({
        "id": Uuid::new_v4(),
        "name": "private",
        "route": "private",
        "service_type": "summary",
        "organization_id": "org-owner",
    }))
    .unwrap();
    stack.catalog.put_service(&private).await.unwrap();
    let body = br#"{"input": "x", "organization_id": "org-intruder"}"#;
    let response = execute(&stack, &private.id.to_string(), body).await;
    assert_eq!(response.status, 404);
    assert_eq!(response.body["error_code"], "SERVICE_NOT_FOUND");
}

#[tokio::test]
async fn sample_event_is_accepted_and_provider_key_is_encrypted_at_rest() {
    let stack = TestStack::start().await;
    let event =
        std::fs::read_to_string(gateway_test_support::repo_root().join("events/execute.json"))
            .unwrap();
    let request = lambda_http::request::from_str(&event)
        .expect("events/execute.json is an API Gateway event");
    let response = execute::handle(&stack.gateway, request).await;
    assert_eq!(response.status, 202, "{}", response.body);
    assert_eq!(response.body["organization_id"], "demo");

    let provider = stack
        .catalog
        .provider(seeds::PROVIDER_ID)
        .await
        .unwrap()
        .unwrap();
    let ciphertext = provider
        .api_key_ciphertext
        .expect("the seeded key is stored encrypted");
    assert!(!ciphertext.contains("test-key-not-secret"));
    assert_eq!(
        stack.gateway.secrets.decrypt(&ciphertext).await.unwrap(),
        "test-key-not-secret"
    );
}

#[tokio::test]
async fn flavor_ttl_sets_the_job_expiry() {
    let stack = TestStack::start().await;
    let mut flavor = stack
        .catalog
        .flavor(seeds::SUMMARIZE_SERVICE_ID, seeds::ITERATIVE_FLAVOR_ID)
        .await
        .unwrap()
        .unwrap();
    flavor.default_ttl_seconds = Some(3600);
    stack.catalog.put_flavor(&flavor).await.unwrap();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let response = execute(
        &stack,
        &seeds::SUMMARIZE_SERVICE_ID.to_string(),
        br#"{"input": "A : hi"}"#,
    )
    .await;
    assert_eq!(response.status, 202, "{}", response.body);
    let job_id: Uuid = response.body["job_id"].as_str().unwrap().parse().unwrap();
    let expires_at = stack
        .gateway
        .jobs
        .get(job_id)
        .await
        .unwrap()
        .unwrap()
        .expires_at
        .expect("expiry set");
    assert!(
        (before + 3600..=before + 3605).contains(&expires_at),
        "{expires_at} vs {before}"
    );
}

#[tokio::test]
async fn validate_execution_is_a_dry_run() {
    let stack = TestStack::start().await;
    let service = seeds::SUMMARIZE_SERVICE_ID.to_string();
    let resource = "/api/v1/services/{id}/validate-execution";
    let path = format!("/api/v1/services/{service}/validate-execution");
    let dry_run = |body: String| {
        api_request(
            "POST",
            resource,
            &path,
            &[("id", &service)],
            &[],
            Some(body.as_bytes()),
        )
    };
    let body = serde_json::json!({"input": transcript(40), "organization_id": "org-v"}).to_string();
    let response = execute::handle(&stack.gateway, dry_run(body)).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.body["valid"], true);
    assert_eq!(response.body["flavor_name"], "iterative");
    assert!(response.body["estimated_batches"].as_u64().unwrap() >= 4);
    assert!(response.body["estimated_cost"].as_f64().unwrap() > 0.0);
    let calls = &response.body["estimated_calls"];
    assert_eq!(calls["processing"], response.body["estimated_batches"]);
    assert_eq!(calls["reduce"], 1, "the seeded iterative flavor reduces");
    assert_eq!(
        calls["extraction"], 0,
        "no extraction_fields, no extraction"
    );

    let huge =
        serde_json::json!({"input": transcript(3000), "flavor_name": "single-pass"}).to_string();
    let too_long = execute::handle(&stack.gateway, dry_run(huge)).await;
    assert_eq!(too_long.status, 200, "{}", too_long.body);
    assert_eq!(too_long.body["valid"], true, "{}", too_long.body);
    assert_eq!(too_long.body["fallback_applied"], true);
    assert_eq!(too_long.body["flavor_name"], "iterative");
    assert!(too_long.body["reason"]
        .as_str()
        .unwrap()
        .contains("fell back automatically to the iterative flavor 'iterative'"));
    let too_long_for_one =
        serde_json::json!({"input": transcript(3000), "flavor_id": seeds::SINGLE_PASS_FLAVOR_ID, "organization_id": "org-v"})
            .to_string();
    let fits = execute::handle(&stack.gateway, dry_run(too_long_for_one)).await;
    assert_eq!(fits.body["original_flavor_name"], "single-pass");

    let unknown = serde_json::json!({"input": "x", "flavor_name": "nope"}).to_string();
    assert_eq!(
        execute::handle(&stack.gateway, dry_run(unknown))
            .await
            .status,
        404
    );
    let event = std::fs::read_to_string(
        gateway_test_support::repo_root().join("events/execute-validate.json"),
    )
    .unwrap();
    let sample = execute::handle(
        &stack.gateway,
        lambda_http::request::from_str(&event).unwrap(),
    )
    .await;
    assert_eq!(
        (sample.status, sample.body["valid"].as_bool()),
        (200, Some(true)),
        "{}",
        sample.body
    );
    assert_eq!(job_count(&stack, None).await, 0, "a dry run writes no job");
    assert_eq!(queued_messages(&stack).await, 0, "and enqueues nothing");
}

#[tokio::test]
async fn a_repeated_execute_is_answered_from_the_result_cache() {
    let stack = TestStack::start().await;
    let service = seeds::SUMMARIZE_SERVICE_ID.to_string();
    let body = serde_json::json!({
        "input": transcript(8),
        "flavor_name": "single-pass",
        "organization_id": "org-cache",
    })
    .to_string();
    let first = execute(&stack, &service, body.as_bytes()).await;
    assert_eq!(first.status, 202, "{}", first.body);
    assert_eq!(first.body["cache_hit"], false);
    stack.run_worker_steps(10).await;
    let calls = stack.mock.requests().len();

    let second = execute(&stack, &service, body.as_bytes()).await;
    assert_eq!(second.status, 202, "{}", second.body);
    assert_eq!(second.body["status"], "completed");
    assert_eq!(second.body["cache_hit"], true);
    assert_eq!(second.body["cached_from"], first.body["job_id"]);
    assert_eq!(stack.mock.requests().len(), calls, "no LLM call");
    assert_eq!(queued_messages(&stack).await, 0, "nothing enqueued");
    let id = Uuid::parse_str(second.body["job_id"].as_str().unwrap()).unwrap();
    let first_id = Uuid::parse_str(first.body["job_id"].as_str().unwrap()).unwrap();
    let blobs = &stack.gateway.blobs;
    assert_eq!(
        blobs.get(&keys::result(id)).await.unwrap(),
        blobs.get(&keys::result(first_id)).await.unwrap()
    );

    let mut opted_out: serde_json::Value = serde_json::from_str(&body).unwrap();
    opted_out["cache"] = serde_json::json!(false);
    let third = execute(&stack, &service, opted_out.to_string().as_bytes()).await;
    assert_eq!(third.status, 202, "{}", third.body);
    assert_eq!(third.body["status"], "queued");
    assert_eq!(third.body["cache_hit"], false);
}

async fn create_upload(stack: &TestStack, organization: &str) -> serde_json::Value {
    let request = api_request(
        "POST",
        "/api/v1/uploads",
        "/api/v1/uploads",
        &[],
        &[("organization_id", organization)],
        None,
    );
    let created = execute::handle(&stack.gateway, request).await;
    assert_eq!(created.status, 201, "{}", created.body);
    created.body
}

#[tokio::test]
async fn large_inputs_go_through_an_upload() {
    let mut stack = TestStack::start().await;
    let service = seeds::SUMMARIZE_SERVICE_ID.to_string();
    let upload = create_upload(&stack, "org-up").await;
    let id = upload["upload_id"].as_str().unwrap().to_string();
    let submit = |org: &str, upload_id: &str| {
        serde_json::json!({"input_upload_id": upload_id, "organization_id": org}).to_string()
    };

    let empty = execute(&stack, &service, submit("org-up", &id).as_bytes()).await;
    assert_eq!(
        (empty.status, empty.body["error_code"].as_str()),
        (400, Some("UPLOAD_EMPTY")),
        "{}",
        empty.body
    );

    let text = transcript(300);
    let put = reqwest::Client::new()
        .put(upload["url"].as_str().unwrap())
        .body(text.clone())
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());

    let dry_run = {
        let path = format!("/api/v1/services/{service}/validate-execution");
        let request = api_request(
            "POST",
            "/api/v1/services/{id}/validate-execution",
            &path,
            &[("id", &service)],
            &[],
            Some(submit("org-up", &id).as_bytes()),
        );
        execute::handle(&stack.gateway, request).await
    };
    assert_eq!(dry_run.status, 200, "{}", dry_run.body);
    assert!(dry_run.body["input_tokens"].as_u64().unwrap() > 1000);

    let accepted = execute(&stack, &service, submit("org-up", &id).as_bytes()).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let job_id = Uuid::parse_str(accepted.body["job_id"].as_str().unwrap()).unwrap();
    let stored = stack.gateway.blobs.get(&keys::input(job_id)).await.unwrap();
    assert_eq!(
        stored.as_deref(),
        Some(text.as_bytes()),
        "the uploaded text is the input"
    );

    for (org, upload_id, status, code) in [
        ("org-other", id.clone(), 404, "UPLOAD_NOT_FOUND"),
        (
            "org-up",
            Uuid::new_v4().to_string(),
            404,
            "UPLOAD_NOT_FOUND",
        ),
    ] {
        let refused = execute(&stack, &service, submit(org, &upload_id).as_bytes()).await;
        assert_eq!(
            (refused.status, refused.body["error_code"].as_str()),
            (status, Some(code)),
            "{org} {upload_id}: {}",
            refused.body
        );
        assert_eq!(refused.body["field"], "input_upload_id");
    }
    stack.gateway.limits.max_upload_bytes = 1000;
    let too_large = execute(&stack, &service, submit("org-up", &id).as_bytes()).await;
    assert_eq!(too_large.status, 413, "{}", too_large.body);
}

#[tokio::test]
async fn the_reference_multipart_run_submits_a_file() {
    let stack = TestStack::start().await;
    let service = seeds::SUMMARIZE_SERVICE_ID.to_string();
    let form = |fields: &[(&str, &str)], file: Option<&str>| {
        let mut body = String::new();
        for (name, value) in fields {
            body.push_str(&format!(
                "--B\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            ));
        }
        if let Some(file) = file {
            body.push_str(&format!(
                "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m.txt\"\r\nContent-Type: text/plain\r\n\r\n{file}\r\n"
            ));
        }
        body.push_str("--B--\r\n");
        body
    };
    let run = |body: String| {
        let stack = &stack;
        let service = service.clone();
        async move {
            let request = gateway_test_support::api_request_of_type(
                "POST",
                "/api/v1/services/{id}/run",
                &format!("/api/v1/services/{service}/run"),
                &[("id", &service)],
                &[],
                Some(body.as_bytes()),
                "multipart/form-data; boundary=B",
            );
            execute::handle(&stack.gateway, request).await
        }
    };
    let flavor = seeds::SINGLE_PASS_FLAVOR_ID.to_string();
    let accepted = run(form(
        &[("flavor_id", &flavor), ("organization_id", "org-run")],
        Some(&transcript(6)),
    ))
    .await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    assert_eq!(accepted.body["flavor_name"], "single-pass");
    assert_eq!(accepted.body["organization_id"], "org-run");

    for (fields, file, field) in [
        (vec![("flavor_id", flavor.as_str())], None, "file"),
        (
            vec![("flavor_id", flavor.as_str()), ("temperature", "0.9")],
            Some("A : hi."),
            "temperature",
        ),
        (
            vec![("flavor_id", flavor.as_str()), ("context", "{not json")],
            Some("A : hi."),
            "context",
        ),
        (
            vec![("flavor_id", flavor.as_str()), ("cache", "maybe")],
            Some("A : hi."),
            "cache",
        ),
    ] {
        let refused = run(form(&fields, file)).await;
        assert_eq!(refused.status, 422, "{field}: {}", refused.body);
        assert_eq!(
            refused.body["detail"][0]["loc"][1], field,
            "{}",
            refused.body
        );
    }
}
