//! Chat about a transcript (`POST /api/v1/chat/completions`). [`prepare`] checks the
//! request against the catalog (tenancy as in the catalog) and the model's context and
//! fills the flavor's system prompt: every refusal is an [`EngineError`], before anything
//! is streamed. [`answer`] then streams the answer as [`ChatEvent`]s. Until the first
//! token, a failing provider is retried ([`open_stream_with_retries`]) and the flavor's
//! failover policy is followed as jobs follow it (its circuit breaker included); after
//! it, a failure can only end the stream. The usage is recorded on a completed job
//! ([`session`]) before the last event.

mod request;
mod session;

pub use request::{
    fill_system_prompt, ChatCompletionRequest, ChatContext, MAX_MESSAGES, MAX_TOKENS_LIMIT,
};
pub use session::session_job_id;

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tracing::Instrument;
use uuid::Uuid;

use super::breaker::{self, Breaker};
use super::catalog::flavors::{flavor_by_id, load_flavor};
use super::catalog::Scope;
use super::error::{ContextExceeded, EngineError, EngineResult, Resource, Rule};
use super::execute::{counter_for, target_of, usable_target, Target};
use super::recovery::provider_failure_error;
use super::Gateway;
use crate::domain::{
    now_timestamp, FailoverHop, FailoverPolicy, FailureKind, Flavor, JobError, JobSettings, Model,
    Provider, Service,
};
use crate::llm::{
    open_stream_with_retries, ChatChunk, ChatMessage, ChatRequest, Endpoint, LlmError, LlmFailure,
    OpenedStream, StreamUsage,
};
use crate::tokens::TokenCounter;
use session::AnswerUsage;

/// What a chat client receives, in order: tokens, then `Done` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// The next piece of the answer.
    Token(String),
    /// The answer is complete.
    Done(ChatDone),
    /// No answer, or the answer broke off: a code like a failed job's and a message.
    Failed(JobError),
}

/// The usage of a complete answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatDone {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Prompt tokens the provider served from its cache, when it says.
    pub cached_tokens: Option<u64>,
    /// At the answering model's prices, when the catalog has them.
    pub estimated_cost: Option<f64>,
    /// The job the usage was recorded on (None when it could not be written).
    pub job_id: Option<Uuid>,
}

/// Where an answer is asked: a flavor's model and provider, and the request built for
/// them.
#[derive(Debug, Clone)]
struct Candidate {
    flavor: Flavor,
    settings: JobSettings,
    endpoint: Endpoint,
    request: ChatRequest,
    /// Tokens of the conversation and of what filled the system prompt (the prompt as
    /// written not counted), with this model's tokenizer.
    input_tokens: usize,
    /// Tokens left for the conversation: context − max_tokens − system prompt.
    context_available: usize,
}

/// A chat checked against the catalog, ready to stream.
pub struct PreparedChat {
    request: ChatCompletionRequest,
    service: Service,
    /// The flavor asked for (the job's).
    flavor: Flavor,
    /// Its system prompt as written.
    template: String,
    /// The filled system prompt, then the conversation.
    messages: Vec<ChatMessage>,
    primary: Candidate,
}

impl PreparedChat {
    /// The request's organization.
    pub fn organization_id(&self) -> Option<&str> {
        self.request.organization_id.as_deref()
    }
}

/// Checks `request` against the catalog and the model's context: an unknown flavor, one
/// of a service the organization cannot see, an inactive flavor, service or model, a
/// flavor without a system prompt, or a conversation that does not fit the model is
/// refused here. The provider key is decrypted here too (a failure is a 503).
pub async fn prepare(
    gateway: &Gateway,
    request: ChatCompletionRequest,
) -> EngineResult<PreparedChat> {
    let scope = Scope::new(request.organization_id.as_deref());
    let (service, flavor) = load_flavor(gateway, &scope, None, request.flavor_id)
        .await
        .map_err(|error| match error {
            EngineError::NotFound { .. } => {
                EngineError::not_found_by(Resource::Flavor, request.flavor_id, "flavor_id")
            }
            other => other,
        })?;
    if !service.is_active {
        return Err(EngineError::refused(
            Rule::ServiceInactive,
            format!("service '{}' is inactive", service.name),
        ));
    }
    let Target {
        service,
        flavor,
        model,
        provider,
    } = target_of(gateway, service, flavor).await?;
    let template = flavor
        .prompt_system_content
        .clone()
        .filter(|template| !template.trim().is_empty())
        .ok_or_else(|| {
            EngineError::refused(
                Rule::FlavorIncomplete,
                format!(
                    "flavor '{}' has no system prompt; chat fills it with the transcript ({{transcript}})",
                    flavor.name
                ),
            )
            .about("field", "prompt_system_content")
        })?;
    let mut messages = vec![ChatMessage::new(
        "system",
        fill_system_prompt(&template, &request.context),
    )];
    messages.extend(request.messages.iter().cloned());
    let endpoint = gateway.endpoint_of(provider.clone()).await?;
    let counter = counter_for(gateway, &flavor, &model).await;
    let primary = candidate(
        &template,
        &messages,
        request.max_tokens,
        (&flavor, &model, &provider),
        endpoint,
        &counter,
    )
    .map_err(EngineError::ContextExceeded)?;
    Ok(PreparedChat {
        request,
        service,
        flavor,
        template,
        messages,
        primary,
    })
}

