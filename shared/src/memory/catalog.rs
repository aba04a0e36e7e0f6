//! The catalog in memory ([`Catalog`] and [`CatalogStore`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::json;
use uuid::Uuid;

use crate::domain::{Flavor, Model, Provider, Service};
use crate::ports::{
    Catalog, CatalogStore, CatalogWrite, Expect, IoError, IoResult, Record, RecordKind, WriteError,
};

use super::support::lock;

/// One stored catalog item: a record or a unique-key claim.
#[derive(Debug, Clone)]
enum Item {
    Record(Record),
    Claim { owner: Uuid },
}

/// Most writes DynamoDB accepts in one transaction.
const MAX_TRANSACTION_WRITES: usize = 100;

/// Keys of a record, as in the DynamoDB catalog (flavors under their service).
fn record_key(kind: RecordKind, id: Uuid, parent: Option<Uuid>) -> (String, String) {
    match (kind, parent) {
        (RecordKind::Flavor, Some(service)) => {
            (format!("SERVICE#{service}"), format!("FLAVOR#{id}"))
        }
        _ => (format!("{}#{id}", kind.tag()), format!("#{}", kind.tag())),
    }
}

fn claim_key(key: &str) -> (String, String) {
    (format!("UNIQUE#{key}"), "#UNIQUE".to_string())
}

/// The catalog in memory: [`CatalogStore`] records and the typed [`Catalog`] reads served
/// from the same items, like [`crate::aws::DynamoCatalog`].
#[derive(Debug, Default)]
pub struct MemoryCatalog {
    items: Mutex<BTreeMap<(String, String), Item>>,
    provider_reads: std::sync::atomic::AtomicUsize,
}

impl MemoryCatalog {
    /// How many providers were read through [`Catalog::provider`].
    pub fn reads(&self) -> usize {
        self.provider_reads
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The owner of a claimed unique key.
    pub fn claim_owner(&self, key: &str) -> Option<Uuid> {
        match lock(&self.items).get(&claim_key(key)) {
            Some(Item::Claim { owner }) => Some(*owner),
            _ => None,
        }
    }

    fn typed<T: DeserializeOwned>(&self, pk: String, sk: String) -> IoResult<Option<T>> {
        match lock(&self.items).get(&(pk, sk)) {
            Some(Item::Record(record)) => serde_json::from_value(record.body.clone())
                .map(Some)
                .map_err(|e| IoError::new("decode catalog item", e)),
            _ => Ok(None),
        }
    }

    /// The key a write targets and whether its condition holds against `items`; `Err` is
    /// the refusal of the whole transaction.
    fn check(
        items: &BTreeMap<(String, String), Item>,
        write: &CatalogWrite,
    ) -> Result<(), WriteError> {
        match write {
            CatalogWrite::Put { record, expect } => {
                let current = items.get(&record_key(record.kind, record.id, record.parent));
                let holds = match expect {
                    Expect::New => current.is_none(),
                    Expect::UpdatedAt(seen) => matches!(
                        current,
                        Some(Item::Record(stored))
                            if stored.body.get("updated_at").and_then(|v| v.as_str()) == Some(seen)
                    ),
                };
                if holds {
                    Ok(())
                } else {
                    Err(WriteError::Stale)
                }
            }
            // `attribute_not_exists(pk) OR #owner = :owner`
            CatalogWrite::Claim { key, owner } => match items.get(&claim_key(key)) {
                None => Ok(()),
                Some(Item::Claim { owner: holder }) if holder == owner => Ok(()),
                Some(_) => Err(WriteError::Taken(key.clone())),
            },
            CatalogWrite::Transfer { key, from, .. } => match (items.get(&claim_key(key)), from) {
                (None, None) => Ok(()),
                (Some(Item::Claim { owner: holder }), Some(from)) if holder == from => Ok(()),
                _ => Err(WriteError::Taken(key.clone())),
            },
            CatalogWrite::Delete { .. } | CatalogWrite::Release { .. } => Ok(()),
        }
    }
}

fn write_key(write: &CatalogWrite) -> (String, String) {
    match write {
        CatalogWrite::Put { record, .. } => record_key(record.kind, record.id, record.parent),
        CatalogWrite::Delete { kind, id, parent } => record_key(*kind, *id, *parent),
        CatalogWrite::Claim { key, .. }
        | CatalogWrite::Release { key }
        | CatalogWrite::Transfer { key, .. } => claim_key(key),
    }
}

#[async_trait]
impl Catalog for MemoryCatalog {
    async fn service(&self, id: Uuid) -> IoResult<Option<Service>> {
        let (pk, sk) = record_key(RecordKind::Service, id, None);
        self.typed(pk, sk)
    }

