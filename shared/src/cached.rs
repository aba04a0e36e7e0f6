//! Per-execution-environment caches in front of two ports, so a warm worker does not read
//! the provider record and call KMS on every step: [`CachedSecrets`] keeps decrypted
//! provider keys by ciphertext, [`CachedCatalog`] keeps provider and model records by id.
//! Entries live `ttl` (a catalog edit applies within it); a zero `ttl` turns them off.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::{Flavor, Model, Provider, Service};
use crate::ports::{Catalog, IoResult, Secrets};

/// Most entries kept per cache (there are few providers and models; a bound all the same).
const MAX_ENTRIES: usize = 512;

/// Values by key for `ttl`.
struct TtlMap<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> TtlMap<K, V> {
    fn new(ttl: Duration) -> Self {
        TtlMap {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, value)| value.clone())
    }

    fn insert(&self, key: K, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now(), value));
    }
}

/// [`Secrets`] whose decryptions are kept for a while.
pub struct CachedSecrets {
    inner: Arc<dyn Secrets>,
    plaintexts: TtlMap<String, String>,
}

impl CachedSecrets {
    pub fn new(inner: Arc<dyn Secrets>, ttl: Duration) -> Self {
        CachedSecrets {
            inner,
            plaintexts: TtlMap::new(ttl),
        }
    }
}

#[async_trait]
impl Secrets for CachedSecrets {
    async fn decrypt(&self, ciphertext_b64: &str) -> IoResult<String> {
        if let Some(secret) = self.plaintexts.get(&ciphertext_b64.to_string()) {
            return Ok(secret);
        }
        let secret = self.inner.decrypt(ciphertext_b64).await?;
        self.plaintexts
            .insert(ciphertext_b64.to_string(), secret.clone());
        Ok(secret)
    }

    async fn encrypt(&self, secret: &str) -> IoResult<String> {
        self.inner.encrypt(secret).await
    }
}

/// [`Catalog`] whose provider and model records are kept for a while once found (services
/// and flavors are read through: execute resolves them once per job).
pub struct CachedCatalog {
    inner: Arc<dyn Catalog>,
    providers: TtlMap<Uuid, Provider>,
    models: TtlMap<Uuid, Model>,
}

impl CachedCatalog {
    pub fn new(inner: Arc<dyn Catalog>, ttl: Duration) -> Self {
        CachedCatalog {
            inner,
            providers: TtlMap::new(ttl),
            models: TtlMap::new(ttl),
        }
    }
}

#[async_trait]
impl Catalog for CachedCatalog {
    async fn service(&self, id: Uuid) -> IoResult<Option<Service>> {
        self.inner.service(id).await
    }

    async fn flavor(&self, service_id: Uuid, flavor_id: Uuid) -> IoResult<Option<Flavor>> {
        self.inner.flavor(service_id, flavor_id).await
    }

    async fn flavors(&self, service_id: Uuid) -> IoResult<Vec<Flavor>> {
        self.inner.flavors(service_id).await
    }

    async fn model(&self, id: Uuid) -> IoResult<Option<Model>> {
        if let Some(model) = self.models.get(&id) {
            return Ok(Some(model));
        }
        let model = self.inner.model(id).await?;
        if let Some(model) = &model {
            self.models.insert(id, model.clone());
        }
        Ok(model)
    }

    async fn provider(&self, id: Uuid) -> IoResult<Option<Provider>> {
        if let Some(provider) = self.providers.get(&id) {
            return Ok(Some(provider));
        }
        let provider = self.inner.provider(id).await?;
        if let Some(provider) = &provider {
            self.providers.insert(id, provider.clone());
        }
        Ok(provider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryGateway;

    #[tokio::test]
    async fn a_warm_environment_reads_a_provider_and_decrypts_its_key_once_per_ttl() {
        let memory = MemoryGateway::new();
        let seeded = memory.seed().await;
        let provider_id = seeded.provider.id;
        let ciphertext = seeded.provider.api_key_ciphertext.clone().unwrap();
        let catalog =
            CachedCatalog::new(memory.gateway.catalog.clone(), Duration::from_millis(200));
        let secrets =
            CachedSecrets::new(memory.gateway.secrets.clone(), Duration::from_millis(200));
        let reads = memory.catalog.reads();
        for _ in 0..5 {
            assert!(catalog.provider(provider_id).await.unwrap().is_some());
            secrets.decrypt(&ciphertext).await.unwrap();
        }
        assert_eq!(memory.catalog.reads() - reads, 1, "one provider read");
        assert_eq!(memory.secrets.decrypts(), 1, "one decryption");
        tokio::time::sleep(Duration::from_millis(250)).await;
        catalog.provider(provider_id).await.unwrap();
        secrets.decrypt(&ciphertext).await.unwrap();
        assert_eq!(
            memory.catalog.reads() - reads,
            2,
            "read again after the ttl"
        );
        assert_eq!(memory.secrets.decrypts(), 2);

        let off = CachedSecrets::new(memory.gateway.secrets.clone(), Duration::ZERO);
        off.decrypt(&ciphertext).await.unwrap();
        off.decrypt(&ciphertext).await.unwrap();
        assert_eq!(memory.secrets.decrypts(), 4, "a zero ttl keeps nothing");
    }
}
