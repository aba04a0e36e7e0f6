//! The ws function against the emulator: subscriptions on $connect / subscribe /
//! $disconnect, and job updates from stream batches posted through the management API
//! (moto's, which accepts any connection id; delivery itself is covered end to end).

use gateway_core::domain::{Job, JobStatus};
use gateway_core::engine::notify::Realtime;
use gateway_core::ports::Topic;
use gateway_test_support::{endpoint, transcript, TestStack};
use serde_json::{json, Value};
use uuid::Uuid;

fn ws_event(route: &str, connection_id: &str, query: Value, body: Option<&str>) -> Value {
    json!({
        "headers": {},
        "multiValueHeaders": {},
        "queryStringParameters": query,
        "requestContext": {
            "routeKey": route,
            "eventType": match route { "$connect" => "CONNECT", "$disconnect" => "DISCONNECT", _ => "MESSAGE" },
            "connectionId": connection_id,
            "connectedAt": 0,
            "requestTimeEpoch": 0,
            "stage": "test",
            "identity": {"sourceIp": "127.0.0.1"},
            "apiId": "local",
            "requestId": Uuid::new_v4().to_string(),
        },
        "body": body,
        "isBase64Encoded": false,
    })
}

async fn new_job(stack: &TestStack, org: &str) -> Job {
    stack.submit("iterative", Some(org), transcript(30)).await
}

async fn setup() -> (TestStack, Realtime) {
    let stack = TestStack::start().await;
    let realtime = stack.realtime(&endpoint());
    (stack, realtime)
}

