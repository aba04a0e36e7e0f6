//! The generic life of a catalog record: parse and validate, load with tenancy, create,
//! update (JSON merge of a PATCH body), delete, each as one atomic write with the unique
//! keys it claims or releases.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::engine::error::{EngineError, EngineResult, Location, Resource};
use crate::ports::{CatalogStore, CatalogWrite, Expect, Record, RecordKind, WriteError};

/// The organization a request acts for (query `organization_id`). Without one the caller
/// is the operator and sees everything; with one it sees its own objects and global ones,
/// and may change only its own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    pub organization_id: Option<String>,
}

impl Scope {
    /// A scope for `organization_id` (None = operator).
    pub fn new(organization_id: Option<&str>) -> Self {
        Scope {
            organization_id: organization_id.map(str::to_string),
        }
    }

    /// Whether an object owned by `owner` (None = global) is visible.
    pub fn can_see(&self, owner: Option<&str>) -> bool {
        match (&self.organization_id, owner) {
            (None, _) | (_, None) => true,
            (Some(me), Some(owner)) => me == owner,
        }
    }

    /// Whether an object owned by `owner` may be changed or deleted.
    pub fn can_change(&self, owner: Option<&str>) -> bool {
        match (&self.organization_id, owner) {
            (None, _) => true,
            (Some(me), Some(owner)) => me == owner,
            (Some(_), None) => false,
        }
    }

    /// 404 for an object this scope cannot see, 403 for a global object it cannot change.
    pub fn check_change(&self, what: Resource, id: Uuid, owner: Option<&str>) -> EngineResult<()> {
        if !self.can_see(owner) {
            return Err(EngineError::not_found(what, id));
        }
        if !self.can_change(owner) {
            return Err(EngineError::Forbidden(format!(
                "{} '{id}' is global: change it without organization_id",
                what.name()
            )));
        }
        Ok(())
    }
}

/// A catalog resource.
pub trait Entity: Serialize + DeserializeOwned + Send + Sync {
    const KIND: RecordKind;
    /// What it is, for messages and 404s.
    const RESOURCE: Resource;
    fn id(&self) -> Uuid;
    /// The record's parent (a flavor's service).
    fn parent(&self) -> Option<Uuid> {
        None
    }
    fn organization_id(&self) -> Option<&str>;
    fn updated_at(&self) -> &str;
    /// Unique keys this object holds, each with the 409 message when it is taken.
    fn unique_keys(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Checks values serde cannot (ranges, URLs, placeholders); the error names the field.
    fn validate(&self) -> EngineResult<()> {
        Ok(())
    }
    /// The API representation.
    fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Parses a request body as a JSON object (422 otherwise).
pub fn parse_object(body: &[u8]) -> EngineResult<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err(EngineError::validation(
            Location::Body,
            "",
            "must be a JSON object",
        )),
        Err(error) => Err(EngineError::validation(
            Location::Body,
            "",
            format!("invalid JSON: {error}"),
        )),
    }
}

/// Deserializes `value` as `T`; a wrong type or missing field is a 422 naming its path.
pub fn from_json<T: DeserializeOwned>(value: Value) -> EngineResult<T> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        use serde_path_to_error::Segment;
        let mut parts: Vec<String> = error
            .path()
            .iter()
            .filter_map(|segment| match segment {
                Segment::Seq { index } => Some(index.to_string()),
                Segment::Map { key } => Some(key.clone()),
                Segment::Enum { variant } => Some(variant.clone()),
                Segment::Unknown => None,
            })
            .collect();
        let message = error.inner().to_string();
        // serde names a missing field in the message, not in the path.
        if let Some(rest) = message.strip_prefix("missing field `") {
            parts.push(rest.split('`').next().unwrap_or_default().to_string());
        }
        EngineError::validation(Location::Body, &parts.join("."), message)
    })
}

/// Applies a PATCH body to the current JSON of an object: given fields replace current
/// ones (null clears an optional field); `protected` fields keep their current value.
pub fn merge_patch(mut current: Value, patch: Map<String, Value>, protected: &[&str]) -> Value {
    if let Some(fields) = current.as_object_mut() {
        for (name, value) in patch {
            if !protected.contains(&name.as_str()) {
                fields.insert(name, value);
            }
        }
    }
    current
}

/// Fields a client never sets.
pub const SERVER_FIELDS: &[&str] = &["id", "created_at", "updated_at", "organization_id"];

/// Largest catalog object, as JSON (a DynamoDB item holds at most 400 KB).
pub const MAX_RECORD_BYTES: usize = 300_000;

