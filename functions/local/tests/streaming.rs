//! The REST front door with a function that streams its answer, against a fake Invoke
//! API answering the way `cargo lambda watch` does for a Lambda `StreamResponse`: the
//! metadata prelude's status and headers, `Lambda-Runtime-Function-Response-Mode:
//! streaming`, then the body as the function writes it. No emulator needed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use local::routes::Route;
use local::{FrontDoor, Invoker};
use serde_json::Value;

/// Pause between the pieces of a streamed answer.
const GAP: Duration = Duration::from_millis(300);

/// One resource, served by a function that streams.
static ROUTES: &[Route] = &[Route {
    resource: "/api/v1/stream",
    function: "streamer",
}];

/// Invocations running now, and the most seen at once.
#[derive(Default)]
struct Running {
    now: AtomicUsize,
    most: AtomicUsize,
}

/// A streamed answer: `first`, then `second` after [`GAP`] (a 400 with a JSON body when the
/// request body asks for `refuse`).
async fn fake_invoke(
    State(running): State<Arc<Running>>,
    Path(_function): Path<String>,
    Json(event): Json<Value>,
) -> Response {
    // Bodies arrive base64-encoded, as API Gateway sends them (BinaryMediaTypes */*).
    let refuse = event["body"]
        .as_str()
        .and_then(|body| BASE64.decode(body).ok())
        .is_some_and(|body| String::from_utf8_lossy(&body).contains("refuse"));
    let streaming = [
        ("lambda-runtime-function-response-mode", "streaming"),
        ("x-amzn-remapped-content-length", "12"),
    ];
    if refuse {
        return (
            StatusCode::BAD_REQUEST,
            [streaming[0], ("content-type", "application/json")],
            r#"{"error_code":"INVALID_REQUEST"}"#,
        )
            .into_response();
    }
    let now = running.now.fetch_add(1, Ordering::SeqCst) + 1;
    running.most.fetch_max(now, Ordering::SeqCst);
    let pieces = futures_util::stream::unfold(0, move |step| {
        let running = running.clone();
        async move {
            match step {
                0 => Some((Ok::<_, std::io::Error>(Bytes::from("first\n")), 1)),
                1 => {
                    tokio::time::sleep(GAP).await;
                    Some((Ok(Bytes::from("second\n")), 2))
                }
                _ => {
                    running.now.fetch_sub(1, Ordering::SeqCst);
                    None
                }
            }
        }
    });
    (
        StatusCode::OK,
        [
            streaming[0],
            streaming[1],
            ("content-type", "text/event-stream"),
            ("x-from-function", "yes"),
        ],
        Body::from_stream(pieces),
    )
        .into_response()
}

/// A front door running at most `concurrency` invocations of a function at once, in front
/// of the fake; its base URL and the fake's counters.
async fn front_door(concurrency: usize) -> (String, Arc<Running>) {
    let running = Arc::new(Running::default());
    let app = Router::new()
        .route(
            "/2015-03-31/functions/{function}/invocations",
            post(fake_invoke),
        )
        .with_state(running.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let invoke_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let invoker = Invoker::new(&invoke_url, Duration::from_secs(10))
        .unwrap()
        .with_concurrency(concurrency);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
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
    (base, running)
}

/// The body's pieces and when each arrived, since `sent`.
async fn pieces(mut response: reqwest::Response, sent: Instant) -> Vec<(String, Duration)> {
    let mut pieces = Vec::new();
    while let Some(bytes) = response.chunk().await.unwrap() {
        pieces.push((String::from_utf8_lossy(&bytes).into_owned(), sent.elapsed()));
    }
    pieces
}

#[tokio::test]
async fn a_streamed_answer_is_passed_on_as_it_arrives() {
    let (base, _) = front_door(4).await;
    let sent = Instant::now();
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/stream"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["x-from-function"], "yes");
    assert!(headers.contains_key("x-amzn-requestid"));
    for internal in [
        "lambda-runtime-function-response-mode",
        "x-amzn-remapped-content-length",
    ] {
        assert!(
            !headers.contains_key(internal),
            "{internal} is cargo lambda's"
        );
    }
    let pieces = pieces(response, sent).await;
    let text: String = pieces.iter().map(|(piece, _)| piece.as_str()).collect();
    assert_eq!(text, "first\nsecond\n");
    let first = pieces
        .iter()
        .find(|(piece, _)| piece.contains("first"))
        .unwrap()
        .1;
    let second = pieces
        .iter()
        .find(|(piece, _)| piece.contains("second"))
        .unwrap()
        .1;
    assert!(
        second - first >= GAP / 2,
        "the first piece came at {first:?}, the second at {second:?}: not passed on as it arrived"
    );
}

#[tokio::test]
async fn a_streamed_refusal_keeps_its_status() {
    let (base, _) = front_door(4).await;
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/stream"))
        .body(r#"{"please":"refuse"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["content-type"], "application/json");
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error_code"], "INVALID_REQUEST");
}

#[tokio::test]
async fn a_stream_holds_its_function_slot_until_it_ends() {
    let (base, running) = front_door(1).await;
    let client = reqwest::Client::new();
    let ask = || async {
        let response = client
            .post(format!("{base}/api/v1/stream"))
            .body("{}")
            .send()
            .await
            .unwrap();
        pieces(response, Instant::now()).await
    };
    let (a, b) = tokio::join!(ask(), ask());
    for answer in [a, b] {
        let text: String = answer.iter().map(|(piece, _)| piece.as_str()).collect();
        assert_eq!(text, "first\nsecond\n");
    }
    assert_eq!(
        running.most.load(Ordering::SeqCst),
        1,
        "with one instance, the second answer waited for the first stream to end"
    );
}