#[tokio::test]
async fn connect_subscribe_and_disconnect() {
    let (stack, realtime) = setup().await;
    let job = new_job(&stack, "org-1").await;
    let job_query = json!({"job_id": job.id.to_string(), "organization_id": "org-1"});

    let ok = ws::handle(
        &stack.gateway,
        &realtime,
        ws_event("$connect", "c1", job_query, None),
    )
    .await;
    assert_eq!(ok["statusCode"], 200, "{ok}");
    assert_eq!(
        realtime
            .connections
            .subscribers(&Topic::Job(job.id))
            .await
            .unwrap(),
        vec!["c1"]
    );

    for (query, status) in [
        (json!(null), 400),
        (json!({"job_id": "nope"}), 400),
        (json!({"job_id": Uuid::new_v4().to_string()}), 404),
        (
            json!({"job_id": job.id.to_string(), "organization_id": "org-2"}),
            404,
        ),
    ] {
        let refused = ws::handle(
            &stack.gateway,
            &realtime,
            ws_event("$connect", "c2", query.clone(), None),
        )
        .await;
        assert_eq!(refused["statusCode"], status, "{query}: {refused}");
        let body: Value = serde_json::from_str(refused["body"].as_str().unwrap()).unwrap();
        assert!(body["detail"].as_str().is_some());
    }
    assert!(
        realtime
            .connections
            .organization_of("c2")
            .await
            .unwrap()
            .is_none(),
        "refused: nothing stored"
    );

    let org = ws::handle(
        &stack.gateway,
        &realtime,
        ws_event("$connect", "c3", json!({"organization_id": "org-1"}), None),
    )
    .await;
    assert_eq!(org["statusCode"], 200);
    let answer = ws::handle(
        &stack.gateway,
        &realtime,
        ws_event(
            "subscribe",
            "c3",
            json!(null),
            Some(r#"{"action":"subscribe"}"#),
        ),
    )
    .await;
    let snapshot: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(snapshot["type"], "jobs_snapshot");
    assert_eq!(snapshot["jobs"][0]["job_id"], job.id.to_string());
    let borrowed = ws::handle(
        &stack.gateway,
        &realtime,
        ws_event(
            "subscribe",
            "c3",
            json!(null),
            Some(r#"{"action":"subscribe","organization_id":"org-2"}"#),
        ),
    )
    .await;
    let error: Value = serde_json::from_str(borrowed["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        error["type"], "error",
        "another organization's feed is refused"
    );
    assert!(realtime
        .connections
        .subscribers(&Topic::Organization("org-2".into()))
        .await
        .unwrap()
        .is_empty());

    ws::handle(
        &stack.gateway,
        &realtime,
        ws_event("$disconnect", "c1", json!(null), None),
    )
    .await;
    assert!(realtime
        .connections
        .subscribers(&Topic::Job(job.id))
        .await
        .unwrap()
        .is_empty());
    assert!(realtime
        .connections
        .organization_of("c1")
        .await
        .unwrap()
        .is_none());
}

fn stream_record(old: Option<&Job>, new: &Job, sequence: u64) -> Value {
    let image = |job: &Job| -> Value {
        let item: serde_dynamo::Item = serde_dynamo::to_item(job).unwrap();
        serde_json::to_value(item).unwrap()
    };
    json!({
        "eventID": sequence.to_string(),
        "eventName": if old.is_some() { "MODIFY" } else { "INSERT" },
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "Keys": {"id": {"S": new.id.to_string()}},
            "NewImage": image(new),
            "OldImage": old.map(image).unwrap_or(json!({})),
            "SequenceNumber": sequence.to_string(),
            "SizeBytes": 100,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x",
    })
}

#[tokio::test]
async fn stream_batches_publish_job_updates() {
    let (stack, realtime) = setup().await;
    let job = new_job(&stack, "org-s").await;
    ws::handle(
        &stack.gateway,
        &realtime,
        ws_event(
            "$connect",
            "s1",
            json!({"job_id": job.id.to_string(), "organization_id": "org-s"}),
            None,
        ),
    )
    .await;
    let mut running = job.clone();
    running.status = JobStatus::Processing;
    running.progress.step = 1;
    running.progress.cursor = 12;
    let batch = json!({"Records": [stream_record(None, &job, 1), stream_record(Some(&job), &running, 2), stream_record(Some(&running), &running, 3)]});
    let response = ws::handle(&stack.gateway, &realtime, batch).await;
    assert_eq!(response, json!({"batchItemFailures": []}));

    // A management endpoint that is down: the record is reported for retry.
    let unreachable = stack.realtime("http://127.0.0.1:9");
    let batch = json!({"Records": [stream_record(Some(&job), &running, 4)]});
    let response = ws::handle(&stack.gateway, &unreachable, batch).await;
    assert_eq!(response["batchItemFailures"][0]["itemIdentifier"], "4");
}

#[tokio::test]
async fn sample_events_are_handled() {
    let (stack, realtime) = setup().await;
    let read = |name: &str| -> Value {
        let text =
            std::fs::read_to_string(gateway_test_support::repo_root().join("events").join(name))
                .unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let connected = ws::handle(&stack.gateway, &realtime, read("ws-connect.json")).await;
    assert_eq!(connected["statusCode"], 200, "{connected}");
    let subscribed = ws::handle(&stack.gateway, &realtime, read("ws-subscribe.json")).await;
    let snapshot: Value = serde_json::from_str(subscribed["body"].as_str().unwrap()).unwrap();
    assert_eq!(snapshot["type"], "jobs_snapshot", "{snapshot}");
    let unsubscribed = ws::handle(&stack.gateway, &realtime, read("ws-unsubscribe.json")).await;
    let answer: Value = serde_json::from_str(unsubscribed["body"].as_str().unwrap()).unwrap();
    assert_eq!(answer["type"], "unsubscribed", "{answer}");
    let disconnected = ws::handle(&stack.gateway, &realtime, read("ws-disconnect.json")).await;
    assert_eq!(disconnected["statusCode"], 200);

    let stream = read("ws-jobs-stream.json");
    let batch: aws_lambda_events::event::dynamodb::Event =
        serde_json::from_value(stream.clone()).unwrap();
    let job: Job = serde_dynamo::from_item(batch.records[0].change.new_image.clone())
        .expect("the sample image is a job");
    assert_eq!(job.progress.step, 2);
    assert_eq!(
        ws::handle(&stack.gateway, &realtime, stream).await,
        json!({"batchItemFailures": []})
    );
}

#[tokio::test]
async fn a_finished_job_is_counted_once_however_often_its_record_is_replayed() {
    let (stack, realtime) = setup().await;
    let job = new_job(&stack, "org-u").await;
    let mut done = job.clone();
    done.status = JobStatus::Completed;
    done.usage.prompt_tokens = 1_200;
    done.usage.completion_tokens = 300;
    done.usage.cost = Some(0.0042);
    done.completed_at = Some(gateway_core::domain::now_timestamp());
    let mut failed = stack
        .submit("iterative", Some("org-u"), transcript(10))
        .await;
    let queued = failed.clone();
    failed.status = JobStatus::Failed;
    failed.error = Some(gateway_core::domain::JobError {
        code: "PROVIDER_ERROR".into(),
        message: "provider 'default' failed".into(),
    });
    failed.completed_at = Some(gateway_core::domain::now_timestamp());
    let batch = json!({"Records": [
        stream_record(Some(&job), &done, 11),
        stream_record(Some(&queued), &failed, 12),
        stream_record(Some(&done), &done, 13),
    ]});
    // Delivered three times (Lambda retries a batch, a stream replays records).
    for _ in 0..3 {
        let response = ws::handle(&stack.gateway, &realtime, batch.clone()).await;
        assert_eq!(response, json!({"batchItemFailures": []}));
    }

    // The analytics routes of the catalog function.
    let call = |path: &str, query: Vec<(&str, &str)>| {
        let request = gateway_test_support::api_request("GET", path, path, &[], &query, None);
        let path = path.to_string();
        let gateway = stack.gateway.clone();
        async move {
            let request = gateway_core::api::ApiRequest::from_http(&path, request);
            gateway_core::api::catalog::TABLE
                .handle(&gateway, request)
                .await
        }
    };
    let dashboard = call(
        "/api/v1/analytics/dashboard",
        vec![("organization_id", "org-u")],
    )
    .await;
    assert_eq!(dashboard.status, 200, "{}", dashboard.body);
    let overview = &dashboard.body["overview"];
    assert_eq!(
        overview["total_jobs"], 2,
        "counted once each: {}",
        dashboard.body
    );
    assert_eq!(overview["successful_jobs"], 1);
    assert_eq!(overview["failed_jobs"], 1);
    assert_eq!(overview["success_rate"], 50.0);
    assert_eq!(overview["total_tokens"], 1_500);
    assert_eq!(overview["total_cost"], 0.0042);
    let summarize = dashboard.body["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|service| service["service_id"] == json!(job.service_id))
        .unwrap()
        .clone();
    assert_eq!(
        (
            summarize["requests_24h"].as_u64(),
            summarize["status"].as_str()
        ),
        (Some(2), Some("unhealthy"))
    );
    assert_eq!(
        dashboard.body["recent_failures"][0]["job_id"],
        json!(failed.id)
    );

    let other = call(
        "/api/v1/analytics/dashboard",
        vec![("organization_id", "org-other")],
    )
    .await;
    assert_eq!(
        other.body["overview"]["total_jobs"], 0,
        "another organization sees none"
    );
    let operator = call("/api/v1/analytics/dashboard", vec![]).await;
    assert_eq!(
        operator.body["overview"]["total_jobs"], 2,
        "the operator sees every organization"
    );

    let path = format!("/api/v1/flavors/{}/usage-history", done.flavor_id);
    let history = call(&path, vec![("organization_id", "org-u"), ("limit", "1")]).await;
    assert_eq!(history.status, 200, "{}", history.body);
    assert_eq!(history.body["total"], 2);
    assert_eq!(history.body["items"].as_array().unwrap().len(), 1);
}