/// The record of an entity (422 when it is larger than [`MAX_RECORD_BYTES`]).
pub fn record_of<T: Entity>(entity: &T) -> EngineResult<Record> {
    let body =
        serde_json::to_value(entity).map_err(|error| EngineError::internal("encode", error))?;
    let size = body.to_string().len();
    if size > MAX_RECORD_BYTES {
        return Err(EngineError::validation(
            Location::Body,
            "",
            format!("the object is {size} bytes as JSON; the limit is {MAX_RECORD_BYTES}"),
        ));
    }
    Ok(Record {
        kind: T::KIND,
        id: entity.id(),
        parent: entity.parent(),
        body,
    })
}

/// The JSON of a stored object about to be patched, its `updated_at` set to `now`.
pub fn current_json<T: Entity>(entity: &T, now: &str) -> EngineResult<Value> {
    let mut current =
        serde_json::to_value(entity).map_err(|error| EngineError::internal("encode", error))?;
    current["updated_at"] = Value::String(now.to_string());
    Ok(current)
}

/// Decodes a stored record.
pub fn decode<T: Entity>(record: Record) -> EngineResult<T> {
    serde_json::from_value(record.body).map_err(|error| {
        tracing::error!(kind = T::RESOURCE.name(), id = %record.id, %error, "undecodable catalog record");
        EngineError::Internal(format!("{} '{}' cannot be read", T::RESOURCE.name(), record.id))
    })
}

/// Loads an object visible to `scope` (404 otherwise).
pub async fn load<T: Entity>(store: &dyn CatalogStore, id: Uuid, scope: &Scope) -> EngineResult<T> {
    let record = store
        .record(T::KIND, id)
        .await?
        .ok_or_else(|| EngineError::not_found(T::RESOURCE, id))?;
    let entity: T = decode(record)?;
    if !scope.can_see(entity.organization_id()) {
        return Err(EngineError::not_found(T::RESOURCE, id));
    }
    Ok(entity)
}

/// Loads an object `scope` may change (404 if invisible, 403 if global).
pub async fn load_for_change<T: Entity>(
    store: &dyn CatalogStore,
    id: Uuid,
    scope: &Scope,
) -> EngineResult<T> {
    let entity: T = load(store, id, &Scope::default()).await?;
    scope.check_change(T::RESOURCE, id, entity.organization_id())?;
    Ok(entity)
}

/// Every object visible to `scope`.
pub async fn list<T: Entity>(store: &dyn CatalogStore, scope: &Scope) -> EngineResult<Vec<T>> {
    let mut entities = Vec::new();
    for record in store.records(T::KIND).await? {
        let entity: T = decode(record)?;
        if scope.can_see(entity.organization_id()) {
            entities.push(entity);
        }
    }
    Ok(entities)
}

/// The writes that create `entity` with its unique keys.
pub fn create_writes<T: Entity>(entity: &T) -> EngineResult<Vec<CatalogWrite>> {
    entity.validate()?;
    let mut writes = vec![CatalogWrite::Put {
        record: record_of(entity)?,
        expect: Expect::New,
    }];
    writes.extend(
        entity
            .unique_keys()
            .into_iter()
            .map(|(key, _)| CatalogWrite::Claim {
                key,
                owner: entity.id(),
            }),
    );
    Ok(writes)
}

/// The writes that replace `old` with `new`, claiming and releasing changed unique keys.
pub fn update_writes<T: Entity>(old: &T, new: &T) -> EngineResult<Vec<CatalogWrite>> {
    new.validate()?;
    let old_keys: Vec<String> = old.unique_keys().into_iter().map(|(k, _)| k).collect();
    let new_keys: Vec<String> = new.unique_keys().into_iter().map(|(k, _)| k).collect();
    let mut writes = vec![CatalogWrite::Put {
        record: record_of(new)?,
        expect: Expect::UpdatedAt(old.updated_at().to_string()),
    }];
    for key in new_keys.iter().filter(|key| !old_keys.contains(key)) {
        writes.push(CatalogWrite::Claim {
            key: key.clone(),
            owner: new.id(),
        });
    }
    for key in old_keys.into_iter().filter(|key| !new_keys.contains(key)) {
        writes.push(CatalogWrite::Release { key });
    }
    Ok(writes)
}

/// The writes that delete `entity` and free its unique keys.
pub fn delete_writes<T: Entity>(entity: &T) -> Vec<CatalogWrite> {
    let mut writes = vec![CatalogWrite::Delete {
        kind: T::KIND,
        id: entity.id(),
        parent: entity.parent(),
    }];
    writes.extend(
        entity
            .unique_keys()
            .into_iter()
            .map(|(key, _)| CatalogWrite::Release { key }),
    );
    writes
}

