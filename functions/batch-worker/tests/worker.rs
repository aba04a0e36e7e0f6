//! The batch worker against the emulator and the mock LLM, driven like the SQS event
//! source: receive a batch, call the handler, delete what succeeded.

use gateway_core::aws::LaneQueueUrls;
use gateway_core::domain::{Job, JobStatus, QueueLane, StepMessage};
use gateway_core::engine::execute::{submit, ExecuteRequest};
use gateway_core::engine::views::{job_detail, ResultFormat};
use gateway_core::ports::JobQueue;
use gateway_test_support::{seeds, transcript, TestStack};
use mock_llm::{FaultRule, Outcome};
use uuid::Uuid;

async fn submit_job(stack: &TestStack, flavor: &str, input: String) -> Uuid {
    stack.submit(flavor, Some("org-w"), input).await.id
}

async fn job(stack: &TestStack, id: Uuid) -> Job {
    stack.gateway.jobs.get(id).await.unwrap().unwrap()
}

/// Runs the worker over the queue until the job is finished; returns the progress
/// percentages seen after each batch.
async fn run_until_finished(stack: &TestStack, id: Uuid) -> Vec<u32> {
    let mut percentages = Vec::new();
    for _ in 0..200 {
        let current = job(stack, id).await;
        if current.status.is_terminal() {
            return percentages;
        }
        let Some(event) = stack.receive_event(&stack.env.job_queues.standard).await else {
            continue;
        };
        let response =
            batch_worker::handle(&stack.gateway, TestStack::lambda_event(event.clone()), None)
                .await;
        stack
            .acknowledge(&stack.env.job_queues.standard, &event, &response)
            .await;
        percentages.push(job(stack, id).await.percentage());
    }
    panic!("job {id} did not finish");
}

#[tokio::test]
async fn iterative_job_reduces_every_batch_output_in_order_and_consolidates_the_answer() {
    let stack = TestStack::start().await;
    // The seeded reduce prompt starts with "Below are partial summaries"; script its answer
    // so that consolidation has same-speaker lines and markdown to keep.
    stack.mock.push_fault(
        FaultRule::reply("John : the budget\nJohn : is approved\n\n## Themes\n- Budget\n- Hiring")
            .matching("Below are partial summaries"),
    );
    let id = submit_job(&stack, "iterative", transcript(100)).await;
    let submitted = job(&stack, id).await;
    assert_eq!(submitted.settings.max_new_turns, 12);
    assert!(
        submitted.settings.reduce_prompt.is_some(),
        "the seeded flavor reduces"
    );
    assert!(submitted.settings.consolidate);

    let percentages = run_until_finished(&stack, id).await;
    let done = job(&stack, id).await;
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error);

    let answered: Vec<String> = stack.mock.answered_prompts();
    let batches = done.progress.total_batches as usize;
    assert_eq!(
        answered.len(),
        batches + 1,
        "one LLM call per batch, then one reduce"
    );
    assert!(
        batches >= (done.progress.total_turns as usize).div_ceil(12),
        "max_new_turns 12 respected"
    );
    assert_eq!(
        stack.mock.requests().len(),
        batches + 1,
        "no retries, no duplicates"
    );

    let batch_outputs: Vec<String> = answered[..batches]
        .iter()
        .map(|prompt| mock_llm::answer_for(prompt))
        .collect();
    assert!(
        answered[batches].contains(&batch_outputs.join("\n")),
        "the reduce call receives every batch output, in order"
    );
    // Every attributed input turn shows up once, in order, in the batch outputs.
    let speakers: Vec<&str> = batch_outputs
        .iter()
        .flat_map(|output| output.lines())
        .map(|line| line.split(" — ").next().unwrap())
        .collect();
    assert_eq!(speakers[..3], ["• John", "• Marie", "• Ahmed"]);
    let detail = job_detail(&stack.gateway, id, Some("org-w"), ResultFormat::Raw)
        .await
        .unwrap();
    assert_eq!(
        detail["result"]["output"].as_str().unwrap(),
        "John : the budget is approved\n\n## Themes\n- Budget\n- Hiring",
        "the reduce answer, consolidated without touching the markdown"
    );

    assert!(
        percentages.windows(2).all(|w| w[0] <= w[1]),
        "progress never goes back: {percentages:?}"
    );
    assert_eq!(*percentages.last().unwrap(), 100);
    assert_eq!(detail["progress"]["percentage"], 100);
    assert_eq!(
        detail["progress"]["completed_turns"],
        detail["progress"]["total_turns"]
    );
    let metrics = &detail["token_metrics"];
    let passes = metrics["passes"].as_array().unwrap();
    assert_eq!(passes.len(), batches + 1);
    assert_eq!(passes[0]["pass_type"], "initial");
    assert_eq!(passes[1]["pass_type"], "continuation");
    assert_eq!(passes[batches]["pass_type"], "reduce");
    let prompt_sum: u64 = stack
        .mock
        .requests()
        .iter()
        .map(|r| u64::from(r.prompt_tokens.unwrap()))
        .sum();
    assert_eq!(
        metrics["total_prompt_tokens"].as_u64().unwrap(),
        prompt_sum,
        "usage from the provider"
    );
    assert!(metrics["total_estimated_cost"].as_f64().unwrap() > 0.0);
    // The rolling context carries the previous batch's last output lines.
    let second = &answered[1];
    let last_of_first = batch_outputs[0].lines().last().unwrap().to_string();
    assert!(
        second.contains(&last_of_first),
        "rolling context in the second prompt"
    );
}