/// The answer on `flavor`'s model and provider: its settings (the flavor's sampling and
/// failover policy, the model's limits, tokenizer and prices) and request; the
/// `CONTEXT_EXCEEDED` figures when the conversation and `max_tokens` (default: the
/// model's generation length) do not fit the model's context.
fn candidate(
    template: &str,
    messages: &[ChatMessage],
    max_tokens: Option<u32>,
    (flavor, model, provider): (&Flavor, &Model, &Provider),
    endpoint: Endpoint,
    counter: &TokenCounter,
) -> Result<Candidate, Box<ContextExceeded>> {
    let mut settings = JobSettings {
        prompt_system_content: Some(template.to_string()),
        priority: flavor.priority,
        output_type: flavor.output_type.clone(),
        failover: FailoverPolicy::of(flavor),
        ..JobSettings::default()
    };
    settings.run_on(flavor, model, provider, counter);
    let max_tokens = max_tokens.unwrap_or(model.max_generation_length);
    let prompt_tokens = counter.count(template);
    let total: usize = messages
        .iter()
        .map(|message| counter.count(&message.content))
        .sum();
    let input_tokens = total.saturating_sub(prompt_tokens);
    let context_available = (model.context_length as usize)
        .saturating_sub(max_tokens as usize)
        .saturating_sub(prompt_tokens);
    if input_tokens > context_available {
        return Err(Box::new(ContextExceeded {
            flavor_id: flavor.id,
            flavor_name: flavor.name.clone(),
            input_tokens: Some(input_tokens),
            available_tokens: context_available,
            context_length: model.context_length as usize,
            max_generation_length: max_tokens as usize,
            prompt_tokens,
            suggestion: "shorten the transcript, the summary or the conversation, lower max_tokens, or use a flavor whose model has a larger context".into(),
        }));
    }
    let request = ChatRequest::for_job(
        &settings,
        messages.to_vec(),
        settings.temperature,
        max_tokens,
        true,
    );
    Ok(Candidate {
        flavor: flavor.clone(),
        settings,
        endpoint,
        request,
        input_tokens,
        context_available,
    })
}

/// Streams the answer of a prepared chat (the work runs in its own task, so the usage is
/// recorded even when the client goes away).
pub fn answer(gateway: Gateway, chat: PreparedChat) -> BoxStream<'static, ChatEvent> {
    let (events, received) = mpsc::channel(64);
    tokio::spawn(run(gateway, chat, events).instrument(tracing::Span::current()));
    futures_util::stream::unfold(received, |mut received| async move {
        received.recv().await.map(|event| (event, received))
    })
    .boxed()
}

