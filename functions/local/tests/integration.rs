//! `local` against a fake Lambda Invoke API and the AWS emulator's SQS (tests/run.sh starts it;
//! without `AWS_ENDPOINT_URL` the emulator tests fail rather than pass untested).

use std::io::{BufRead, BufReader};
use std::process::{Command as Process, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use local::routes::ROUTES;
use local::{FrontDoor, Invoker, SqsMapping, SqsPoller, WsFrontDoor};
use serde_json::{json, Value};

/// Invocations the fake Invoke API received: (function name, event).
type Recorded = Arc<Mutex<Vec<(String, Value)>>>;

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or_default()
}

/// How long function `slow` (and path `/api/v1/jobs/slow`) takes.
const SLOW: Duration = Duration::from_millis(1000);

/// Answers like the real functions would: proxy responses for HTTP events (a function
/// error for path `/api/v1/jobs/boom`, a 500 for `/api/v1/jobs/broken`), and for SQS
/// events a batch response failing every record whose body is `fail-me` (function
/// `worker`) or a function error (function `broken`). Function `slow` and path
/// `/api/v1/jobs/slow` take [`SLOW`]; function `hang` never answers a first delivery of a
/// record whose body is `hang`, nor does path `/api/v1/jobs/hang` (a runtime that died
/// mid-invocation: `cargo lambda watch` never answers those). Their events are recorded
/// with `_started_ms` and `_finished_ms`.
async fn fake_invoke(
    State(recorded): State<Recorded>,
    Path(function): Path<String>,
    Json(mut event): Json<Value>,
) -> Response {
    let path = event["path"].as_str().unwrap_or_default().to_string();
    let timed = matches!(function.as_str(), "slow" | "hang")
        || matches!(path.as_str(), "/api/v1/jobs/slow" | "/api/v1/jobs/hang");
    if timed {
        event["_started_ms"] = json!(now_ms());
        let hangs = path == "/api/v1/jobs/hang"
            || (function == "hang"
                && event["Records"].as_array().is_some_and(|records| {
                    records.iter().any(|record| {
                        record["body"] == "hang"
                            && record["attributes"]["ApproximateReceiveCount"] == "1"
                    })
                }));
        tokio::time::sleep(if hangs {
            Duration::from_secs(3600)
        } else {
            SLOW
        })
        .await;
        event["_finished_ms"] = json!(now_ms());
    }
    if let Ok(mut recorded) = recorded.lock() {
        recorded.push((function.clone(), event.clone()));
    }
    let function_error = |status: StatusCode| {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-amz-function-error",
            HeaderValue::from_static("Unhandled"),
        );
        (
            status,
            headers,
            Json(json!({"errorType": "Panic", "errorMessage": "boom"})),
        )
            .into_response()
    };
    if let Some(records) = event.get("Records").and_then(Value::as_array) {
        if function == "broken" {
            return function_error(StatusCode::OK);
        }
        let failures: Vec<Value> = records
            .iter()
            .filter(|record| record["body"] == "fail-me")
            .map(|record| json!({"itemIdentifier": record["messageId"]}))
            .collect();
        return Json(json!({"batchItemFailures": failures})).into_response();
    }
    match event["path"].as_str() {
        Some("/api/v1/jobs/boom") => function_error(StatusCode::OK),
        Some("/api/v1/jobs/broken") => (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
        _ => Json(json!({
            "statusCode": 202,
            "headers": {"content-type": "application/json"},
            "multiValueHeaders": {"content-type": ["application/json"], "x-seen": ["1", "2"]},
            "body": "{\"ok\":true}",
            "isBase64Encoded": false,
        }))
        .into_response(),
    }
}

