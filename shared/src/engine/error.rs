//! The engine's one error type. Each variant says what went wrong in the caller's terms;
//! [`EngineError::status`] and [`EngineError::code`] are defined here once, and the HTTP
//! body is built only at the edge ([`crate::api::response`]).

use crate::domain::ProcessingMode;
use crate::ports::{IoError, ListError};
use crate::postprocess::categorization::FieldProblem;

/// What a request named that does not exist (or is not visible to its organization).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Service,
    Flavor,
    Job,
    Model,
    Provider,
    Prompt,
    PromptTemplate,
    PromptType,
    ServiceType,
    FlavorPreset,
    Organization,
    /// A version of a job's result.
    Version,
    /// A Word template for exports.
    DocumentTemplate,
    /// An uploaded input.
    Upload,
    /// A stored HuggingFace tokenizer.
    Tokenizer,
}

impl Resource {
    /// Lower-case name for messages ("flavor preset").
    pub fn name(self) -> &'static str {
        match self {
            Resource::Service => "service",
            Resource::Flavor => "flavor",
            Resource::Job => "job",
            Resource::Model => "model",
            Resource::Provider => "provider",
            Resource::Prompt => "prompt",
            Resource::PromptTemplate => "prompt template",
            Resource::PromptType => "prompt type",
            Resource::ServiceType => "service type",
            Resource::FlavorPreset => "flavor preset",
            Resource::Organization => "organization",
            Resource::Version => "version",
            Resource::DocumentTemplate => "template",
            Resource::Upload => "upload",
            Resource::Tokenizer => "tokenizer",
        }
    }

    /// The 404 `error_code`.
    pub fn not_found_code(self) -> &'static str {
        match self {
            Resource::Service => "SERVICE_NOT_FOUND",
            Resource::Flavor => "FLAVOR_NOT_FOUND",
            Resource::Job => "JOB_NOT_FOUND",
            Resource::Model => "MODEL_NOT_FOUND",
            Resource::Provider => "PROVIDER_NOT_FOUND",
            Resource::Version => "VERSION_NOT_FOUND",
            Resource::DocumentTemplate => "TEMPLATE_NOT_FOUND",
            Resource::Upload => "UPLOAD_NOT_FOUND",
            _ => "NOT_FOUND",
        }
    }
}

/// Where a 422 validation error's field is (FastAPI's first `loc` element).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Body,
    Query,
}

impl Location {
    /// The `loc` name.
    pub fn name(self) -> &'static str {
        match self {
            Location::Body => "body",
            Location::Query => "query",
        }
    }
}

/// Why a request body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyProblem {
    Empty,
    NotUtf8 {
        valid_up_to: usize,
    },
    NotJson(String),
    NotObject,
    TooLarge {
        field: &'static str,
        size: usize,
        limit: usize,
    },
}

/// A business rule the request breaks; each has its own stable code and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    ServiceInactive,
    FlavorInactive,
    ModelInactive,
    NoDefaultFlavor,
    /// The flavor's model or provider was deleted.
    FlavorModelMissing,
    FlavorProviderMissing,
    DefaultFlavorRequired,
    DefaultFlavorDelete,
    FailoverCycle,
    UnknownServiceType,
    UnknownPromptType,
    SystemPreset,
    SystemType,
    JobAlreadyFinished,
    JobNotFinished,
    JobBusy,
    /// The flavor lacks something a requested phase needs (a reduce, extraction or
    /// categorisation prompt).
    FlavorIncomplete,
    /// Result versions exist only for completed jobs.
    JobNotCompleted,
    /// Restoring or deleting the version that is current.
    CurrentVersion,
    /// Deleting version 1, the job's own output.
    OriginalVersion,
    /// The job's result changed between the caller's read and its write (reload, retry).
    ResultChanged,
    /// An upload past its lifetime.
    UploadExpired,
    /// An upload whose file was never sent.
    UploadEmpty,
}

