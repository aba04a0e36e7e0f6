//! The built `llmgw` binary against the real local stack (functions/local, the function
//! binaries under cargo lambda watch, the emulator, the mock LLM).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use gateway_e2e::LocalRun;
use gateway_test_support::{seeds, transcript, TestStack};
use mock_llm::FaultRule;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const ORG: &str = "org-cli";

/// Runs `llmgw` with the stack's URLs and `--org`, in `dir`, feeding `stdin`.
async fn llmgw(run: &LocalRun, dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_llmgw"));
    command
        .args(["--endpoint", &run.api, "--ws", &run.websocket, "--org", ORG])
        .args(args);
    spawn(command, dir, stdin).await
}

async fn spawn(mut command: Command, dir: &Path, stdin: Option<&str>) -> Output {
    command
        .current_dir(dir)
        .env_remove("LLMGW_ENDPOINT")
        .env_remove("LLMGW_WS")
        .env_remove("LLMGW_ORG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("llmgw starts");
    if let Some(mut pipe) = child.stdin.take() {
        if let Some(text) = stdin {
            pipe.write_all(text.as_bytes())
                .await
                .expect("stdin written");
        }
        drop(pipe);
    }
    tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("llmgw finished within 2 minutes")
        .expect("llmgw output")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
}

/// The job id of `run`'s `job <id> queued: ...` line on stderr.
fn submitted_job_id(output: &Output) -> String {
    stderr(output)
        .lines()
        .find_map(|line| {
            line.strip_prefix("job ")?
                .split_whitespace()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| panic!("no job line in {}", stderr(output)))
}

async fn get_job(run: &LocalRun, job_id: &str) -> Value {
    reqwest::get(format!(
        "{}/api/v1/jobs/{job_id}?organization_id={ORG}",
        run.api
    ))
    .await
    .expect("GET job")
    .json()
    .await
    .expect("job JSON")
}

/// The id of the organization's job that is queued or processing, once there is one.
async fn wait_for_running_job(run: &LocalRun) -> String {
    let url = format!("{}/api/v1/jobs?organization_id={ORG}", run.api);
    for _ in 0..200 {
        let list: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        let running = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|job| matches!(job["status"].as_str(), Some("queued" | "processing")));
        if let Some(job) = running {
            return job["id"].as_str().unwrap().to_string();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no job started");
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("llmgw-e2e-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[tokio::test]
async fn the_cli_runs_follows_lists_and_exports_jobs() {
    let stack = TestStack::start().await;
    let run = LocalRun::start(&stack, 30);
    stack.mock.set_latency(Duration::from_millis(50));
    let dir = scratch_dir();
    let input = dir.join("meeting.txt");
    std::fs::write(&input, transcript(40)).unwrap();
    let input = input.to_str().unwrap();

    // run by service name: the result on stdout, followed live over the WebSocket.
    let output = llmgw(&run, &dir, &["run", "--service", "summarize", input], None).await;
    assert_exit(&output, 0);
    let job_id = submitted_job_id(&output);
    assert!(
        !stderr(&output).contains("polling"),
        "followed over the WebSocket: {}",
        stderr(&output)
    );
    let job = get_job(&run, &job_id).await;
    assert_eq!(job["status"], "completed", "{job}");
    let result = job["result"]["output"].as_str().expect("inline result");
    assert!(!result.is_empty());
    assert_eq!(
        stdout(&output),
        format!("{result}\n"),
        "stdout is exactly the result"
    );

    // --json, the service by id, a flavor, stdin: the final job JSON.
    let service_id = seeds::SUMMARIZE_SERVICE_ID.to_string();
    let output = llmgw(
        &run,
        &dir,
        &[
            "--json",
            "run",
            "--service",
            &service_id,
            "--flavor",
            "single-pass",
            "-",
        ],
        Some(&transcript(8)),
    )
    .await;
    assert_exit(&output, 0);
    let single: Value = serde_json::from_str(&stdout(&output)).expect("stdout is JSON");
    assert_eq!(single["status"], "completed");
    assert_eq!(single["flavor_name"], "single-pass");
    let single_id = single["id"].as_str().unwrap().to_string();
    assert_eq!(get_job(&run, &single_id).await["result"], single["result"]);

    // -o FILE, and a WebSocket that cannot connect: polling gives the same result.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_llmgw"));
    command.args([
        "--endpoint",
        &run.api,
        "--ws",
        &format!("ws://127.0.0.1:{closed_port}"),
        "--org",
        ORG,
        "run",
        "--service",
        "summarize",
        "-o",
        "summary.md",
        input,
    ]);
    let output = spawn(command, &dir, None).await;
    assert_exit(&output, 0);
    assert!(stderr(&output).contains("polling"), "{}", stderr(&output));
    assert_eq!(stdout(&output), "", "the result went to the file");
    let polled = get_job(&run, &submitted_job_id(&output)).await;
    assert_eq!(
        std::fs::read_to_string(dir.join("summary.md")).unwrap(),
        format!("{}\n", polled["result"]["output"].as_str().unwrap())
    );

    // jobs list shows them, newest first; --json parses.
    let output = llmgw(&run, &dir, &["jobs", "list"], None).await;
    assert_exit(&output, 0);
    let listed = stdout(&output);
    assert!(listed.starts_with("ID"), "{listed}");
    assert!(
        listed.contains(&job_id) && listed.contains(&single_id),
        "{listed}"
    );
    let output = llmgw(
        &run,
        &dir,
        &["--json", "jobs", "list", "--limit", "2"],
        None,
    )
    .await;
    assert_exit(&output, 0);
    let page: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let output = llmgw(&run, &dir, &["jobs", "list", "--status", "failed"], None).await;
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "no jobs\n");

    // jobs get, as text and JSON.
    let output = llmgw(&run, &dir, &["jobs", "get", &job_id], None).await;
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("status    completed"),
        "{}",
        stdout(&output)
    );
    assert!(stdout(&output).contains(result));
    let output = llmgw(&run, &dir, &["--json", "jobs", "get", &job_id], None).await;
    let got: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(got["id"], job_id.as_str());

    // export: -o, and the gateway's file name.
    let output = llmgw(
        &run,
        &dir,
        &[
            "export",
            &job_id,
            "--format",
            "pdf",
            "-o",
            "f.pdf",
            "--timezone",
            "Europe/Paris",
        ],
        None,
    )
    .await;
    assert_exit(&output, 0);
    let pdf = std::fs::read(dir.join("f.pdf")).unwrap();
    assert!(pdf.starts_with(b"%PDF-"), "a PDF file");
    let output = llmgw(&run, &dir, &["export", &job_id, "--format", "html"], None).await;
    assert_exit(&output, 0);
    // Named as Content-Disposition says: `{service}_{job}.html`.
    let html_path = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            name.ends_with(&format!("_{job_id}.html"))
        })
        .unwrap_or_else(|| panic!("no HTML file; stderr {}", stderr(&output)));
    assert!(stderr(&output).contains(&format!(
        "saved {}",
        html_path.file_name().unwrap().to_string_lossy()
    )));
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.contains("<html"), "{html}");

    // services list.
    let output = llmgw(&run, &dir, &["services", "list"], None).await;
    assert_exit(&output, 0);
    assert!(stdout(&output).contains(&service_id), "{}", stdout(&output));

    // API errors exit 3, readably.
    let output = llmgw(
        &run,
        &dir,
        &["run", "--service", "no-such-service", input],
        None,
    )
    .await;
    assert_exit(&output, 3);
    assert!(
        stderr(&output)
            .starts_with("error: SERVICE_NOT_FOUND: no service named \"no-such-service\""),
        "{}",
        stderr(&output)
    );
    let output = llmgw(&run, &dir, &["jobs", "cancel", &job_id], None).await;
    assert_exit(&output, 3);
    assert!(
        stderr(&output).contains("JOB_ALREADY_FINISHED"),
        "{}",
        stderr(&output)
    );
    let output = llmgw(
        &run,
        &dir,
        &["--flavor", "nope", "run", "--service", "summarize", input],
        None,
    )
    .await;
    assert_exit(&output, 2);

    // A job the provider fails: exit 1 with the job's error; --json still prints the job.
    stack.mock.push_fault(FaultRule::status(400).times(5));
    let output = llmgw(
        &run,
        &dir,
        &[
            "--json",
            "run",
            "--service",
            "summarize",
            "--flavor",
            "single-pass",
            input,
        ],
        None,
    )
    .await;
    assert_exit(&output, 1);
    let failed: Value = serde_json::from_str(&stdout(&output)).expect("the failed job as JSON");
    assert_eq!(failed["status"], "failed");
    let failed_id = failed["id"].as_str().unwrap();
    assert!(
        stderr(&output).contains(&format!(
            "error: job {failed_id} failed: PROVIDER_BAD_REQUEST: "
        )),
        "{}",
        stderr(&output)
    );
    stack.mock.clear_faults();

    // A job cancelled while `run` follows it: `run` sees it and exits 1.
    stack.mock.set_latency(Duration::from_millis(700));
    let mut command = Command::new(env!("CARGO_BIN_EXE_llmgw"));
    command.args([
        "--endpoint",
        &run.api,
        "--ws",
        &run.websocket,
        "--org",
        ORG,
        "run",
        "--no-cache",
        "--service",
        "summarize",
        input,
    ]);
    let following = tokio::spawn({
        let dir = dir.clone();
        async move { spawn(command, &dir, None).await }
    });
    let running_id = wait_for_running_job(&run).await;
    let output = llmgw(&run, &dir, &["jobs", "cancel", &running_id], None).await;
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), format!("job {running_id} cancelled\n"));
    let output = following.await.unwrap();
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains(&format!("error: job {running_id} cancelled")),
        "{}",
        stderr(&output)
    );
    assert_eq!(stdout(&output), "", "no result");

    // --timeout bounds the wait: exit 5, the job goes on.
    let output = llmgw(
        &run,
        &dir,
        &[
            "--timeout",
            "2",
            "run",
            "--no-cache",
            "--service",
            "summarize",
            input,
        ],
        None,
    )
    .await;
    assert_exit(&output, 5);
    assert!(
        stderr(&output).contains("error: timed out waiting for "),
        "{}",
        stderr(&output)
    );
    stack.mock.set_latency(Duration::from_millis(0));

    // delete, then the job is gone.
    let output = llmgw(&run, &dir, &["jobs", "delete", &single_id], None).await;
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), format!("job {single_id} deleted\n"));
    let output = llmgw(&run, &dir, &["jobs", "get", &single_id], None).await;
    assert_exit(&output, 3);
    assert!(
        stderr(&output).contains("JOB_NOT_FOUND"),
        "{}",
        stderr(&output)
    );

    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn an_unreachable_gateway_exits_4_naming_the_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let dir = std::env::temp_dir();
    for args in [&["services", "list"][..], &["jobs", "get", "j1"][..]] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_llmgw"));
        command.args(["--endpoint", &endpoint]).args(args);
        let output = spawn(command, &dir, None).await;
        assert_exit(&output, 4);
        assert!(
            stderr(&output).starts_with(&format!(
                "error: cannot reach the gateway at {endpoint}/api/v1/"
            )),
            "{}",
            stderr(&output)
        );
        assert!(!stderr(&output).contains("panicked"));
    }
}
