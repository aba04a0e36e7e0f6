//! Catalog records in DynamoDB (layout in `docs/local-contract.md`): typed reads for the
//! engine ([`Catalog`]) and records for the catalog API ([`CatalogStore`]), with unique
//! keys claimed in the same transaction as the records.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use uuid::Uuid;

use super::sdk_error;
use crate::domain::{Flavor, Model, Provider, Service};
use crate::ports::{
    Catalog, CatalogStore, CatalogWrite, Expect, IoError, IoResult, Record, RecordKind, WriteError,
};

/// Catalog items in DynamoDB (layout in `docs/local-contract.md`).
#[derive(Clone, Debug)]
pub struct DynamoCatalog {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoCatalog {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoCatalog {
            client,
            table: table.into(),
        }
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        pk: String,
        sk: &str,
    ) -> IoResult<Option<T>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk))
            .key("sk", AttributeValue::S(sk.to_string()))
            .send()
            .await
            .map_err(sdk_error("read catalog"))?;
        output.item.map(decode_catalog_item).transpose()
    }
}

impl DynamoCatalog {
    /// Writes (creates or replaces) a catalog entity under `pk`/`sk`.
    async fn put<T: serde::Serialize>(&self, pk: String, sk: String, entity: &T) -> IoResult<()> {
        let mut item = encode_catalog_item(entity)?;
        let kind = if sk.starts_with("FLAVOR#") {
            "FLAVOR"
        } else {
            pk.split('#').next().unwrap_or_default()
        };
        item.insert("kind".into(), AttributeValue::S(kind.to_string()));
        item.insert("pk".into(), AttributeValue::S(pk));
        item.insert("sk".into(), AttributeValue::S(sk));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(sdk_error("write catalog"))?;
        Ok(())
    }

    /// Writes a service (without its flavors).
    pub async fn put_service(&self, service: &Service) -> IoResult<()> {
        self.put(
            format!("SERVICE#{}", service.id),
            "#SERVICE".into(),
            service,
        )
        .await
    }

    /// Writes a flavor under its service.
    pub async fn put_flavor(&self, flavor: &Flavor) -> IoResult<()> {
        self.put(
            format!("SERVICE#{}", flavor.service_id),
            format!("FLAVOR#{}", flavor.id),
            flavor,
        )
        .await
    }

    /// Writes a model.
    pub async fn put_model(&self, model: &Model) -> IoResult<()> {
        self.put(format!("MODEL#{}", model.id), "#MODEL".into(), model)
            .await
    }

    /// Writes a provider.
    pub async fn put_provider(&self, provider: &Provider) -> IoResult<()> {
        self.put(
            format!("PROVIDER#{}", provider.id),
            "#PROVIDER".into(),
            provider,
        )
        .await
    }
}

/// Fields holding a client's free-form JSON. They are stored as JSON text (attribute
/// `<field>__json`), not as nested DynamoDB maps: arbitrary JSON may nest deeper than
/// DynamoDB's 32 levels, and maps whose keys are type tags (`M`, `L`, `S`, ...) are
/// misread by the emulator. Items written before keep their native form and still read.
const FREE_FORM_FIELDS: [&str; 4] = ["metadata", "custom_params", "description", "config"];

fn json_attribute(field: &str) -> String {
    format!("{field}__json")
}

/// The DynamoDB item of a catalog entity, free-form fields as JSON text.
fn encode_catalog_item<T: serde::Serialize>(
    entity: &T,
) -> IoResult<HashMap<String, AttributeValue>> {
    let mut body =
        serde_json::to_value(entity).map_err(|e| IoError::new("encode catalog item", e))?;
    if let Some(fields) = body.as_object_mut() {
        for field in FREE_FORM_FIELDS {
            if let Some(value) = fields.remove(field) {
                fields.insert(
                    json_attribute(field),
                    serde_json::Value::String(value.to_string()),
                );
            }
        }
    }
    serde_dynamo::to_item(body).map_err(|e| IoError::new("encode catalog item", e))
}

fn decode_catalog_item<T: serde::de::DeserializeOwned>(
    mut item: HashMap<String, AttributeValue>,
) -> IoResult<T> {
    item.remove("pk");
    item.remove("sk");
    for field in FREE_FORM_FIELDS {
        if let Some(AttributeValue::S(text)) = item.remove(&json_attribute(field)) {
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| IoError::new("decode catalog item", e))?;
            let value = serde_dynamo::to_attribute_value(value)
                .map_err(|e| IoError::new("decode catalog item", e))?;
            item.insert(field.to_string(), value);
        }
    }
    serde_dynamo::from_item(item).map_err(|e| IoError::new("decode catalog item", e))
}

