//! Circuit breakers in DynamoDB: one item per provider and model, `failures` counted with
//! atomic `ADD` within the current window, `open_until` set when it opens; items expire a
//! day after their last change.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::sdk_error;
use crate::ports::{Breakers, IoError, IoResult};

/// Seconds an item lives after its last change.
const ITEM_TTL_SECS: i64 = 86_400;

/// Circuit breakers in one DynamoDB table (pk `key`).
#[derive(Clone, Debug)]
pub struct DynamoBreakers {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoBreakers {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoBreakers {
            client,
            table: table.into(),
        }
    }

    fn key(key: &str) -> AttributeValue {
        AttributeValue::S(key.to_string())
    }

    fn expires_at() -> AttributeValue {
        AttributeValue::N((chrono::Utc::now().timestamp() + ITEM_TTL_SECS).to_string())
    }
}

#[async_trait]
impl Breakers for DynamoBreakers {
    async fn open_until(&self, key: &str) -> IoResult<Option<String>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("key", Self::key(key))
            .send()
            .await
            .map_err(sdk_error("read breaker"))?;
        Ok(output
            .item
            .and_then(|item| item.get("open_until")?.as_s().ok().cloned()))
    }

    async fn record_failure(&self, key: &str, now: &str, window_cutoff: &str) -> IoResult<u32> {
        let counted = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("key", Self::key(key))
            .update_expression("ADD failures :one SET expires_at = :ttl")
            .condition_expression("window_start >= :cutoff")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":ttl", Self::expires_at())
            .expression_attribute_values(":cutoff", AttributeValue::S(window_cutoff.into()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        let attributes = match counted {
            Ok(output) => output.attributes,
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                // No window, or an old one: this failure starts a new window.
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .key("key", Self::key(key))
                    .update_expression(
                        "SET window_start = :now, failures = :one, expires_at = :ttl",
                    )
                    .expression_attribute_values(":now", AttributeValue::S(now.into()))
                    .expression_attribute_values(":one", AttributeValue::N("1".into()))
                    .expression_attribute_values(":ttl", Self::expires_at())
                    .send()
                    .await
                    .map_err(sdk_error("start breaker window"))?;
                return Ok(1);
            }
            Err(error) => return Err(sdk_error("count breaker failure")(error)),
        };
        attributes
            .and_then(|attributes| attributes.get("failures")?.as_n().ok()?.parse().ok())
            .ok_or_else(|| IoError::new("count breaker failure", "no failure count returned"))
    }

    async fn open(&self, key: &str, until: &str) -> IoResult<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("key", Self::key(key))
            .update_expression("SET open_until = :until, expires_at = :ttl")
            .expression_attribute_values(":until", AttributeValue::S(until.into()))
            .expression_attribute_values(":ttl", Self::expires_at())
            .send()
            .await
            .map_err(sdk_error("open breaker"))?;
        Ok(())
    }

    async fn claim_probe(&self, key: &str, seen: &str, lease: &str) -> IoResult<bool> {
        let claimed = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("key", Self::key(key))
            .update_expression("SET open_until = :lease, expires_at = :ttl")
            .condition_expression("open_until = :seen")
            .expression_attribute_values(":lease", AttributeValue::S(lease.into()))
            .expression_attribute_values(":seen", AttributeValue::S(seen.into()))
            .expression_attribute_values(":ttl", Self::expires_at())
            .send()
            .await;
        match claimed {
            Ok(_) => Ok(true),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(error) => Err(sdk_error("claim breaker probe")(error)),
        }
    }

    async fn close(&self, key: &str) -> IoResult<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("key", Self::key(key))
            .send()
            .await
            .map_err(sdk_error("close breaker"))?;
        Ok(())
    }
}
