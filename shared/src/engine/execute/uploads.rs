//! Inputs too large for a request body: `POST /api/v1/uploads` gives a presigned URL the
//! client PUTs the file to, then execute (or validate-execution) names it with
//! `input_upload_id`. An upload belongs to the organization that made it and lives a day;
//! its objects (`uploads/{id}/`) expire with the bucket's lifecycle rule.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use super::ExecuteRequest;
use crate::engine::error::{BodyProblem, EngineError, EngineResult, Resource, Rule};
use crate::engine::{Gateway, JsonResponse};
use crate::ports::keys;

/// How long the upload URL accepts the file.
const URL_LIFETIME: Duration = Duration::from_secs(3600);
/// How long an upload can be named by execute.
const UPLOAD_LIFETIME: chrono::Duration = chrono::Duration::hours(24);

/// `POST /api/v1/uploads?organization_id=` → 201 `{upload_id, url, method, expires_at,
/// url_expires_at, max_bytes}`.
pub async fn create(
    gateway: &Gateway,
    organization_id: Option<&str>,
) -> EngineResult<JsonResponse> {
    let id = Uuid::new_v4();
    let now = chrono::Utc::now();
    let stamp =
        |at: chrono::DateTime<chrono::Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let expires_at = stamp(now + UPLOAD_LIFETIME);
    let meta = json!({
        "upload_id": id,
        "organization_id": organization_id,
        "created_at": stamp(now),
        "expires_at": expires_at,
    });
    gateway
        .blobs
        .put(
            &keys::upload_meta(id),
            meta.to_string().into_bytes(),
            "application/json",
        )
        .await?;
    let url = gateway
        .blobs
        .presigned_put(&keys::upload_data(id), URL_LIFETIME)
        .await?;
    tracing::info!(upload_id = %id, "upload created");
    Ok(JsonResponse::new(
        201,
        json!({
            "upload_id": id,
            "url": url,
            "method": "PUT",
            "expires_at": expires_at,
            "url_expires_at": stamp(now + chrono::Duration::from_std(URL_LIFETIME).unwrap_or_default()),
            "max_bytes": gateway.limits.max_upload_bytes,
        }),
    ))
}

const FIELD: &str = "input_upload_id";

/// Fills the input of a request that names an upload: read into `input` when it is at most
/// `Limits::inline_plan_bytes`, else only checked and left to the job's first step
/// (`deferred_upload`).
pub async fn resolve_input(gateway: &Gateway, request: &mut ExecuteRequest) -> EngineResult<()> {
    let Some(id) = request.input_upload_id else {
        return Ok(());
    };
    let size = check(gateway, request.organization_id.as_deref(), id).await?;
    if size as usize > gateway.limits.inline_plan_bytes {
        request.deferred_upload = Some(size);
    } else {
        request.input = read_checked(gateway, id).await?;
    }
    Ok(())
}

/// The size of upload `id` for `organization_id`: 404 when unknown or another
/// organization's, 400 when expired or still empty, 413 above the upload limit. Errors
/// name `input_upload_id`.
async fn check(gateway: &Gateway, organization_id: Option<&str>, id: Uuid) -> EngineResult<u64> {
    let unknown = || EngineError::not_found_by(Resource::Upload, id, FIELD);
    let meta = gateway
        .blobs
        .get(&keys::upload_meta(id))
        .await?
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .ok_or_else(unknown)?;
    if meta["organization_id"].as_str() != organization_id {
        return Err(unknown());
    }
    let expired = meta["expires_at"]
        .as_str()
        .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
        .is_none_or(|at| at < chrono::Utc::now());
    if expired {
        return Err(EngineError::refused(
            Rule::UploadExpired,
            format!("upload {id} expired; create a new one"),
        )
        .about("field", FIELD));
    }
    let Some(size) = gateway.blobs.size(&keys::upload_data(id)).await? else {
        return Err(EngineError::refused(
            Rule::UploadEmpty,
            format!("nothing was uploaded to upload {id} yet: PUT the file to its url first"),
        )
        .about("field", FIELD));
    };
    let limit = gateway.limits.max_upload_bytes;
    if size as usize > limit {
        return Err(EngineError::InvalidBody(BodyProblem::TooLarge {
            field: FIELD,
            size: size as usize,
            limit,
        }));
    }
    if size == 0 {
        return Err(empty(id));
    }
    Ok(size)
}

async fn read_checked(gateway: &Gateway, id: Uuid) -> EngineResult<String> {
    let bytes = gateway
        .blobs
        .get(&keys::upload_data(id))
        .await?
        .ok_or_else(|| EngineError::not_found_by(Resource::Upload, id, FIELD))?;
    let text = String::from_utf8(bytes).map_err(|error| {
        EngineError::InvalidBody(BodyProblem::NotUtf8 {
            valid_up_to: error.utf8_error().valid_up_to(),
        })
    })?;
    if text.trim().is_empty() {
        return Err(empty(id));
    }
    Ok(text)
}

fn empty(id: Uuid) -> EngineError {
    EngineError::refused(Rule::UploadEmpty, format!("upload {id} holds no text"))
        .about("field", FIELD)
}
