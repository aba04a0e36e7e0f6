//! End-to-end tests of the mock server over real HTTP.

use std::net::SocketAddr;
use std::time::Duration;

use mock_llm::{answer_for, count_tokens, FaultRule, MockLlm, Outcome, RequestLogEntry};
use serde_json::{json, Value};

async fn start() -> MockLlm {
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    MockLlm::start(addr).await.expect("start mock")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn chat_body(prompt: &str) -> Value {
    json!({
        "model": "gpt-test",
        "temperature": 0.2,
        "top_p": 1.0,
        "max_tokens": 256,
        "messages": [
            {"role": "system", "content": "You summarise transcripts."},
            {"role": "user", "content": prompt},
        ],
    })
}

async fn chat(client: &reqwest::Client, mock: &MockLlm, prompt: &str) -> reqwest::Response {
    client
        .post(format!("{}/chat/completions", mock.base_url()))
        .json(&chat_body(prompt))
        .send()
        .await
        .expect("send")
}

/// Polls the request log until `pred` holds (or 5 s pass).
async fn wait_for_log(
    mock: &MockLlm,
    pred: impl Fn(&[RequestLogEntry]) -> bool,
) -> Vec<RequestLogEntry> {
    for _ in 0..100 {
        let log = mock.requests();
        if pred(&log) {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    mock.requests()
}

const TRANSCRIPT: &str = "Please summarise:\nAlice: we should ship the release on friday afternoon\nBob: agreed, but the docs need work\nrandom note without speaker\n• Carol: already a bullet";

#[tokio::test]
async fn answer_is_deterministic_with_real_usage() {
    let mock = start().await;
    let c = client();
    let expected =
        "• Alice — we should ship the release on\n• Bob — agreed, but the docs need work";
    assert_eq!(answer_for(TRANSCRIPT), expected);

    let mut bodies = Vec::new();
    for _ in 0..2 {
        let resp = chat(&c, &mock, TRANSCRIPT).await;
        assert_eq!(resp.status(), 200);
        bodies.push(resp.json::<Value>().await.expect("json"));
    }
    for body in &bodies {
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["model"], "gpt-test");
        assert!(body["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("chatcmpl-")));
        assert!(body["created"].as_u64().is_some());
        let choice = &body["choices"][0];
        assert_eq!(choice["index"], 0);
        assert_eq!(choice["message"]["role"], "assistant");
        assert_eq!(choice["message"]["content"], expected);
        assert_eq!(choice["finish_reason"], "stop");

        let usage = &body["usage"];
        let prompt_tokens = usage["prompt_tokens"].as_u64().expect("prompt_tokens");
        let completion_tokens = usage["completion_tokens"]
            .as_u64()
            .expect("completion_tokens");
        let concatenated = format!("You summarise transcripts.{TRANSCRIPT}");
        assert!(prompt_tokens > 0 && completion_tokens > 0);
        assert_eq!(prompt_tokens, u64::from(count_tokens(&concatenated)));
        assert_eq!(completion_tokens, u64::from(count_tokens(expected)));
        assert_eq!(
            usage["total_tokens"].as_u64(),
            Some(prompt_tokens + completion_tokens)
        );
    }
    assert_eq!(bodies[0]["choices"], bodies[1]["choices"]);
    assert_eq!(bodies[0]["usage"], bodies[1]["usage"]);

    let log = mock.requests();
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|e| e.outcome == Outcome::Answered
        && e.status == Some(200)
        && e.messages_count == 2
        && e.model == "gpt-test"
        && e.prompt == TRANSCRIPT
        && e.prompt_tokens.is_some_and(|t| t > 0)));
    assert_eq!(mock.answered_prompts(), vec![TRANSCRIPT.to_owned(); 2]);
}

#[tokio::test]
async fn non_transcript_prompt_counts_chars_and_path_without_v1() {
    let mock = start().await;
    let url = mock.base_url().trim_end_matches("/v1").to_owned() + "/chat/completions";
    let body: Value = client()
        .post(url)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "héllo"}]}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "• 5 characters received"
    );
}

