//! [`Core`]: the unsealed state every request works with (storage, barrier, backends).

use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::auth::token::TokenEntry;
use crate::crypto::barrier::KeyBytes;
use crate::crypto::{Barrier, Seal};
use crate::engine::backends::Backends;
use crate::engine::error::{EngineError, Result};
use crate::engine::lease::LeaseSettings;
use crate::engine::rotation::RotationSettings;
use crate::storage::{Store, next_segments};

const HMAC_KEY: &str = "core/hmac-key";

/// The server's live state, shared by every request handler and background task.
pub struct Core {
    /// dbwarden's own storage.
    pub store: Store,
    /// Encrypts every stored value.
    pub barrier: Barrier,
    /// Key for the HMACs that stand in for tokens in storage.
    hmac_key: KeyBytes,
    /// Open connections to target databases.
    pub backends: Backends,
    /// Wakes the lease worker when a lease with an earlier deadline is stored.
    pub lease_wake: crate::engine::lease::LeaseWake,
    /// When this process started serving.
    pub started: Instant,
    /// Revocation and worker tunables.
    pub leases: LeaseSettings,
    /// Rotation tunables.
    pub rotation: RotationSettings,
    /// Enabled audit devices.
    pub audit: crate::audit::Broker,
    /// Wakes the rotation worker when a rotation is scheduled or rescheduled.
    pub rotation_wake: tokio::sync::Notify,
    /// The Prometheus recorder's handle, when metrics are enabled (the server installs it).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Caches and locks of the auth methods (JWKS keys, login bookkeeping).
    pub auth: crate::auth::AuthState,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// Whether the storage holds a keyring already.
    pub async fn is_initialized(store: &Store) -> Result<bool> {
        Ok(store
            .get(crate::crypto::barrier::KEYRING_KEY)
            .await?
            .is_some())
    }

    /// Initialises empty storage: seal material, keyring, HMAC key, default policy and the
    /// root token. Returns the core and the root token, which is shown once and never stored.
    pub async fn initialize(
        store: Store,
        seal: &Seal,
        root_token_id: Option<String>,
    ) -> Result<(Core, Zeroizing<String>)> {
        if Self::is_initialized(&store).await? {
            return Err(EngineError::InvalidRequest(
                "storage is already initialised".into(),
            ));
        }
        let root = seal.create(&store).await?;
        let barrier = Barrier::initialize(&store, root).await?;
        let hmac_key = Zeroizing::new(crate::crypto::random_bytes::<32>());
        let sealed = barrier.seal(HMAC_KEY, &hmac_key[..]);
        store.put(HMAC_KEY, &sealed).await?;
        let core = Core::assemble(store, barrier, hmac_key);
        crate::auth::policy_store::install_default(&core).await?;
        let (token, _) = crate::auth::token::create_root(&core, root_token_id).await?;
        Ok((core, token))
    }

    /// Opens initialised storage with the seal's root key.
    pub async fn open(store: Store, seal: &Seal) -> Result<Core> {
        if !Self::is_initialized(&store).await? {
            return Err(EngineError::Barrier(
                crate::crypto::BarrierError::NotInitialized,
            ));
        }
        let root = seal.root_key(&store).await?;
        let barrier = Barrier::unseal(&store, root).await?;
        let raw = store
            .get(HMAC_KEY)
            .await?
            .ok_or_else(|| EngineError::Internal("storage has no HMAC key".into()))?;
        let plain = barrier.open(HMAC_KEY, &raw)?;
        let key: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| EngineError::Internal("stored HMAC key has the wrong length".into()))?;
        Ok(Core::assemble(store, barrier, Zeroizing::new(key)))
    }

    fn assemble(store: Store, barrier: Barrier, hmac_key: KeyBytes) -> Core {
        Core {
            store,
            barrier,
            hmac_key,
            backends: Backends::default(),
            lease_wake: crate::engine::lease::LeaseWake::default(),
            started: Instant::now(),
            leases: LeaseSettings::default(),
            rotation: RotationSettings::default(),
            audit: crate::audit::Broker::default(),
            rotation_wake: tokio::sync::Notify::new(),
            metrics: None,
            auth: crate::auth::AuthState::default(),
        }
    }

    /// HMAC-SHA256 of a secret (a token), hex encoded: what storage keeps instead of it.
    pub fn hmac(&self, secret: &str) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.hmac_key[..])
            .expect("HMAC accepts any key length");
        mac.update(secret.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Reads and decrypts a JSON value.
    pub async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let Some(raw) = self.store.get(key).await? else {
            return Ok(None);
        };
        let plain = self.barrier.open(key, &raw)?;
        serde_json::from_slice(&plain).map(Some).map_err(|e| {
            EngineError::Internal(format!("stored value at {key:?} is unreadable: {e}"))
        })
    }

    /// Encrypts and writes a JSON value.
    pub async fn put_json<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let plain = Zeroizing::new(
            serde_json::to_vec(value).map_err(|e| EngineError::Internal(e.to_string()))?,
        );
        let sealed = self.barrier.seal(key, &plain);
        self.store.put(key, &sealed).await?;
        Ok(())
    }

    /// Deletes a value.
    pub async fn delete(&self, key: &str) -> Result<()> {
        Ok(self.store.delete(key).await?)
    }

    /// Lists the next path segments below `prefix` (which ends with `/`).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let keys = self.store.list(prefix).await?;
        Ok(next_segments(prefix, &keys))
    }

    /// Resolves a client token to its entry, if it is valid.
    pub async fn lookup_token(&self, token: &str) -> Result<Option<TokenEntry>> {
        crate::auth::token::lookup(self, token).await
    }
}
