//! The phases after processing against the in-memory ports: reduce (one call and
//! hierarchical), consolidation, extraction and categorisation, each a crash-safe step.

use serde_json::{json, Value};
use uuid::Uuid;

use super::*;
use crate::domain::{Flavor, Model};
use crate::engine::catalog::prompts::Prompt;
use crate::engine::execute::{dry_run_json, plan, submit, ExecuteRequest};
use crate::engine::notify::job_update;
use crate::engine::views::{job_detail, ResultFormat};
use crate::llm::ChatCompletion;
use crate::memory::{MemoryGateway, MemoryLlm, Seeded};
use crate::ports::JobQueue;
use crate::postprocess::reduce::join_outputs;

const REDUCE_PROMPT: &str = "Merge these partial summaries:\n{}";
const EXTRACTION_PROMPT: &str = "Document:\n{}\nFields:\n{}\nAnswer in JSON.";
const CATEGORIZATION_PROMPT: &str = "Tags:\n{context[tags]}\nText:\n{context[input]}";

fn transcript(turns: usize) -> String {
    const SPEAKERS: [&str; 3] = ["John", "Marie", "Ahmed"];
    (0..turns)
        .map(|i| format!("{} : Turn {i} is about item {i}.", SPEAKERS[i % 3]))
        .collect::<Vec<_>>()
        .join("\n")
}

fn reply(content: &str) -> ChatCompletion {
    ChatCompletion {
        content: content.to_string(),
        prompt_tokens: Some(10),
        completion_tokens: Some(5),
        finish_reason: None,
    }
}

/// The seeded catalog plus the extraction and categorisation prompts.
struct Setup {
    memory: MemoryGateway,
    seeded: Seeded,
    extraction: Uuid,
    categorization: Uuid,
}

async fn setup() -> Setup {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let prompt = |name: &str, content: &str, prompt_type: &str| -> Prompt {
        serde_json::from_value(json!({
            "id": Uuid::new_v4(), "name": name, "content": content,
            "service_type": "summary", "prompt_category": "user", "prompt_type": prompt_type,
        }))
        .unwrap()
    };
    let extraction = prompt("extract", EXTRACTION_PROMPT, "field_extraction");
    let categorization = prompt("categorize", CATEGORIZATION_PROMPT, "categorization");
    memory.insert(&extraction).await.unwrap();
    memory.insert(&categorization).await.unwrap();
    Setup {
        memory,
        seeded,
        extraction: extraction.id,
        categorization: categorization.id,
    }
}

impl Setup {
    /// A new flavor of the seeded service: `base` with `changes`, on `model` when given.
    async fn flavor(&self, base: &Flavor, name: &str, changes: Value) -> Flavor {
        let mut body = serde_json::to_value(base).unwrap();
        body["id"] = json!(Uuid::new_v4());
        body["name"] = json!(name);
        body["is_default"] = json!(false);
        body["placeholder_extraction_prompt_id"] = json!(self.extraction);
        body["categorization_prompt_id"] = json!(self.categorization);
        for (key, value) in changes.as_object().unwrap() {
            body[key] = value.clone();
        }
        let flavor: Flavor = serde_json::from_value(body).unwrap();
        self.memory.insert(&flavor).await.unwrap();
        flavor
    }

    /// The seeded iterative flavor (2 turns per batch) with reduce and consolidation.
    async fn reducing(&self, name: &str, changes: Value) -> Flavor {
        let mut base = json!({
            "reduce_summary": true,
            "consolidate_summary": true,
            "prompt_reduce_content": REDUCE_PROMPT,
        });
        for (key, value) in changes.as_object().unwrap() {
            base[key] = value.clone();
        }
        self.flavor(&self.seeded.iterative, name, base).await
    }

