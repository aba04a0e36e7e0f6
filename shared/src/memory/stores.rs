//! [`BlobStore`], [`JobQueue`] and [`Secrets`] in memory.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;

use crate::domain::{QueueLane, StepMessage};
use crate::ports::{BlobStore, Breakers, IoError, IoResult, JobQueue, Secrets};

use super::support::{lock, round_trip, FailNext};

/// [`BlobStore`] in memory: objects by key with their content type.
#[derive(Debug, Default)]
pub struct MemoryBlobs {
    objects: Mutex<BTreeMap<String, (Vec<u8>, String)>>,
    fail_put: FailNext,
}

impl MemoryBlobs {
    /// Makes the next `times` calls of [`BlobStore::put`] fail (nothing is written).
    pub fn fail_next_puts(&self, times: usize) {
        self.fail_put.arm(None, times);
    }

    /// Makes the next `times` puts of `key` fail; other keys are written.
    pub fn fail_next_puts_of(&self, key: &str, times: usize) {
        self.fail_put.arm(Some(key.to_string()), times);
    }

    /// Every stored key, in order.
    pub fn keys(&self) -> Vec<String> {
        lock(&self.objects).keys().cloned().collect()
    }

    /// The content type an object was stored with.
    pub fn content_type(&self, key: &str) -> Option<String> {
        lock(&self.objects)
            .get(key)
            .map(|(_, content_type)| content_type.clone())
    }
}

#[async_trait]
impl BlobStore for MemoryBlobs {
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> IoResult<()> {
        self.fail_put.trip("write blob", key)?;
        lock(&self.objects).insert(key.to_string(), (body, content_type.to_string()));
        Ok(())
    }

    async fn get(&self, key: &str) -> IoResult<Option<Vec<u8>>> {
        Ok(lock(&self.objects).get(key).map(|(body, _)| body.clone()))
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> IoResult<Option<Vec<u8>>> {
        Ok(lock(&self.objects).get(key).map(|(body, _)| {
            let start = (offset as usize).min(body.len());
            let end = start.saturating_add(len as usize).min(body.len());
            body[start..end].to_vec()
        }))
    }

    async fn size(&self, key: &str) -> IoResult<Option<u64>> {
        Ok(lock(&self.objects)
            .get(key)
            .map(|(body, _)| body.len() as u64))
    }

    async fn copy(&self, from: &str, to: &str) -> IoResult<()> {
        let mut objects = lock(&self.objects);
        let object = objects
            .get(from)
            .cloned()
            .ok_or_else(|| IoError::new("copy blob", format!("object {from} missing")))?;
        objects.insert(to.to_string(), object);
        Ok(())
    }

    async fn delete(&self, key: &str) -> IoResult<()> {
        lock(&self.objects).remove(key);
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &str) -> IoResult<usize> {
        let mut objects = lock(&self.objects);
        let before = objects.len();
        objects.retain(|key, _| !key.starts_with(prefix));
        Ok(before - objects.len())
    }

    async fn list(&self, prefix: &str) -> IoResult<Vec<(String, u64)>> {
        let mut found: Vec<(String, u64)> = lock(&self.objects)
            .iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .map(|(key, (body, _))| (key.clone(), body.len() as u64))
            .collect();
        found.sort();
        Ok(found)
    }

    async fn presigned_get(&self, key: &str, expires_in: Duration) -> IoResult<String> {
        Ok(format!(
            "memory://{key}?expires_in={}",
            expires_in.as_secs()
        ))
    }

    async fn presigned_put(&self, key: &str, expires_in: Duration) -> IoResult<String> {
        Ok(format!(
            "memory://{key}?method=PUT&expires_in={}",
            expires_in.as_secs()
        ))
    }
}

/// [`JobQueue`] in memory: every sent message with its lane, in order. SQS FIFO
/// deduplication (same job and step within 5 minutes) is not modelled: every send is kept.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    sent: Mutex<VecDeque<(StepMessage, QueueLane)>>,
    postponed: Mutex<Vec<(String, QueueLane, Duration)>>,
    fail_send: FailNext,
}

impl MemoryQueue {
    /// Makes the next `times` calls of [`JobQueue::send`] fail (nothing is enqueued).
    pub fn fail_next_sends(&self, times: usize) {
        self.fail_send.arm(None, times);
    }