#[async_trait]
impl Catalog for DynamoCatalog {
    async fn service(&self, id: Uuid) -> IoResult<Option<Service>> {
        self.get(format!("SERVICE#{id}"), "#SERVICE").await
    }

    async fn flavor(&self, service_id: Uuid, flavor_id: Uuid) -> IoResult<Option<Flavor>> {
        self.get(
            format!("SERVICE#{service_id}"),
            &format!("FLAVOR#{flavor_id}"),
        )
        .await
    }

    async fn flavors(&self, service_id: Uuid) -> IoResult<Vec<Flavor>> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :flavor)")
            .expression_attribute_values(":pk", AttributeValue::S(format!("SERVICE#{service_id}")))
            .expression_attribute_values(":flavor", AttributeValue::S("FLAVOR#".into()))
            .send()
            .await
            .map_err(sdk_error("list flavors"))?;
        output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(decode_catalog_item)
            .collect()
    }

    async fn model(&self, id: Uuid) -> IoResult<Option<Model>> {
        self.get(format!("MODEL#{id}"), "#MODEL").await
    }

    async fn provider(&self, id: Uuid) -> IoResult<Option<Provider>> {
        self.get(format!("PROVIDER#{id}"), "#PROVIDER").await
    }
}

/// GSI of the catalog table listing records by kind: hash `kind`, range `id`.
const KIND_INDEX: &str = "by_kind";

/// Keys of a catalog record: `{KIND}#{id}` / `#{KIND}`; flavors live in their service's
/// partition, `SERVICE#{service}` / `FLAVOR#{id}`.
fn record_key(kind: RecordKind, id: Uuid, parent: Option<Uuid>) -> (String, String) {
    match (kind, parent) {
        (RecordKind::Flavor, Some(service)) => {
            (format!("SERVICE#{service}"), format!("FLAVOR#{id}"))
        }
        _ => (format!("{}#{id}", kind.tag()), format!("#{}", kind.tag())),
    }
}

fn key_map(pk: String, sk: String) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_string(), AttributeValue::S(pk)),
        ("sk".to_string(), AttributeValue::S(sk)),
    ])
}

fn claim_key(key: &str) -> HashMap<String, AttributeValue> {
    key_map(format!("UNIQUE#{key}"), "#UNIQUE".to_string())
}

fn record_from_item(kind: RecordKind, item: HashMap<String, AttributeValue>) -> IoResult<Record> {
    let parent = match item.get("sk") {
        Some(AttributeValue::S(sk)) if sk.starts_with("FLAVOR#") => match item.get("pk") {
            Some(AttributeValue::S(pk)) => pk
                .strip_prefix("SERVICE#")
                .and_then(|id| Uuid::parse_str(id).ok()),
            _ => None,
        },
        _ => None,
    };
    let mut body: serde_json::Value = decode_catalog_item(item)?;
    if let Some(fields) = body.as_object_mut() {
        fields.remove("kind");
    }
    let id = body
        .get("id")
        .and_then(serde_json::Value::as_str)
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| IoError::new("decode catalog item", "record without a valid id"))?;
    Ok(Record {
        kind,
        id,
        parent,
        body,
    })
}

