//! The `mock-llm` binary: startup line, HTTP control, clean exit on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[cfg(unix)]
#[tokio::test]
async fn binary_prints_url_serves_and_exits_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mock-llm"))
        .args(["--host", "127.0.0.1", "--port", "0", "--latency-ms", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mock-llm");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read startup line");
    let base_url = line
        .trim_end()
        .strip_prefix("mock-llm listening on ")
        .unwrap_or_else(|| panic!("unexpected startup line {line:?}"))
        .to_owned();
    assert!(base_url.starts_with("http://127.0.0.1:") && base_url.ends_with("/v1"));

    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let body: Value = c
        .post(format!("{base_url}/chat/completions"))
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "Ann: hello world"}]}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        mock_llm::answer_for("Ann: hello world")
    );

    // A hanging request must not prevent shutdown.
    let root = base_url.trim_end_matches("/v1").to_owned();
    let resp = c
        .post(format!("{root}/_mock/faults"))
        .json(&json!([{"kind": "hang"}]))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let hanging = tokio::spawn({
        let c = c.clone();
        let url = format!("{base_url}/chat/completions");
        async move {
            c.post(url)
                .json(&json!({"messages": [{"role": "user", "content": "x"}]}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("try_wait") {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("mock-llm did not exit after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit status {exit:?}");
    // The hanging request was released (503) or cut off, never answered 200.
    let outcome = hanging.await.expect("join");
    assert_ne!(outcome.ok(), Some(200));
}