    /// The messages sent and not drained yet, oldest first.
    pub fn sent(&self) -> Vec<(StepMessage, QueueLane)> {
        lock(&self.sent).iter().cloned().collect()
    }

    /// Every postponement asked: receipt handle, lane and delay, in order.
    pub fn postponed(&self) -> Vec<(String, QueueLane, Duration)> {
        lock(&self.postponed).clone()
    }

    /// Takes every message sent so far, oldest first.
    pub fn drain(&self) -> Vec<(StepMessage, QueueLane)> {
        lock(&self.sent).drain(..).collect()
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn send(&self, message: &StepMessage, lane: QueueLane) -> IoResult<()> {
        self.fail_send.trip("enqueue step", "")?;
        let message = round_trip(message, "encode step message")?;
        lock(&self.sent).push_back((message, lane));
        Ok(())
    }

    async fn pending(&self, lane: QueueLane) -> IoResult<u64> {
        Ok(lock(&self.sent).iter().filter(|(_, l)| *l == lane).count() as u64)
    }

    async fn postpone(
        &self,
        lane: QueueLane,
        receipt_handle: &str,
        delay: Duration,
    ) -> IoResult<()> {
        lock(&self.postponed).push((receipt_handle.to_string(), lane, delay));
        Ok(())
    }
}

/// What [`MemorySecrets`] ciphertexts start with once decoded.
const SECRET_MARKER: &str = "memory-kms:";

/// [`Secrets`] that "encrypts" reversibly: base64 of a marker and the secret. Decryption
/// refuses anything else with an [`IoError`], as KMS refuses foreign ciphertexts.
#[derive(Debug, Default)]
pub struct MemorySecrets {
    decrypts: std::sync::atomic::AtomicUsize,
}

impl MemorySecrets {
    /// How many decryptions were asked for.
    pub fn decrypts(&self) -> usize {
        self.decrypts.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait]
impl Secrets for MemorySecrets {
    async fn decrypt(&self, ciphertext_b64: &str) -> IoResult<String> {
        self.decrypts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(ciphertext_b64.trim())
            .map_err(|e| IoError::new("decode secret", e))?;
        String::from_utf8(bytes)
            .ok()
            .and_then(|plain| plain.strip_prefix(SECRET_MARKER).map(str::to_string))
            .ok_or_else(|| IoError::new("decrypt secret", "InvalidCiphertextException"))
    }

    async fn encrypt(&self, secret: &str) -> IoResult<String> {
        Ok(base64::engine::general_purpose::STANDARD.encode(format!("{SECRET_MARKER}{secret}")))
    }
}

/// One breaker: window start, failures in the window, open until.
type BreakerItem = (String, u32, Option<String>);

/// [`Breakers`] in memory, with the adapter's window rule.
#[derive(Debug, Default)]
pub struct MemoryBreakers {
    items: Mutex<std::collections::HashMap<String, BreakerItem>>,
}

#[async_trait]
impl Breakers for MemoryBreakers {
    async fn open_until(&self, key: &str) -> IoResult<Option<String>> {
        Ok(lock(&self.items)
            .get(key)
            .and_then(|(_, _, until)| until.clone()))
    }

    async fn record_failure(&self, key: &str, now: &str, window_cutoff: &str) -> IoResult<u32> {
        let mut items = lock(&self.items);
        let item = items
            .entry(key.to_string())
            .or_insert_with(|| (now.to_string(), 0, None));
        if item.0.as_str() < window_cutoff {
            item.0 = now.to_string();
            item.1 = 0;
        }
        item.1 += 1;
        Ok(item.1)
    }

    async fn open(&self, key: &str, until: &str) -> IoResult<()> {
        let mut items = lock(&self.items);
        let item = items
            .entry(key.to_string())
            .or_insert_with(|| (until.to_string(), 0, None));
        item.2 = Some(until.to_string());
        Ok(())
    }

    async fn claim_probe(&self, key: &str, seen: &str, lease: &str) -> IoResult<bool> {
        let mut items = lock(&self.items);
        match items.get_mut(key) {
            Some(item) if item.2.as_deref() == Some(seen) => {
                item.2 = Some(lease.to_string());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn close(&self, key: &str) -> IoResult<()> {
        lock(&self.items).remove(key);
        Ok(())
    }
}