impl Rule {
    /// The stable `error_code`.
    pub fn code(self) -> &'static str {
        match self {
            Rule::ServiceInactive => "SERVICE_INACTIVE",
            Rule::FlavorInactive => "FLAVOR_INACTIVE",
            Rule::ModelInactive => "MODEL_INACTIVE",
            Rule::NoDefaultFlavor => "NO_DEFAULT_FLAVOR",
            Rule::FlavorModelMissing => "MODEL_NOT_FOUND",
            Rule::FlavorProviderMissing => "PROVIDER_NOT_FOUND",
            Rule::DefaultFlavorRequired => "DEFAULT_FLAVOR_REQUIRED",
            Rule::DefaultFlavorDelete => "DEFAULT_FLAVOR",
            Rule::FailoverCycle => "FAILOVER_CYCLE",
            Rule::UnknownServiceType => "UNKNOWN_SERVICE_TYPE",
            Rule::UnknownPromptType => "UNKNOWN_PROMPT_TYPE",
            Rule::SystemPreset => "SYSTEM_PRESET",
            Rule::SystemType => "SYSTEM_TYPE",
            Rule::JobAlreadyFinished => "JOB_ALREADY_FINISHED",
            Rule::JobNotFinished => "JOB_NOT_FINISHED",
            Rule::JobBusy => "JOB_BUSY",
            Rule::FlavorIncomplete => "FLAVOR_INCOMPLETE",
            Rule::JobNotCompleted => "JOB_NOT_COMPLETED",
            Rule::CurrentVersion => "CURRENT_VERSION",
            Rule::OriginalVersion => "ORIGINAL_VERSION",
            Rule::ResultChanged => "RESULT_CHANGED",
            Rule::UploadExpired => "UPLOAD_EXPIRED",
            Rule::UploadEmpty => "UPLOAD_EMPTY",
        }
    }

    /// The HTTP status.
    pub fn status(self) -> u16 {
        match self {
            Rule::SystemType => 403,
            Rule::JobBusy | Rule::ResultChanged => 409,
            Rule::FlavorIncomplete => 422,
            _ => 400,
        }
    }
}

/// The figures of an input that does not fit a flavor.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextExceeded {
    pub flavor_id: uuid::Uuid,
    pub flavor_name: String,
    /// None when the flavor leaves too little room for any input.
    pub input_tokens: Option<usize>,
    pub available_tokens: usize,
    pub context_length: usize,
    pub max_generation_length: usize,
    pub prompt_tokens: usize,
    /// What the caller can do instead.
    pub suggestion: String,
}

