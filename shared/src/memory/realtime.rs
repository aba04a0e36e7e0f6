//! WebSocket subscriptions and posts in memory.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::ports::{ConnectionStore, Delivery, IoResult, Notifier, Topic};

use super::support::lock;

/// [`ConnectionStore`] in memory (no expiry): each connection's organization and its
/// subscriptions, like [`crate::aws::DynamoConnectionStore`].
#[derive(Debug, Default)]
pub struct MemoryConnections {
    /// Connection id → the organization it gave when it first subscribed.
    connections: Mutex<BTreeMap<String, Option<String>>>,
    /// (topic key, connection id), ordered like the `by_topic` index.
    subscriptions: Mutex<BTreeSet<(String, String)>>,
}

#[async_trait]
impl ConnectionStore for MemoryConnections {
    async fn subscribe(
        &self,
        connection_id: &str,
        topic: &Topic,
        organization_id: Option<&str>,
    ) -> IoResult<()> {
        lock(&self.connections)
            .entry(connection_id.to_string())
            .or_insert_with(|| organization_id.map(str::to_string));
        lock(&self.subscriptions).insert((topic.key(), connection_id.to_string()));
        Ok(())
    }

    async fn unsubscribe(&self, connection_id: &str, topic: &Topic) -> IoResult<()> {
        lock(&self.subscriptions).remove(&(topic.key(), connection_id.to_string()));
        Ok(())
    }

    async fn remove(&self, connection_id: &str) -> IoResult<()> {
        lock(&self.connections).remove(connection_id);
        lock(&self.subscriptions).retain(|(_, connection)| connection != connection_id);
        Ok(())
    }

    async fn subscribers(&self, topic: &Topic) -> IoResult<Vec<String>> {
        let key = topic.key();
        Ok(lock(&self.subscriptions)
            .iter()
            .filter(|(topic, _)| *topic == key)
            .map(|(_, connection)| connection.clone())
            .collect())
    }

    async fn organization_of(&self, connection_id: &str) -> IoResult<Option<Option<String>>> {
        Ok(lock(&self.connections).get(connection_id).cloned())
    }
}

/// [`Notifier`] in memory: records what was posted; connections marked gone answer
/// [`Delivery::Gone`] (HTTP 410) and receive nothing.
#[derive(Debug, Default)]
pub struct MemoryNotifier {
    posts: Mutex<Vec<(String, Vec<u8>)>>,
    gone: Mutex<HashSet<String>>,
}

impl MemoryNotifier {
    /// Makes posts to `connection_id` answer [`Delivery::Gone`] from now on.
    pub fn mark_gone(&self, connection_id: &str) {
        lock(&self.gone).insert(connection_id.to_string());
    }

    /// Every delivered post (connection id, payload), in order.
    pub fn posts(&self) -> Vec<(String, Vec<u8>)> {
        lock(&self.posts).clone()
    }
}

#[async_trait]
impl Notifier for MemoryNotifier {
    async fn post(&self, connection_id: &str, payload: &[u8]) -> IoResult<Delivery> {
        if lock(&self.gone).contains(connection_id) {
            return Ok(Delivery::Gone);
        }
        lock(&self.posts).push((connection_id.to_string(), payload.to_vec()));
        Ok(Delivery::Sent)
    }
}
