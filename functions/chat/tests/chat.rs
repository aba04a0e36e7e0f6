//! The chat handler against the emulator (DynamoDB through the real AWS SDK) and the mock
//! LLM: the sample event streams an answer and counts it on its session's job; refusals
//! are JSON before any event; provider failures are error events.

use bytes::Bytes;
use futures_util::StreamExt;
use gateway_core::engine::chat::session_job_id;
use gateway_core::llm::sse::SseDecoder;
use gateway_test_support::{api_request, repo_root, seeds, TestStack, SEEDED_API_KEY};
use lambda_runtime::StreamResponse;
use mock_llm::{FaultRule, Outcome};
use serde_json::{json, Value};

/// The events of a streamed answer: (event name, data as JSON).
async fn events(response: StreamResponse<chat::ChatBody>) -> Vec<(String, Value)> {
    let bytes: Vec<Bytes> = response
        .stream
        .map(|piece| piece.expect("infallible"))
        .collect()
        .await;
    SseDecoder::default()
        .push(&bytes.concat())
        .into_iter()
        .map(|event| {
            (
                event.event.expect("named events"),
                serde_json::from_str(&event.data).expect("JSON data"),
            )
        })
        .collect()
}

fn sample_event() -> lambda_http::Request {
    let text = std::fs::read_to_string(repo_root().join("events/chat-completions.json")).unwrap();
    lambda_http::request::from_str(&text)
        .expect("events/chat-completions.json is an API Gateway event")
}

fn question(request: &lambda_http::Request) -> String {
    let body: Value = serde_json::from_slice(request.body().as_ref()).unwrap();
    body["messages"][0]["content"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_sample_event_streams_an_answer_counted_on_its_session_job() {
    let stack = TestStack::start().await;
    stack.add_chat_flavor(|_| {}).await;
    let request = sample_event();
    let asked = question(&request);
    let response = chat::handle(&stack.gateway, request).await;
    assert_eq!(response.metadata_prelude.status_code, 200);
    assert_eq!(
        response.metadata_prelude.headers["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let answered = events(response).await;
    let (last, tokens) = answered.split_last().unwrap();
    assert!(
        tokens.iter().all(|(name, _)| name == "token"),
        "{answered:?}"
    );
    let text: String = tokens
        .iter()
        .map(|(_, data)| data["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, mock_llm::answer_for(&asked));
    assert_eq!(last.0, "done", "{last:?}");
    let usage = &last.1["usage"];

    let log = stack.mock.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].api_key.as_deref(), Some(SEEDED_API_KEY));
    assert_eq!(log[0].outcome, Outcome::Answered);
    assert_eq!(usage["prompt_tokens"], log[0].prompt_tokens.unwrap());
    assert_eq!(
        usage["completion_tokens"],
        log[0].completion_tokens.unwrap()
    );
    assert!(
        last.1["estimated_cost"].as_f64().unwrap() > 0.0,
        "the flavor's rate"
    );

    // The session's job, then a second answer of the session added to it.
    let id = session_job_id(Some("demo"), "demo-session-1");
    assert_eq!(last.1["job_id"], json!(id));
    let second = events(chat::handle(&stack.gateway, sample_event()).await).await;
    assert_eq!(second.last().unwrap().0, "done");
    let job = stack
        .gateway
        .jobs
        .get(id)
        .await
        .unwrap()
        .expect("the session's job");
    assert_eq!(job.usage.passes, 2);
    assert_eq!(
        job.usage.completion_tokens,
        2 * u64::from(log[0].completion_tokens.unwrap())
    );
    assert_eq!(job.organization_id.as_deref(), Some("demo"));
    assert_eq!(job.flavor_id, seeds::CHAT_FLAVOR_ID);
}

#[tokio::test]
async fn refusals_are_json_errors_before_any_event() {
    let stack = TestStack::start().await;
    stack.add_chat_flavor(|_| {}).await;
    let ask = |body: Value| {
        api_request(
            "POST",
            "/api/v1/chat/completions",
            "/api/v1/chat/completions",
            &[],
            &[],
            Some(body.to_string().as_bytes()),
        )
    };
    let valid = json!({
        "flavor_id": seeds::CHAT_FLAVOR_ID,
        "messages": [{"role": "user", "content": "Who spoke?"}],
        "context": {"transcript": "Alice : hello"}
    });
    let mut unknown = valid.clone();
    unknown["flavor_id"] = json!(seeds::SUMMARIZE_SERVICE_ID);
    let mut no_messages = valid.clone();
    no_messages["messages"] = json!([]);
    for (body, status, code) in [
        (unknown, 404, "FLAVOR_NOT_FOUND"),
        (no_messages, 422, "VALIDATION_ERROR"),
    ] {
        let response = chat::handle(&stack.gateway, ask(body)).await;
        assert_eq!(response.metadata_prelude.status_code, status);
        assert_eq!(
            response.metadata_prelude.headers["content-type"],
            "application/json"
        );
        let bytes: Vec<Bytes> = response.stream.map(Result::unwrap).collect().await;
        let error: Value = serde_json::from_slice(&bytes.concat()).unwrap();
        assert_eq!(error["error_code"], code, "{error}");
    }
    assert!(stack.mock.requests().is_empty(), "nothing was asked");
}

#[tokio::test]
async fn provider_failures_are_error_events_naming_the_cause() {
    let stack = TestStack::start().await;
    stack.add_chat_flavor(|_| {}).await;
    let body = json!({
        "flavor_id": seeds::CHAT_FLAVOR_ID,
        "messages": [{"role": "user", "content": "Who spoke?"}],
        "context": {"transcript": "Alice : hello"}
    });
    let ask = || {
        api_request(
            "POST",
            "/api/v1/chat/completions",
            "/api/v1/chat/completions",
            &[],
            &[],
            Some(body.to_string().as_bytes()),
        )
    };

    // Before the first token: retried (3 attempts in tests), then an error event.
    stack.mock.push_fault(FaultRule::status(429).times(3));
    let response = chat::handle(&stack.gateway, ask()).await;
    assert_eq!(
        response.metadata_prelude.status_code, 200,
        "the stream had started"
    );
    let failed = events(response).await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "error");
    assert_eq!(failed[0].1["error_code"], "PROVIDER_RATE_LIMITED");
    assert!(!failed[0].1["error"]
        .as_str()
        .unwrap()
        .contains(SEEDED_API_KEY));
    assert_eq!(stack.mock.requests().len(), 3);

    // A retry that succeeds is invisible to the client.
    stack.mock.clear_requests();
    stack.mock.push_fault(FaultRule::status(503));
    let recovered = events(chat::handle(&stack.gateway, ask()).await).await;
    assert_eq!(recovered.last().unwrap().0, "done", "{recovered:?}");
    assert_eq!(stack.mock.requests().len(), 2);

    // After the first token: no retry, the stream ends with an error event.
    stack.mock.clear_requests();
    stack.mock.push_fault(FaultRule::break_after(1));
    let broken = events(chat::handle(&stack.gateway, ask()).await).await;
    let names: Vec<&str> = broken.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["token", "error"], "{broken:?}");
    assert!(
        broken[1].1["error_code"]
            .as_str()
            .unwrap()
            .starts_with("PROVIDER_"),
        "{broken:?}"
    );
    assert_eq!(stack.mock.requests().len(), 1);
}