/// An error of the engine, in the caller's terms.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// 404: unknown, or another organization's.
    #[error("{} '{id}' not found", what.name())]
    NotFound {
        what: Resource,
        id: String,
        /// The request field that named it.
        field: Option<&'static str>,
    },
    /// 400 `INVALID_REQUEST`: a field of an execute/jobs request.
    #[error("{field}: {problem}")]
    InvalidField { field: String, problem: String },
    /// 422 in FastAPI's shape (catalog requests).
    #[error("{field}: {problem}")]
    Validation {
        location: Location,
        field: String,
        problem: String,
    },
    /// 400/413: the body is not a readable JSON object.
    #[error("{}", body_problem_text(.0))]
    InvalidBody(BodyProblem),
    /// 400: a listing cursor this API did not return.
    #[error("cursor: is not a cursor returned by this API")]
    InvalidCursor,
    /// 415: the body is declared (`Content-Type`) in a media type the route does not read.
    #[error("content-type: {0:?} is not accepted here; send application/json")]
    UnsupportedMediaType(String),
    /// 400 `CONTEXT_EXCEEDED` with the figures.
    #[error("{}", context_exceeded_text(.0))]
    ContextExceeded(Box<ContextExceeded>),
    /// 400 `PROMPT_VALIDATION_ERROR`: wrong number of `{}` for the processing mode.
    #[error("{}", placeholder_text(*.mode, *.actual))]
    PromptPlaceholders {
        field: String,
        mode: ProcessingMode,
        required: usize,
        actual: usize,
    },
    /// 400 `INVALID_PRESET_CONFIG`: a preset whose flavor would not validate.
    #[error("config: {source}")]
    PresetConfig { source: Box<EngineError> },
    /// A business rule, with the objects it concerns (`flavor_id`, `status`, `field`, ...).
    #[error("{detail}")]
    Refused {
        rule: Rule,
        detail: String,
        subject: Vec<(&'static str, String)>,
    },
    /// 404: no route serves this path.
    #[error("no route for '{0}'")]
    NoRoute(String),
    /// 405: the path's route does not serve this method.
    #[error("{0} is not allowed on this path")]
    MethodNotAllowed(String),
    /// 403: a global object changed with an organization.
    #[error("{0}")]
    Forbidden(String),
    /// 409: a unique name taken, an object in use, a concurrent change.
    #[error("{0}")]
    Conflict(String),
    /// 502: the LLM provider answered with an error.
    #[error("{0}")]
    Provider(String),
    /// 503: storage, queue or key service failed; safe to retry.
    #[error("temporarily unavailable ({})", .0.operation)]
    Dependency(IoError),
    /// 500: a stored object cannot be read or written (never the caller's fault).
    #[error("{0}")]
    Internal(String),
    /// 501: this build cannot serve the route (e.g. exports outside the export function).
    #[error("{0}")]
    NotBuilt(&'static str),
}

/// Result of engine operations.
pub type EngineResult<T> = Result<T, EngineError>;

impl EngineError {
    /// 404 for `what` named `id`.
    pub fn not_found(what: Resource, id: impl std::fmt::Display) -> Self {
        EngineError::NotFound {
            what,
            id: id.to_string(),
            field: None,
        }
    }

    /// 404 for `what` named by the request field `field`.
    pub fn not_found_by(what: Resource, id: impl std::fmt::Display, field: &'static str) -> Self {
        EngineError::NotFound {
            what,
            id: id.to_string(),
            field: Some(field),
        }
    }

    /// 400 for a request field that is missing or invalid.
    pub fn invalid_field(field: &str, problem: impl std::fmt::Display) -> Self {
        EngineError::InvalidField {
            field: field.to_string(),
            problem: problem.to_string(),
        }
    }

    /// 422 for a field of a catalog request.
    pub fn validation(location: Location, field: &str, problem: impl std::fmt::Display) -> Self {
        EngineError::Validation {
            location,
            field: field.to_string(),
            problem: problem.to_string(),
        }
    }

    /// A broken business rule.
    pub fn refused(rule: Rule, detail: impl Into<String>) -> Self {
        EngineError::Refused {
            rule,
            detail: detail.into(),
            subject: Vec::new(),
        }
    }

    /// Adds a named value to a [`EngineError::Refused`] (other variants are unchanged).
    pub fn about(mut self, name: &'static str, value: impl std::fmt::Display) -> Self {
        if let EngineError::Refused { subject, .. } = &mut self {
            subject.push((name, value.to_string()));
        }
        self
    }

    /// 500 for an object that could not be encoded or decoded.
    pub fn internal(what: &str, error: impl std::fmt::Display) -> Self {
        EngineError::Internal(format!("{what}: {error}"))
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            EngineError::NotFound { .. } | EngineError::NoRoute(_) => 404,
            EngineError::MethodNotAllowed(_) => 405,
            EngineError::UnsupportedMediaType(_) => 415,
            EngineError::InvalidBody(BodyProblem::TooLarge { .. }) => 413,
            EngineError::InvalidBody(BodyProblem::NotUtf8 { .. }) => 400,
            // FastAPI's answer to a body that is not a JSON object.
            EngineError::InvalidBody(_) => 422,
            EngineError::InvalidField { .. }
            | EngineError::InvalidCursor
            | EngineError::ContextExceeded(_)
            | EngineError::PromptPlaceholders { .. }
            | EngineError::PresetConfig { .. } => 400,
            EngineError::Validation { .. } => 422,
            EngineError::Refused { rule, .. } => rule.status(),
            EngineError::Forbidden(_) => 403,
            EngineError::Conflict(_) => 409,
            EngineError::Provider(_) => 502,
            EngineError::Dependency(_) => 503,
            EngineError::Internal(_) => 500,
            EngineError::NotBuilt(_) => 501,
        }
    }

    /// The stable `error_code`.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::NotFound { what, .. } => what.not_found_code(),
            EngineError::InvalidField { .. } | EngineError::InvalidCursor => "INVALID_REQUEST",
            EngineError::Validation { .. } => "VALIDATION_ERROR",
            EngineError::InvalidBody(BodyProblem::NotUtf8 { .. }) => "INVALID_ENCODING",
            EngineError::InvalidBody(BodyProblem::TooLarge { .. }) => "INPUT_TOO_LARGE",
            EngineError::InvalidBody(_) => "INVALID_JSON",
            EngineError::ContextExceeded(_) => "CONTEXT_EXCEEDED",
            EngineError::PromptPlaceholders { .. } => "PROMPT_VALIDATION_ERROR",
            EngineError::PresetConfig { .. } => "INVALID_PRESET_CONFIG",
            EngineError::Refused { rule, .. } => rule.code(),
            EngineError::NoRoute(_) => "NOT_FOUND",
            EngineError::MethodNotAllowed(_) => "METHOD_NOT_ALLOWED",
            EngineError::UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
            EngineError::Forbidden(_) => "FORBIDDEN",
            EngineError::Conflict(_) => "CONFLICT",
            EngineError::Provider(_) => "PROVIDER_ERROR",
            EngineError::Dependency(_) => "SERVICE_UNAVAILABLE",
            EngineError::Internal(_) => "INTERNAL",
            EngineError::NotBuilt(_) => "NOT_IMPLEMENTED",
        }
    }

    /// The request field the error is about, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            EngineError::NotFound { field, .. } => *field,
            EngineError::InvalidField { field, .. }
            | EngineError::Validation { field, .. }
            | EngineError::PromptPlaceholders { field, .. } => Some(field),
            EngineError::InvalidBody(BodyProblem::TooLarge { field, .. }) => Some(field),
            EngineError::InvalidCursor => Some("cursor"),
            EngineError::UnsupportedMediaType(_) => Some("content-type"),
            EngineError::PresetConfig { source } => source.field(),
            EngineError::Refused { subject, .. } => subject
                .iter()
                .find(|(name, _)| *name == "field")
                .map(|(_, value)| value.as_str()),
            _ => None,
        }
    }
}