/// Applies `writes` atomically; a taken unique key is a 409 with the message `conflicts`
/// gives for it, a concurrent change a 409 asking to retry.
pub async fn commit(
    store: &dyn CatalogStore,
    writes: Vec<CatalogWrite>,
    conflicts: &[(String, String)],
) -> EngineResult<()> {
    const MAX_WRITES: usize = 100;
    if writes.len() > MAX_WRITES {
        return Err(EngineError::validation(
            Location::Body,
            "",
            format!("too many objects in one change (at most {MAX_WRITES} writes)"),
        ));
    }
    match store.write(writes).await {
        Ok(()) => Ok(()),
        Err(WriteError::Taken(key)) => {
            let message = conflicts
                .iter()
                .find(|(k, _)| *k == key)
                .map_or_else(|| format!("'{key}' already exists"), |(_, m)| m.clone());
            Err(EngineError::Conflict(message))
        }
        Err(WriteError::Stale) => Err(EngineError::Conflict(
            "the object was changed by another request; read it again and retry".into(),
        )),
        Err(WriteError::Io(error)) => Err(error.into()),
    }
}

/// A unique key within an organization (`*` = global): `kind:org:lower-cased value`.
pub fn scoped_key(kind: &str, organization_id: Option<&str>, value: &str) -> String {
    format!(
        "{kind}:{}:{}",
        organization_id.unwrap_or("*"),
        value.trim().to_lowercase()
    )
}

/// Fills the server fields of a create request body: a new id, timestamps, and the
/// scope's organization unless the body names one (which must then match the scope).
pub fn new_object(
    mut fields: Map<String, Value>,
    scope: &Scope,
    now: &str,
) -> EngineResult<Map<String, Value>> {
    for name in ["id", "created_at", "updated_at"] {
        fields.remove(name);
    }
    fields.insert("id".into(), Value::String(Uuid::new_v4().to_string()));
    fields.insert("created_at".into(), Value::String(now.to_string()));
    fields.insert("updated_at".into(), Value::String(now.to_string()));
    let body_org = match fields.get("organization_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(org)) => Some(org.clone()),
        Some(_) => {
            return Err(EngineError::validation(
                Location::Body,
                "organization_id",
                "must be a string",
            ))
        }
    };
    let organization_id = match (body_org, scope.organization_id.clone()) {
        (Some(body), Some(query)) if body != query => {
            return Err(EngineError::validation(
                Location::Body,
                "organization_id",
                "differs from the organization_id of the query",
            ))
        }
        (Some(org), _) | (None, Some(org)) => Some(org),
        (None, None) => None,
    };
    if let Some(org) = &organization_id {
        crate::engine::catalog::validate::validate_organization_id(org)
            .map_err(|error| EngineError::validation(Location::Body, "organization_id", error))?;
    }
    fields.insert(
        "organization_id".into(),
        organization_id.map_or(Value::Null, Value::String),
    );
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scopes_see_own_and_global_and_change_only_own() {
        let org = Scope::new(Some("a"));
        assert!(org.can_see(None) && org.can_see(Some("a")) && !org.can_see(Some("b")));
        assert!(!org.can_change(None) && org.can_change(Some("a")));
        let operator = Scope::default();
        assert!(operator.can_see(Some("b")) && operator.can_change(None));
        assert_eq!(
            org.check_change(Resource::Prompt, Uuid::nil(), Some("b"))
                .unwrap_err()
                .status(),
            404
        );
        assert_eq!(
            org.check_change(Resource::Prompt, Uuid::nil(), None)
                .unwrap_err()
                .status(),
            403
        );
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        inner: Vec<Inner>,
    }
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Inner {
        temperature: f32,
    }

    #[test]
    fn type_errors_name_the_field_path() {
        let error = from_json::<Sample>(
            json!({"name": "x", "inner": [{"temperature": 1}, {"temperature": "hot"}]}),
        )
        .unwrap_err();
        assert_eq!(error.status(), 422);
        assert_eq!(error.field().unwrap(), "inner.1.temperature");
        let missing = from_json::<Sample>(json!({"inner": []})).unwrap_err();
        assert_eq!(missing.field().unwrap(), "name");
    }

    #[test]
    fn patch_keeps_protected_fields() {
        let merged = merge_patch(
            json!({"id": "1", "name": "a", "note": "n"}),
            json!({"id": "2", "name": "b", "note": null})
                .as_object()
                .unwrap()
                .clone(),
            SERVER_FIELDS,
        );
        assert_eq!(merged, json!({"id": "1", "name": "b", "note": null}));
    }

    #[test]
    fn new_objects_take_the_scope_organization() {
        let scope = Scope::new(Some("org-a"));
        let fields = new_object(Map::new(), &scope, "t").unwrap();
        assert_eq!(fields["organization_id"], "org-a");
        assert!(Uuid::parse_str(fields["id"].as_str().unwrap()).is_ok());
        let clash = json!({"organization_id": "org-b"})
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(new_object(clash, &scope, "t").unwrap_err().status(), 422);
    }
}