/// Opens the answer, forwards its tokens, records the usage, then sends the last event.
async fn run(gateway: Gateway, chat: PreparedChat, events: mpsc::Sender<ChatEvent>) {
    let organization_id = chat.organization_id().unwrap_or_default().to_string();
    let started_at = now_timestamp();
    let clock = std::time::Instant::now();
    let (opened, answering, breaker) = match open(&gateway, &chat).await {
        Ok(opened) => opened,
        Err(error) => {
            tracing::warn!(%organization_id, flavor_id = %chat.flavor.id, code = %error.code, error = %error.message, "chat failed before its first token");
            let _ = events.send(ChatEvent::Failed(error)).await;
            return;
        }
    };
    let mut text = String::new();
    let mut usage = None;
    let mut broken = None;
    let mut client_gone = false;
    let mut chunks =
        futures_util::stream::iter(opened.first.into_iter().map(Ok)).chain(opened.rest);
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(ChatChunk::Delta(delta)) => {
                text.push_str(&delta);
                if events.send(ChatEvent::Token(delta)).await.is_err() {
                    client_gone = true;
                    break;
                }
            }
            Ok(ChatChunk::Usage(reported)) => usage = Some(reported),
            Err(error) => {
                broken = Some(error);
                break;
            }
        }
    }
    drop(chunks);
    call_ended(&gateway, &answering.settings, &breaker, broken.as_ref()).await;
    let usage = answer_usage(&answering, usage, &text, started_at, clock.elapsed());
    let job_id = match session::record(&gateway, &chat, &answering.settings, &usage).await {
        Ok(job) => Some(job.id),
        Err(error) => {
            tracing::error!(%organization_id, %error, "chat usage not recorded");
            None
        }
    };
    tracing::info!(
        %organization_id,
        job_id = job_id.map(|id| id.to_string()).unwrap_or_default(),
        flavor_id = %answering.flavor.id,
        prompt_tokens = usage.prompt_tokens,
        completion_tokens = usage.completion_tokens,
        duration_ms = usage.duration_ms,
        broken = broken.is_some(),
        client_gone,
        "chat answered"
    );
    let last = match broken {
        Some(error) => ChatEvent::Failed(JobError {
            code: error.kind().job_error_code().into(),
            message: redact(
                format!(
                    "the answer broke off after {} characters: provider '{}': {error}",
                    text.chars().count(),
                    answering.settings.provider_name
                ),
                &[&answering.endpoint],
            ),
        }),
        None => ChatEvent::Done(ChatDone {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            cached_tokens: usage.cached_tokens,
            estimated_cost: usage.cost,
            job_id,
        }),
    };
    if !client_gone {
        let _ = events.send(last).await;
    }
}

/// The usage of an answer: the provider's, else counted with the model's tokenizer (as a
/// job step counts it), at the model's prices.
fn answer_usage(
    answering: &Candidate,
    reported: Option<StreamUsage>,
    text: &str,
    started_at: String,
    elapsed: std::time::Duration,
) -> AnswerUsage {
    let (prompt_tokens, completion_tokens) = match reported {
        Some(usage) => (
            u64::from(usage.prompt_tokens),
            u64::from(usage.completion_tokens),
        ),
        None => {
            // Preparing the chat (in this process) loaded the tokenizer.
            let counter = TokenCounter::cached(&answering.settings.tokenizer)
                .unwrap_or_else(TokenCounter::default_counter);
            let prompt: usize = answering
                .request
                .messages
                .iter()
                .map(|message| counter.count(&message.content))
                .sum();
            (prompt as u64, counter.count(text) as u64)
        }
    };
    AnswerUsage {
        prompt_tokens,
        completion_tokens,
        cached_tokens: reported.and_then(|usage| usage.cached_tokens.map(u64::from)),
        cost: answering.settings.cost_of(prompt_tokens, completion_tokens),
        duration_ms: elapsed.as_millis() as u64,
        started_at,
    }
}

/// Opens the answer on the flavor, else on the flavors its failover policy names in
/// turn, before any token is sent: each with the retries of `Limits::retry`, all within
/// `Limits::chat_first_token`. The opened stream, the candidate that answers and its
/// breaker; else the error naming every provider tried.
async fn open(
    gateway: &Gateway,
    chat: &PreparedChat,
) -> Result<(OpenedStream, Candidate, Breaker), JobError> {
    let deadline = tokio::time::Instant::now() + gateway.limits.chat_first_token;
    let mut current = chat.primary.clone();
    let mut hops: Vec<FailoverHop> = Vec::new();
    let mut endpoints = vec![current.endpoint.clone()];
    loop {
        let breaker = breaker::state(gateway, &current.settings)
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "circuit breaker not read; calling");
                Breaker::Closed
            });
        let opened = match &breaker {
            Breaker::Open { until, wait } => Err(LlmFailure {
                provider: current.settings.provider_name.clone(),
                attempts: 0,
                last: LlmError::CircuitOpen(until.clone()),
                retry_after: Some(*wait),
            }),
            _ => {
                open_stream_with_retries(
                    gateway.llm.as_ref(),
                    &current.endpoint,
                    &current.request,
                    gateway.limits.retry,
                    deadline,
                )
                .await
            }
        };
        let failure = match opened {
            Ok(opened) => return Ok((opened, current, breaker)),
            Err(failure) => failure,
        };
        let kind = failure.last.kind();
        if failure.attempts > 0 {
            count_failure(gateway, &current.settings, &breaker, kind).await;
        }
        tracing::warn!(flavor_id = %current.flavor.id, provider = %current.settings.provider_name, reason = kind.as_str(), error = %failure, "chat provider failed before the first token");
        let Some(next) = fail_over(gateway, chat, &current, &hops, kind).await else {
            let error = provider_failure_error(
                &hops,
                &current.settings.provider_name,
                &current.flavor.name,
                kind,
                &failure,
            );
            let endpoints: Vec<&Endpoint> = endpoints.iter().collect();
            return Err(JobError {
                message: redact(error.message, &endpoints),
                ..error
            });
        };
        tracing::warn!(from = %current.flavor.name, to = %next.flavor.name, reason = kind.as_str(), "chat failed over");
        hops.push(FailoverHop {
            from_flavor: current.flavor.id,
            from_flavor_name: current.flavor.name.clone(),
            from_provider: current.settings.provider_name.clone(),
            to_flavor: next.flavor.id,
            to_flavor_name: next.flavor.name.clone(),
            to_provider: next.settings.provider_name.clone(),
            reason: kind,
            error: failure.to_string(),
            at_step: 0,
            at: now_timestamp(),
        });
        endpoints.push(next.endpoint.clone());
        current = next;
    }
}

