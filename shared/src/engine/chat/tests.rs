//! Chat on the in-memory ports ([`crate::memory`]): refusals before any stream, tokens then
//! done, retries and failover before the first token, an error event after a break, and
//! session usage counted on one job, once per answer.

use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::domain::{Job, JobStatus};
use crate::llm::{ChatCompletion, LlmError};
use crate::memory::{deltas_of, MemoryGateway, MemoryLlm, Seeded, SEEDED_API_KEY};
use crate::ports::Secrets;

const SYSTEM: &str =
    "Answer about the meeting {conversation_name}:\n{transcript}\n{summary_section}";

fn status(code: u16) -> LlmError {
    LlmError::Status {
        status: code,
        message: format!("provider says {code}"),
        retry_after: None,
    }
}

/// A chat flavor of the seeded service: single pass, no user prompt, [`SYSTEM`].
async fn chat_flavor(
    memory: &MemoryGateway,
    seeded: &Seeded,
    edit: impl FnOnce(&mut Flavor),
) -> Flavor {
    let mut flavor = seeded.single_pass.clone();
    flavor.id = Uuid::new_v4();
    flavor.name = format!("chat-{}", &flavor.id.to_string()[..8]);
    flavor.is_default = false;
    flavor.prompt_user_content = String::new();
    flavor.prompt_system_content = Some(SYSTEM.into());
    edit(&mut flavor);
    memory.insert(&flavor).await.unwrap();
    flavor
}

