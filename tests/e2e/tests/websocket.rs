//! Live progress end to end: real WebSocket clients on functions/local's WebSocket front
//! door, the `ws` function fed by the jobs table's stream, posts through the management API.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gateway_e2e::LocalRun;
use gateway_test_support::{transcript, TestStack};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(run: &LocalRun, query: &str) -> Client {
    let (client, _) = tokio_tungstenite::connect_async(format!("{}/?{query}", run.websocket))
        .await
        .expect("connected");
    client
}

/// Next JSON text message, or None after `wait` of silence.
async fn next(client: &mut Client, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, client.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                return Some(serde_json::from_str(&text).expect("JSON message"))
            }
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

/// Collects job updates for `job_id` until its terminal message.
async fn follow(client: &mut Client, job_id: &str) -> Vec<Value> {
    let mut updates = Vec::new();
    while let Some(message) = next(client, Duration::from_secs(30)).await {
        if message["type"] == "job_update" && message["job_id"] == job_id {
            let done = matches!(
                message["status"].as_str(),
                Some("completed" | "failed" | "cancelled")
            );
            updates.push(message);
            if done {
                break;
            }
        }
    }
    updates
}

#[tokio::test]
async fn subscribers_receive_every_step_in_order_and_only_their_organization() {
    let stack = TestStack::start().await;
    let run = LocalRun::start(&stack, 30);
    stack.mock.set_latency(Duration::from_millis(300));

    // The organization feed connects first and gets a snapshot on subscribe.
    let mut feed = open(&run, "organization_id=org-ws").await;
    feed.send(Message::text(json!({"action": "subscribe"}).to_string()))
        .await
        .unwrap();
    let snapshot = next(&mut feed, Duration::from_secs(10))
        .await
        .expect("snapshot");
    assert_eq!(snapshot["type"], "jobs_snapshot");
    let mut other_org = open(&run, "organization_id=org-elsewhere").await;

    let accepted = run
        .submit(json!({"input": transcript(115), "organization_id": "org-ws"}))
        .await;
    let job_id = accepted["job_id"].as_str().unwrap().to_string();
    assert!(
        accepted["estimated_batches"].as_u64().unwrap() >= 10,
        "a 10-step job"
    );

    let mut follower = open(&run, &format!("job_id={job_id}&organization_id=org-ws")).await;
    let (job_updates, feed_updates) =
        tokio::join!(follow(&mut follower, &job_id), follow(&mut feed, &job_id));

    for updates in [&job_updates, &feed_updates] {
        let last = updates.last().expect("updates received");
        assert_eq!(last["event_type"], "complete", "{last}");
        assert_eq!(last["result"]["url"], format!("/api/v1/jobs/{job_id}"));
        assert_eq!(last["progress"]["percentage"], 100);
        let calls: Vec<u64> = updates
            .iter()
            .filter_map(|u| u["progress"]["calls"].as_u64())
            .collect();
        assert!(
            calls.windows(2).all(|w| w[0] <= w[1]),
            "in order: {calls:?}"
        );
        let steps: Vec<u64> = updates
            .iter()
            .filter(|u| u["event_type"] == "progress" || u["event_type"] == "status_change")
            .filter_map(|u| u["progress"]["calls"].as_u64())
            .filter(|b| *b > 0)
            .collect();
        let total_calls = last["progress"]["calls"]
            .as_u64()
            .unwrap_or_else(|| panic!("calls in the last update: {last}"));
        let expected: Vec<u64> = (1..total_calls).collect();
        assert_eq!(steps, expected, "every step's progress, in order");
        let phases: Vec<&str> = updates
            .iter()
            .filter_map(|u| u["progress"]["phase"].as_str())
            .fold(Vec::new(), |mut phases, phase| {
                if phases.last() != Some(&phase) {
                    phases.push(phase);
                }
                phases
            });
        assert_eq!(
            phases[phases.len() - 3..],
            ["processing", "reducing", "completed"],
            "the seeded iterative flavor reduces: {phases:?}"
        );
        assert_eq!(
            total_calls,
            last["progress"]["processing_batches"].as_u64().unwrap() + 1,
            "one reduce call after the batches"
        );
        assert_eq!(
            updates
                .iter()
                .filter(|u| u["event_type"] == "complete")
                .count(),
            1
        );
        assert!(last["tokens"]["total"].as_u64().unwrap() > 0);
    }
    assert!(
        next(&mut other_org, Duration::from_millis(500))
            .await
            .is_none(),
        "nothing from another organization"
    );
}