#[tokio::test]
async fn bad_requests_get_openai_errors() {
    let mock = start().await;
    let c = client();
    let url = format!("{}/chat/completions", mock.base_url());
    for body in [
        "{not json".to_owned(),
        json!({"model": "m"}).to_string(),
        json!({"model": "m", "messages": []}).to_string(),
        json!({"model": "m", "messages": [{"role": "user", "content": 5}]}).to_string(),
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "x"}]})
            .to_string(),
    ] {
        let resp = c.post(&url).body(body.clone()).send().await.expect("send");
        assert_eq!(resp.status(), 400, "body {body}");
        let err: Value = resp.json().await.expect("json error body");
        assert_eq!(err["error"]["type"], "invalid_request_error", "body {body}");
        assert!(err["error"]["message"].as_str().is_some());
    }
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn models_endpoint() {
    let mock = start().await;
    let c = client();
    let expected = json!({"object": "list", "data": [
        {"id": "mock-model", "object": "model", "created": 0, "owned_by": "mock"}
    ]});
    let v1: Value = c
        .get(format!("{}/models", mock.base_url()))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(v1, expected);
    let bare = mock.base_url().trim_end_matches("/v1").to_owned() + "/models";
    let bare: Value = c
        .get(bare)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(bare, expected);
}

#[tokio::test]
async fn status_429_with_retry_after_then_recovers() {
    let mock = start().await;
    let c = client();
    mock.push_fault(FaultRule::status(429).retry_after(7));
    let resp = chat(&c, &mock, "Alice: hi").await;
    assert_eq!(resp.status(), 429);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("7")
    );
    let err: Value = resp.json().await.expect("json");
    assert_eq!(err["error"]["message"], "mock fault 429");
    assert_eq!(err["error"]["code"], "rate_limit_exceeded");

    // times defaults to 1: the next request is answered.
    let resp = chat(&c, &mock, "Alice: hi").await;
    assert_eq!(resp.status(), 200);

    let log = mock.requests();
    assert_eq!(log[0].outcome, Outcome::Fault);
    assert_eq!(log[0].status, Some(429));
    assert_eq!(log[1].outcome, Outcome::Answered);
    assert_eq!(mock.answered_prompts(), vec!["Alice: hi".to_owned()]);
}

#[tokio::test]
async fn status_500_times_counting() {
    let mock = start().await;
    let c = client();
    mock.push_fault(FaultRule::status(500).times(2));
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let resp = chat(&c, &mock, "Bob: again").await;
        statuses.push(resp.status().as_u16());
        if resp.status() == 500 {
            let err: Value = resp.json().await.expect("json");
            assert_eq!(err["error"]["message"], "mock fault 500");
            assert_eq!(err["error"]["type"], "server_error");
        }
    }
    assert_eq!(statuses, vec![500, 500, 200]);
}

#[tokio::test]
async fn malformed_body() {
    let mock = start().await;
    let c = client();
    mock.push_fault(FaultRule::malformed());
    let resp = chat(&c, &mock, "Alice: hi").await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("text");
    assert!(
        serde_json::from_str::<Value>(&text).is_err(),
        "body parsed: {text}"
    );
    let log = mock.requests();
    assert_eq!(log[0].outcome, Outcome::Fault);
    assert_eq!(log[0].status, Some(200));
    assert!(mock.answered_prompts().is_empty());
}

#[tokio::test]
async fn hang_times_out_and_is_logged_aborted() {
    let mock = start().await;
    mock.push_fault(FaultRule::hang());
    let c = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let err = c
        .post(format!("{}/chat/completions", mock.base_url()))
        .json(&chat_body("Alice: hang please"))
        .send()
        .await
        .expect_err("hang must time out");
    assert!(err.is_timeout(), "{err}");
    drop(c);

    let log = wait_for_log(&mock, |log| {
        log.first().is_some_and(|e| e.outcome == Outcome::Aborted)
    })
    .await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].outcome, Outcome::Aborted);
    assert_eq!(log[0].status, None);
    assert!(mock.answered_prompts().is_empty());
}