#[tokio::test]
async fn single_pass_job_completes_with_one_call() {
    let stack = TestStack::start().await;
    let input = transcript(10);
    let id = submit_job(&stack, "single-pass", input.clone()).await;
    run_until_finished(&stack, id).await;
    let done = job(&stack, id).await;
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error);
    let answered = stack.mock.answered_prompts();
    assert_eq!(answered.len(), 1);
    assert!(
        answered[0].contains(&input),
        "the whole input in one prompt"
    );
    let detail = job_detail(&stack.gateway, id, Some("org-w"), ResultFormat::Raw)
        .await
        .unwrap();
    assert_eq!(
        detail["result"]["output"].as_str().unwrap(),
        mock_llm::answer_for(&answered[0])
    );
    assert_eq!(
        detail["token_metrics"]["passes"][0]["pass_type"],
        "single_pass"
    );
}

#[tokio::test]
async fn redelivered_step_does_not_call_the_llm_again() {
    let stack = TestStack::start().await;
    let id = submit_job(&stack, "iterative", transcript(30)).await;
    let event = stack
        .receive_event(&stack.env.job_queues.standard)
        .await
        .unwrap();
    let first =
        batch_worker::handle(&stack.gateway, TestStack::lambda_event(event.clone()), None).await;
    assert!(first.batch_item_failures.is_empty());
    // Same message again (as if the delete was lost): skipped, no LLM call, no double step.
    let again =
        batch_worker::handle(&stack.gateway, TestStack::lambda_event(event.clone()), None).await;
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(stack.mock.requests().len(), 1);
    assert_eq!(job(&stack, id).await.progress.step, 1);

    // The worker died after storing step 1's output but before its conditional write:
    // put the job back at step 1 and redeliver; the stored output is reused.
    stack
        .acknowledge(&stack.env.job_queues.standard, &event, &first)
        .await;
    let step1 = stack
        .receive_event(&stack.env.job_queues.standard)
        .await
        .unwrap();
    let before = job(&stack, id).await;
    assert_eq!(before.progress.step, 1);
    let ok =
        batch_worker::handle(&stack.gateway, TestStack::lambda_event(step1.clone()), None).await;
    assert!(ok.batch_item_failures.is_empty());
    assert_eq!(stack.mock.requests().len(), 2);
    assert!(
        stack.gateway.jobs.replace(&before, 2).await.unwrap(),
        "job rolled back to step 1"
    );
    let redelivered =
        batch_worker::handle(&stack.gateway, TestStack::lambda_event(step1.clone()), None).await;
    assert!(redelivered.batch_item_failures.is_empty());
    assert_eq!(stack.mock.requests().len(), 2, "stored output reused");
    assert_eq!(job(&stack, id).await.progress.step, 2);
    stack
        .acknowledge(&stack.env.job_queues.standard, &step1, &ok)
        .await;

    run_until_finished(&stack, id).await;
    let done = job(&stack, id).await;
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error);
    let answered = stack.mock.answered_prompts();
    assert_eq!(
        answered.len(),
        done.progress.total_batches as usize + 1,
        "every batch, then the reduce call"
    );
    let unique: std::collections::HashSet<_> = answered.iter().collect();
    assert_eq!(unique.len(), answered.len(), "no prompt answered twice");
}