/// The flavor `current`'s failover policy names for a failure of `kind`, ready to answer,
/// when it can take the chat: the policy allows it, the chain is not deeper than the
/// asked flavor's `max_failover_depth` and does not come back, the flavor, its service
/// and model are active, its provider exists and the conversation fits its model. The
/// system prompt stays the asked flavor's, as a failed-over job keeps its prompts.
async fn fail_over(
    gateway: &Gateway,
    chat: &PreparedChat,
    current: &Candidate,
    hops: &[FailoverHop],
    kind: FailureKind,
) -> Option<Candidate> {
    let target = current.settings.failover.target_for(kind)?;
    let max_depth = chat.primary.settings.failover.max_depth;
    let visited = target == chat.flavor.id || hops.iter().any(|hop| hop.to_flavor == target);
    if hops.len() >= usize::from(max_depth) || visited {
        return None;
    }
    let unusable = |why: String| -> Option<Candidate> {
        tracing::warn!(%target, why, "failover target cannot take the chat");
        None
    };
    let flavor = match flavor_by_id(gateway, target).await {
        Ok(Some(flavor)) => flavor,
        Ok(None) => return unusable("it does not exist".into()),
        Err(error) => return unusable(error.to_string()),
    };
    let Target {
        flavor,
        model,
        provider,
        ..
    } = match usable_target(gateway, flavor).await {
        Ok(Some(target)) => target,
        Ok(None) => return unusable("it, its service or model is inactive".into()),
        Err(error) => return unusable(error.to_string()),
    };
    let endpoint = match gateway.endpoint_of(provider.clone()).await {
        Ok(endpoint) => endpoint,
        Err(error) => return unusable(error.to_string()),
    };
    let counter = counter_for(gateway, &flavor, &model).await;
    let mut next = match candidate(
        &chat.template,
        &chat.messages,
        chat.request.max_tokens,
        (&flavor, &model, &provider),
        endpoint,
        &counter,
    ) {
        Ok(next) => next,
        Err(figures) => {
            return unusable(format!(
                "the conversation ({} tokens) does not fit its model ({} available)",
                figures.input_tokens.unwrap_or_default(),
                figures.available_tokens
            ))
        }
    };
    next.settings.failover = FailoverPolicy {
        max_depth,
        ..FailoverPolicy::of(&flavor)
    };
    Some(next)
}

/// Counts a failed call on the breaker of its provider and model, as a job step does.
async fn count_failure(
    gateway: &Gateway,
    settings: &JobSettings,
    breaker: &Breaker,
    kind: FailureKind,
) {
    let counted = async {
        if kind.is_transient() {
            breaker::failed(gateway, settings).await?;
        }
        breaker::call_ended(gateway, settings, breaker, false).await
    };
    if let Err(error) = counted.await {
        tracing::warn!(%error, "circuit breaker not updated");
    }
}

/// Ends the call on the breaker: a probe's success closes it; an answer that broke off
/// counts as a failure.
async fn call_ended(
    gateway: &Gateway,
    settings: &JobSettings,
    breaker: &Breaker,
    broken: Option<&LlmError>,
) {
    match broken {
        Some(error) => count_failure(gateway, settings, breaker, error.kind()).await,
        None => {
            if let Err(error) = breaker::call_ended(gateway, settings, breaker, true).await {
                tracing::warn!(%error, "circuit breaker not updated");
            }
        }
    }
}

/// `text` without the API keys of `endpoints` (a provider may quote the key it refused).
fn redact(mut text: String, endpoints: &[&Endpoint]) -> String {
    for key in endpoints
        .iter()
        .filter_map(|endpoint| endpoint.api_key.as_deref())
    {
        if !key.is_empty() {
            text = text.replace(key, "<redacted>");
        }
    }
    text
}

#[cfg(test)]
mod tests;
