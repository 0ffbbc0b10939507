//! The gateway's HMAC keys: the tokens from configuration plus those `mlc subscribe`
//! verified with Gusto, which arrive through the `WEBHOOK_KEYS` KV bucket.
//!
//! The gateway never decides that a token is trusted: it holds no store and no encryption
//! key (PLAN decision 1). `mlc subscribe`, which holds both, puts a token into the bucket
//! only after Gusto accepted it for its subscription. When NATS is unreachable the last
//! known keys stay in force; the watch is re-made once NATS is back.

use futures::StreamExt as _;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub struct WebhookKeys {
    /// Tokens from `gateway.webhook_tokens`: always keys, whatever the bucket says.
    config: Vec<Vec<u8>>,
    /// Subscription uuid -> token, as last seen in the bucket.
    verified: RwLock<BTreeMap<String, Vec<u8>>>,
    /// `config` followed by `verified`, rebuilt on each change; what a request reads.
    current: RwLock<Arc<Vec<Vec<u8>>>>,
}

impl WebhookKeys {
    pub fn new(config: Vec<Vec<u8>>) -> Self {
        let current = RwLock::new(Arc::new(config.clone()));
        WebhookKeys { config, verified: RwLock::new(BTreeMap::new()), current }
    }

    pub fn current(&self) -> Arc<Vec<Vec<u8>>> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sets (or with `None` removes) the verified token of a subscription.
    pub fn set(&self, subscription: &str, token: Option<Vec<u8>>) {
        let mut v = self.verified.write().unwrap_or_else(|p| p.into_inner());
        match token {
            Some(t) if !t.is_empty() => v.insert(subscription.to_string(), t),
            _ => v.remove(subscription),
        };
        let mut all = self.config.clone();
        for t in v.values() {
            if !all.contains(t) {
                all.push(t.clone());
            }
        }
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(all);
    }

    /// Follows the bucket for as long as the process runs.
    pub async fn watch(self: Arc<Self>, js: async_nats::jetstream::Context, bucket: String) {
        loop {
            if let Err(e) = self.watch_once(&js, &bucket).await {
                tracing::warn!(error = %e, bucket = %bucket, "cannot watch the webhook keys; keeping the last known ones");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn watch_once(&self, js: &async_nats::jetstream::Context, bucket: &str) -> Result<(), String> {
        let kv = js.get_key_value(bucket).await.map_err(|e| e.to_string())?;
        let mut watch = kv.watch_with_history(">").await.map_err(|e| e.to_string())?;
        while let Some(entry) = watch.next().await {
            let entry = entry.map_err(|e| e.to_string())?;
            use async_nats::jetstream::kv::Operation;
            match entry.operation {
                Operation::Put => self.set(&entry.key, Some(entry.value.to_vec())),
                Operation::Delete | Operation::Purge => self.set(&entry.key, None),
            }
            tracing::info!(subscription = %entry.key, "webhook keys updated");
        }
        Err("the watch ended".into())
    }
}