#[tokio::test]
async fn transient_provider_errors_are_retried() {
    // Three faults use up the in-call attempts: the step is postponed (kept in the queue,
    // visible again after the back-off instead of the 30 s visibility timeout), and the
    // next delivery completes the job.
    let stack = TestStack::start().await;
    stack
        .mock
        .push_fault(FaultRule::status(429).retry_after(1).times(1));
    stack.mock.push_fault(FaultRule::status(503).times(1));
    stack.mock.push_fault(FaultRule::malformed());
    let id = submit_job(&stack, "single-pass", transcript(5)).await;
    let queue = &stack.env.job_queues.standard;
    let event = stack.receive_event(queue).await.unwrap();
    let response =
        batch_worker::handle(&stack.gateway, TestStack::lambda_event(event.clone()), None).await;
    assert_eq!(
        response.batch_item_failures.len(),
        1,
        "kept in the queue for a later try"
    );
    let waiting = job(&stack, id).await;
    assert_eq!(waiting.progress.failures, 1);
    assert!(waiting.error.is_none() && !waiting.status.is_terminal());
    let again = stack
        .receive_event(queue)
        .await
        .expect("visible again after the back-off, long before the visibility timeout");
    assert_eq!(
        again.records[0].message_id, event.records[0].message_id,
        "the same message"
    );
    let response =
        batch_worker::handle(&stack.gateway, TestStack::lambda_event(again.clone()), None).await;
    assert!(response.batch_item_failures.is_empty());
    stack.acknowledge(queue, &again, &response).await;
    let done = job(&stack, id).await;
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error);
    assert_eq!(done.progress.failures, 0);
    let outcomes: Vec<Outcome> = stack.mock.requests().iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Fault,
            Outcome::Fault,
            Outcome::Fault,
            Outcome::Answered
        ]
    );

    let stack = TestStack::start().await;
    stack
        .mock
        .push_fault(FaultRule::status(429).retry_after(1).times(1));
    stack.mock.push_fault(FaultRule::status(500).times(1));
    let id = submit_job(&stack, "single-pass", transcript(5)).await;
    run_until_finished(&stack, id).await;
    let done = job(&stack, id).await;
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error);
    let outcomes: Vec<Outcome> = stack.mock.requests().iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        vec![Outcome::Fault, Outcome::Fault, Outcome::Answered]
    );
    let log = stack.mock.requests();
    assert!(
        log[1].received_at_ms - log[0].received_at_ms >= 1000,
        "Retry-After honoured"
    );
}

#[tokio::test]
async fn client_errors_fail_the_job_without_retry() {
    let stack = TestStack::start().await;
    stack.mock.push_fault(FaultRule::status(400).times(5));
    let id = submit_job(&stack, "iterative", transcript(20)).await;
    run_until_finished(&stack, id).await;
    let done = job(&stack, id).await;
    assert_eq!(done.status, JobStatus::Failed);
    let error = done.error.unwrap();
    assert_eq!(error.code, "PROVIDER_BAD_REQUEST");
    assert!(
        error.message.contains("'default'") && error.message.contains("HTTP 400"),
        "{}",
        error.message
    );
    assert_eq!(stack.mock.requests().len(), 1, "400 is not retried");
}

#[tokio::test]
async fn dead_lettered_step_fails_the_job() {
    let stack = TestStack::start().await;
    let id = submit_job(&stack, "iterative", transcript(20)).await;
    // Move the step message to the DLQ, as the redrive policy does after N receives.
    let event = stack
        .receive_event(&stack.env.job_queues.standard)
        .await
        .unwrap();
    stack
        .acknowledge(&stack.env.job_queues.standard, &event, &Default::default())
        .await;
    let dead_letter_queue_url = &stack.dead_letter_queue_url;
    let dlq = gateway_core::aws::SqsJobQueue::new(
        stack.clients.sqs.clone(),
        LaneQueueUrls {
            urgent: dead_letter_queue_url.clone(),
            standard: dead_letter_queue_url.clone(),
            bulk: dead_letter_queue_url.clone(),
        },
    );
    let message = StepMessage::new(id, 0, vec![]);
    dlq.send(&message, QueueLane::Standard).await.unwrap();
    let dlq_name = stack
        .dead_letter_queue_url
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let dead = stack
        .receive_event(&stack.dead_letter_queue_url)
        .await
        .unwrap();
    let response = batch_worker::handle(
        &stack.gateway,
        TestStack::lambda_event(dead),
        Some(&dlq_name),
    )
    .await;
    assert!(response.batch_item_failures.is_empty());
    let failed = job(&stack, id).await;
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.error.unwrap().code, "STEP_RETRIES_EXHAUSTED");
    assert!(
        stack.mock.requests().is_empty(),
        "a dead-lettered step is not run"
    );
}

