//! Provider failures and the failover rules a flavor gives a job.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Flavor;

/// Why a provider call failed, as failover rules and job errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// No answer in time (client timeout or HTTP 408).
    Timeout,
    /// HTTP 429.
    RateLimit,
    /// HTTP 5xx (and 409).
    ServerError,
    /// HTTP 401/403: the key is refused.
    Auth,
    /// Refused by the provider's content filter.
    ContentFilter,
    /// The request does not fit the model (HTTP 413, or a 4xx saying so).
    ContextLength,
    /// Any other 4xx.
    BadRequest,
    /// No connection could be made.
    Unreachable,
    /// The provider answered 200 with a body that is not a chat completion.
    BadResponse,
}

impl FailureKind {
    /// Whether waiting may cure it (the step is retried later rather than failing the job).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            FailureKind::Timeout
                | FailureKind::RateLimit
                | FailureKind::ServerError
                | FailureKind::Unreachable
                | FailureKind::BadResponse
        )
    }

    /// The name used in failover records (`rate_limit`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::RateLimit => "rate_limit",
            FailureKind::ServerError => "server_error",
            FailureKind::Auth => "auth",
            FailureKind::ContentFilter => "content_filter",
            FailureKind::ContextLength => "context_length",
            FailureKind::BadRequest => "bad_request",
            FailureKind::Unreachable => "unreachable",
            FailureKind::BadResponse => "bad_response",
        }
    }

    /// The `error_code` of a job that fails with it.
    pub fn job_error_code(self) -> &'static str {
        match self {
            FailureKind::Timeout => "PROVIDER_TIMEOUT",
            FailureKind::RateLimit => "PROVIDER_RATE_LIMITED",
            FailureKind::ServerError => "PROVIDER_ERROR",
            FailureKind::Auth => "PROVIDER_AUTH_FAILED",
            FailureKind::ContentFilter => "PROVIDER_CONTENT_FILTERED",
            FailureKind::ContextLength => "PROVIDER_CONTEXT_LENGTH",
            FailureKind::BadRequest => "PROVIDER_BAD_REQUEST",
            FailureKind::Unreachable => "PROVIDER_UNREACHABLE",
            FailureKind::BadResponse => "PROVIDER_BAD_RESPONSE",
        }
    }
}

/// What a flavor says about failing over to another flavor when its provider fails,
/// frozen into the job (the reference's `failover_*` fields).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct FailoverPolicy {
    pub enabled: bool,
    pub target: Option<Uuid>,
    pub on_timeout: bool,
    pub on_rate_limit: bool,
    /// Server errors, bad answers, unreachable providers, refused keys, context length.
    pub on_model_error: bool,
    pub on_content_filter: bool,
    /// Most hops a job may make (the original flavor's `max_failover_depth`).
    pub max_depth: u8,
}

impl FailoverPolicy {
    /// The policy of a flavor.
    pub fn of(flavor: &Flavor) -> Self {
        FailoverPolicy {
            enabled: flavor.failover_enabled,
            target: flavor.failover_flavor_id,
            on_timeout: flavor.failover_on_timeout,
            on_rate_limit: flavor.failover_on_rate_limit,
            on_model_error: flavor.failover_on_model_error,
            on_content_filter: flavor.failover_on_content_filter,
            max_depth: flavor.max_failover_depth,
        }
    }

    /// The flavor to fail over to after a failure of `kind`, if the policy allows it. A
    /// bad request is the caller's problem and never fails over.
    pub fn target_for(&self, kind: FailureKind) -> Option<Uuid> {
        let allowed = match kind {
            FailureKind::Timeout => self.on_timeout,
            FailureKind::RateLimit => self.on_rate_limit,
            FailureKind::ContentFilter => self.on_content_filter,
            FailureKind::BadRequest => false,
            FailureKind::ServerError
            | FailureKind::Auth
            | FailureKind::ContextLength
            | FailureKind::Unreachable
            | FailureKind::BadResponse => self.on_model_error,
        };
        self.target.filter(|_| self.enabled && allowed)
    }
}

/// One failover of a running job: from which flavor to which, why, and when.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FailoverHop {
    pub from_flavor: Uuid,
    pub from_flavor_name: String,
    pub from_provider: String,
    pub to_flavor: Uuid,
    pub to_flavor_name: String,
    pub to_provider: String,
    /// The failure kind (`rate_limit`, `server_error`, ...).
    pub reason: FailureKind,
    /// The provider's last error.
    pub error: String,
    /// The step that failed and runs again on the new flavor.
    pub at_step: u32,
    pub at: String,
}