    async fn flavor(&self, service_id: Uuid, flavor_id: Uuid) -> IoResult<Option<Flavor>> {
        let (pk, sk) = record_key(RecordKind::Flavor, flavor_id, Some(service_id));
        self.typed(pk, sk)
    }

    /// The service's flavors in key order (by id), as the partition query returns them.
    async fn flavors(&self, service_id: Uuid) -> IoResult<Vec<Flavor>> {
        let pk = format!("SERVICE#{service_id}");
        lock(&self.items)
            .iter()
            .filter(|((item_pk, sk), _)| *item_pk == pk && sk.starts_with("FLAVOR#"))
            .filter_map(|(_, item)| match item {
                Item::Record(record) => Some(record),
                Item::Claim { .. } => None,
            })
            .map(|record| {
                serde_json::from_value(record.body.clone())
                    .map_err(|e| IoError::new("decode catalog item", e))
            })
            .collect()
    }

    async fn model(&self, id: Uuid) -> IoResult<Option<Model>> {
        let (pk, sk) = record_key(RecordKind::Model, id, None);
        self.typed(pk, sk)
    }

    async fn provider(&self, id: Uuid) -> IoResult<Option<Provider>> {
        self.provider_reads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (pk, sk) = record_key(RecordKind::Provider, id, None);
        self.typed(pk, sk)
    }
}

#[async_trait]
impl CatalogStore for MemoryCatalog {
    /// A record by kind and id; a flavor is found by id whatever its service (the
    /// adapter's `by_kind` index).
    async fn record(&self, kind: RecordKind, id: Uuid) -> IoResult<Option<Record>> {
        let items = lock(&self.items);
        if kind != RecordKind::Flavor {
            return Ok(match items.get(&record_key(kind, id, None)) {
                Some(Item::Record(record)) => Some(record.clone()),
                _ => None,
            });
        }
        Ok(items.values().find_map(|item| match item {
            Item::Record(record) if record.kind == kind && record.id == id => Some(record.clone()),
            _ => None,
        }))
    }

    /// Every record of a kind, by id (the order of the `by_kind` index).
    async fn records(&self, kind: RecordKind) -> IoResult<Vec<Record>> {
        let mut records: Vec<Record> = lock(&self.items)
            .values()
            .filter_map(|item| match item {
                Item::Record(record) if record.kind == kind => Some(record.clone()),
                _ => None,
            })
            .collect();
        records.sort_by_key(|record| record.id);
        Ok(records)
    }

    /// All or nothing, like a DynamoDB transaction: at most 100 writes and one per item
    /// (else an [`IoError`]); the first write (in order) whose condition fails refuses the
    /// change, [`WriteError::Taken`] for a claim and [`WriteError::Stale`] otherwise.
    /// A put's body must be a JSON object; its `id` is the record's.
    async fn write(&self, writes: Vec<CatalogWrite>) -> Result<(), WriteError> {
        if writes.is_empty() {
            return Ok(());
        }
        if writes.len() > MAX_TRANSACTION_WRITES {
            return Err(IoError::new(
                "write catalog",
                "ValidationException: too many items in one transaction",
            )
            .into());
        }
        let mut targets = HashSet::new();
        for write in &writes {
            if let CatalogWrite::Put { record, .. } = write {
                if !record.body.is_object() {
                    return Err(IoError::new("encode catalog item", "body is not an object").into());
                }
            }
            if !targets.insert(write_key(write)) {
                return Err(IoError::new(
                    "write catalog",
                    "ValidationException: multiple operations on one item",
                )
                .into());
            }
        }
        let mut items = lock(&self.items);
        for write in &writes {
            Self::check(&items, write)?;
        }
        for write in writes {
            let key = write_key(&write);
            match write {
                CatalogWrite::Put { mut record, .. } => {
                    // Only a flavor's key holds its parent; the stored body carries the id.
                    if record.kind != RecordKind::Flavor {
                        record.parent = None;
                    }
                    if let Some(body) = record.body.as_object_mut() {
                        body.insert("id".into(), json!(record.id));
                        body.remove("kind");
                    }
                    items.insert(key, Item::Record(record));
                }
                CatalogWrite::Claim { owner, .. } | CatalogWrite::Transfer { to: owner, .. } => {
                    items.insert(key, Item::Claim { owner });
                }
                CatalogWrite::Delete { .. } | CatalogWrite::Release { .. } => {
                    items.remove(&key);
                }
            }
        }
        Ok(())
    }
}
