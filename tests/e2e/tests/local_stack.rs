//! End to end: HTTP → functions/local → cargo lambda watch → the real function binaries →
//! moto (DynamoDB, S3, SQS FIFO) → the mock LLM, and back.

use std::time::{Duration, Instant};

use gateway_e2e::LocalRun;
use gateway_test_support::{repo_root, seeds, transcript, TestStack};
use mock_llm::Outcome;
use serde_json::{json, Value};

const ORG: &str = "org-e2e";

/// Polls the job until it is finished; returns it and the percentages seen on the way.
async fn wait_finished(
    client: &reqwest::Client,
    run: &LocalRun,
    job_id: &str,
) -> (Value, Vec<u64>) {
    let url = format!("{}/api/v1/jobs/{job_id}?organization_id={ORG}", run.api);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = Vec::new();
    loop {
        let job: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        let percentage = job["progress"]["percentage"]
            .as_u64()
            .unwrap_or_else(|| panic!("{job}"));
        if seen.last() != Some(&percentage) {
            seen.push(percentage);
        }
        if matches!(job["status"].as_str(), Some("completed" | "failed")) {
            return (job, seen);
        }
        assert!(
            Instant::now() < deadline,
            "job {job_id} did not finish: {job}; logs in {}",
            run.logs().display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Number of jobs of the test organization, through the front door.
async fn listed_jobs(client: &reqwest::Client, run: &LocalRun) -> usize {
    let url = format!("{}/api/v1/jobs?organization_id={ORG}", run.api);
    let list: Value = client.get(url).send().await.unwrap().json().await.unwrap();
    list["items"].as_array().unwrap().len()
}

fn expected_output(answered: &[String]) -> String {
    answered
        .iter()
        .map(|prompt| mock_llm::answer_for(prompt))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn summary_jobs_run_end_to_end() {
    let stack = TestStack::start().await;
    let run = LocalRun::start(&stack, 30);
    let client = reqwest::Client::new();
    stack.mock.set_latency(Duration::from_millis(150));

    // Iterative: 100 turns, max_new_turns 12.
    let accepted = run
        .submit(json!({"input": transcript(100), "organization_id": ORG}))
        .await;
    let job_id = accepted["job_id"].as_str().unwrap().to_string();
    let (job, percentages) = wait_finished(&client, &run, &job_id).await;
    assert_eq!(job["status"], "completed", "{job}");
    let answered = stack.mock.answered_prompts();
    let total_turns = job["progress"]["total_turns"].as_u64().unwrap() as usize;
    let batches = job["progress"]["processing_batches"].as_u64().unwrap() as usize;
    assert_eq!(batches, total_turns.div_ceil(12), "batches of 12 turns");
    assert_eq!(
        answered.len(),
        batches + 1,
        "one LLM call per batch, then one reduce call"
    );
    assert_eq!(stack.mock.requests().len(), batches + 1, "no other call");
    assert!(
        answered[batches].contains(&expected_output(&answered[..batches])),
        "the reduce call gets the batch outputs in order"
    );
    assert_eq!(
        job["result"]["output"].as_str().unwrap(),
        mock_llm::answer_for(&answered[batches]),
        "the result is the reduce answer"
    );
    let passes = job["token_metrics"]["passes"].as_array().unwrap();
    assert_eq!(passes.len(), batches + 1);
    assert_eq!(passes[batches]["pass_type"], "reduce");
    assert!(
        percentages.windows(2).all(|w| w[0] < w[1]),
        "progress only rises: {percentages:?}"
    );
    assert_eq!(percentages.last(), Some(&100));
    assert!(
        percentages.iter().any(|p| (1..100).contains(p)),
        "intermediate progress seen: {percentages:?}"
    );
    assert_eq!(
        job["progress"]["completed_turns"].as_u64().unwrap() as usize,
        total_turns
    );

    // Single pass: one call.
    stack.mock.clear();
    let accepted = run
        .submit(
            json!({"input": transcript(8), "flavor_name": "single-pass", "organization_id": ORG}),
        )
        .await;
    let (job, _) = wait_finished(&client, &run, accepted["job_id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "completed", "{job}");
    let answered = stack.mock.answered_prompts();
    assert_eq!(answered.len(), 1);
    assert_eq!(
        job["result"]["output"].as_str().unwrap(),
        expected_output(&answered)
    );

    // Exports through the front door: binary bodies both ways.
    let single = accepted["job_id"].as_str().unwrap();
    let pdf = client
        .get(format!(
            "{}/api/v1/jobs/{single}/export/pdf?organization_id={ORG}",
            run.api
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(pdf.status(), 200);
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    let disposition = pdf.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        disposition,
        format!("attachment; filename=\"summarize_{single}.pdf\"")
    );
    assert!(pdf.bytes().await.unwrap().starts_with(b"%PDF-"));
    let template = std::fs::read(repo_root().join("seeds/templates/basic-report.docx")).unwrap();
    let form = reqwest::multipart::Form::new()
        .text("name_fr", "Mon rapport")
        .text("organization_id", ORG)
        .part(
            "file",
            reqwest::multipart::Part::bytes(template.clone()).file_name("mon-rapport.docx"),
        );
    let uploaded = client
        .post(format!("{}/api/v1/document-templates", run.api))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), 201);
    let uploaded: Value = uploaded.json().await.unwrap();
    assert_eq!(uploaded["file_size"], template.len());
    let docx = client
        .get(format!(
            "{}/api/v1/jobs/{single}/export/docx?organization_id={ORG}&template_id={}",
            run.api,
            uploaded["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(docx.status(), 200);
    assert!(docx.bytes().await.unwrap().starts_with(b"PK"));

    // Listing and tenant isolation through the front door.
    assert_eq!(listed_jobs(&client, &run).await, 2);
    let foreign = client
        .get(format!(
            "{}/api/v1/jobs/{job_id}?organization_id=other",
            run.api
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 404);

    // Bad input through the front door: clear JSON errors, nothing written.
    let url = format!(
        "{}/api/v1/services/{}/execute",
        run.api,
        seeds::SUMMARIZE_SERVICE_ID
    );
    let malformed = client.post(&url).body("{oops").send().await.unwrap();
    assert_eq!(malformed.status(), 422);
    let body: Value = malformed.json().await.unwrap();
    assert_eq!(body["error_code"], "INVALID_JSON");
    assert_eq!(
        body["detail"][0]["loc"],
        serde_json::json!(["body"]),
        "FastAPI's list: {body}"
    );
    let oversized = client
        .post(&url)
        .body(vec![b'a'; 7_000_000])
        .send()
        .await
        .unwrap();
    assert_eq!(oversized.status(), 413);
    // Over the handler's cap but still within Lambda's payload once base64-encoded: the
    // handler's own 413, naming the body and the upload route.
    let over_cap = client
        .post(&url)
        .body(vec![
            b'a';
            gateway_core::engine::MAX_REQUEST_BODY_BYTES + 50_000
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(over_cap.status(), 413);
    let body: Value = over_cap.json().await.unwrap();
    assert_eq!(
        (body["error_code"].as_str(), body["field"].as_str()),
        (Some("INPUT_TOO_LARGE"), Some("body")),
        "{body}"
    );
    assert_eq!(
        listed_jobs(&client, &run).await,
        2,
        "rejected requests wrote no job"
    );
}

#[tokio::test]
async fn an_urgent_job_overtakes_queued_bulk_jobs() {
    let stack = TestStack::start().await;
    stack.add_iterative_flavor("bulk", |f| f.priority = 9).await;
    stack
        .add_iterative_flavor("urgent", |f| f.priority = 0)
        .await;
    let run = LocalRun::start(&stack, 30);
    let client = reqwest::Client::new();
    stack.mock.set_latency(Duration::from_millis(100));

    // Two bulk jobs of 10 batches each, then an urgent one of 5 batches.
    let mut bulk_ids = Vec::new();
    for _ in 0..2 {
        let accepted = run
            .submit(
                json!({"input": transcript(120), "flavor_name": "bulk", "organization_id": ORG}),
            )
            .await;
        bulk_ids.push(accepted["job_id"].as_str().unwrap().to_string());
    }
    let urgent_input = transcript(60).replace("Turn ", "Urgent turn ");
    let accepted = run
        .submit(json!({"input": urgent_input, "flavor_name": "urgent", "organization_id": ORG}))
        .await;
    let urgent_id = accepted["job_id"].as_str().unwrap().to_string();

    // LLM calls of a job: its batches plus its reduce call.
    let calls = |job: &Value| job["token_metrics"]["pass_count"].as_u64().unwrap() as usize;
    let (urgent, _) = wait_finished(&client, &run, &urgent_id).await;
    assert_eq!(urgent["status"], "completed", "{urgent}");
    let urgent_calls = calls(&urgent);
    let mut total_calls = urgent_calls;
    for bulk_id in &bulk_ids {
        let (bulk, _) = wait_finished(&client, &run, bulk_id).await;
        assert_eq!(bulk["status"], "completed", "{bulk}");
        assert!(
            urgent["completed_at"].as_str() < bulk["completed_at"].as_str(),
            "urgent job {urgent_id} finished after bulk job {bulk_id}"
        );
        assert!(calls(&bulk) > urgent_calls, "bulk jobs are the longer ones");
        total_calls += calls(&bulk);
    }
    // Bulk steps already received when the urgent job's first step went in flight are not
    // preempted: they may make their call (at most one per bulk job, each running one step
    // at a time) before the urgent job's second call. From then on the urgent steps ran
    // back to back, and bulk work was still waiting after them.
    let is_urgent: Vec<bool> = stack
        .mock
        .answered_prompts()
        .iter()
        .map(|prompt| prompt.contains("Urgent turn"))
        .collect();
    assert_eq!(is_urgent.len(), total_calls, "one call per step");
    let first = is_urgent.iter().position(|u| *u).expect("urgent calls");
    let second = first
        + 1
        + is_urgent[first + 1..]
            .iter()
            .position(|u| *u)
            .expect("a second urgent call");
    assert!(
        second - first - 1 <= bulk_ids.len(),
        "more bulk calls than bulk steps in flight after the urgent job started: {is_urgent:?}"
    );
    let urgent_run = &is_urgent[second..second + urgent_calls - 1];
    assert!(
        urgent_run.iter().all(|u| *u),
        "urgent calls interleaved with bulk ones: {is_urgent:?}"
    );
    assert!(
        second + urgent_calls - 1 < total_calls,
        "no bulk work was left behind the urgent job: {is_urgent:?}"
    );
}

#[tokio::test]
async fn a_worker_killed_mid_job_resumes_without_calling_a_step_twice() {
    // Short visibility timeout so the interrupted step comes back quickly. The invoke
    // timeout is the default 900 s: the dead invocation is given up at the messages'
    // visibility timeout, not after 900 s.
    let stack = TestStack::start_with_visibility_timeout(4).await;
    let mut run = LocalRun::start(&stack, 900);
    let client = reqwest::Client::new();
    stack.mock.set_latency(Duration::from_millis(400));
    let input = transcript(100);

    let undisturbed = run
        .submit(json!({"input": input, "organization_id": ORG}))
        .await;
    let (reference, _) =
        wait_finished(&client, &run, undisturbed["job_id"].as_str().unwrap()).await;
    assert_eq!(reference["status"], "completed", "{reference}");
    let calls = stack.mock.answered_prompts().len();
    stack.mock.clear();
    stack.mock.set_latency(Duration::from_millis(400));

    // The same input again: it must run, not be answered by the result cache.
    let accepted = run
        .submit(json!({"input": input, "organization_id": ORG, "cache": false}))
        .await;
    let job_id = accepted["job_id"].as_str().unwrap().to_string();
    // Wait until three steps are answered and the fourth is in flight, then SIGKILL.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = stack.mock.requests();
        let answered = log
            .iter()
            .filter(|r| r.outcome == Outcome::Answered)
            .count();
        if answered >= 3 && log.last().is_some_and(|r| r.outcome == Outcome::Pending) {
            break;
        }
        assert!(Instant::now() < deadline, "job never reached step 4");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    run.kill_function("batch-worker");
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    run.start_function("batch-worker");

    let (job, _) = wait_finished(&client, &run, &job_id).await;
    assert_eq!(job["status"], "completed", "{job}");
    // Visibility timeout (4 s), then the remaining steps at 400 ms each.
    let resumed_in = killed.elapsed();
    eprintln!("job completed {resumed_in:?} after the kill");
    assert!(
        resumed_in < Duration::from_secs(20),
        "the dead invocation stalled the job for {resumed_in:?}"
    );
    assert_eq!(
        job["result"]["output"], reference["result"]["output"],
        "same result as an undisturbed run"
    );
    let log = stack.mock.requests();
    assert!(
        log.iter().any(|r| r.outcome == Outcome::Aborted),
        "the kill interrupted a call in flight"
    );
    let answered = stack.mock.answered_prompts();
    assert_eq!(answered.len(), calls, "every step answered exactly once");
    let unique: std::collections::HashSet<&String> = answered.iter().collect();
    assert_eq!(
        unique.len(),
        answered.len(),
        "no step was sent to the LLM twice and answered"
    );
    assert_eq!(
        job["token_metrics"]["passes"].as_array().unwrap().len(),
        calls
    );
}

#[tokio::test]
async fn concurrent_submissions_are_all_accepted() {
    let stack = TestStack::start().await;
    let run = LocalRun::start(&stack, 900);
    let body =
        json!({"input": transcript(8), "flavor_name": "single-pass", "organization_id": ORG});
    // Warm every instance (its first invocation builds its clients), then one at a time:
    // the median of a few sequential submissions.
    futures_util::future::join_all((0..run.concurrency() * 2).map(|_| run.submit(body.clone())))
        .await;
    let mut sequential = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        run.submit(body.clone()).await;
        sequential.push(started.elapsed());
    }
    sequential.sort();
    let one = sequential[2];

    let submissions: usize = std::env::var("E2E_SUBMISSIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(40);
    let started = Instant::now();
    let mut timings = futures_util::future::join_all((0..submissions).map(|_| {
        let body = body.clone();
        let run = &run;
        async move {
            let started = Instant::now();
            run.submit(body).await;
            started.elapsed()
        }
    }))
    .await;
    let total = started.elapsed();
    timings.sort();
    let p50 = timings[timings.len() / 2];
    let p95 = timings[timings.len() * 95 / 100];
    eprintln!(
        "{submissions} concurrent submissions with {} instances: total {total:?}, p50 {p50:?}, \
         p95 {p95:?} (one alone: {one:?})",
        run.concurrency()
    );
    // A measurement, not a bound: on a small machine the emulator and the CPU, not the
    // glue, set the pace under load (functions/local's tests prove the overlap).
    assert!(total < Duration::from_secs(120), "{total:?}");
}