impl From<IoError> for EngineError {
    fn from(error: IoError) -> Self {
        tracing::error!(operation = error.operation, error = %error.message, "dependency failure");
        EngineError::Dependency(error)
    }
}

impl From<FieldProblem> for EngineError {
    /// A request field that breaks a post-processing rule: 422 naming the field.
    fn from(problem: FieldProblem) -> Self {
        EngineError::validation(Location::Body, &problem.field, problem.problem)
    }
}

impl From<ListError> for EngineError {
    fn from(error: ListError) -> Self {
        match error {
            ListError::InvalidCursor => EngineError::InvalidCursor,
            ListError::Io(error) => error.into(),
        }
    }
}

fn body_problem_text(problem: &BodyProblem) -> String {
    match problem {
        BodyProblem::Empty => "request body is empty; expected a JSON object".into(),
        BodyProblem::NotUtf8 { valid_up_to } => {
            format!("request body is not valid UTF-8 (at byte {valid_up_to})")
        }
        BodyProblem::NotJson(error) => format!("request body is not valid JSON: {error}"),
        BodyProblem::NotObject => "request body must be a JSON object".into(),
        BodyProblem::TooLarge { field, size, limit } => {
            // A request body (not an upload) this large is sent as an upload instead.
            let hint = match *field {
                "body" | "input" => "; send a larger input with POST /api/v1/uploads",
                _ => "",
            };
            format!("{field}: {size} bytes exceeds the limit of {limit} bytes{hint}")
        }
    }
}

