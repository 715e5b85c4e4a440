//! Resolves `plugin_name` to a backend (an external plugin from the catalog, or one compiled
//! in), and caches one open backend (a pool, or a plugin process) per connection.
//!
//! A cached backend that reports [`DatabaseBackend::is_closed`] (an external plugin whose
//! process died) is dropped and opened again at its next use, so a crashed plugin is
//! restarted, its binary's hash checked again first.

use std::collections::HashMap;
use std::sync::Arc;

use dbwarden_plugin::{BackendDescriptor, DatabaseBackend, OpenRequest};
use tokio::sync::Mutex;

use super::catalog;
use super::error::{Result, invalid};

/// Every backend compiled into this binary.
pub static REGISTRY: &[&BackendDescriptor] = &[
    &dbwarden_postgres::DESCRIPTOR,
    &dbwarden_mysql::DESCRIPTOR,
    #[cfg(feature = "odbc")]
    &dbwarden_odbc::DESCRIPTOR,
];

/// Backends that exist but are optional at build time: `(plugin_name, cargo feature, plugin
/// binary)`, so a config naming one says how to get it rather than "unknown".
const OPTIONAL: &[(&str, &str, &str)] = &[
    ("odbc-database-plugin", "odbc", "dbwarden-plugin-odbc"),
    ("dameng-database-plugin", "odbc", "dbwarden-plugin-odbc"),
];

/// Finds the backend serving a `plugin_name`: a catalog entry first (as in Vault, a
/// registered plugin shadows a built-in of the same name), then the compiled-in backends.
pub fn descriptor(plugin_name: &str) -> Result<&'static BackendDescriptor> {
    if catalog::is_registered(plugin_name) {
        return Ok(&catalog::EXTERNAL);
    }
    if let Some(found) = REGISTRY
        .iter()
        .copied()
        .find(|d| d.plugin_names.contains(&plugin_name))
    {
        return Ok(found);
    }
    if let Some((_, feature, binary)) = OPTIONAL.iter().find(|(name, ..)| *name == plugin_name) {
        return Err(invalid(format!(
            "plugin_name \"{plugin_name}\" is not compiled into this build (cargo feature \
             `{feature}`); rebuild with --features {feature}, or register the {binary} binary at \
             sys/plugins/catalog/database/{plugin_name}"
        )));
    }
    let known: Vec<&str> = REGISTRY
        .iter()
        .flat_map(|d| d.plugin_names.iter().copied())
        .collect();
    Err(invalid(format!(
        "unknown plugin_name \"{plugin_name}\"; this build supports: {}, and the plugins \
         registered at sys/plugins/catalog/database",
        known.join(", ")
    )))
}

/// Every compiled-in `plugin_name`.
pub fn builtin_names() -> Vec<&'static str> {
    REGISTRY
        .iter()
        .flat_map(|d| d.plugin_names.iter().copied())
        .collect()
}

/// One open backend and the `plugin_name` it was opened for.
struct Entry {
    plugin_name: String,
    backend: Arc<dyn DatabaseBackend>,
}

/// Open backends keyed by `<mount storage prefix>config/<name>`.
#[derive(Default)]
pub struct Backends {
    open: Mutex<HashMap<String, Entry>>,
}

impl Backends {
    /// Returns the cached backend for `key`, opening it with `request` if needed (or if the
    /// cached one has closed itself: a plugin process that exited).
    ///
    /// Opening happens under the lock so two concurrent first requests share one pool.
    pub async fn get_or_open(
        &self,
        key: &str,
        request: impl FnOnce() -> OpenRequest,
    ) -> Result<Arc<dyn DatabaseBackend>> {
        let mut open = self.open.lock().await;
        if let Some(entry) = open.get(key) {
            if !entry.backend.is_closed() {
                return Ok(entry.backend.clone());
            }
            tracing::warn!(
                connection = key,
                plugin = %entry.plugin_name,
                "the connection's plugin process has exited; starting it again"
            );
            if let Some(dead) = open.remove(key) {
                dead.backend.close().await;
            }
        }
        let request = request();
        let plugin_name = request.plugin_name.clone();
        let descriptor = descriptor(&plugin_name)?;
        let backend: Arc<dyn DatabaseBackend> = Arc::from((descriptor.open)(request).await?);
        open.insert(
            key.to_owned(),
            Entry {
                plugin_name,
                backend: backend.clone(),
            },
        );
        Ok(backend)
    }

    /// Closes and forgets the backend for `key` (config changed or deleted).
    pub async fn close(&self, key: &str) {
        let removed = self.open.lock().await.remove(key);
        if let Some(entry) = removed {
            entry.backend.close().await;
        }
    }

    /// Closes every backend whose key starts with `prefix` (a mount is going away).
    pub async fn close_prefix(&self, prefix: &str) {
        self.close_where(|key, _| key.starts_with(prefix)).await;
    }

    /// Closes every backend opened for `plugin_name` (its catalog entry changed).
    pub async fn close_plugin(&self, plugin_name: &str) {
        self.close_where(|_, name| name == plugin_name).await;
    }

    async fn close_where(&self, matches: impl Fn(&str, &str) -> bool) {
        let removed: Vec<Entry> = {
            let mut open = self.open.lock().await;
            let keys: Vec<String> = open
                .iter()
                .filter(|(k, e)| matches(k, &e.plugin_name))
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| open.remove(k)).collect()
        };
        for entry in removed {
            entry.backend.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_backends_explain_how_to_get_them() {
        for (name, ..) in OPTIONAL {
            match descriptor(name) {
                Ok(d) => assert!(d.plugin_names.contains(name)),
                Err(e) => {
                    let text = e.to_string();
                    assert!(text.contains("not compiled into this build"), "{text}");
                    assert!(text.contains("sys/plugins/catalog/database/"), "{text}");
                }
            }
        }
        assert!(descriptor("no-such-database-plugin").is_err());
        assert!(
            descriptor("postgresql-database-plugin")
                .unwrap()
                .plugin_names
                .contains(&"postgresql-database-plugin")
        );
    }

    /// The DM dialect's default password policy parses with dbwarden's policy engine, and
    /// every password it generates meets DM's strictest documented rule (`PWD_POLICY` = 31)
    /// and can be substituted into DM statements and ODBC connection strings.
    #[test]
    fn dameng_default_policy_generates_acceptable_passwords() {
        use dbwarden_odbc::dialect::{DAMENG_PASSWORD_PUNCTUATION, Dialect};
        use secrecy::ExposeSecret;
        let source = Dialect::Dameng.default_password_policy().unwrap();
        let rules = Dialect::Dameng.password_rules().unwrap();
        let policy = crate::crypto::password::PasswordPolicy::parse(source).unwrap();
        for _ in 0..2000 {
            let secret = policy.generate().unwrap();
            let pw = secret.expose_secret();
            rules.check(pw).unwrap();
            assert!(pw.chars().any(|c| c.is_ascii_lowercase()));
            assert!(
                pw.chars()
                    .all(|c| c.is_ascii_alphanumeric() || DAMENG_PASSWORD_PUNCTUATION.contains(c))
            );
        }
    }
}