#[tokio::test]
async fn malformed_and_unknown_messages_are_dropped() {
    let stack = TestStack::start().await;
    let unknown_job = StepMessage::new(Uuid::new_v4(), 0, vec![]);
    stack
        .gateway
        .queue
        .send(&unknown_job, QueueLane::Standard)
        .await
        .unwrap();
    stack
        .clients
        .sqs
        .send_message()
        .queue_url(&stack.env.job_queues.standard)
        .message_body("not json")
        .message_group_id("g")
        .message_deduplication_id("bad")
        .send()
        .await
        .unwrap();
    let event = stack
        .receive_event(&stack.env.job_queues.standard)
        .await
        .unwrap();
    let response = batch_worker::handle(&stack.gateway, TestStack::lambda_event(event), None).await;
    assert!(response.batch_item_failures.is_empty(), "nothing to retry");
    assert!(stack.mock.requests().is_empty());
}

#[tokio::test]
async fn sample_event_decodes_and_is_skipped_for_an_unknown_job() {
    let stack = TestStack::start().await;
    let event = std::fs::read_to_string(
        gateway_test_support::repo_root().join("events/batch-worker-sqs.json"),
    )
    .unwrap();
    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_str(&event).expect("a Lambda SQS event");
    let response = batch_worker::handle(&stack.gateway, TestStack::lambda_event(event), None).await;
    assert!(response.batch_item_failures.is_empty());
    assert!(stack.mock.requests().is_empty());
}

#[tokio::test]
async fn steps_travel_on_the_lane_of_the_flavor_priority() {
    let stack = TestStack::start().await;
    stack
        .add_iterative_flavor("urgent", |f| f.priority = 0)
        .await;
    stack.add_iterative_flavor("bulk", |f| f.priority = 9).await;
    let lanes = &stack.env.job_queues;
    for (flavor, lane) in [
        ("urgent", &lanes.urgent),
        ("iterative", &lanes.standard),
        ("bulk", &lanes.bulk),
    ] {
        let job = stack.submit(flavor, None, transcript(40)).await;
        let first = stack
            .receive_event(lane)
            .await
            .unwrap_or_else(|| panic!("step 0 of a {flavor} job on its lane"));
        assert_eq!(first.records.len(), 1);
        let response =
            batch_worker::handle(&stack.gateway, TestStack::lambda_event(first.clone()), None)
                .await;
        assert!(response.batch_item_failures.is_empty());
        stack.acknowledge(lane, &first, &response).await;
        let next = stack
            .receive_event(lane)
            .await
            .unwrap_or_else(|| panic!("step 1 of a {flavor} job on the same lane"));
        let message: StepMessage =
            serde_json::from_str(next.records[0].body.as_deref().unwrap()).unwrap();
        assert_eq!((message.job_id, message.step), (job.id, 1));
        stack.acknowledge(lane, &next, &Default::default()).await;
    }
    for lane in [&lanes.urgent, &lanes.standard, &lanes.bulk] {
        assert!(
            stack.receive_event(lane).await.is_none(),
            "nothing else queued"
        );
    }
}