    /// A model of the seeded provider with a small context.
    async fn small_model(&self, context_length: u32, max_generation_length: u32) -> Model {
        let mut model = self.seeded.model.clone();
        model.id = Uuid::new_v4();
        model.model_identifier = format!("small-{context_length}");
        model.model_name = model.model_identifier.clone();
        model.context_length = context_length;
        model.max_generation_length = max_generation_length;
        self.memory.insert(&model).await.unwrap();
        model
    }

    async fn submit(&self, flavor: &Flavor, input: &str, extra: Value) -> Job {
        let mut request = ExecuteRequest {
            input: input.to_string(),
            flavor_id: Some(flavor.id),
            ..ExecuteRequest::default()
        };
        if let Some(context) = extra.get("context") {
            request.context =
                Some(crate::postprocess::categorization::parse_context(context).unwrap());
        }
        if let Some(fields) = extra.get("extraction_fields") {
            request.extraction_fields =
                Some(crate::postprocess::extraction::parse_fields(fields).unwrap());
        }
        submit(&self.memory.gateway, flavor.service_id, request)
            .await
            .expect("job submitted")
    }

    async fn job(&self, id: Uuid) -> Job {
        self.memory.gateway.jobs.get(id).await.unwrap().unwrap()
    }

    /// Delivers queued messages one at a time until `until` holds for the job (or the
    /// queue is empty); returns the outcomes.
    async fn run(&self, id: Uuid, until: impl Fn(&Job) -> bool) -> Vec<StepOutcome> {
        let mut outcomes = Vec::new();
        for _ in 0..200 {
            if until(&self.job(id).await) {
                return outcomes;
            }
            let mut sent = self.memory.queue.drain();
            if sent.is_empty() {
                return outcomes;
            }
            let (message, _) = sent.remove(0);
            for (later, lane) in sent {
                self.memory.queue.send(&later, lane).await.unwrap();
            }
            outcomes.push(process_step(&self.memory.gateway, &message).await.unwrap());
        }
        panic!("the job never got there");
    }

    async fn result(&self, id: Uuid) -> String {
        let bytes = self.memory.gateway.blobs.get(&keys::result(id)).await;
        String::from_utf8(bytes.unwrap().expect("result stored")).unwrap()
    }

    fn prompts(&self) -> Vec<String> {
        self.memory
            .llm
            .calls()
            .iter()
            .map(|call| call.request.messages.last().unwrap().content.clone())
            .collect()
    }

    fn answers(&self) -> Vec<String> {
        self.memory
            .llm
            .calls()
            .iter()
            .map(|call| MemoryLlm::answer_for(&call.request).content)
            .collect()
    }
}

