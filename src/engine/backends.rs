//! Resolves `plugin_name` to a compiled-in backend, and caches one open backend (a pool)
//! per connection.

use std::collections::HashMap;
use std::sync::Arc;

use dbwarden_plugin::{BackendDescriptor, DatabaseBackend, OpenRequest};
use tokio::sync::Mutex;

use super::error::{Result, invalid};

/// Every backend compiled into this binary.
pub static REGISTRY: &[&BackendDescriptor] =
    &[&dbwarden_postgres::DESCRIPTOR, &dbwarden_mysql::DESCRIPTOR];

/// Finds the backend serving a `plugin_name`.
pub fn descriptor(plugin_name: &str) -> Result<&'static BackendDescriptor> {
    REGISTRY
        .iter()
        .copied()
        .find(|d| d.plugin_names.contains(&plugin_name))
        .ok_or_else(|| {
            let known: Vec<&str> = REGISTRY
                .iter()
                .flat_map(|d| d.plugin_names.iter().copied())
                .collect();
            invalid(format!(
                "unknown plugin_name \"{plugin_name}\"; this build supports: {}",
                known.join(", ")
            ))
        })
}

/// Open backends keyed by `<mount storage prefix>config/<name>`.
#[derive(Default)]
pub struct Backends {
    open: Mutex<HashMap<String, Arc<dyn DatabaseBackend>>>,
}

impl Backends {
    /// Returns the cached backend for `key`, opening it with `request` if needed.
    ///
    /// Opening happens under the lock so two concurrent first requests share one pool.
    pub async fn get_or_open(
        &self,
        key: &str,
        request: impl FnOnce() -> OpenRequest,
    ) -> Result<Arc<dyn DatabaseBackend>> {
        let mut open = self.open.lock().await;
        if let Some(backend) = open.get(key) {
            return Ok(backend.clone());
        }
        let request = request();
        let descriptor = descriptor(&request.plugin_name)?;
        let backend: Arc<dyn DatabaseBackend> = Arc::from((descriptor.open)(request).await?);
        open.insert(key.to_owned(), backend.clone());
        Ok(backend)
    }

    /// Closes and forgets the backend for `key` (config changed or deleted).
    pub async fn close(&self, key: &str) {
        let removed = self.open.lock().await.remove(key);
        if let Some(backend) = removed {
            backend.close().await;
        }
    }

    /// Closes every backend whose key starts with `prefix` (a mount is going away).
    pub async fn close_prefix(&self, prefix: &str) {
        let removed: Vec<Arc<dyn DatabaseBackend>> = {
            let mut open = self.open.lock().await;
            let keys: Vec<String> = open
                .keys()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect();
            keys.iter().filter_map(|k| open.remove(k)).collect()
        };
        for backend in removed {
            backend.close().await;
        }
    }
}
