//! Runs the local stack the way a developer does: `cargo lambda watch --only-lambda-apis`
//! provides the Lambda Runtime and Invoke APIs, the real function binaries poll it, and
//! `functions/local` fronts them (REST front door, SQS event source mapping). Everything
//! is stopped when the [`LocalRun`] is dropped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gateway_test_support::{python, repo_root, TestStack};

/// The function binaries of the gateway.
pub const FUNCTIONS: [&str; 7] = [
    "execute",
    "jobs",
    "catalog",
    "export",
    "batch-worker",
    "ws",
    "chat",
];

/// Processes started of each function (Lambda execution environments), and so the
/// invocations of a function `local` runs at once: `GATEWAY_LOCAL_CONCURRENCY`, default 4.
pub fn concurrency() -> usize {
    std::env::var("GATEWAY_LOCAL_CONCURRENCY")
        .ok()
        .and_then(|value| value.trim().parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(4)
}

/// A running local stack.
pub struct LocalRun {
    /// Base URL of the REST front door, e.g. `http://127.0.0.1:PORT`.
    pub api: String,
    /// URL of the WebSocket front door, e.g. `ws://127.0.0.1:PORT`.
    pub websocket: String,
    runtime_port: u16,
    env: Vec<(String, String)>,
    logs: PathBuf,
    watch: Child,
    local: Child,
    concurrency: usize,
    functions: HashMap<String, Vec<Child>>,
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("debug")
}

fn binary(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build with `cargo build --workspace --bins` (tests/run.sh does)",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn log_file(dir: &std::path::Path, name: &str) -> std::fs::File {
    std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file")
}

impl LocalRun {
    /// Starts cargo lambda watch, [`concurrency`] processes of each function and
    /// functions/local for `stack`. `invoke_timeout_secs` bounds each invoke (REST ones
    /// also by 29 s, SQS ones by the visibility timeout).
    pub fn start(stack: &TestStack, invoke_timeout_secs: u64) -> LocalRun {
        let logs = target_dir().join("e2e-logs").join(&stack.prefix);
        std::fs::create_dir_all(&logs).unwrap();
        let runtime_port = free_port();
        let cargo_lambda = python().with_file_name("cargo-lambda");
        let watch = Command::new(&cargo_lambda)
            .args([
                "lambda",
                "watch",
                "-A",
                "127.0.0.1",
                "-P",
                &runtime_port.to_string(),
                "--only-lambda-apis",
                "--ignore-changes",
            ])
            .current_dir(repo_root())
            .stdout(log_file(&logs, "watch"))
            .stderr(log_file(&logs, "watch.err"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (run localstack/venv.sh)",
                    cargo_lambda.display()
                )
            });
        let deadline = Instant::now() + Duration::from_secs(120);
        while TcpStream::connect(("127.0.0.1", runtime_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "cargo lambda watch did not listen; see {}",
                logs.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }

        let mut env = stack.vars.clone();
        for (name, value) in [
            ("GATEWAY_LLM_MAX_ATTEMPTS", "3"),
            ("GATEWAY_LLM_BACKOFF_MS", "20"),
            ("GATEWAY_LLM_MAX_BACKOFF_MS", "200"),
            ("GATEWAY_LLM_TIMEOUT_SECS", "5"),
            ("RUST_LOG", "info"),
        ] {
            env.push((name.to_string(), value.to_string()));
        }

        let concurrency = concurrency();
        let local_url = format!("http://127.0.0.1:{runtime_port}");
        let mut local = Command::new(binary("local"))
            .args([
                "--invoke-url",
                &local_url,
                "--http-port",
                "0",
                "--ws-port",
                "0",
                "--invoke-timeout-secs",
                &invoke_timeout_secs.to_string(),
                "--concurrency",
                &concurrency.to_string(),
            ])
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(log_file(&logs, "local"))
            .spawn()
            .expect("start functions/local");
        let mut stdout = BufReader::new(local.stdout.take().unwrap());
        let mut announced = |prefix: &str| {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            line.trim()
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("expected '{prefix}...' from local, got {line:?}"))
                .to_string()
        };
        let api = announced("local listening on ");
        let websocket = announced("local websocket on ");
        // The ws function posts to connections through local's management API.
        env.push((
            "GATEWAY_WS_MANAGEMENT_URL".into(),
            websocket.replacen("ws://", "http://", 1),
        ));

        let mut run = LocalRun {
            api,
            websocket,
            runtime_port,
            env,
            logs,
            watch,
            local,
            concurrency,
            functions: HashMap::new(),
        };
        for name in FUNCTIONS {
            run.start_function(name);
        }
        run
    }

    /// Starts (or restarts) the processes of one function, all polling its Runtime API.
    pub fn start_function(&mut self, name: &str) {
        let mut children = Vec::new();
        for _ in 0..self.concurrency {
            let child = Command::new(binary(name))
                .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .env(
                    "AWS_LAMBDA_RUNTIME_API",
                    format!("http://127.0.0.1:{}/.rt/{name}", self.runtime_port),
                )
                .env("AWS_LAMBDA_FUNCTION_NAME", name)
                .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
                .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
                .stdout(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(self.logs.join(format!("{name}.log")))
                        .unwrap(),
                )
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
            children.push(child);
        }
        self.functions.insert(name.to_string(), children);
    }

    /// Kills every process of one function with SIGKILL, as a crash would.
    pub fn kill_function(&mut self, name: &str) {
        for mut child in self.functions.remove(name).unwrap_or_default() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
        }
    }

    /// Processes started of each function.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Submits a job to the seeded summarize service through the front door; asserts 202.
    pub async fn submit(&self, body: serde_json::Value) -> serde_json::Value {
        let url = format!(
            "{}/api/v1/services/{}/execute",
            self.api,
            gateway_test_support::seeds::SUMMARIZE_SERVICE_ID
        );
        let response = reqwest::Client::new()
            .post(url)
            .json(&body)
            .send()
            .await
            .expect("execute answered");
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.expect("JSON body");
        assert_eq!(status, 202, "{body}");
        body
    }

    /// Where the processes' logs are.
    pub fn logs(&self) -> &std::path::Path {
        &self.logs
    }
}

impl Drop for LocalRun {
    fn drop(&mut self) {
        for mut child in self.functions.drain().flat_map(|(_, children)| children) {
            let _ = child.kill();
            let _ = child.wait();
        }
        for child in [&mut self.local, &mut self.watch] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