fn pass_types(detail: &Value) -> Vec<String> {
    detail["token_metrics"]["passes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pass| pass["pass_type"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn reduce_receives_every_output_in_order_and_its_answer_is_consolidated() {
    let setup = setup().await;
    let flavor = setup.reducing("reduce", json!({})).await;
    let job = setup.submit(&flavor, &transcript(5), json!({})).await;
    assert_eq!(job.settings.reduce_prompt.as_deref(), Some(REDUCE_PROMPT));

    setup
        .run(job.id, |job| job.progress.phase == Phase::Reducing)
        .await;
    let reducing = setup.job(job.id).await;
    assert_eq!(reducing.phase_name(), "reducing");
    assert_eq!(
        (reducing.progress.phase_step, reducing.progress.phase_total),
        (0, 1),
        "one reduce call planned"
    );
    assert_eq!(reducing.progress.total_batches, 3, "2 + 2 + 1 turns");
    let update = job_update(None, &reducing).unwrap();
    assert_eq!(update["progress"]["phase"], "reducing");
    assert_eq!(update["progress"]["total_batches"], 1);

    setup.memory.llm.respond_next(reply(
        "John : the budget\nJohn : is approved\n\n## Themes\n- Budget\n- Hiring\n\n| a | b |\n|---|---|",
    ));
    let outcomes = setup.run(job.id, |job| job.status.is_terminal()).await;
    assert_eq!(outcomes, [StepOutcome::Completed]);

    let prompts = setup.prompts();
    assert_eq!(prompts.len(), 4, "3 batches and one reduce call");
    let answers = setup.answers();
    assert_eq!(
        prompts[3],
        fill(
            REDUCE_PROMPT,
            &[&join_outputs(answers[..3].iter().map(String::as_str))]
        ),
        "the reduce call gets every batch output, in order"
    );
    assert_eq!(
        setup.result(job.id).await,
        "John : the budget is approved\n\n## Themes\n- Budget\n- Hiring\n\n| a | b |\n|---|---|",
        "same-speaker lines merged, markdown kept"
    );
    let done = setup.job(job.id).await;
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(done.usage.passes, 4);
    let detail = job_detail(&setup.memory.gateway, job.id, None, ResultFormat::Raw)
        .await
        .unwrap();
    assert_eq!(
        pass_types(&detail),
        ["initial", "continuation", "continuation", "reduce"]
    );
    assert_eq!(detail["progress"]["percentage"], 100);
    assert_eq!(detail["progress"]["phase"], "completed");
    let text = job_detail(&setup.memory.gateway, job.id, None, ResultFormat::Text)
        .await
        .unwrap();
    assert_eq!(text["result"]["format"], "text");
    assert!(text["result"]["output"]
        .as_str()
        .unwrap()
        .starts_with("John : the budget is approved\n\nThemes\n\n- Budget"));
}

#[tokio::test]
async fn hierarchical_reduce_on_a_small_context_covers_every_output() {
    let setup = setup().await;
    let model = setup.small_model(1024, 128).await;
    let flavor = setup
        .reducing(
            "small",
            json!({"model_id": model.id, "consolidate_summary": false}),
        )
        .await;
    let job = setup.submit(&flavor, &transcript(6), json!({})).await;
    let counter = crate::tokens::TokenCounter::load(&job.settings.tokenizer).unwrap();
    // Three batch outputs of about 400 tokens each: two never fit one reduce call.
    let outputs: Vec<String> = (0..3)
        .map(|batch| {
            (0..50)
                .map(|line| format!("- batch {batch} point {line} about the plan"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    let budget = 1024 - 128 - job.settings.reduce_prompt_tokens as usize;
    assert!(outputs.iter().all(|o| counter.count(o) <= budget));
    assert!(counter.count(&format!("{}\n{}", outputs[0], outputs[1])) > budget);
    for output in &outputs {
        setup.memory.llm.respond_next(reply(output));
    }
    setup.run(job.id, |job| job.status.is_terminal()).await;

    let done = setup.job(job.id).await;
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error);
    let prompts = setup.prompts();
    assert_eq!(
        prompts.len(),
        3 + 3 + 1,
        "3 batches, 3 level-0 groups, 1 final call"
    );
    for (output, prompt) in outputs.iter().zip(&prompts[3..6]) {
        assert_eq!(
            *prompt,
            fill(REDUCE_PROMPT, &[output]),
            "one output per group"
        );
        assert!(
            counter.count(prompt) + 128 <= 1024,
            "every call fits the model"
        );
    }
    let answers = setup.answers();
    assert_eq!(
        prompts[6],
        fill(REDUCE_PROMPT, &[&answers[3..6].join("\n")]),
        "the final call covers every level-0 answer, in order"
    );
    assert_eq!(
        setup.result(job.id).await,
        answers[6],
        "the last reduce answer"
    );
    for group in 0..3 {
        let key = keys::reduce_input(job.id, 0, group);
        assert!(setup
            .memory
            .gateway
            .blobs
            .get(&key)
            .await
            .unwrap()
            .is_some());
    }
}

#[tokio::test]
async fn a_reduce_whose_answers_do_not_shrink_fails_with_a_named_error() {
    let setup = setup().await;
    let model = setup.small_model(1024, 500).await;
    let flavor = setup
        .reducing("verbose", json!({"model_id": model.id, "max_new_turns": 1}))
        .await;
    let job = setup.submit(&flavor, &transcript(3), json!({})).await;
    let long = (0..60)
        .map(|line| format!("- point {line} about the plan"))
        .collect::<Vec<_>>()
        .join("\n");
    // Every answer, batch and reduce alike, is as long as a whole group.
    for _ in 0..10 {
        setup.memory.llm.respond_next(reply(&long));
    }
    setup.run(job.id, |job| job.status.is_terminal()).await;
    let failed = setup.job(job.id).await;
    assert_eq!(failed.status, JobStatus::Failed);
    let error = failed.error.unwrap();
    assert_eq!(error.code, "REDUCE_NOT_CONVERGING");
    assert!(
        error.message.contains("reduce level 1"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn a_worker_killed_during_reduce_resumes_without_a_second_call() {
    let setup = setup().await;
    let flavor = setup.reducing("resume", json!({})).await;
    let job = setup.submit(&flavor, &transcript(5), json!({})).await;
    setup
        .run(job.id, |job| job.progress.phase == Phase::Reducing)
        .await;
    let (message, _) = setup.memory.queue.drain().remove(0);
    let calls = setup.memory.llm.call_count();
    setup.memory.jobs.fail_next_replaces(1);
    assert!(
        process_step(&setup.memory.gateway, &message).await.is_err(),
        "the job write failed after the reduce answer was stored"
    );
    assert_eq!(setup.memory.llm.call_count(), calls + 1);
    assert_eq!(
        process_step(&setup.memory.gateway, &message).await.unwrap(),
        StepOutcome::Completed
    );
    assert_eq!(
        setup.memory.llm.call_count(),
        calls + 1,
        "the redelivered reduce step reused its stored answer"
    );
    assert_eq!(
        setup.result(job.id).await,
        setup.answers()[calls],
        "the result is the reduce answer"
    );
}

#[tokio::test]
async fn extraction_parses_a_fenced_answer_and_records_a_garbage_one() {
    let setup = setup().await;
    let flavor = setup
        .flavor(&setup.seeded.single_pass, "extract", json!({}))
        .await;
    let fields = json!({"extraction_fields": {"title": "short title", "participants": ""}});
    let job = setup.submit(&flavor, "John : hello", fields.clone()).await;
    setup
        .memory
        .llm
        .respond_next(reply("# Summary\nJohn said hello."));
    setup.memory.llm.respond_next(reply(
        "Here is the JSON:\n```json\n{\"title\": \"Greetings\", \"participants\": [\"John\"], \"extra\": 1,}\n```",
    ));
    setup.run(job.id, |job| job.status.is_terminal()).await;
    let done = setup.job(job.id).await;
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(
        Value::Object(done.extracted_metadata.clone().unwrap()),
        json!({"title": "Greetings", "participants": ["John"]})
    );
    let calls = setup.memory.llm.calls();
    let extraction = &calls[1].request;
    assert_eq!(extraction.temperature, FINISHING_TEMPERATURE);
    assert_eq!(
        extraction.max_tokens, 1024,
        "min(2000, the model's generation length)"
    );
    assert_eq!(extraction.messages.len(), 1, "no system prompt");
    assert_eq!(
        extraction.messages[0].content,
        "Document:\n# Summary\nJohn said hello.\nFields:\n[\"participants\",\"title: short title\"]\nAnswer in JSON."
    );
    let detail = job_detail(&setup.memory.gateway, job.id, None, ResultFormat::Raw)
        .await
        .unwrap();
    assert_eq!(detail["result"]["extracted_metadata"]["title"], "Greetings");
    assert_eq!(detail["extracted_metadata"]["participants"][0], "John");
    assert_eq!(detail["has_extraction_prompt"], true);
    assert_eq!(pass_types(&detail), ["single_pass", "extraction"]);

    let garbage = setup.submit(&flavor, "John : hello", fields).await;
    setup.memory.llm.respond_next(reply("ok"));
    setup
        .memory
        .llm
        .respond_next(reply("Sorry, I cannot help with that."));
    setup.run(garbage.id, |job| job.status.is_terminal()).await;
    let done = setup.job(garbage.id).await;
    assert_eq!(
        done.status,
        JobStatus::Completed,
        "a bad answer never fails the job"
    );
    assert_eq!(
        done.extracted_metadata.unwrap()["_extraction_error"],
        "the answer contains no JSON object"
    );
}

#[tokio::test]
async fn categorization_keeps_given_tags_above_the_threshold_and_suggests_only_when_allowed() {
    let setup = setup().await;
    let flavor = setup
        .flavor(&setup.seeded.single_pass, "categorize", json!({}))
        .await;
    let answer = json!({
        "matched_tags": [
            {"name": "budget", "description": "?", "confidence": 0.9, "mentions": ["the budget"]},
            {"name": "Hiring", "description": "", "confidence": 0.3},
            {"name": "Invented", "description": "new", "confidence": 0.8}
        ],
        "suggested_tags": [{"name": "Office", "description": "the office", "confidence": 0.7}],
        "unmatched_tags": []
    })
    .to_string();
    for allow_new_tags in [false, true] {
        let context = json!({"context": {
            "tags": [
                {"name": "Budget", "description": "money matters", "category": "finance"},
                {"name": "Hiring", "description": "recruiting"},
                {"name": "Travel", "description": "trips"}
            ],
            "allow_new_tags": allow_new_tags
        }});
        let job = setup.submit(&flavor, "John : the budget", context).await;
        setup
            .memory
            .llm
            .respond_next(reply("John talked about the budget."));
        setup.memory.llm.respond_next(reply(&answer));
        setup.run(job.id, |job| job.status.is_terminal()).await;
        let done = setup.job(job.id).await;
        assert_eq!(done.status, JobStatus::Completed);
        let result = done.categorization.unwrap();
        assert_eq!(
            result["matched_tags"],
            json!([{"name": "Budget", "description": "money matters", "category": "finance",
                    "confidence": 0.9, "mentions": ["the budget"]}])
        );
        assert_eq!(result["unmatched_tags"], json!(["Hiring", "Travel"]));
        let suggested: Vec<&str> = result["suggested_tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|tag| tag["name"].as_str().unwrap())
            .collect();
        if allow_new_tags {
            assert_eq!(suggested.len(), 2, "{suggested:?}");
            assert!(suggested.contains(&"Invented") && suggested.contains(&"Office"));
        } else {
            assert!(suggested.is_empty(), "no new tags unless allowed");
        }
        let prompt = setup.prompts().pop().unwrap();
        assert!(
            prompt.contains("\"name\": \"Travel\""),
            "tags in the prompt"
        );
        assert!(
            prompt.contains("Text:\nJohn talked about the budget."),
            "the output"
        );
    }
}

#[tokio::test]
async fn a_finishing_phase_too_large_for_the_model_is_skipped_with_a_warning() {
    let setup = setup().await;
    let model = setup.small_model(1024, 128).await;
    let flavor = setup
        .flavor(
            &setup.seeded.single_pass,
            "tight",
            json!({"model_id": model.id}),
        )
        .await;
    let job = setup
        .submit(
            &flavor,
            "John : hi",
            json!({"extraction_fields": {"title": ""}}),
        )
        .await;
    setup.memory.llm.respond_next(reply(&"word ".repeat(1000)));
    setup.run(job.id, |job| job.status.is_terminal()).await;
    let done = setup.job(job.id).await;
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(setup.memory.llm.call_count(), 1, "no extraction call");
    let warning = done.extracted_metadata.unwrap()["_extraction_warning"].clone();
    assert!(
        warning.as_str().unwrap().starts_with("skipped"),
        "{warning}"
    );
}

#[tokio::test]
async fn execute_refuses_phases_the_flavor_cannot_run_and_estimates_every_call() {
    let setup = setup().await;
    let plain = &setup.seeded.single_pass;
    for (extra, field) in [
        (
            json!({"context": {"tags": [{"name": "a", "description": "b"}]}}),
            "context",
        ),
        (
            json!({"extraction_fields": {"title": ""}}),
            "extraction_fields",
        ),
    ] {
        let mut request = ExecuteRequest {
            input: "John : hi".into(),
            flavor_id: Some(plain.id),
            ..ExecuteRequest::default()
        };
        request.context = extra
            .get("context")
            .map(|c| crate::postprocess::categorization::parse_context(c).unwrap());
        request.extraction_fields = extra
            .get("extraction_fields")
            .map(|f| crate::postprocess::extraction::parse_fields(f).unwrap());
        let error = plan(&setup.memory.gateway, plain.service_id, &request)
            .await
            .err()
            .expect("refused");
        assert_eq!(
            (error.status(), error.field()),
            (422, Some(field)),
            "{error}"
        );
    }

    let flavor = setup.reducing("estimate", json!({})).await;
    let request = ExecuteRequest {
        input: transcript(40),
        flavor_id: Some(flavor.id),
        extraction_fields: Some([("title".to_string(), String::new())].into()),
        ..ExecuteRequest::default()
    };
    let planned = plan(&setup.memory.gateway, flavor.service_id, &request)
        .await
        .unwrap();
    let estimate = dry_run_json(&planned.job);
    let calls = &estimate["estimated_calls"];
    assert_eq!(calls["processing"], planned.job.progress.total_batches);
    assert!(calls["reduce"].as_u64().unwrap() >= 1);
    assert_eq!(calls["extraction"], 1);
    assert_eq!(calls["categorization"], 0, "no context, no categorisation");
    assert_eq!(
        calls["total"].as_u64().unwrap(),
        u64::from(planned.job.progress.total_batches) + calls["reduce"].as_u64().unwrap() + 1
    );
    let range = &estimate["estimated_cost_range"];
    let (low, mid, high) = (
        range["min"].as_f64().unwrap(),
        estimate["estimated_cost"].as_f64().unwrap(),
        range["max"].as_f64().unwrap(),
    );
    assert!(low < mid && mid < high, "{low} < {mid} < {high}");
}

#[tokio::test]
async fn flavor_penalties_stop_sequences_and_custom_params_reach_the_provider() {
    let setup = setup().await;
    let flavor = setup
        .reducing(
            "sampling",
            json!({
                "frequency_penalty": 0.5, "presence_penalty": 0.25,
                "stop_sequences": ["###", "END"],
                "custom_params": {"seed": 7, "response_format": {"type": "text"}},
            }),
        )
        .await;
    let fields = json!({"extraction_fields": {"title": "short title"}});
    let job = setup.submit(&flavor, &transcript(4), fields).await;
    setup
        .run(job.id, |job| job.status == JobStatus::Completed)
        .await;
    let calls = setup.memory.llm.calls();
    assert!(calls.len() >= 4, "batches, reduce and extraction");
    for call in &calls {
        let body = serde_json::to_value(&call.request).unwrap();
        assert_eq!(body["seed"], 7, "custom params on every call: {body}");
        assert_eq!(body["response_format"]["type"], "text");
        let finishing = call.request.temperature == FINISHING_TEMPERATURE;
        if finishing {
            assert!(body.get("stop").is_none() && body.get("frequency_penalty").is_none());
        } else {
            assert_eq!(body["stop"], json!(["###", "END"]));
            assert_eq!(body["frequency_penalty"], 0.5);
            assert_eq!(body["presence_penalty"], 0.25);
        }
    }
    assert!(calls
        .iter()
        .any(|call| call.request.temperature == FINISHING_TEMPERATURE));

    // The gateway's own body fields cannot be overridden.
    let mut refused = flavor.clone();
    refused.custom_params = json!({"max_tokens": 5});
    let error = crate::engine::catalog::entity::Entity::validate(&refused).unwrap_err();
    assert_eq!(error.field(), Some("custom_params"), "{error}");
}
