//! A measurement, not a check: how long the SQS poller takes from SendMessage to the
//! invocation, for messages sent at random times to three priority lanes. Needs the
//! emulator (`AWS_ENDPOINT_URL`, as for tests/integration.rs):
//! `cargo test -p local --test poller_latency -- --ignored --nocapture`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use local::{Invoker, SqsMapping, SqsPoller};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// Messages sent.
const MESSAGES: usize = 20;

/// When each message body reached the fake Invoke API.
type Invoked = Arc<Mutex<HashMap<String, Instant>>>;

/// A function that answers at once, recording when each record arrived.
async fn fake_invoke(State(invoked): State<Invoked>, Json(event): Json<Value>) -> Json<Value> {
    let now = Instant::now();
    if let (Ok(mut invoked), Some(records)) = (invoked.lock(), event["Records"].as_array()) {
        for record in records {
            if let Some(body) = record["body"].as_str() {
                invoked.entry(body.to_string()).or_insert(now);
            }
        }
    }
    Json(json!({"batchItemFailures": []}))
}

async fn create_fifo_queue(sqs: &aws_sdk_sqs::Client) -> String {
    sqs.create_queue()
        .queue_name(format!(
            "local-latency-{}.fifo",
            uuid::Uuid::new_v4().simple()
        ))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::VisibilityTimeout, "30")
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("queue url")
        .to_string()
}

/// The `percent`th percentile of sorted `values` (nearest rank).
fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    let rank = (percent * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

#[tokio::test]
#[ignore = "a measurement: run it with --ignored --nocapture"]
async fn sqs_poller_latency_from_send_to_invocation() {
    std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL (the emulator) is not set");
    let aws = gateway_core::aws::sdk_config().expect("AWS configuration from the environment");
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let lanes = [
        create_fifo_queue(&sqs).await,
        create_fifo_queue(&sqs).await,
        create_fifo_queue(&sqs).await,
    ];

    let invoked: Invoked = Arc::default();
    let app = Router::new()
        .route(
            "/2015-03-31/functions/{function}/invocations",
            post(fake_invoke),
        )
        .with_state(invoked.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fake invoke api");
    let invoke_url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The defaults of `local`: 1 s long polls, four invocations at once, batches of 10.
    let invoker = Invoker::new(&invoke_url, Duration::from_secs(30)).expect("invoker");
    let mapping = SqsMapping {
        queue_urls: lanes.to_vec(),
        function: "worker".to_string(),
    };
    let poller = SqsPoller::new(sqs.clone(), invoker, mapping, 10);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(poller.run(stopped));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The same sequence on every run: lane and pause before each message.
    let mut rng = StdRng::seed_from_u64(20);
    let mut sent = Vec::new();
    for index in 0..MESSAGES {
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..600))).await;
        let lane = rng.random_range(0..lanes.len());
        let body = format!("m{index}-lane{lane}");
        let at = Instant::now();
        sqs.send_message()
            .queue_url(&lanes[lane])
            .message_body(&body)
            .message_group_id(format!("job-{index}"))
            .message_deduplication_id(&body)
            .send()
            .await
            .expect("send message");
        sent.push((body, lane, at));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while invoked
        .lock()
        .map(|invoked| invoked.len())
        .unwrap_or_default()
        < MESSAGES
    {
        assert!(Instant::now() < deadline, "not every message was invoked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    let _ = running.await;

    let invoked = invoked.lock().expect("invocations").clone();
    let mut all = Vec::new();
    let mut per_lane = vec![Vec::new(); lanes.len()];
    for (body, lane, at) in &sent {
        let latency = invoked[body].duration_since(*at);
        all.push(latency);
        per_lane[*lane].push(latency);
    }
    all.sort();
    println!(
        "{MESSAGES} messages: median {:?}, p95 {:?}, max {:?}",
        percentile(&all, 50),
        percentile(&all, 95),
        all[all.len() - 1]
    );
    for (lane, latencies) in per_lane.iter_mut().enumerate() {
        latencies.sort();
        if !latencies.is_empty() {
            println!(
                "lane {lane}: {} messages, median {:?}, max {:?}",
                latencies.len(),
                percentile(latencies, 50),
                latencies[latencies.len() - 1]
            );
        }
    }
    for queue_url in lanes {
        let _ = sqs.delete_queue().queue_url(&queue_url).send().await;
    }
}