#[tokio::test]
async fn latency_fault_and_client_abort_mid_latency() {
    let mock = start().await;
    // Slow enough that a 200 ms client timeout gives up mid-call.
    mock.push_fault(FaultRule::latency(Duration::from_millis(800)).matching("slow"));
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .expect("client");
    let err = impatient
        .post(format!("{}/chat/completions", mock.base_url()))
        .json(&chat_body("Alice: slow one"))
        .send()
        .await
        .expect_err("must time out");
    assert!(err.is_timeout());
    drop(impatient);
    let log = wait_for_log(&mock, |log| {
        log.first().is_some_and(|e| e.outcome == Outcome::Aborted)
    })
    .await;
    assert_eq!(log[0].outcome, Outcome::Aborted);

    // A patient client sees the delay and a normal answer.
    mock.push_fault(FaultRule::latency(Duration::from_millis(300)));
    let started = std::time::Instant::now();
    let resp = chat(&client(), &mock, "Alice: slow two").await;
    assert_eq!(resp.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(mock.answered_prompts(), vec!["Alice: slow two".to_owned()]);
}

#[tokio::test]
async fn match_prompt_targets_only_matching_requests() {
    let mock = start().await;
    let c = client();
    mock.push_fault(FaultRule::status(503).matching("doc-2").times(2));
    assert_eq!(chat(&c, &mock, "Alice: doc-1 text").await.status(), 200);
    assert_eq!(chat(&c, &mock, "Alice: doc-2 text").await.status(), 503);
    assert_eq!(chat(&c, &mock, "Alice: doc-3 text").await.status(), 200);
    assert_eq!(chat(&c, &mock, "Alice: doc-2 text").await.status(), 503);
    assert_eq!(chat(&c, &mock, "Alice: doc-2 text").await.status(), 200);
    assert_eq!(
        mock.answered_prompts(),
        vec![
            "Alice: doc-1 text",
            "Alice: doc-3 text",
            "Alice: doc-2 text"
        ]
    );
}

#[tokio::test]
async fn first_matching_rule_wins() {
    let mock = start().await;
    let c = client();
    mock.push_fault(FaultRule::status(400).matching("x"));
    mock.push_fault(FaultRule::status(500));
    // "y" skips the 400 rule (no match) and consumes the 500 rule.
    assert_eq!(chat(&c, &mock, "y").await.status(), 500);
    assert_eq!(chat(&c, &mock, "x").await.status(), 400);
    assert_eq!(chat(&c, &mock, "x").await.status(), 200);
}

#[tokio::test]
async fn http_control_endpoints() {
    let mock = start().await;
    let c = client();
    let root = mock.base_url().trim_end_matches("/v1").to_owned();

    // Faults over HTTP, including defaults (times = 1) and a single-object body.
    let resp = c
        .post(format!("{root}/_mock/faults"))
        .json(&json!([
            {"kind": "status", "status": 429, "retry_after_secs": 2, "match_prompt": "a"},
            {"kind": "latency", "latency_ms": 10, "times": 2}
        ]))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let resp = c
        .post(format!("{root}/_mock/faults"))
        .json(&json!({"kind": "malformed", "match_prompt": "zzz"}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.json::<Value>().await.expect("json")["queued"], 3);
    let bad = c
        .post(format!("{root}/_mock/faults"))
        .body("[{\"kind\": \"explode\"}]")
        .send()
        .await
        .expect("send");
    assert_eq!(bad.status(), 400);

    let resp = chat(&c, &mock, "a").await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");
    assert_eq!(chat(&c, &mock, "b").await.status(), 200);

    // Clearing faults over HTTP.
    let resp = c
        .delete(format!("{root}/_mock/faults"))
        .send()
        .await
        .expect("send");
    assert!(resp.status().is_success());
    assert_eq!(chat(&c, &mock, "zzz").await.status(), 200);

    // Config over HTTP.
    let resp = c
        .post(format!("{root}/_mock/config"))
        .json(&json!({"latency_ms": 150}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let started = std::time::Instant::now();
    assert_eq!(chat(&c, &mock, "c").await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
    let bad = c
        .post(format!("{root}/_mock/config"))
        .body("{\"latency_ms\": -1}")
        .send()
        .await
        .expect("send");
    assert_eq!(bad.status(), 400);

    // Request log over HTTP.
    let log: Vec<RequestLogEntry> = c
        .get(format!("{root}/_mock/requests"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(log.len(), 4);
    assert_eq!(log, mock.requests());
    let raw: Value = c
        .get(format!("{root}/_mock/requests"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(raw[0]["outcome"], "fault");
    assert_eq!(raw[0]["status"], 429);
    assert_eq!(raw[1]["outcome"], "answered");
    assert!(raw[1]["received_at_ms"].as_u64().is_some_and(|t| t > 0));

    let resp = c
        .delete(format!("{root}/_mock/requests"))
        .send()
        .await
        .expect("send");
    assert!(resp.status().is_success());
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn clear_resets_everything_and_drop_shuts_down() {
    let mock = start().await;
    let c = client();
    mock.push_fault(FaultRule::status(500));
    mock.set_latency(Duration::from_millis(5));
    assert_eq!(chat(&c, &mock, "a").await.status(), 500);
    mock.push_fault(FaultRule::status(500));
    mock.clear();
    assert!(mock.requests().is_empty());
    assert_eq!(chat(&c, &mock, "a").await.status(), 200);

    let url = format!("{}/models", mock.base_url());
    drop(mock);
    let mut refused = false;
    for _ in 0..50 {
        let fresh = reqwest::Client::new();
        if fresh.get(&url).send().await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "server still answering after drop");
}
