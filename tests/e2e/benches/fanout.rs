//! Notify fan-out throughput: one job update pushed to N real WebSocket clients through
//! the production path — subscribers read from the connections table (emulator), posts
//! through the API Gateway management API (functions/local's implementation), frames
//! received by tokio-tungstenite clients. Baselines from the same run: the latency of a
//! single post, and the same fan-out done one post at a time.
//!
//! Run: `tests/run.sh` is not needed; start an emulator and run
//! `AWS_ENDPOINT_URL=... cargo bench -p gateway-e2e --bench fanout` (see README).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use gateway_core::engine::notify::{publish, Realtime};
use gateway_core::ports::{Delivery, Topic};
use gateway_test_support::TestStack;
use serde_json::json;

const CONNECTIONS: usize = 1000;

/// A fake Invoke API that accepts every `$connect` and records the connection ids.
async fn fake_ws_function(ids: Arc<Mutex<Vec<String>>>) -> String {
    let app = axum::Router::new().route(
        "/2015-03-31/functions/{name}/invocations",
        axum::routing::post(move |axum::Json(event): axum::Json<serde_json::Value>| {
            let ids = ids.clone();
            async move {
                if event["requestContext"]["routeKey"] == "$connect" {
                    if let Some(id) = event["requestContext"]["connectionId"].as_str() {
                        ids.lock().unwrap().push(id.to_string());
                    }
                }
                axum::Json(json!({"statusCode": 200}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::main]
async fn main() {
    let stack = TestStack::start().await;
    let ids = Arc::new(Mutex::new(Vec::new()));
    let invoke_url = fake_ws_function(ids.clone()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let front_door = local::WsFrontDoor {
        invoker: local::invoke::Invoker::new(&invoke_url, Duration::from_secs(30)).unwrap(),
        function: "ws".into(),
        routes: vec!["subscribe".into()],
    };
    tokio::spawn(local::serve_ws(
        listener,
        front_door,
        std::future::pending(),
    ));

    let mut clients = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let (client, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/"))
            .await
            .unwrap();
        clients.push(client);
    }
    let realtime: Realtime = stack.realtime(&format!("http://127.0.0.1:{port}"));
    let job_id = uuid::Uuid::new_v4();
    let ids: Vec<String> = ids.lock().unwrap().clone();
    assert_eq!(ids.len(), CONNECTIONS);
    for id in &ids {
        realtime
            .connections
            .subscribe(id, &Topic::Job(job_id), None)
            .await
            .unwrap();
    }

    let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for mut client in clients {
        let received = received.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = client.next().await {
                if message.is_text() {
                    received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
    }
    let wait_for = |target: usize| {
        let received = received.clone();
        async move {
            while received.load(std::sync::atomic::Ordering::Relaxed) < target {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    };

    // Baseline 1: one post to one connection.
    let start = Instant::now();
    for _ in 0..20 {
        assert_eq!(
            realtime.notifier.post(&ids[0], b"{}").await.unwrap(),
            Delivery::Sent
        );
    }
    let single = start.elapsed() / 20;
    wait_for(20).await;

    // Baseline 2: the same fan-out, one post at a time.
    let payload = json!({"type": "job_update", "job_id": job_id, "event_type": "progress"})
        .to_string()
        .into_bytes();
    let start = Instant::now();
    for id in &ids {
        realtime.notifier.post(id, &payload).await.unwrap();
    }
    wait_for(20 + CONNECTIONS).await;
    let sequential = start.elapsed();

    // The production fan-out: subscriber lookup + concurrent posts + delivery.
    let job = serde_json::from_value::<gateway_core::domain::Job>(sample_job(job_id)).unwrap();
    let message = gateway_core::engine::notify::job_update(None, &job).unwrap();
    let mut runs = Vec::new();
    for run in 1..=3 {
        let start = Instant::now();
        let report = publish(&realtime, &job, &message).await.unwrap();
        wait_for(20 + CONNECTIONS * (run + 1)).await;
        runs.push(start.elapsed());
        assert_eq!(report.sent, CONNECTIONS);
    }
    runs.sort();
    let fan_out = runs[1];
    let start = Instant::now();
    let found = realtime
        .connections
        .subscribers(&Topic::Job(job_id))
        .await
        .unwrap();
    let lookup = start.elapsed();
    assert_eq!(found.len(), CONNECTIONS);
    println!("fan-out of one job update to {CONNECTIONS} WebSocket connections (median of 3):");
    println!(
        "  single post latency            {:>8.2} ms",
        single.as_secs_f64() * 1e3
    );
    println!(
        "  sequential posts (baseline)    {:>8.0} ms  ({:.0} messages/s)",
        sequential.as_secs_f64() * 1e3,
        CONNECTIONS as f64 / sequential.as_secs_f64()
    );
    println!(
        "  publish (lookup + concurrent)  {:>8.0} ms  ({:.0} messages/s)",
        fan_out.as_secs_f64() * 1e3,
        CONNECTIONS as f64 / fan_out.as_secs_f64()
    );
    println!(
        "  of which subscriber lookup     {:>8.0} ms  (DynamoDB GSI query, emulator)",
        lookup.as_secs_f64() * 1e3
    );
    println!(
        "  posting alone                  {:>8.0} ms  ({:.1}x the sequential posts' throughput)",
        (fan_out - lookup).as_secs_f64() * 1e3,
        sequential.as_secs_f64() / (fan_out - lookup).as_secs_f64()
    );
}

fn sample_job(id: uuid::Uuid) -> serde_json::Value {
    let text = std::fs::read_to_string(
        gateway_test_support::repo_root().join("events/ws-jobs-stream.json"),
    )
    .unwrap();
    let event: aws_lambda_events::event::dynamodb::Event = serde_json::from_str(&text).unwrap();
    let mut job: serde_json::Value =
        serde_dynamo::from_item(event.records[0].change.new_image.clone()).unwrap();
    job["id"] = json!(id);
    job
}
