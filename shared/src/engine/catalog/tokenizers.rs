//! Tokenizers: which one a flavor counts with, where HuggingFace tokenizers come from, and
//! `/api/v1/tokenizers`.
//!
//! The tiktoken encodings are compiled in. A HuggingFace tokenizer (`owner/name`) is a
//! `tokenizer.json` in the artifacts bucket (`tokenizers/{owner}--{name}/tokenizer.json`,
//! put there once by `infra/tokenizer.sh`), read by a function the first time it needs it
//! and kept for the execution environment; nothing is downloaded from HuggingFace at run
//! time. A file named by a path (`GATEWAY_TOKENIZER_DIR`, bundled with the functions) works
//! too. A flavor or model naming a tokenizer that cannot be loaded is refused when written.

use serde_json::{json, Value};
use uuid::Uuid;

use super::entity::{list, load, Scope};
use crate::domain::{Flavor, Model};
use crate::engine::error::{EngineError, EngineResult, Location, Resource};
use crate::engine::{Gateway, JsonResponse};
use crate::ports::keys::{self, TOKENIZERS_PREFIX};
use crate::ports::IoError;
use crate::tokens::{resolve_tokenizer_name, TokenCounter, TokenizerError, TIKTOKEN_ENCODINGS};

/// Why a tokenizer could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// The store could not be read (worth a retry).
    #[error(transparent)]
    Io(#[from] IoError),
    /// Not compiled in, not in the bucket, or not a valid tokenizer file.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
}

