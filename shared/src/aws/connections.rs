//! WebSocket subscriptions in DynamoDB.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::sdk_error;
use crate::ports::{ConnectionStore, IoResult, Topic};

/// Sort key of the item recording a connection itself (its organization).
const CONNECTION_ITEM: &str = "#connection";
/// API Gateway closes WebSocket connections after 2 hours; items expire then too.
const CONNECTION_LIFETIME_SECS: i64 = 2 * 60 * 60;
const TOPIC_INDEX: &str = "by_topic";

/// WebSocket subscriptions in DynamoDB: pk `connection_id`, sk the topic key (or
/// `#connection`), sparse GSI `by_topic` (topic, connection_id), TTL `expires_at`.
#[derive(Clone, Debug)]
pub struct DynamoConnectionStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoConnectionStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoConnectionStore {
            client,
            table: table.into(),
        }
    }

    async fn put(
        &self,
        connection_id: &str,
        sort_key: &str,
        topic: Option<&str>,
        organization_id: Option<&str>,
    ) -> IoResult<()> {
        let expires_at = chrono::Utc::now().timestamp() + CONNECTION_LIFETIME_SECS;
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(
                "connection_id",
                AttributeValue::S(connection_id.to_string()),
            )
            .item("sk", AttributeValue::S(sort_key.to_string()))
            .item("expires_at", AttributeValue::N(expires_at.to_string()));
        if let Some(topic) = topic {
            request = request.item("topic", AttributeValue::S(topic.to_string()));
        }
        if let Some(org) = organization_id {
            request = request.item("organization_id", AttributeValue::S(org.to_string()));
        }
        request
            .send()
            .await
            .map_err(sdk_error("write connection"))?;
        Ok(())
    }

    async fn delete(&self, connection_id: &str, sort_key: &str) -> IoResult<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(
                "connection_id",
                AttributeValue::S(connection_id.to_string()),
            )
            .key("sk", AttributeValue::S(sort_key.to_string()))
            .send()
            .await
            .map_err(sdk_error("delete connection"))?;
        Ok(())
    }
}

#[async_trait]
impl ConnectionStore for DynamoConnectionStore {
    async fn subscribe(
        &self,
        connection_id: &str,
        topic: &Topic,
        organization_id: Option<&str>,
    ) -> IoResult<()> {
        if self.organization_of(connection_id).await?.is_none() {
            self.put(connection_id, CONNECTION_ITEM, None, organization_id)
                .await?;
        }
        let key = topic.key();
        self.put(connection_id, &key, Some(&key), organization_id)
            .await
    }

    async fn unsubscribe(&self, connection_id: &str, topic: &Topic) -> IoResult<()> {
        self.delete(connection_id, &topic.key()).await
    }

    async fn remove(&self, connection_id: &str) -> IoResult<()> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("connection_id = :c")
            .expression_attribute_values(":c", AttributeValue::S(connection_id.to_string()))
            .send()
            .await
            .map_err(sdk_error("read connection"))?;
        for item in output.items.unwrap_or_default() {
            if let Some(AttributeValue::S(sort_key)) = item.get("sk") {
                self.delete(connection_id, sort_key).await?;
            }
        }
        Ok(())
    }

    async fn subscribers(&self, topic: &Topic) -> IoResult<Vec<String>> {
        let mut connections = Vec::new();
        let mut start_key = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(TOPIC_INDEX)
                .key_condition_expression("topic = :t")
                .expression_attribute_values(":t", AttributeValue::S(topic.key()))
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(sdk_error("read subscribers"))?;
            connections.extend(
                output
                    .items
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|item| match item.get("connection_id") {
                        Some(AttributeValue::S(id)) => Some(id.clone()),
                        _ => None,
                    }),
            );
            start_key = output.last_evaluated_key;
            if start_key.is_none() {
                return Ok(connections);
            }
        }
    }

    async fn organization_of(&self, connection_id: &str) -> IoResult<Option<Option<String>>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(
                "connection_id",
                AttributeValue::S(connection_id.to_string()),
            )
            .key("sk", AttributeValue::S(CONNECTION_ITEM.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error("read connection"))?;
        Ok(output.item.map(|item| match item.get("organization_id") {
            Some(AttributeValue::S(org)) => Some(org.clone()),
            _ => None,
        }))
    }
}