#[tokio::test]
async fn bad_connections_and_messages_get_clear_errors() {
    let stack = TestStack::start().await;
    let run = LocalRun::start(&stack, 30);
    for query in [
        "",
        "job_id=not-a-uuid",
        &format!("job_id={}", uuid::Uuid::new_v4()),
    ] {
        let refused = tokio_tungstenite::connect_async(format!("{}/?{query}", run.websocket)).await;
        assert!(refused.is_err(), "{query:?} must be refused");
    }
    let mut client = open(&run, "organization_id=org-bad").await;
    for (frame, code) in [
        ("not json", "INVALID_JSON"),
        (r#"{"action":"explode"}"#, "INVALID_REQUEST"),
        (r#"{"no_action":1}"#, "INVALID_REQUEST"),
        (
            r#"{"action":"subscribe","organization_id":"org-other"}"#,
            "NOT_FOUND",
        ),
    ] {
        client.send(Message::text(frame)).await.unwrap();
        let answer = next(&mut client, Duration::from_secs(10))
            .await
            .expect("an answer");
        assert_eq!(answer["type"], "error", "{frame}: {answer}");
        assert_eq!(answer["error_code"], code, "{frame}: {answer}");
    }
    // The connection still works after bad messages.
    client
        .send(Message::text(r#"{"action":"subscribe"}"#))
        .await
        .unwrap();
    assert_eq!(
        next(&mut client, Duration::from_secs(10)).await.unwrap()["type"],
        "jobs_snapshot"
    );
}

#[tokio::test]
async fn cancel_is_pushed_and_gone_connections_are_removed() {
    let stack = TestStack::start().await;
    let run = LocalRun::start(&stack, 30);
    stack.mock.set_latency(Duration::from_millis(300));
    let http = reqwest::Client::new();
    let realtime = stack.realtime(&run.websocket.replacen("ws://", "http://", 1));

    let accepted = run
        .submit(json!({"input": transcript(115), "organization_id": "org-c"}))
        .await;
    let job_id = accepted["job_id"].as_str().unwrap().to_string();
    let mut follower = open(&run, &format!("job_id={job_id}&organization_id=org-c")).await;
    let quitter = open(&run, &format!("job_id={job_id}&organization_id=org-c")).await;
    // A subscription whose $disconnect was lost: the next notification finds it gone (410).
    let job_uuid: uuid::Uuid = job_id.parse().unwrap();
    realtime
        .connections
        .subscribe(
            "ghostConnection=",
            &gateway_core::ports::Topic::Job(job_uuid),
            Some("org-c"),
        )
        .await
        .unwrap();

    // Two steps, then the quitter drops without a close frame, then cancel.
    let mut seen = 0;
    while seen < 2 {
        let message = next(&mut follower, Duration::from_secs(30))
            .await
            .expect("progress");
        if message["event_type"] == "progress" || message["event_type"] == "status_change" {
            seen += 1;
        }
    }
    drop(quitter); // no close frame: the socket just goes away
    let cancel = http
        .post(format!(
            "{}/api/v1/jobs/{job_id}/cancel?organization_id=org-c",
            run.api
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 200);
    let calls_at_cancel = stack.mock.requests().len();

    let updates = follow(&mut follower, &job_id).await;
    let last = updates.last().expect("a final update");
    assert_eq!(last["event_type"], "cancelled", "{last}");
    assert_eq!(last["status"], "cancelled");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        stack.mock.requests().len() <= calls_at_cancel + 1,
        "at most the call in flight, then none"
    );
    let subscribers = realtime
        .connections
        .subscribers(&gateway_core::ports::Topic::Job(job_uuid))
        .await
        .unwrap();
    assert!(
        !subscribers.iter().any(|c| c == "ghostConnection="),
        "gone connection removed: {subscribers:?}"
    );
    assert_eq!(
        subscribers.len(),
        1,
        "only the follower is left: {subscribers:?}"
    );
}
