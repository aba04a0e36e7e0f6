//! Following a job to its end: live over the WebSocket API, falling back to polling
//! `GET /api/v1/jobs/{id}` every second when the socket cannot connect or drops, and always
//! confirming the final state with one last GET.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::Url;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::client::ApiClient;
use crate::error::{CliError, CliResult};
use crate::progress::{Bar, Snapshot};

/// Polling interval without a WebSocket.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// With a WebSocket, a GET when nothing arrived for this long (a missed push never hangs).
const QUIET_CHECK_EVERY: Duration = Duration::from_secs(10);
/// Bound on opening the WebSocket.
const WS_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// wss:// uses rustls, which needs one process-wide crypto provider when more than one is
/// compiled in: ring, as reqwest's. Call once before connecting.
pub fn install_tls_provider() {
    // Err only when one is installed already: fine either way.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `GET /api/v1/jobs/{id}`.
pub async fn get_job(client: &ApiClient, job_id: &str) -> CliResult<Value> {
    client
        .get(&format!("/api/v1/jobs/{}", segment(job_id)), &[])
        .await
}

/// A job id as one path segment (ids are UUIDs; anything else is escaped, never a path).
pub fn segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The WebSocket URL following one job: `{ws}/?job_id=..&organization_id=..`.
pub fn subscription_url(ws_base: &str, job_id: &str, org: Option<&str>) -> CliResult<Url> {
    let mut url = Url::parse(ws_base)
        .map_err(|e| CliError::Usage(format!("--ws {ws_base:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "ws" | "wss") {
        return Err(CliError::Usage(format!(
            "--ws {ws_base:?} must be a ws:// or wss:// URL"
        )));
    }
    {
        let mut pairs = url.query_pairs_mut();
        pairs.append_pair("job_id", job_id);
        if let Some(org) = org {
            pairs.append_pair("organization_id", org);
        }
    }
    Ok(url)
}

/// Why the live feed ended.
enum Live {
    /// The job reached a final state.
    Finished,
    /// The socket could not connect, or dropped: poll instead.
    Lost(String),
}

/// Follows `job_id` until it is final, showing progress on `bar`; returns the job as one
/// final `GET` gives it.
pub async fn follow(
    client: &ApiClient,
    ws_base: Option<&str>,
    job_id: &str,
    bar: &Bar,
) -> CliResult<Value> {
    let live = match ws_base {
        Some(ws) => {
            let url = subscription_url(ws, job_id, client.org())?;
            live(client, &url, job_id, bar).await?
        }
        None => Live::Lost("no WebSocket URL".into()),
    };
    if let Live::Lost(reason) = live {
        bar.note(&format!(
            "live progress unavailable ({reason}); polling every second"
        ));
        poll(client, job_id, bar).await?;
    }
    let job = get_job(client, job_id).await?;
    bar.finish(&Snapshot::from_job(&job));
    Ok(job)
}

fn timed_out(job_id: &str) -> CliError {
    CliError::Timeout {
        what: format!("waiting for job {job_id} (it goes on; see `llmgw jobs get {job_id}`)"),
    }
}

/// Sleeps `wanted`, or fails when the deadline passes first.
async fn pause(client: &ApiClient, job_id: &str, wanted: Duration) -> CliResult<()> {
    let nap = client
        .deadline()
        .remaining()
        .map_or(wanted, |left| left.min(wanted));
    tokio::time::sleep(nap).await;
    if client.deadline().passed() {
        return Err(timed_out(job_id));
    }
    Ok(())
}

/// Polls the job every second until it is final.
async fn poll(client: &ApiClient, job_id: &str, bar: &Bar) -> CliResult<()> {
    loop {
        let snapshot = Snapshot::from_job(&get_job(client, job_id).await?);
        bar.update(&snapshot);
        if snapshot.is_terminal() {
            return Ok(());
        }
        pause(client, job_id, POLL_EVERY).await?;
    }
}

/// Follows the job's `job_update` pushes. API errors (a job that does not exist) and the
/// deadline end the command; any WebSocket trouble is [`Live::Lost`].
async fn live(client: &ApiClient, url: &Url, job_id: &str, bar: &Bar) -> CliResult<Live> {
    let connect = tokio_tungstenite::connect_async(url.as_str());
    let mut socket = match tokio::time::timeout(WS_CONNECT_TIMEOUT, connect).await {
        Ok(Ok((socket, _response))) => socket,
        Ok(Err(e)) => return Ok(Live::Lost(format!("cannot connect to {}: {e}", base(url)))),
        Err(_) => return Ok(Live::Lost(format!("{} did not answer", base(url)))),
    };
    let subscribe = Message::text(json!({"action": "subscribe"}).to_string());
    if let Err(e) = socket.send(subscribe).await {
        return Ok(Live::Lost(format!("cannot subscribe: {e}")));
    }
    loop {
        let wait = client
            .deadline()
            .remaining()
            .map_or(QUIET_CHECK_EVERY, |left| left.min(QUIET_CHECK_EVERY));
        let message = match tokio::time::timeout(wait, socket.next()).await {
            Err(_) => {
                if client.deadline().passed() {
                    return Err(timed_out(job_id));
                }
                // Quiet for a while: check the job ourselves.
                let snapshot = Snapshot::from_job(&get_job(client, job_id).await?);
                bar.update(&snapshot);
                if snapshot.is_terminal() {
                    let _ = socket.close(None).await;
                    return Ok(Live::Finished);
                }
                continue;
            }
            Ok(None) => return Ok(Live::Lost("the WebSocket closed".into())),
            Ok(Some(Err(e))) => return Ok(Live::Lost(format!("the WebSocket failed: {e}"))),
            Ok(Some(Ok(message))) => message,
        };
        let text = match message {
            Message::Text(text) => text.to_string(),
            Message::Close(_) => return Ok(Live::Lost("the WebSocket closed".into())),
            _ => continue,
        };
        let Ok(value) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if value.get("type").and_then(Value::as_str) == Some("error") {
            let detail = value
                .get("detail")
                .and_then(Value::as_str)
                .unwrap_or("error message");
            return Ok(Live::Lost(format!("the WebSocket API said: {detail}")));
        }
        if let Some(snapshot) = Snapshot::from_update(&value, job_id) {
            bar.update(&snapshot);
            if snapshot.is_terminal() {
                let _ = socket.close(None).await;
                return Ok(Live::Finished);
            }
        }
    }
}

/// The URL without its query, for messages.
fn base(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Deadline;

    #[test]
    fn the_subscription_url_names_the_job_and_organization() {
        assert_eq!(
            subscription_url("ws://127.0.0.1:8081", "j1", Some("demo"))
                .unwrap()
                .as_str(),
            "ws://127.0.0.1:8081/?job_id=j1&organization_id=demo"
        );
        assert_eq!(
            subscription_url("wss://x.example/prod", "j1", None)
                .unwrap()
                .as_str(),
            "wss://x.example/prod?job_id=j1"
        );
        assert_eq!(
            subscription_url("http://h:1", "j", None)
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    /// A WebSocket server on a free port answering the first connection's subscribe with
    /// `messages`, then closing.
    async fn scripted_server(messages: Vec<Value>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut socket = tokio_tungstenite::accept_async(stream).await.unwrap();
            let subscribe = socket.next().await.unwrap().unwrap();
            assert_eq!(subscribe.to_text().unwrap(), r#"{"action":"subscribe"}"#);
            for message in messages {
                socket
                    .send(Message::text(message.to_string()))
                    .await
                    .unwrap();
            }
            let _ = socket.close(None).await;
        });
        format!("ws://127.0.0.1:{port}")
    }

    fn update(status: &str, event_type: &str, percentage: u64) -> Value {
        json!({"type": "job_update", "job_id": "j1", "event_type": event_type, "status": status,
               "progress": {"phase": "processing", "current_batch": 1, "total_batches": 2,
                            "percentage": percentage},
               "tokens": {"prompt": 90, "completion": 10, "total": 100}, "estimated_cost": 0.001})
    }

    async fn follow_live(ws: &str) -> Live {
        // Nothing listens on port 9: the live feed must not need the REST API here.
        let client = ApiClient::new("http://127.0.0.1:9", None, Deadline::after(Some(20))).unwrap();
        let url = subscription_url(ws, "j1", Some("o")).unwrap();
        live(&client, &url, "j1", &Bar::new()).await.unwrap()
    }

    #[tokio::test]
    async fn updates_are_followed_until_the_job_is_final() {
        let ws = scripted_server(vec![
            json!({"type": "job_update", "job_id": "other", "status": "completed"}),
            update("processing", "progress", 40),
            update("completed", "complete", 100),
        ])
        .await;
        assert!(matches!(follow_live(&ws).await, Live::Finished));
    }

    #[tokio::test]
    async fn a_drop_or_an_error_message_falls_back_to_polling() {
        let ws = scripted_server(vec![update("processing", "progress", 40)]).await;
        assert!(
            matches!(follow_live(&ws).await, Live::Lost(reason) if reason == "the WebSocket closed")
        );
        let ws = scripted_server(vec![
            json!({"type": "error", "detail": "unknown action", "error_code": "INVALID_MESSAGE"}),
        ])
        .await;
        assert!(matches!(
            follow_live(&ws).await,
            Live::Lost(reason) if reason == "the WebSocket API said: unknown action"
        ));
        // Nothing listening.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(matches!(
            follow_live(&format!("ws://127.0.0.1:{port}")).await,
            Live::Lost(reason) if reason.starts_with("cannot connect to ws://127.0.0.1:")
        ));
    }

    #[tokio::test]
    async fn wss_builds_its_tls_client_without_panicking() {
        install_tls_provider();
        // A plain-TCP server: the TLS handshake fails, after the client config is built.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let (mut stream, _) = listener.accept().await.unwrap();
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        });
        assert!(matches!(
            follow_live(&format!("wss://127.0.0.1:{port}")).await,
            Live::Lost(reason) if reason.starts_with("cannot connect to wss://127.0.0.1:")
        ));
    }

    #[test]
    fn ids_are_one_path_segment() {
        assert_eq!(
            segment("0b0d3f3e-0000-4000-8000-000000000201"),
            "0b0d3f3e-0000-4000-8000-000000000201"
        );
        assert_eq!(segment("../services"), "..%2Fservices");
        assert_eq!(segment("a b?c"), "a%20b%3Fc");
    }
}
