//! End-to-end tests of the mock server over real HTTP.

use std::net::SocketAddr;
use std::time::Duration;

use mock_llm::{answer_for, count_tokens, deltas_of, FaultRule, MockLlm, Outcome, RequestLogEntry};
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

/// Posts a streamed request; the response with its head read.
async fn chat_stream(mock: &MockLlm, prompt: &str, include_usage: bool) -> reqwest::Response {
    let mut body = chat_body(prompt);
    body["stream"] = json!(true);
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    client()
        .post(format!("{}/chat/completions", mock.base_url()))
        .json(&body)
        .send()
        .await
        .expect("send")
}

/// Reads `data:` events as they arrive, each with its arrival time since `start`, until
/// the body ends (Ok) or breaks (Err with what was read).
async fn read_events(
    mut response: reqwest::Response,
    start: std::time::Instant,
) -> Result<Vec<(String, Duration)>, Vec<(String, Duration)>> {
    let mut events = Vec::new();
    let mut buffer = String::new();
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) => {
                buffer.push_str(&String::from_utf8_lossy(&bytes));
                while let Some(end) = buffer.find("\n\n") {
                    let event: String = buffer.drain(..end + 2).collect();
                    let data = event.trim().strip_prefix("data: ").expect("a data line");
                    events.push((data.to_owned(), start.elapsed()));
                }
            }
            Ok(None) => return Ok(events),
            Err(_) => return Err(events),
        }
    }
}

fn delta(data: &str) -> Option<String> {
    let chunk: Value = serde_json::from_str(data).ok()?;
    chunk["choices"][0]["delta"]["content"]
        .as_str()
        .filter(|content| !content.is_empty())
        .map(str::to_owned)
}

#[tokio::test]
async fn streamed_answers_come_delta_by_delta_with_usage_last() {
    let mock = start().await;
    let response = chat_stream(&mock, TRANSCRIPT, true).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = read_events(response, std::time::Instant::now())
        .await
        .expect("complete");
    let data: Vec<&str> = events.iter().map(|(data, _)| data.as_str()).collect();
    let answer = answer_for(TRANSCRIPT);
    let deltas: Vec<String> = data.iter().filter_map(|d| delta(d)).collect();
    assert_eq!(deltas, deltas_of(&answer), "one chunk per delta, in order");
    assert_eq!(deltas.concat(), answer);
    let first: Value = serde_json::from_str(data[0]).unwrap();
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(first["object"], "chat.completion.chunk");
    let usage: Value = serde_json::from_str(data[data.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], count_tokens(&answer));
    assert_eq!(data.last(), Some(&"[DONE]"));
    let log = wait_for_log(&mock, |log| {
        log.iter().all(|e| e.outcome != Outcome::Pending)
    })
    .await;
    assert_eq!(log[0].outcome, Outcome::Answered);
    assert_eq!(log[0].completion_tokens, Some(count_tokens(&answer)));

    // Without stream_options.include_usage: no usage chunk.
    let events = read_events(
        chat_stream(&mock, TRANSCRIPT, false).await,
        std::time::Instant::now(),
    )
    .await
    .expect("complete");
    assert!(events.iter().all(|(data, _)| !data.contains("\"usage\":{")));
}

#[tokio::test]
async fn the_delta_delay_spaces_the_deltas_out() {
    let mock = start().await;
    let delay = Duration::from_millis(60);
    mock.set_delta_delay(delay);
    let start = std::time::Instant::now();
    let events = read_events(chat_stream(&mock, TRANSCRIPT, true).await, start)
        .await
        .expect("complete");
    let arrivals: Vec<Duration> = events
        .iter()
        .filter(|(data, _)| delta(data).is_some())
        .map(|(_, at)| *at)
        .collect();
    let done = events.last().unwrap().1;
    assert!(arrivals.len() > 3);
    // Each later delta waits at least `delay`: the first arrives well before the end.
    assert!(
        done - arrivals[0] >= delay * (arrivals.len() as u32 - 1),
        "first delta at {:?}, done at {done:?}",
        arrivals[0]
    );
    let config: Value = client()
        .get(format!("http://{}/_mock/config", mock.addr()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["delta_delay_ms"], 60);
}

#[tokio::test]
async fn faults_hit_streams_before_or_after_the_first_delta() {
    let mock = start().await;
    // Before: a status fault is the usual JSON error, a malformed one a bad first chunk.
    mock.push_fault(FaultRule::status(429).retry_after(2));
    let response = chat_stream(&mock, TRANSCRIPT, true).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "2");
    mock.push_fault(FaultRule::malformed());
    let events = read_events(
        chat_stream(&mock, TRANSCRIPT, true).await,
        std::time::Instant::now(),
    )
    .await
    .expect("the body ends");
    assert_eq!(events.len(), 1);
    assert!(serde_json::from_str::<Value>(&events[0].0).is_err());

    // After: two deltas, then the connection drops.
    mock.push_fault(FaultRule::break_after(2));
    let broken = read_events(
        chat_stream(&mock, TRANSCRIPT, true).await,
        std::time::Instant::now(),
    )
    .await
    .expect_err("the stream breaks off");
    let deltas: Vec<String> = broken.iter().filter_map(|(data, _)| delta(data)).collect();
    assert_eq!(deltas, deltas_of(&answer_for(TRANSCRIPT))[..2]);
    assert!(broken.iter().all(|(data, _)| data != "[DONE]"));
    let log = mock.requests();
    let outcomes: Vec<Outcome> = log.iter().map(|e| e.outcome).collect();
    assert_eq!(outcomes, [Outcome::Fault, Outcome::Fault, Outcome::Fault]);

    // A break rule on a whole answer is a 500.
    mock.push_fault(FaultRule::break_after(1));
    assert_eq!(chat(&client(), &mock, TRANSCRIPT).await.status(), 500);
}

#[tokio::test]
async fn a_client_leaving_mid_stream_is_logged_as_aborted() {
    let mock = start().await;
    mock.set_delta_delay(Duration::from_millis(200));
    let mut response = chat_stream(&mock, TRANSCRIPT, true).await;
    let first = response.chunk().await.expect("read").expect("a chunk");
    assert!(!first.is_empty());
    drop(response);
    let log = wait_for_log(&mock, |log| {
        log.first().is_some_and(|e| e.outcome == Outcome::Aborted)
    })
    .await;
    assert_eq!(log[0].outcome, Outcome::Aborted);
}