fn context_exceeded_text(figures: &ContextExceeded) -> String {
    match figures.input_tokens {
        Some(input_tokens) => format!(
            "input has {input_tokens} tokens but flavor '{}' allows {} in one pass (context {} − generation {} − prompt {})",
            figures.flavor_name,
            figures.available_tokens,
            figures.context_length,
            figures.max_generation_length,
            figures.prompt_tokens
        ),
        None => format!(
            "flavor '{}' leaves {} tokens for input after generation ({}) and prompt ({}); at least {} are needed",
            figures.flavor_name,
            figures.available_tokens,
            figures.max_generation_length,
            figures.prompt_tokens,
            crate::text::batching::MIN_INPUT_TOKENS
        ),
    }
}

/// The reference's message for a prompt with the wrong number of placeholders.
fn placeholder_text(mode: ProcessingMode, actual: usize) -> String {
    match mode {
        ProcessingMode::SinglePass => format!(
            "Single pass processing requires exactly 1 placeholder ({{}}), but prompt has {actual}"
        ),
        ProcessingMode::Iterative => format!(
            "Iterative processing requires exactly 2 placeholders ({{}} for previous summary and {{}} for new content), but prompt has {actual}"
        ),
        ProcessingMode::MapReduce => format!(
            "Map-reduce processing requires exactly 1 placeholder ({{}} for the chunk), but prompt has {actual}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_code_come_from_the_variant() {
        let cases: Vec<(EngineError, u16, &str)> = vec![
            (
                EngineError::not_found(Resource::Flavor, "x"),
                404,
                "FLAVOR_NOT_FOUND",
            ),
            (
                EngineError::not_found(Resource::Prompt, "x"),
                404,
                "NOT_FOUND",
            ),
            (EngineError::InvalidCursor, 400, "INVALID_REQUEST"),
            (
                EngineError::UnsupportedMediaType("text/plain".into()),
                415,
                "UNSUPPORTED_MEDIA_TYPE",
            ),
            (
                EngineError::InvalidBody(BodyProblem::TooLarge {
                    field: "input",
                    size: 2,
                    limit: 1,
                }),
                413,
                "INPUT_TOO_LARGE",
            ),
            (
                EngineError::InvalidBody(BodyProblem::NotUtf8 { valid_up_to: 3 }),
                400,
                "INVALID_ENCODING",
            ),
            (EngineError::refused(Rule::JobBusy, "busy"), 409, "JOB_BUSY"),
            (
                EngineError::refused(Rule::ResultChanged, "changed"),
                409,
                "RESULT_CHANGED",
            ),
            (
                EngineError::refused(Rule::JobNotCompleted, "queued"),
                400,
                "JOB_NOT_COMPLETED",
            ),
            (
                EngineError::refused(Rule::CurrentVersion, "current"),
                400,
                "CURRENT_VERSION",
            ),
            (
                EngineError::refused(Rule::OriginalVersion, "v1"),
                400,
                "ORIGINAL_VERSION",
            ),
            (
                EngineError::not_found_by(Resource::Version, 7, "version_number"),
                404,
                "VERSION_NOT_FOUND",
            ),
            (
                EngineError::refused(Rule::SystemType, "system"),
                403,
                "SYSTEM_TYPE",
            ),
            (
                EngineError::Dependency(IoError::new("read job", "down")),
                503,
                "SERVICE_UNAVAILABLE",
            ),
        ];
        for (error, status, code) in cases {
            assert_eq!((error.status(), error.code()), (status, code), "{error:?}");
        }
    }

    #[test]
    fn the_field_is_found_wherever_the_variant_keeps_it() {
        assert_eq!(
            EngineError::not_found_by(Resource::Flavor, "x", "flavor_name").field(),
            Some("flavor_name")
        );
        assert_eq!(
            EngineError::refused(Rule::FailoverCycle, "cycle")
                .about("field", "failover_flavor_id")
                .field(),
            Some("failover_flavor_id")
        );
        assert_eq!(EngineError::InvalidCursor.field(), Some("cursor"));
        assert_eq!(
            EngineError::UnsupportedMediaType("application/xml".into()).field(),
            Some("content-type")
        );
        assert_eq!(
            EngineError::Dependency(IoError::new("x", "y")).field(),
            None
        );
    }
}