#[tokio::test]
async fn extraction_and_categorisation_run_after_the_summary_with_the_seeded_prompts() {
    let stack = TestStack::start().await;
    // Scripted answers for the seeded extraction and categorisation prompts: a fenced JSON
    // object with a trailing comma, and a categorisation that breaks the rules.
    stack.mock.push_fault(
        FaultRule::reply(
            "Sure:\n```json\n{\"title\": \"Budget review\", \"participants\": [\"John\", \"Marie\"],}\n```",
        )
        .matching("Requested fields"),
    );
    stack.mock.push_fault(
        FaultRule::reply(
            r#"{"matched_tags": [{"name": "budget", "description": "x", "category": null, "confidence": 0.92, "mentions": ["the budget"]},
                                 {"name": "Travel", "description": "", "confidence": 0.2},
                                 {"name": "Invented", "description": "", "confidence": 0.9}],
                "suggested_tags": [{"name": "Office", "description": "", "confidence": 0.8}],
                "unmatched_tags": []}"#,
        )
        .matching("You classify a text"),
    );
    let body = serde_json::json!({
        "input": transcript(10),
        "flavor_name": "single-pass",
        "organization_id": "org-w",
        "extraction_fields": {"title": "a short title", "participants": "who spoke"},
        "context": {"tags": [
            {"name": "Budget", "description": "money matters", "category": "finance"},
            {"name": "Travel", "description": "trips"}
        ]}
    });
    let request = ExecuteRequest::parse(body.to_string().as_bytes(), 1_000_000).unwrap();
    let id = submit(&stack.gateway, seeds::SUMMARIZE_SERVICE_ID, request)
        .await
        .unwrap()
        .id;
    run_until_finished(&stack, id).await;
    let done = job(&stack, id).await;
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error);

    let answered = stack.mock.answered_prompts();
    assert_eq!(answered.len(), 3, "summary, extraction, categorisation");
    let summary = mock_llm::answer_for(&answered[0]);
    assert!(
        answered[1].contains(&summary),
        "extraction reads the summary"
    );
    assert!(answered[1].contains(r#"["participants: who spoke","title: a short title"]"#));
    assert!(
        answered[2].contains(&summary),
        "categorisation reads the summary"
    );
    assert!(answered[2].contains("\"name\": \"Travel\""));

    let detail = job_detail(&stack.gateway, id, Some("org-w"), ResultFormat::Raw)
        .await
        .unwrap();
    assert_eq!(detail["result"]["output"], summary.as_str());
    assert_eq!(
        detail["result"]["extracted_metadata"],
        serde_json::json!({"title": "Budget review", "participants": ["John", "Marie"]})
    );
    let categorization = &detail["result"]["categorization"];
    assert_eq!(
        categorization["matched_tags"],
        serde_json::json!([{"name": "Budget", "description": "money matters", "category": "finance",
                            "confidence": 0.92, "mentions": ["the budget"]}])
    );
    assert_eq!(
        categorization["unmatched_tags"],
        serde_json::json!(["Travel"])
    );
    assert_eq!(
        categorization["suggested_tags"],
        serde_json::json!([]),
        "no new tags unless allowed"
    );
    let passes: Vec<&str> = detail["token_metrics"]["passes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pass| pass["pass_type"].as_str().unwrap())
        .collect();
    assert_eq!(passes, ["single_pass", "extraction", "categorization"]);
    let metrics = stack
        .gateway
        .blobs
        .get(&gateway_core::ports::keys::metrics(id))
        .await
        .unwrap();
    assert!(metrics.is_some(), "per-pass metrics stored");
}

#[tokio::test]
async fn breaker_table_counts_failures_opens_and_lets_exactly_one_worker_probe() {
    let stack = TestStack::start().await;
    let breakers = &stack.gateway.breakers;
    let key = format!("provider-{}#model", Uuid::new_v4());
    let t = |s: u32| format!("2026-12-01T10:00:{s:02}.000000Z");
    assert_eq!(breakers.open_until(&key).await.unwrap(), None);
    assert_eq!(
        breakers.record_failure(&key, &t(1), &t(0)).await.unwrap(),
        1
    );
    assert_eq!(
        breakers.record_failure(&key, &t(2), &t(0)).await.unwrap(),
        2
    );
    assert_eq!(
        breakers.record_failure(&key, &t(40), &t(30)).await.unwrap(),
        1,
        "a failure after the window starts a new one"
    );
    breakers.open(&key, &t(50)).await.unwrap();
    assert_eq!(breakers.open_until(&key).await.unwrap(), Some(t(50)));

    let (seen, lease_a, lease_b) = (t(50), t(55), t(56));
    let (first, second) = tokio::join!(
        breakers.claim_probe(&key, &seen, &lease_a),
        breakers.claim_probe(&key, &seen, &lease_b),
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert!(first ^ second, "exactly one probe: {first} {second}");
    let lease = breakers.open_until(&key).await.unwrap().unwrap();
    assert!(lease == t(55) || lease == t(56), "{lease}");
    assert!(!breakers.claim_probe(&key, &t(50), &t(57)).await.unwrap());

    breakers.close(&key).await.unwrap();
    assert_eq!(breakers.open_until(&key).await.unwrap(), None);
    assert!(!breakers.claim_probe(&key, &t(50), &t(57)).await.unwrap());
}
