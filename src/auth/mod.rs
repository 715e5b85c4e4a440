//! Who is calling and what they may do: tokens, ACL policies and their storage, and the
//! login methods mounted under `auth/` (AppRole, Kubernetes, userpass) that issue tokens.

pub mod approle;
pub mod cidr;
pub mod kubernetes;
pub mod login;
pub mod mounts;
pub mod policy;
pub mod policy_store;
pub mod token;
pub mod userpass;
pub mod wrapping;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// In-memory state of the auth methods: caches and locks that must outlive one request.
/// Everything that has to survive a restart lives in storage instead.
#[derive(Default)]
pub struct AuthState {
    /// Kubernetes signing keys fetched from JWKS endpoints, per mount (by uuid).
    jwks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<kubernetes::JwksCache>>>>,
    /// Serialises read-modify-write of login bookkeeping (lock-out counters, the last TOTP
    /// step) within this process, so concurrent failures are all counted.
    pub(crate) bookkeeping: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for AuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthState").finish_non_exhaustive()
    }
}

impl AuthState {
    /// The JWKS cache of a mount, created empty on first use.
    pub(crate) fn jwks(&self, mount_uuid: &str) -> Arc<tokio::sync::Mutex<kubernetes::JwksCache>> {
        let mut map = self.jwks.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(mount_uuid.to_owned()).or_default().clone()
    }

    /// Drops the caches of a mount that was disabled.
    pub fn forget_mount(&self, mount_uuid: &str) {
        let mut map = self.jwks.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(mount_uuid);
    }
}