/// Whether `name` is a HuggingFace repo id (`owner/name`), the form kept in the bucket.
pub fn is_repo_id(name: &str) -> bool {
    let mut parts = name.split('/');
    let valid = |part: Option<&str>| {
        part.is_some_and(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
    };
    valid(parts.next()) && valid(parts.next()) && parts.next().is_none()
}

/// Loads the tokenizer `name`: compiled in, already loaded by this process, the bucket's
/// file for a repo id, else a bundled file.
pub async fn load_counter(gateway: &Gateway, name: &str) -> Result<TokenCounter, Unavailable> {
    if let Some(counter) = TokenCounter::cached(name) {
        return Ok(counter);
    }
    if is_repo_id(name) {
        if let Some(json) = gateway.blobs.get(&keys::tokenizer(name)).await? {
            return Ok(TokenCounter::from_huggingface_json(name, &json)?);
        }
    }
    Ok(TokenCounter::load(name)?)
}

/// [`load_counter`], or `cl100k_base` (logged) when `name` cannot be loaded: a job keeps
/// running, and records the tokenizer it really counted with.
pub async fn counter_or_default(gateway: &Gateway, name: &str) -> TokenCounter {
    load_counter(gateway, name).await.unwrap_or_else(|error| {
        tracing::warn!(tokenizer = name, %error, "tokenizer unavailable, counting with cl100k_base");
        TokenCounter::default_counter()
    })
}

/// The token counter of a flavor on its model: the flavor's override, the model's
/// tokenizer, or one derived from the model identifier.
pub async fn counter_for(gateway: &Gateway, flavor: &Flavor, model: &Model) -> TokenCounter {
    let name = resolve_tokenizer_name(
        flavor.tokenizer_override.as_deref(),
        model.tokenizer_name.as_deref(),
        &model.model_identifier,
    );
    counter_or_default(gateway, &name).await
}

/// 422 naming `field` unless the tokenizer it names (if any) can be loaded.
pub async fn check_available(
    gateway: &Gateway,
    field: &str,
    name: Option<&str>,
) -> EngineResult<()> {
    let Some(name) = name.map(str::trim).filter(|name| !name.is_empty()) else {
        return Ok(());
    };
    // A stored tokenizer must still be stored, even if this process loaded it before.
    let stored = if is_repo_id(name) && TokenCounter::cached(name).is_some() {
        gateway.blobs.size(&keys::tokenizer(name)).await?.is_some()
    } else {
        true
    };
    let loaded = if stored {
        load_counter(gateway, name).await
    } else {
        Err(TokenizerError::Unknown(name.to_string()).into())
    };
    match loaded {
        Ok(_) => Ok(()),
        Err(Unavailable::Io(error)) => Err(error.into()),
        Err(Unavailable::Tokenizer(error)) => Err(EngineError::validation(
            Location::Body,
            field,
            format!(
                "tokenizer '{name}' is not available ({error}); use {} or load its tokenizer.json with infra/tokenizer.sh (GET /api/v1/tokenizers lists them)",
                TIKTOKEN_ENCODINGS.join(", ")
            ),
        )),
    }
}

/// `GET /api/v1/tokenizers`: the compiled-in encodings and the HuggingFace tokenizers of
/// the bucket → `{tokenizers: [{id, source_repo, type, size_bytes}], storage_path,
/// total_size_bytes}`.
pub async fn list_tokenizers(gateway: &Gateway) -> EngineResult<JsonResponse> {
    let stored = gateway.blobs.list(TOKENIZERS_PREFIX).await?;
    let mut tokenizers: Vec<Value> = TIKTOKEN_ENCODINGS
        .iter()
        .map(|name| json!({"id": name, "source_repo": name, "type": "tiktoken", "size_bytes": 0}))
        .collect();
    let mut total = 0;
    for (key, size) in &stored {
        let Some(id) = key
            .strip_prefix(TOKENIZERS_PREFIX)
            .and_then(|rest| rest.strip_suffix("/tokenizer.json"))
        else {
            continue;
        };
        total += size;
        tokenizers.push(json!({
            "id": id,
            "source_repo": id.replacen("--", "/", 1),
            "type": "huggingface",
            "size_bytes": size,
        }));
    }
    Ok(JsonResponse::new(
        200,
        json!({
            "tokenizers": tokenizers,
            "storage_path": TOKENIZERS_PREFIX,
            "total_size_bytes": total,
        }),
    ))
}

/// `POST /api/v1/tokenizers/preload/{model_id}`: loads the model's tokenizer (checking that
/// it is available) → `{success, model_identifier, tokenizer_id, tokenizer_type, cached,
/// message}`; an unavailable one is a 422 naming `tokenizer_name`.
pub async fn preload(
    gateway: &Gateway,
    scope: &Scope,
    model_id: Uuid,
) -> EngineResult<JsonResponse> {
    let model: Model = load(gateway.records.as_ref(), model_id, scope).await?;
    let name = resolve_tokenizer_name(
        None,
        model.tokenizer_name.as_deref(),
        &model.model_identifier,
    );
    let cached = TokenCounter::cached(&name).is_some();
    check_available(gateway, "tokenizer_name", Some(&name)).await?;
    let kind = if TIKTOKEN_ENCODINGS.contains(&name.as_str()) {
        "tiktoken"
    } else {
        "huggingface"
    };
    Ok(JsonResponse::new(
        200,
        json!({
            "success": true,
            "model_identifier": model.model_identifier,
            "tokenizer_id": name,
            "tokenizer_type": kind,
            "cached": cached,
            "message": if cached { "Tokenizer already loaded" } else { "Tokenizer loaded" },
        }),
    ))
}

/// `DELETE /api/v1/tokenizers/{id}` (`owner--name` as listed, or `owner%2Fname`): removes
/// a stored tokenizer → `{deleted, freed_bytes}`; 409 while a model or flavor names it, 404
/// when absent. Tokenizers serve the whole deployment: only the operator (no
/// `organization_id`) deletes them, and compiled-in encodings cannot be deleted.
pub async fn delete_tokenizer(
    gateway: &Gateway,
    scope: &Scope,
    id: &str,
) -> EngineResult<JsonResponse> {
    if scope.organization_id.is_some() {
        return Err(EngineError::Forbidden(
            "tokenizers serve every organization: delete them without organization_id".into(),
        ));
    }
    let repo = if id.contains('/') {
        id.to_string()
    } else {
        id.replacen("--", "/", 1)
    };
    if TIKTOKEN_ENCODINGS.contains(&repo.as_str()) {
        return Err(EngineError::Forbidden(format!(
            "tokenizer '{repo}' is compiled in and cannot be deleted"
        )));
    }
    if !is_repo_id(&repo) {
        return Err(EngineError::not_found(Resource::Tokenizer, id));
    }
    let key = keys::tokenizer(&repo);
    let Some(size) = gateway.blobs.size(&key).await? else {
        return Err(EngineError::not_found(Resource::Tokenizer, id));
    };
    let store = gateway.records.as_ref();
    let models: Vec<Model> = list(store, &Scope::default()).await?;
    let flavors: Vec<Flavor> = list(store, &Scope::default()).await?;
    let users: Vec<String> = models
        .iter()
        .filter(|model| model.tokenizer_name.as_deref() == Some(repo.as_str()))
        .map(|model| format!("model '{}'", model.model_name))
        .chain(
            flavors
                .iter()
                .filter(|flavor| flavor.tokenizer_override.as_deref() == Some(repo.as_str()))
                .map(|flavor| format!("flavor '{}'", flavor.name)),
        )
        .collect();
    if !users.is_empty() {
        return Err(EngineError::Conflict(format!(
            "Cannot delete tokenizer '{repo}': it is used by {}",
            users.join(", ")
        )));
    }
    gateway.blobs.delete(&key).await?;
    Ok(JsonResponse::new(
        200,
        json!({"deleted": repo, "freed_bytes": size}),
    ))
}

#[cfg(test)]
#[path = "tokenizers_tests.rs"]
mod tests;