impl DynamoCatalog {
    fn transact_item(&self, write: CatalogWrite) -> IoResult<TransactWriteItem> {
        let built = match write {
            CatalogWrite::Put { record, expect } => {
                let (pk, sk) = record_key(record.kind, record.id, record.parent);
                let mut item = encode_catalog_item(&record.body)?;
                item.insert("kind".into(), AttributeValue::S(record.kind.tag().into()));
                item.insert("id".into(), AttributeValue::S(record.id.to_string()));
                item.extend(key_map(pk, sk));
                let put = Put::builder().table_name(&self.table).set_item(Some(item));
                let put = match expect {
                    Expect::New => put.condition_expression("attribute_not_exists(pk)"),
                    Expect::UpdatedAt(updated_at) => put
                        .condition_expression("updated_at = :seen")
                        .expression_attribute_values(":seen", AttributeValue::S(updated_at)),
                };
                TransactWriteItem::builder().put(
                    put.build()
                        .map_err(|e| IoError::new("encode catalog item", e))?,
                )
            }
            CatalogWrite::Delete { kind, id, parent } => {
                let (pk, sk) = record_key(kind, id, parent);
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(key_map(pk, sk)))
                    .build()
                    .map_err(|e| IoError::new("encode catalog delete", e))?;
                TransactWriteItem::builder().delete(delete)
            }
            CatalogWrite::Claim { key, owner } => {
                let mut item = claim_key(&key);
                item.insert("owner".into(), AttributeValue::S(owner.to_string()));
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(pk) OR #owner = :owner")
                    .expression_attribute_names("#owner", "owner")
                    .expression_attribute_values(":owner", AttributeValue::S(owner.to_string()))
                    .build()
                    .map_err(|e| IoError::new("encode unique key", e))?;
                TransactWriteItem::builder().put(put)
            }
            CatalogWrite::Transfer { key, from, to } => {
                let mut item = claim_key(&key);
                item.insert("owner".into(), AttributeValue::S(to.to_string()));
                let put = Put::builder().table_name(&self.table).set_item(Some(item));
                let put = match from {
                    None => put.condition_expression("attribute_not_exists(pk)"),
                    Some(from) => put
                        .condition_expression("#owner = :from")
                        .expression_attribute_names("#owner", "owner")
                        .expression_attribute_values(":from", AttributeValue::S(from.to_string())),
                };
                let put = put
                    .build()
                    .map_err(|e| IoError::new("encode unique key", e))?;
                TransactWriteItem::builder().put(put)
            }
            CatalogWrite::Release { key } => {
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(claim_key(&key)))
                    .build()
                    .map_err(|e| IoError::new("encode unique key", e))?;
                TransactWriteItem::builder().delete(delete)
            }
        };
        Ok(built.build())
    }
}

#[async_trait]
impl CatalogStore for DynamoCatalog {
    async fn record(&self, kind: RecordKind, id: Uuid) -> IoResult<Option<Record>> {
        if kind != RecordKind::Flavor {
            let (pk, sk) = record_key(kind, id, None);
            let output = self
                .client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(key_map(pk, sk)))
                .consistent_read(true)
                .send()
                .await
                .map_err(sdk_error("read catalog"))?;
            return output
                .item
                .map(|item| record_from_item(kind, item))
                .transpose();
        }
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(KIND_INDEX)
            .key_condition_expression("kind = :kind AND id = :id")
            .expression_attribute_values(":kind", AttributeValue::S(kind.tag().into()))
            .expression_attribute_values(":id", AttributeValue::S(id.to_string()))
            .send()
            .await
            .map_err(sdk_error("find flavor"))?;
        output
            .items
            .unwrap_or_default()
            .into_iter()
            .next()
            .map(|item| record_from_item(kind, item))
            .transpose()
    }

    async fn records(&self, kind: RecordKind) -> IoResult<Vec<Record>> {
        let mut records = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(KIND_INDEX)
                .key_condition_expression("kind = :kind")
                .expression_attribute_values(":kind", AttributeValue::S(kind.tag().into()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error("list catalog"))?;
            for item in output.items.unwrap_or_default() {
                records.push(record_from_item(kind, item)?);
            }
            start = output.last_evaluated_key;
            if start.is_none() {
                return Ok(records);
            }
        }
    }

    async fn write(&self, writes: Vec<CatalogWrite>) -> Result<(), WriteError> {
        if writes.is_empty() {
            return Ok(());
        }
        let items = writes
            .iter()
            .cloned()
            .map(|write| self.transact_item(write))
            .collect::<IoResult<Vec<_>>>()?;
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let error = match result {
            Ok(_) => return Ok(()),
            Err(error) => error,
        };
        let reasons = error.as_service_error().and_then(|service| match service {
            TransactWriteItemsError::TransactionCanceledException(cancelled) => {
                Some(cancelled.cancellation_reasons().to_vec())
            }
            _ => None,
        });
        if let Some(reasons) = reasons {
            for (write, reason) in writes.iter().zip(reasons) {
                if reason.code() != Some("ConditionalCheckFailed") {
                    continue;
                }
                return Err(match write {
                    CatalogWrite::Claim { key, .. } | CatalogWrite::Transfer { key, .. } => {
                        WriteError::Taken(key.clone())
                    }
                    _ => WriteError::Stale,
                });
            }
        }
        Err(WriteError::Io(sdk_error("write catalog")(error)))
    }
}