fn body(flavor: &Flavor, extra: serde_json::Value) -> ChatCompletionRequest {
    let mut body = json!({
        "flavor_id": flavor.id,
        "messages": [
            {"role": "user", "content": "What was decided?"},
            {"role": "assistant", "content": "A budget."},
            {"role": "user", "content": "Which budget exactly?"}
        ],
        "context": {"transcript": "Alice : we approve the budget\nBob : the marketing one", "metadata": {"conversation_name": "Weekly"}}
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    ChatCompletionRequest::parse(body.to_string().as_bytes()).unwrap()
}

async fn events_of(memory: &MemoryGateway, request: ChatCompletionRequest) -> Vec<ChatEvent> {
    let chat = prepare(&memory.gateway, request).await.expect("prepared");
    answer(memory.gateway.clone(), chat).collect().await
}

fn tokens(events: &[ChatEvent]) -> String {
    events
        .iter()
        .filter_map(|event| match event {
            ChatEvent::Token(text) => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn done(events: &[ChatEvent]) -> &ChatDone {
    match events.last() {
        Some(ChatEvent::Done(done)) => done,
        other => panic!("expected done last, got {other:?} in {events:?}"),
    }
}

fn failed(events: &[ChatEvent]) -> &JobError {
    match events.last() {
        Some(ChatEvent::Failed(error)) => error,
        other => panic!("expected an error last, got {other:?} in {events:?}"),
    }
}

async fn stored(memory: &MemoryGateway, id: Uuid) -> Job {
    memory
        .gateway
        .jobs
        .get(id)
        .await
        .unwrap()
        .expect("job stored")
}

#[tokio::test]
async fn tokens_stream_then_done_with_the_usage_recorded_on_a_completed_job() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let flavor = chat_flavor(&memory, &seeded, |_| {}).await;
    let events = events_of(&memory, body(&flavor, json!({"organization_id": "org-1"}))).await;

    let calls = memory.llm.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert!(call.streamed);
    assert_eq!(call.endpoint.api_key.as_deref(), Some(SEEDED_API_KEY));
    assert_eq!(call.request.model, "memory-model");
    assert_eq!(
        call.request.max_tokens, 1024,
        "the model's generation length"
    );
    let roles: Vec<&str> = call
        .request
        .messages
        .iter()
        .map(|m| m.role.as_str())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(
        call.request.messages[0].content,
        "Answer about the meeting Weekly:\nAlice : we approve the budget\nBob : the marketing one\n"
    );

    let expected = MemoryLlm::answer_for(&call.request);
    let token_count = events.len() - 1;
    assert_eq!(
        token_count,
        deltas_of(&expected.content).len(),
        "one event per delta"
    );
    assert!(token_count > 1);
    assert_eq!(tokens(&events), expected.content);
    let done = done(&events);
    assert_eq!(
        done.prompt_tokens,
        u64::from(expected.prompt_tokens.unwrap())
    );
    assert_eq!(
        done.completion_tokens,
        u64::from(expected.completion_tokens.unwrap())
    );
    let cost = seeded.model.input_price_per_million.unwrap() * done.prompt_tokens as f64 / 1e6
        + seeded.model.output_price_per_million.unwrap() * done.completion_tokens as f64 / 1e6;
    assert!(
        (done.estimated_cost.unwrap() - cost).abs() < 1e-6,
        "{done:?}"
    );

    let job = stored(&memory, done.job_id.expect("recorded")).await;
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(
        (job.flavor_id, job.service_id),
        (flavor.id, seeded.service.id)
    );
    assert_eq!(job.organization_id.as_deref(), Some("org-1"));
    assert_eq!(job.usage.passes, 1);
    assert_eq!(job.usage.prompt_tokens, done.prompt_tokens);
    assert_eq!(job.usage.completion_tokens, done.completion_tokens);
    assert_eq!(job.chat.as_ref().unwrap().session_id, None);
}

#[tokio::test]
async fn failures_before_the_first_token_are_retried() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let flavor = chat_flavor(&memory, &seeded, |_| {}).await;
    memory.llm.fail_next(1, status(503));
    memory
        .llm
        .fail_next(1, LlmError::Timeout(std::time::Duration::from_secs(1)));
    let events = events_of(&memory, body(&flavor, json!({}))).await;
    assert_eq!(
        memory.llm.call_count(),
        3,
        "two failed attempts, then the answer"
    );
    let answered = MemoryLlm::answer_for(&memory.llm.calls()[2].request);
    assert_eq!(
        tokens(&events),
        answered.content,
        "nothing from the failed attempts"
    );
    done(&events);

    // A 4xx other than 408/409/429 is not retried: the client gets its code.
    memory.llm.fail_next(1, status(400));
    let events = events_of(&memory, body(&flavor, json!({}))).await;
    assert_eq!(memory.llm.call_count(), 4);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(failed(&events).code, "PROVIDER_BAD_REQUEST");
}

/// A second provider and model, and a flavor of the seeded service on them.
async fn backup_flavor(memory: &MemoryGateway, seeded: &Seeded) -> Flavor {
    let ciphertext = memory.secrets.encrypt("sk-backup").await.unwrap();
    let provider: Provider = serde_json::from_value(json!({
        "id": Uuid::new_v4(), "name": "backup", "api_base_url": "http://backup.test/v1",
        "api_key_ciphertext": ciphertext,
    }))
    .unwrap();
    let mut model = seeded.model.clone();
    model.id = Uuid::new_v4();
    model.provider_id = provider.id;
    model.model_identifier = "backup-model".into();
    memory.insert(&provider).await.unwrap();
    memory.insert(&model).await.unwrap();
    chat_flavor(memory, seeded, |flavor| {
        flavor.model_id = model.id;
        flavor.prompt_system_content = Some("The backup's own prompt {transcript}".into());
    })
    .await
}

#[tokio::test]
async fn the_flavor_fails_over_before_the_first_token() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let backup = backup_flavor(&memory, &seeded).await;
    let primary = chat_flavor(&memory, &seeded, |flavor| {
        flavor.failover_enabled = true;
        flavor.failover_flavor_id = Some(backup.id);
        flavor.failover_on_rate_limit = true;
    })
    .await;
    memory.llm.fail_next(3, status(429));
    let events = events_of(&memory, body(&primary, json!({"session_id": "s"}))).await;

    let calls = memory.llm.calls();
    let models: Vec<&str> = calls.iter().map(|c| c.request.model.as_str()).collect();
    assert_eq!(
        models,
        [
            "memory-model",
            "memory-model",
            "memory-model",
            "backup-model"
        ],
        "the primary's retries, then the backup"
    );
    assert_eq!(calls[3].endpoint.api_key.as_deref(), Some("sk-backup"));
    assert_eq!(
        calls[3].request.messages[0], calls[0].request.messages[0],
        "the asked flavor's system prompt, as a failed-over job keeps its prompts"
    );
    assert_eq!(
        tokens(&events),
        MemoryLlm::answer_for(&calls[3].request).content
    );
    let job = stored(&memory, done(&events).job_id.unwrap()).await;
    assert_eq!(job.flavor_id, primary.id, "the job is the asked flavor's");
    assert_eq!(
        job.settings.model_identifier, "backup-model",
        "priced as the model that answered"
    );

    // When the backup fails too, the error names both providers.
    memory.llm.fail_next(6, status(429));
    let events = events_of(&memory, body(&primary, json!({}))).await;
    let error = failed(&events);
    assert_eq!(events.len(), 1);
    assert_eq!(error.code, "ALL_PROVIDERS_FAILED");
    assert!(
        error.message.contains("provider 'memory'") && error.message.contains("provider 'backup'"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn an_open_circuit_breaker_fails_over_without_calling() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let backup = backup_flavor(&memory, &seeded).await;
    let primary = chat_flavor(&memory, &seeded, |flavor| {
        flavor.failover_enabled = true;
        flavor.failover_flavor_id = Some(backup.id);
    })
    .await;
    let prepared = prepare(&memory.gateway, body(&primary, json!({})))
        .await
        .unwrap();
    for _ in 0..memory.gateway.limits.breaker_failures {
        breaker::failed(&memory.gateway, &prepared.primary.settings)
            .await
            .unwrap();
    }
    let events: Vec<ChatEvent> = answer(memory.gateway.clone(), prepared).collect().await;
    done(&events);
    let models: Vec<String> = memory
        .llm
        .calls()
        .into_iter()
        .map(|c| c.request.model)
        .collect();
    assert_eq!(models, ["backup-model"]);
}

#[tokio::test]
async fn a_failure_after_the_first_token_ends_the_stream_with_an_error_event() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let backup = backup_flavor(&memory, &seeded).await;
    let flavor = chat_flavor(&memory, &seeded, |flavor| {
        flavor.failover_enabled = true;
        flavor.failover_flavor_id = Some(backup.id);
    })
    .await;
    memory.llm.break_off_next(
        2,
        LlmError::Transport(format!("reset by peer ({SEEDED_API_KEY})")),
    );
    let events = events_of(&memory, body(&flavor, json!({"session_id": "s-broken"}))).await;

    assert_eq!(
        memory.llm.call_count(),
        1,
        "no retry and no failover after a token"
    );
    let answer = MemoryLlm::answer_for(&memory.llm.calls()[0].request).content;
    let sent: Vec<String> = deltas_of(&answer).into_iter().take(2).collect();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(tokens(&events), sent.concat());
    let error = failed(&events);
    assert_eq!(error.code, "PROVIDER_UNREACHABLE");
    assert!(error.message.contains("broke off"), "{}", error.message);
    assert!(
        !error.message.contains(SEEDED_API_KEY) && error.message.contains("<redacted>"),
        "never the provider key: {}",
        error.message
    );
    // The tokens the provider produced still count, by the model's tokenizer.
    let job = stored(&memory, session_job_id(None, "s-broken")).await;
    assert_eq!(job.usage.passes, 1);
    assert!(job.usage.completion_tokens > 0 && job.usage.prompt_tokens > 0);
}

#[tokio::test]
async fn session_usage_accumulates_onto_one_job() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let flavor = chat_flavor(&memory, &seeded, |_| {}).await;
    let session = json!({"session_id": "s-1", "organization_id": "org-1"});
    let first = events_of(&memory, body(&flavor, session.clone())).await;
    let second = events_of(&memory, body(&flavor, session.clone())).await;
    let (first, second) = (done(&first).clone(), done(&second).clone());
    let id = session_job_id(Some("org-1"), "s-1");
    assert_eq!((first.job_id, second.job_id), (Some(id), Some(id)));

    let job = stored(&memory, id).await;
    assert_eq!(job.usage.passes, 2);
    assert_eq!(
        job.usage.prompt_tokens,
        first.prompt_tokens + second.prompt_tokens
    );
    assert_eq!(
        job.usage.completion_tokens,
        first.completion_tokens + second.completion_tokens
    );
    let cost = first.estimated_cost.unwrap() + second.estimated_cost.unwrap();
    assert!((job.estimated_cost().unwrap() - cost).abs() < 1e-6);
    assert_eq!(
        job.chat.as_ref().unwrap().session_id.as_deref(),
        Some("s-1")
    );

    // The same session name in another organization is another job.
    let other = events_of(
        &memory,
        body(
            &flavor,
            json!({"session_id": "s-1", "organization_id": "org-2"}),
        ),
    )
    .await;
    assert_ne!(done(&other).job_id, Some(id));
    assert_eq!(stored(&memory, id).await.usage.passes, 2);
    assert_eq!(memory.jobs.all().len(), 2);
}

#[tokio::test]
async fn a_session_write_racing_another_is_retried_not_lost() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let flavor = chat_flavor(&memory, &seeded, |_| {}).await;
    let session = json!({"session_id": "s-race"});
    let first = events_of(&memory, body(&flavor, session.clone())).await;
    let first = done(&first).clone();
    // Another answer of the session is counted between this one's read and its write.
    memory.jobs.before_next_replace(|job| {
        job.usage.prompt_tokens += 1000;
        job.usage.passes += 1;
        job.updated_at = crate::domain::fresh_timestamp(&job.updated_at);
    });
    let second = events_of(&memory, body(&flavor, session)).await;
    let second = done(&second).clone();
    let job = stored(&memory, session_job_id(None, "s-race")).await;
    assert_eq!(
        job.usage.passes, 3,
        "the racing answer and this one, both counted"
    );
    assert_eq!(
        job.usage.prompt_tokens,
        first.prompt_tokens + 1000 + second.prompt_tokens
    );

    // Two answers of a new session at once: one creates the job, the other adds to it.
    let (a, b) = tokio::join!(
        events_of(&memory, body(&flavor, json!({"session_id": "s-both"}))),
        events_of(&memory, body(&flavor, json!({"session_id": "s-both"}))),
    );
    let job = stored(&memory, session_job_id(None, "s-both")).await;
    assert_eq!(job.usage.passes, 2);
    assert_eq!(
        job.usage.completion_tokens,
        done(&a).completion_tokens + done(&b).completion_tokens
    );
}

#[tokio::test]
async fn bad_requests_are_refused_before_any_call() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let flavor = chat_flavor(&memory, &seeded, |_| {}).await;
    let gateway = &memory.gateway;
    let refused = |request| async move { prepare(gateway, request).await.err().expect("refused") };

    let mut unknown = body(&flavor, json!({}));
    unknown.flavor_id = Uuid::new_v4();
    let error = refused(unknown).await;
    assert_eq!(
        (error.status(), error.code(), error.field()),
        (404, "FLAVOR_NOT_FOUND", Some("flavor_id"))
    );

    // A flavor of another organization's service is hidden (tenancy as in the catalog).
    let mut private = seeded.service.clone();
    private.id = Uuid::new_v4();
    private.name = "private".into();
    private.route = "private".into();
    private.organization_id = Some("org-a".into());
    memory.insert(&private).await.unwrap();
    let theirs = chat_flavor(&memory, &seeded, |f| f.service_id = private.id).await;
    let error = refused(body(&theirs, json!({"organization_id": "org-b"}))).await;
    assert_eq!((error.status(), error.code()), (404, "FLAVOR_NOT_FOUND"));
    assert!(prepare(
        &memory.gateway,
        body(&theirs, json!({"organization_id": "org-a"}))
    )
    .await
    .is_ok());

    let inactive = chat_flavor(&memory, &seeded, |f| f.is_active = false).await;
    let error = refused(body(&inactive, json!({}))).await;
    assert_eq!((error.status(), error.code()), (400, "FLAVOR_INACTIVE"));

    let no_prompt = chat_flavor(&memory, &seeded, |f| f.prompt_system_content = None).await;
    let error = refused(body(&no_prompt, json!({}))).await;
    assert_eq!(
        (error.status(), error.code(), error.field()),
        (422, "FLAVOR_INCOMPLETE", Some("prompt_system_content"))
    );

    // The seeded model has 8192 tokens of context and generates up to 1024.
    let long = "Alice : ".to_string() + &"budget ".repeat(8000);
    let error = refused(body(&flavor, json!({"context": {"transcript": long}}))).await;
    assert_eq!((error.status(), error.code()), (400, "CONTEXT_EXCEEDED"));
    let EngineError::ContextExceeded(figures) = &error else {
        unreachable!()
    };
    assert_eq!(
        (figures.context_length, figures.max_generation_length),
        (8192, 1024)
    );
    assert!(figures.input_tokens.unwrap() > figures.available_tokens);
    let error = refused(body(&flavor, json!({"max_tokens": 8192}))).await;
    assert_eq!(error.code(), "CONTEXT_EXCEEDED", "max_tokens counts too");
    assert!(
        prepare(&memory.gateway, body(&flavor, json!({"max_tokens": 7000})))
            .await
            .is_ok()
    );

    assert_eq!(memory.llm.call_count(), 0, "nothing was sent");
    assert!(memory.jobs.all().is_empty(), "nothing was written");
}

#[tokio::test]
async fn a_scripted_answer_streams_word_by_word() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let flavor = chat_flavor(&memory, &seeded, |_| {}).await;
    memory.llm.respond_next(ChatCompletion {
        content: "The marketing budget.".into(),
        prompt_tokens: Some(40),
        completion_tokens: Some(4),
        finish_reason: None,
    });
    let events = events_of(&memory, body(&flavor, json!({}))).await;
    assert_eq!(
        events[..3],
        [
            ChatEvent::Token("The ".into()),
            ChatEvent::Token("marketing ".into()),
            ChatEvent::Token("budget.".into())
        ]
    );
    let done = done(&events);
    assert_eq!((done.prompt_tokens, done.completion_tokens), (40, 4));
}