/// Starts the fake Invoke API; returns its base URL and the recorded invocations.
async fn start_fake_invoke_api() -> (String, Recorded) {
    let recorded: Recorded = Arc::default();
    let app = Router::new()
        .route(
            "/2015-03-31/functions/{function}/invocations",
            post(fake_invoke),
        )
        .with_state(recorded.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fake invoke api");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), recorded)
}

fn invocations(recorded: &Recorded) -> Vec<(String, Value)> {
    recorded
        .lock()
        .map(|recorded| recorded.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn front_door_proxies_through_the_invoke_api() {
    let (invoke_url, recorded) = start_fake_invoke_api().await;
    let invoker = Invoker::new(&invoke_url, Duration::from_secs(10)).expect("invoker");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind front door");
    let base = format!("http://{}", listener.local_addr().expect("local address"));
    let front_door = FrontDoor {
        invoker,
        routes: ROUTES,
        max_body_bytes: 1024,
        timeout: Duration::from_secs(10),
    };
    tokio::spawn(local::serve_http(
        listener,
        front_door,
        std::future::pending(),
    ));
    let http = reqwest::Client::new();

    let response = http
        .post(format!(
            "{base}/api/v1/services/svc-1/execute?tag=a&tag=b&organization_id=org-1"
        ))
        .header("content-type", "application/json")
        .body(r#"{"text":"hello"}"#)
        .send()
        .await
        .expect("execute request");
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers().get_all("x-seen").iter().count(), 2);
    assert_eq!(response.text().await.expect("body"), r#"{"ok":true}"#);

    let calls = invocations(&recorded);
    assert_eq!(calls.len(), 1);
    let (function, event) = &calls[0];
    assert_eq!(function, "execute");
    assert_eq!(event["resource"], "/api/v1/services/{id}/execute");
    assert_eq!(event["path"], "/api/v1/services/svc-1/execute");
    assert_eq!(event["httpMethod"], "POST");
    assert_eq!(event["pathParameters"], json!({"id": "svc-1"}));
    assert_eq!(
        event["multiValueQueryStringParameters"]["tag"],
        json!(["a", "b"])
    );
    assert_eq!(event["queryStringParameters"]["organization_id"], "org-1");
    assert_eq!(event["headers"]["content-type"], "application/json");
    assert_eq!(
        event["isBase64Encoded"], true,
        "every body, as BinaryMediaTypes */* does"
    );
    assert_eq!(event["body"], "eyJ0ZXh0IjoiaGVsbG8ifQ==");
    assert_eq!(event["requestContext"]["stage"], "local");
    assert_eq!(event["requestContext"]["identity"]["sourceIp"], "127.0.0.1");
    assert!(event["requestContext"]["requestId"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));

    let response = http
        .get(format!("{base}/api/v1/jobs/j1/results/2"))
        .send()
        .await
        .expect("jobs request");
    assert_eq!(response.status(), 202);
    let binary = http
        .put(format!("{base}/api/v1/jobs"))
        .body(vec![0xffu8, 0x00, 0xfe])
        .send()
        .await
        .expect("put");
    assert_eq!(binary.status(), 202);
    let calls = invocations(&recorded);
    assert_eq!(calls[1].0, "jobs");
    assert_eq!(calls[1].1["resource"], "/api/v1/jobs/{id}/{proxy+}");
    assert_eq!(
        calls[1].1["pathParameters"],
        json!({"id": "j1", "proxy": "results/2"})
    );
    assert_eq!(calls[2].1["httpMethod"], "PUT");
    assert_eq!(calls[2].1["isBase64Encoded"], true);
    assert_eq!(calls[2].1["body"], "/wD+");

    for failing in ["boom", "broken"] {
        let response = http
            .get(format!("{base}/api/v1/jobs/{failing}"))
            .send()
            .await
            .expect("failing request");
        assert_eq!(response.status(), 502, "{failing}");
        let body: Value = response.json().await.expect("json error");
        assert_eq!(body["error_code"], "FUNCTION_ERROR");
    }

    // The health check is the jobs function's (it reads every dependency).
    let health = http
        .get(format!("{base}/healthcheck"))
        .send()
        .await
        .expect("healthcheck");
    assert_eq!(health.status(), 202, "the fake function's answer, proxied");
    let last = invocations(&recorded).pop().expect("health invoked");
    assert_eq!(
        (last.0.as_str(), last.1["resource"].as_str()),
        ("jobs", Some("/healthcheck"))
    );
    let invocations_before = invocations(&recorded).len();
    let missing = http
        .get(format!("{base}/x"))
        .send()
        .await
        .expect("unknown path");
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.expect("json"),
        json!({"detail": "no route for GET /x", "error_code": "NOT_FOUND"})
    );
    let too_large = http
        .post(format!("{base}/api/v1/services/s/execute"))
        .body(vec![b'x'; 1025])
        .send()
        .await
        .expect("big");
    assert_eq!(too_large.status(), 413);
    assert_eq!(
        too_large.json::<Value>().await.expect("json")["error_code"],
        "PAYLOAD_TOO_LARGE"
    );
    assert_eq!(
        invocations(&recorded).len(),
        invocations_before,
        "answered without invoking"
    );
}

#[tokio::test]
async fn binary_prints_its_address_and_stops_on_sigterm() {
    let mut child = Process::new(env!("CARGO_BIN_EXE_local"))
        .args([
            "--http-port",
            "0",
            "--ws-port",
            "0",
            "--invoke-url",
            "http://127.0.0.1:9",
        ])
        .env_remove("GATEWAY_JOB_QUEUE_URL")
        .env_remove("GATEWAY_JOB_DLQ_URL")
        .env_remove("GATEWAY_JOBS_STREAM_ARN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start local");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("first line");
    let base = line
        .trim()
        .strip_prefix("local listening on ")
        .expect("announce line")
        .to_string();
    assert!(
        base.starts_with("http://127.0.0.1:") && !base.ends_with(":0"),
        "{line}"
    );

    // Nothing answers on the invoke URL, so the proxied health check is a 502.
    let health = reqwest::get(format!("{base}/healthcheck"))
        .await
        .expect("healthcheck");
    assert_eq!(health.status(), 502);

    let mut second = String::new();
    stdout.read_line(&mut second).expect("second line");
    let websocket = second
        .trim()
        .strip_prefix("local websocket on ")
        .expect("websocket announce line")
        .to_string();
    assert!(
        websocket.starts_with("ws://127.0.0.1:") && !websocket.ends_with(":0"),
        "{second}"
    );
    // The management API answers on the WebSocket port: unknown connections are gone.
    let gone = reqwest::Client::new()
        .post(format!(
            "{}/@connections/bm9uZQ%3D%3D",
            websocket.replacen("ws://", "http://", 1)
        ))
        .body("hi")
        .send()
        .await
        .expect("management api");
    assert_eq!(gone.status(), 410);
    assert_eq!(gone.headers()["x-amzn-errortype"], "GoneException");

    let terminated = Process::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(terminated.success());
    let mut waited = Duration::ZERO;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            waited < Duration::from_secs(10),
            "local did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    };
    assert!(status.success(), "{status:?}");
}

/// An SQS client for the emulator. These tests need one: without `AWS_ENDPOINT_URL` they
/// fail (tests/run.sh starts the emulator), never pass untested.
async fn emulator_sqs() -> aws_sdk_sqs::Client {
    std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .expect("AWS_ENDPOINT_URL is not set: run the tests with tests/run.sh, which starts the emulator");
    let aws = gateway_core::aws::sdk_config().expect("AWS configuration from the environment");
    aws_sdk_sqs::Client::new(&aws)
}

/// Creates a FIFO queue with a unique name and a 2 s visibility timeout; returns its URL.
async fn create_fifo_queue(sqs: &aws_sdk_sqs::Client) -> String {
    create_fifo_queue_with_visibility(sqs, 2).await
}

/// Creates a FIFO queue with a unique name and the given visibility timeout; returns its URL.
async fn create_fifo_queue_with_visibility(sqs: &aws_sdk_sqs::Client, seconds: u32) -> String {
    let name = format!("local-it-{}.fifo", uuid::Uuid::new_v4().simple());
    sqs.create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::VisibilityTimeout, seconds.to_string())
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("queue url")
        .to_string()
}

async fn send(sqs: &aws_sdk_sqs::Client, queue_url: &str, body: &str, group: &str) {
    sqs.send_message()
        .queue_url(queue_url)
        .message_body(body)
        .message_group_id(group)
        .message_deduplication_id(format!("{group}:{body}"))
        .message_attributes(
            "kind",
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value("step")
                .build()
                .expect("attribute"),
        )
        .send()
        .await
        .expect("send message");
}

/// Receives directly (not through the poller) what is visible now: (body, receive count).
async fn visible_messages(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<(String, String)> {
    let received = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .expect("receive");
    received
        .messages()
        .iter()
        .map(|message| {
            let count = message
                .attributes()
                .and_then(|attributes| {
                    attributes.get(&MessageSystemAttributeName::ApproximateReceiveCount)
                })
                .cloned()
                .unwrap_or_default();
            (message.body().unwrap_or_default().to_string(), count)
        })
        .collect()
}

#[tokio::test]
async fn sqs_poller_deletes_all_but_reported_failures() {
    let sqs = emulator_sqs().await;
    let queue_url = create_fifo_queue(&sqs).await;
    for (body, group) in [("ok-1", "job-a"), ("fail-me", "job-b"), ("ok-2", "job-c")] {
        send(&sqs, &queue_url, body, group).await;
    }
    let (invoke_url, recorded) = start_fake_invoke_api().await;
    let invoker = Invoker::new(&invoke_url, Duration::from_secs(10)).expect("invoker");
    let mapping = SqsMapping {
        queue_urls: vec![queue_url.clone()],
        function: "worker".to_string(),
    };
    let poller = SqsPoller::new(sqs.clone(), invoker, mapping, 10);

    let (mut received, mut deleted) = (0, 0);
    for _ in 0..5 {
        let outcome = poller.poll_once().await.expect("poll");
        assert!(!outcome.invoke_failed);
        received += outcome.received;
        deleted += outcome.deleted;
        if received >= 3 {
            break;
        }
    }
    assert_eq!((received, deleted), (3, 2));

    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes()
        .and_then(|attributes| attributes.get(&QueueAttributeName::QueueArn).cloned())
        .expect("queue arn");
    let calls = invocations(&recorded);
    let records: Vec<&Value> = calls
        .iter()
        .flat_map(|(_, event)| event["Records"].as_array().into_iter().flatten())
        .collect();
    assert_eq!(records.len(), 3);
    assert!(calls.iter().all(|(function, _)| function == "worker"));
    for record in &records {
        assert_eq!(record["eventSource"], "aws:sqs");
        assert_eq!(record["eventSourceARN"], queue_arn.as_str());
        assert_eq!(record["awsRegion"], "us-east-1");
        assert_eq!(record["attributes"]["ApproximateReceiveCount"], "1");
        assert!(record["attributes"]["MessageGroupId"]
            .as_str()
            .is_some_and(|group| group.starts_with("job-")));
        assert!(record["attributes"]["MessageDeduplicationId"].is_string());
        assert!(record["attributes"]["SentTimestamp"].is_string());
        assert_eq!(record["messageAttributes"]["kind"]["stringValue"], "step");
        assert!(record["receiptHandle"].is_string() && record["md5OfBody"].is_string());
    }

    // After the visibility timeout only the reported failure is back, received twice now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        visible_messages(&sqs, &queue_url).await,
        vec![("fail-me".to_string(), "2".to_string())]
    );
    let _ = sqs.delete_queue().queue_url(&queue_url).send().await;
}

#[tokio::test]
async fn sqs_poller_serves_priority_lanes_most_urgent_first() {
    let sqs = emulator_sqs().await;
    let (urgent, standard, bulk) = (
        create_fifo_queue(&sqs).await,
        create_fifo_queue(&sqs).await,
        create_fifo_queue(&sqs).await,
    );
    // Queued in the reverse order of urgency.
    send(&sqs, &bulk, "bulk-1", "job-b1").await;
    send(&sqs, &bulk, "bulk-2", "job-b2").await;
    send(&sqs, &standard, "standard-1", "job-s").await;
    send(&sqs, &urgent, "urgent-1", "job-u").await;
    let (invoke_url, recorded) = start_fake_invoke_api().await;
    let invoker = Invoker::new(&invoke_url, Duration::from_secs(10)).expect("invoker");
    let mapping = SqsMapping {
        queue_urls: vec![urgent.clone(), standard.clone(), bulk.clone()],
        function: "worker".to_string(),
    };
    let poller = SqsPoller::new(sqs.clone(), invoker, mapping, 1);

    let mut served = Vec::new();
    for round in 0..8 {
        if round == 2 {
            // Urgent work arriving later still goes before the bulk backlog.
            send(&sqs, &urgent, "urgent-2", "job-u2").await;
        }
        if poller.poll_once().await.expect("poll").received == 0 {
            break;
        }
        let calls = invocations(&recorded);
        let (_, event) = calls.last().expect("an invocation");
        served.push(
            event["Records"][0]["body"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert_eq!(
        served,
        ["urgent-1", "standard-1", "urgent-2", "bulk-1", "bulk-2"]
    );
    for queue_url in [urgent, standard, bulk] {
        let _ = sqs.delete_queue().queue_url(&queue_url).send().await;
    }
}

/// The body of the first record of every invocation so far, in order.
fn invoked_bodies(recorded: &Recorded) -> Vec<String> {
    invocations(recorded)
        .iter()
        .filter_map(|(_, event)| event["Records"][0]["body"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn sqs_poller_takes_a_message_on_any_lane_while_long_polling_the_others() {
    let sqs = emulator_sqs().await;
    let lanes = [
        create_fifo_queue(&sqs).await,
        create_fifo_queue(&sqs).await,
        create_fifo_queue(&sqs).await,
    ];
    let (invoke_url, recorded) = start_fake_invoke_api().await;
    let invoker = Invoker::new(&invoke_url, Duration::from_secs(10)).expect("invoker");
    let mapping = SqsMapping {
        queue_urls: lanes.to_vec(),
        function: "worker".to_string(),
    };
    // 5 s long polls: a message that waited for another lane's long poll to end would
    // take seconds to be invoked.
    let poller = SqsPoller::new(sqs.clone(), invoker, mapping, 1).with_wait_time_seconds(5);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(poller.run(stopped));

    for (lane, queue_url) in lanes.iter().enumerate() {
        // Let the poller settle in its long polls (they started on every lane at once).
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let body = format!("lane-{lane}");
        let sent = std::time::Instant::now();
        send(&sqs, queue_url, &body, &format!("job-{lane}")).await;
        while !invoked_bodies(&recorded).contains(&body) {
            assert!(
                sent.elapsed() < Duration::from_secs(4),
                "{body} not invoked: {:?}",
                invoked_bodies(&recorded)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let latency = sent.elapsed();
        assert!(
            latency < Duration::from_secs(2),
            "{body} invoked after {latency:?}, while 5 s long polls were outstanding"
        );
    }
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("poller stops")
        .expect("poller task");
    for queue_url in lanes {
        assert!(visible_messages(&sqs, &queue_url).await.is_empty());
        let _ = sqs.delete_queue().queue_url(&queue_url).send().await;
    }
}

#[tokio::test]
async fn sqs_poller_serves_urgent_first_and_hands_back_what_it_cannot_invoke_at_once() {
    let sqs = emulator_sqs().await;
    // A long visibility timeout: a message left invisible rather than handed back would
    // come back only after the test's deadline.
    let (urgent, standard, bulk) = (
        create_fifo_queue_with_visibility(&sqs, 60).await,
        create_fifo_queue_with_visibility(&sqs, 60).await,
        create_fifo_queue_with_visibility(&sqs, 60).await,
    );
    let (invoke_url, recorded) = start_fake_invoke_api().await;
    // One invocation at a time, each taking SLOW.
    let invoker = Invoker::new(&invoke_url, Duration::from_secs(30))
        .expect("invoker")
        .with_concurrency(1);
    let mapping = SqsMapping {
        queue_urls: vec![urgent.clone(), standard.clone(), bulk.clone()],
        function: "slow".to_string(),
    };
    let poller = SqsPoller::new(sqs.clone(), invoker, mapping, 1).with_wait_time_seconds(5);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = std::time::Instant::now();
    let running = tokio::spawn(poller.run(stopped));

    // The poller long-polls every lane; bulk-a takes the only slot.
    tokio::time::sleep(Duration::from_millis(500)).await;
    send(&sqs, &bulk, "bulk-a", "job-a").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // While bulk-a runs, bulk and urgent work both arrive (the urgent lane's long poll takes
    // urgent-u, which cannot be invoked yet).
    send(&sqs, &bulk, "bulk-b", "job-b").await;
    send(&sqs, &urgent, "urgent-u", "job-u").await;

    let body = |event: &Value| {
        event["Records"][0]["body"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    while timings(&recorded, body).len() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "not all batches ran: {:?}",
            timings(&recorded, body)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("poller stops")
        .expect("poller task");

    let mut runs = timings(&recorded, body);
    runs.sort_by_key(|(_, start, _)| *start);
    let order: Vec<&str> = runs.iter().map(|(body, _, _)| body.as_str()).collect();
    assert_eq!(order, ["bulk-a", "urgent-u", "bulk-b"], "{runs:?}");
    // urgent-u went as soon as the slot was free, not after its visibility timeout.
    let gap = runs[1].1.saturating_sub(runs[0].2);
    assert!(gap < 1_000, "urgent-u started {gap} ms after bulk-a ended");
    // It was received at most twice: handed back at most once.
    let calls = invocations(&recorded);
    let receives = calls
        .iter()
        .map(|(_, event)| &event["Records"][0])
        .find(|record| record["body"] == "urgent-u")
        .and_then(|record| record["attributes"]["ApproximateReceiveCount"].as_str())
        .unwrap_or_default();
    assert!(matches!(receives, "1" | "2"), "received {receives} times");
    for queue_url in [urgent, standard, bulk] {
        assert!(visible_messages(&sqs, &queue_url).await.is_empty());
        let _ = sqs.delete_queue().queue_url(&queue_url).send().await;
    }
}

#[tokio::test]
async fn sqs_poller_deletes_nothing_when_the_invocation_fails() {
    let sqs = emulator_sqs().await;
    let queue_url = create_fifo_queue(&sqs).await;
    send(&sqs, &queue_url, "step-1", "job-a").await;
    send(&sqs, &queue_url, "step-1", "job-b").await;
    let (invoke_url, _recorded) = start_fake_invoke_api().await;
    let invoker = Invoker::new(&invoke_url, Duration::from_secs(10)).expect("invoker");
    let mapping = SqsMapping {
        queue_urls: vec![queue_url.clone()],
        function: "broken".to_string(),
    };
    let poller = SqsPoller::new(sqs.clone(), invoker, mapping, 10);

    let mut received = 0;
    for _ in 0..5 {
        let outcome = poller.poll_once().await.expect("poll");
        assert_eq!(outcome.deleted, 0);
        assert!(outcome.received == 0 || outcome.invoke_failed);
        received += outcome.received;
        if received >= 2 {
            break;
        }
    }
    assert_eq!(received, 2);

    // Nothing was deleted: both messages come back after the visibility timeout.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut back = visible_messages(&sqs, &queue_url).await;
    back.sort();
    assert_eq!(
        back,
        vec![
            ("step-1".to_string(), "2".to_string()),
            ("step-1".to_string(), "2".to_string())
        ]
    );

    // Unreachable Invoke API: same outcome.
    let unreachable = Invoker::new("http://127.0.0.1:9", Duration::from_secs(2)).expect("invoker");
    let mapping = SqsMapping {
        queue_urls: vec![queue_url.clone()],
        function: "worker".to_string(),
    };
    let poller = SqsPoller::new(sqs.clone(), unreachable, mapping, 10);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let outcome = poller.poll_once().await.expect("poll");
    assert!(
        outcome.received > 0 && outcome.invoke_failed && outcome.deleted == 0,
        "{outcome:?}"
    );
    let _ = sqs.delete_queue().queue_url(&queue_url).send().await;
}

/// Starts the REST front door on a free port in front of `invoker`; returns its base URL.
async fn start_front_door(invoker: Invoker, timeout: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind front door");
    let base = format!("http://{}", listener.local_addr().expect("local address"));
    let front_door = FrontDoor {
        invoker,
        routes: ROUTES,
        max_body_bytes: 1024,
        timeout,
    };
    tokio::spawn(local::serve_http(
        listener,
        front_door,
        std::future::pending(),
    ));
    base
}

/// (started, finished) of the recorded invocations, in ms since the epoch, by `key`.
fn timings(recorded: &Recorded, key: impl Fn(&Value) -> String) -> Vec<(String, u64, u64)> {
    invocations(recorded)
        .iter()
        .filter_map(|(_, event)| {
            Some((
                key(event),
                event["_started_ms"].as_u64()?,
                event["_finished_ms"].as_u64()?,
            ))
        })
        .collect()
}

#[tokio::test]
async fn front_door_invokes_concurrently_and_times_out_like_api_gateway() {
    let (invoke_url, recorded) = start_fake_invoke_api().await;
    let invoker = Invoker::new(&invoke_url, Duration::from_secs(900))
        .expect("invoker")
        .with_concurrency(2);
    let base = start_front_door(invoker, Duration::from_secs(2)).await;
    let http = reqwest::Client::new();

    // Two slow requests at once overlap: together they take one SLOW, not two.
    let started = std::time::Instant::now();
    let slow = || http.get(format!("{base}/api/v1/jobs/slow")).send();
    let (first, second) = tokio::join!(slow(), slow());
    let elapsed = started.elapsed();
    assert_eq!(first.expect("first").status(), 202);
    assert_eq!(second.expect("second").status(), 202);
    assert!(
        elapsed < SLOW * 2 - Duration::from_millis(300),
        "two slow invocations took {elapsed:?}: not concurrent"
    );
    let runs = timings(&recorded, |event| event["path"].to_string());
    assert_eq!(runs.len(), 2);
    assert!(
        runs[0].1 < runs[1].2 && runs[1].1 < runs[0].2,
        "the invocations overlap: {runs:?}"
    );

    // A function that never answers (its runtime died) is a 504 after the REST timeout,
    // in JSON, not a 900 s wait.
    let started = std::time::Instant::now();
    let response = http
        .get(format!("{base}/api/v1/jobs/hang"))
        .send()
        .await
        .expect("hang request");
    assert_eq!(response.status(), 504);
    assert!(response.headers().contains_key("x-amzn-requestid"));
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(body["error_code"], "INTEGRATION_TIMEOUT", "{body}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

/// Sends `raw` on a new connection and returns everything answered until the server
/// closes it.
async fn raw_answer(base: &str, raw: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream.write_all(raw).await.expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the connection is closed after the error")
        .expect("read");
    String::from_utf8(answer).expect("utf-8 answer")
}

/// Sends `raw` on a new connection and returns the status and the JSON body of the answer.
async fn raw_request(base: &str, raw: &[u8]) -> (u16, Value) {
    let text = raw_answer(base, raw).await;
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let body = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body:?}"));
    (status, body)
}

#[tokio::test]
async fn requests_hyper_cannot_parse_get_json_errors() {
    let (invoke_url, recorded) = start_fake_invoke_api().await;
    let invoker = Invoker::new(&invoke_url, Duration::from_secs(10)).expect("invoker");
    let base = start_front_door(invoker, Duration::from_secs(10)).await;

    let long_id = "a".repeat(70_000);
    let cases: [(Vec<u8>, u16, &str); 5] = [
        (
            format!("GET /api/v1/jobs/{long_id} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes(),
            414,
            "URI_TOO_LONG",
        ),
        (b"BLAH\r\n\r\n".to_vec(), 400, "BAD_REQUEST"),
        (
            b"GET /api/v1/jobs HTTP/9.9 extra\r\nHost: x\r\n\r\n".to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}".to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\n{}"
                .to_vec(),
            400,
            "BAD_REQUEST",
        ),
    ];
    for (raw, status, code) in cases {
        let shown = String::from_utf8_lossy(&raw[..raw.len().min(60)]).into_owned();
        let (answered, body) = raw_request(&base, &raw).await;
        assert_eq!(
            (answered, body["error_code"].as_str()),
            (status, Some(code)),
            "{shown}: {body}"
        );
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{body}"
        );
    }
    assert!(invocations(&recorded).is_empty(), "nothing was invoked");

    // A keep-alive connection whose second request is malformed: the first is answered by
    // the function, the second in JSON by the front door.
    let answer = raw_answer(
        &base,
        b"GET /api/v1/jobs HTTP/1.1\r\nHost: x\r\n\r\nNOT-HTTP\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 202 "), "{answer}");
    let second = answer
        .find("HTTP/1.1 400 ")
        .map(|at| &answer[at..])
        .unwrap_or_else(|| panic!("no 400 after the first response: {answer}"));
    let (head, body) = second.split_once("\r\n\r\n").expect("a head");
    assert!(head.contains("content-type: application/json"), "{head}");
    let body: Value = serde_json::from_str(body).expect("JSON body");
    assert_eq!(body["error_code"], "BAD_REQUEST");
}

#[tokio::test]
async fn sqs_poller_runs_batches_concurrently_keeping_groups_in_order() {
    let sqs = emulator_sqs().await;
    let queue_url = create_fifo_queue(&sqs).await;
    // Group a has two steps; b, c and d one each.
    for (body, group) in [
        ("a-1", "job-a"),
        ("a-2", "job-a"),
        ("b-1", "job-b"),
        ("c-1", "job-c"),
        ("d-1", "job-d"),
    ] {
        send(&sqs, &queue_url, body, group).await;
    }
    let (invoke_url, recorded) = start_fake_invoke_api().await;
    let invoker = Invoker::new(&invoke_url, Duration::from_secs(900))
        .expect("invoker")
        .with_concurrency(4);
    let mapping = SqsMapping {
        queue_urls: vec![queue_url.clone()],
        function: "slow".to_string(),
    };
    let poller = SqsPoller::new(sqs.clone(), invoker, mapping, 1);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = std::time::Instant::now();
    let running = tokio::spawn(poller.run(stopped));

    let body = |event: &Value| {
        event["Records"][0]["body"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    while timings(&recorded, body).len() < 5 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not all batches ran: {:?}",
            timings(&recorded, body)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    running.await.expect("poller stops");

    let runs = timings(&recorded, body);
    let run = |name: &str| {
        runs.iter()
            .find(|(body, _, _)| body == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} did not run: {runs:?}"))
    };
    // One message per invocation, five of them SLOW each: serially 5 SLOW; with four at
    // once group a's two steps (one after the other) take the longest, 2 SLOW.
    assert!(
        elapsed < SLOW * 3 + Duration::from_millis(500),
        "{elapsed:?}: {runs:?}"
    );
    let concurrent_with_a1 = ["b-1", "c-1", "d-1"]
        .iter()
        .filter(|name| {
            let (_, start, end) = run(name);
            let (_, a_start, a_end) = run("a-1");
            start < a_end && a_start < end
        })
        .count();
    assert!(concurrent_with_a1 >= 2, "batches overlap: {runs:?}");
    let (a1, a2) = (run("a-1"), run("a-2"));
    assert!(
        a2.1 >= a1.2,
        "a group's next message waits for the previous one: {runs:?}"
    );
    assert!(visible_messages(&sqs, &queue_url).await.is_empty());
    let _ = sqs.delete_queue().queue_url(&queue_url).send().await;
}

#[tokio::test]
async fn a_dead_runtime_does_not_stall_the_queue() {
    let sqs = emulator_sqs().await;
    let queue_url = create_fifo_queue(&sqs).await; // visibility timeout 2 s
    send(&sqs, &queue_url, "hang", "job-h").await;
    send(&sqs, &queue_url, "ok-1", "job-x").await;
    send(&sqs, &queue_url, "ok-2", "job-y").await;
    let (invoke_url, recorded) = start_fake_invoke_api().await;
    // The longest invocation is 900 s, as by default: only the visibility timeout bounds
    // the invocation whose runtime died.
    let invoker = Invoker::new(&invoke_url, Duration::from_secs(900))
        .expect("invoker")
        .with_concurrency(2);
    let mapping = SqsMapping {
        queue_urls: vec![queue_url.clone()],
        function: "hang".to_string(),
    };
    let poller = SqsPoller::new(sqs.clone(), invoker, mapping, 1);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started_ms = now_ms();
    let running = tokio::spawn(poller.run(stopped));

    let body = |event: &Value| {
        event["Records"][0]["body"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    // Every message ends up processed: the hung delivery of `hang` fails at its visibility
    // timeout and the redelivery succeeds.
    while timings(&recorded, body).len() < 3 {
        assert!(
            now_ms() - started_ms < 8_000,
            "the queue stalled: {:?}",
            timings(&recorded, body)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("poller stops")
        .expect("poller task");
    let runs = timings(&recorded, body);
    let finished = |name: &str| {
        runs.iter()
            .find(|(body, _, _)| body == name)
            .map(|(_, _, end)| end - started_ms)
            .unwrap_or_else(|| panic!("{name} did not finish: {runs:?}"))
    };
    // The other jobs did not wait for the dead one.
    assert!(finished("ok-1") < 2_500, "{runs:?}");
    assert!(finished("ok-2") < 2_500, "{runs:?}");
    // The dead invocation was given up at the visibility timeout (2 s), not after 900 s,
    // and the message was retried right after.
    let retried = finished("hang");
    assert!(
        (2_000..6_000).contains(&retried),
        "hang finished at {retried} ms"
    );
    assert!(visible_messages(&sqs, &queue_url).await.is_empty());
    let _ = sqs.delete_queue().queue_url(&queue_url).send().await;
}

#[tokio::test]
async fn websocket_port_answers_every_error_in_json() {
    let (invoke_url, recorded) = start_fake_invoke_api().await;
    let invoker = Invoker::new(&invoke_url, Duration::from_secs(10)).expect("invoker");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind websocket port");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(local::serve_ws(
        listener,
        WsFrontDoor {
            invoker,
            function: "ws".to_string(),
            routes: vec!["subscribe".to_string()],
        },
        async move {
            let _ = stopped.await;
        },
    ));

    let long_id = "a".repeat(70_000);
    let unparseable: [(Vec<u8>, u16, &str); 3] = [
        (
            format!("GET /{long_id} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes(),
            414,
            "URI_TOO_LONG",
        ),
        (b"BLAH\r\n\r\n".to_vec(), 400, "BAD_REQUEST"),
        (
            b"POST /@connections/x HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}".to_vec(),
            400,
            "BAD_REQUEST",
        ),
    ];
    for (raw, status, code) in unparseable {
        let (answered, body) = raw_request(&base, &raw).await;
        assert_eq!(
            (answered, body["error_code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }
    // The server's own errors keep their API Gateway bodies: a plain GET is no upgrade.
    let (status, body) = raw_request(
        &base,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(status >= 400, "{status}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    let (status, body) = raw_request(
        &base,
        b"GET /@connections/unknown HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (410, Some("GoneException"))
    );
    assert!(invocations(&recorded).is_empty(), "nothing was invoked");
    let _ = stop.send(());
    server.await.expect("server task").expect("served");
}
