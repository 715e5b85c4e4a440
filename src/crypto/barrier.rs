//! The barrier: AES-256-GCM encryption of every value dbwarden stores.
//!
//! Each value is sealed with a fresh random 96-bit nonce and with its storage key as
//! additional authenticated data, so a ciphertext copied to another record fails to open.
//! Data keys live in a keyring of numbered terms; `rotate` adds a term that all new writes
//! use, while values written under older terms stay readable. The keyring itself is stored
//! sealed under the root key that the [`Seal`](super::Seal) provides.
//!
//! Sealed layout: `[version = 1][term: u32 big-endian][nonce: 12][ciphertext + tag]`.

use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::storage::{StorageError, Store};

const VERSION: u8 = 1;
const HEADER: usize = 1 + 4 + 12;
/// Storage key of the sealed keyring.
pub const KEYRING_KEY: &str = "core/keyring";

/// Errors of the barrier.
#[derive(Debug, thiserror::Error)]
pub enum BarrierError {
    /// A value failed authentication: wrong key, tampering, or moved between records.
    #[error("stored value at {0:?} failed authentication (wrong key or tampered data)")]
    Authentication(String),
    /// A value names a key term the keyring does not have.
    #[error("stored value at {key:?} uses unknown key term {term}")]
    UnknownTerm {
        /// The storage key.
        key: String,
        /// The term named in the value.
        term: u32,
    },
    /// A value is too short or has an unknown version.
    #[error("stored value at {0:?} is malformed")]
    Malformed(String),
    /// The keyring is missing: storage was not initialised.
    #[error("storage is not initialised: run `dbwarden operator init`")]
    NotInitialized,
    /// The root key does not open the keyring (wrong key file or passphrase).
    #[error("the seal key does not open this storage (wrong key file or passphrase)")]
    WrongRootKey,
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A 256-bit key that is wiped from memory when dropped.
pub type KeyBytes = Zeroizing<[u8; 32]>;

#[derive(Serialize, Deserialize, Zeroize)]
#[zeroize(drop)]
struct StoredKey {
    term: u32,
    key: [u8; 32],
    #[zeroize(skip)]
    installed: DateTime<Utc>,
}

#[derive(Serialize, Deserialize, Default)]
struct StoredKeyring {
    keys: Vec<StoredKey>,
}

/// What `sys/key-status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct KeyStatus {
    /// The active key term.
    pub term: u32,
    /// When it was installed.
    pub install_time: DateTime<Utc>,
    /// Values sealed with it by this process.
    pub encryptions: u64,
}

/// Encrypts and decrypts stored values; holds the unsealed keyring.
pub struct Barrier {
    root: KeyBytes,
    keyring: RwLock<StoredKeyring>,
    encryptions: AtomicU64,
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier").finish_non_exhaustive()
    }
}

fn seal_with(key: &[u8; 32], term: u32, aad: &str, plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new(key.into());
    let nonce = Nonce::generate();
    let ciphertext = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: aad.as_bytes(),
            },
        )
        .expect("AES-GCM encryption of an in-memory buffer cannot fail");
    let mut out = Vec::with_capacity(HEADER + ciphertext.len());
    out.push(VERSION);
    out.extend_from_slice(&term.to_be_bytes());
    out.extend_from_slice(nonce.as_slice());
    out.extend_from_slice(&ciphertext);
    out
}

fn parse_header(aad: &str, sealed: &[u8]) -> Result<u32, BarrierError> {
    if sealed.len() < HEADER + 16 || sealed[0] != VERSION {
        return Err(BarrierError::Malformed(aad.to_owned()));
    }
    Ok(u32::from_be_bytes([
        sealed[1], sealed[2], sealed[3], sealed[4],
    ]))
}

fn open_with(key: &[u8; 32], aad: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, BarrierError> {
    let cipher = Aes256Gcm::new(key.into());
    let nonce =
        Nonce::try_from(&sealed[5..HEADER]).map_err(|_| BarrierError::Malformed(aad.to_owned()))?;
    cipher
        .decrypt(
            &nonce,
            Payload {
                msg: &sealed[HEADER..],
                aad: aad.as_bytes(),
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| BarrierError::Authentication(aad.to_owned()))
}

impl Barrier {
    /// Creates a fresh keyring (term 1) and stores it sealed under `root`.
    ///
    /// Fails without writing anything if a keyring already exists.
    pub async fn initialize(store: &Store, root: KeyBytes) -> Result<Barrier, BarrierError> {
        let keyring = StoredKeyring {
            keys: vec![StoredKey {
                term: 1,
                key: super::random_bytes::<32>(),
                installed: Utc::now(),
            }],
        };
        let sealed = Self::seal_keyring(&root, &keyring);
        if !store.put_if_absent(KEYRING_KEY, &sealed).await? {
            return Err(BarrierError::Malformed(
                "core/keyring already exists; refusing to overwrite".into(),
            ));
        }
        Ok(Barrier {
            root,
            keyring: RwLock::new(keyring),
            encryptions: AtomicU64::new(0),
        })
    }

    /// Opens the stored keyring with `root`.
    pub async fn unseal(store: &Store, root: KeyBytes) -> Result<Barrier, BarrierError> {
        let sealed = store
            .get(KEYRING_KEY)
            .await?
            .ok_or(BarrierError::NotInitialized)?;
        parse_header(KEYRING_KEY, &sealed)?;
        let plain =
            open_with(&root, KEYRING_KEY, &sealed).map_err(|_| BarrierError::WrongRootKey)?;
        let keyring: StoredKeyring = serde_json::from_slice(&plain)
            .map_err(|_| BarrierError::Malformed(KEYRING_KEY.into()))?;
        Ok(Barrier {
            root,
            keyring: RwLock::new(keyring),
            encryptions: AtomicU64::new(0),
        })
    }

    fn seal_keyring(root: &[u8; 32], keyring: &StoredKeyring) -> Vec<u8> {
        let plain = Zeroizing::new(serde_json::to_vec(keyring).expect("keyring serialises"));
        seal_with(root, 0, KEYRING_KEY, &plain)
    }

    /// Encrypts `plaintext` for the record at `key` with the active term.
    pub fn seal(&self, key: &str, plaintext: &[u8]) -> Vec<u8> {
        let keyring = self.keyring.read().expect("keyring lock poisoned");
        let active = keyring.keys.last().expect("keyring is never empty");
        self.encryptions.fetch_add(1, Ordering::Relaxed);
        seal_with(&active.key, active.term, key, plaintext)
    }

    /// Decrypts the value stored at `key`.
    pub fn open(&self, key: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, BarrierError> {
        let term = parse_header(key, sealed)?;
        let keyring = self.keyring.read().expect("keyring lock poisoned");
        let data_key = keyring
            .keys
            .iter()
            .find(|k| k.term == term)
            .ok_or_else(|| BarrierError::UnknownTerm {
                key: key.to_owned(),
                term,
            })?;
        open_with(&data_key.key, key, sealed)
    }

    /// Adds a new key term; new writes use it from now on. Returns the new term.
    pub async fn rotate(&self, store: &Store) -> Result<u32, BarrierError> {
        let sealed = {
            let mut keyring = self.keyring.write().expect("keyring lock poisoned");
            let term = keyring.keys.last().map_or(1, |k| k.term + 1);
            keyring.keys.push(StoredKey {
                term,
                key: super::random_bytes::<32>(),
                installed: Utc::now(),
            });
            self.encryptions.store(0, Ordering::Relaxed);
            Self::seal_keyring(&self.root, &keyring)
        };
        store.put(KEYRING_KEY, &sealed).await?;
        Ok(self.status().term)
    }

    /// Reloads the keyring from storage, to pick up a rotation made by another replica.
    pub async fn reload(&self, store: &Store) -> Result<(), BarrierError> {
        let fresh = Barrier::unseal(store, self.root.clone()).await?;
        let keys = std::mem::take(&mut *fresh.keyring.write().expect("keyring lock poisoned"));
        *self.keyring.write().expect("keyring lock poisoned") = keys;
        Ok(())
    }

    /// The active term, when it was installed, and how much it has been used.
    pub fn status(&self) -> KeyStatus {
        let keyring = self.keyring.read().expect("keyring lock poisoned");
        let active = keyring.keys.last().expect("keyring is never empty");
        KeyStatus {
            term: active.term,
            install_time: active.installed,
            encryptions: self.encryptions.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("b.db")).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn seal_open_round_trip_and_aad_binding() {
        let (_dir, store) = store().await;
        let barrier = Barrier::initialize(&store, Zeroizing::new([7u8; 32]))
            .await
            .unwrap();
        let sealed = barrier.seal("config/a", b"secret-bytes");
        assert!(!sealed.windows(12).any(|w| w == b"secret-bytes"));
        assert_eq!(
            &barrier.open("config/a", &sealed).unwrap()[..],
            b"secret-bytes"
        );
        // Moving a value to another record fails authentication.
        assert!(matches!(
            barrier.open("config/b", &sealed),
            Err(BarrierError::Authentication(_))
        ));
        // Tampering fails authentication.
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(barrier.open("config/a", &bad).is_err());
        // Two seals of the same value differ (fresh nonce).
        assert_ne!(barrier.seal("k", b"x"), barrier.seal("k", b"x"));
    }

    #[tokio::test]
    async fn rotation_keeps_old_values_readable_and_persists() {
        let (_dir, store) = store().await;
        let root = Zeroizing::new([9u8; 32]);
        let barrier = Barrier::initialize(&store, root.clone()).await.unwrap();
        let old = barrier.seal("k", b"old");
        assert_eq!(barrier.rotate(&store).await.unwrap(), 2);
        let new = barrier.seal("k", b"new");
        assert_eq!(parse_header("k", &new).unwrap(), 2);
        let reopened = Barrier::unseal(&store, root).await.unwrap();
        assert_eq!(reopened.status().term, 2);
        assert_eq!(&reopened.open("k", &old).unwrap()[..], b"old");
        assert_eq!(&reopened.open("k", &new).unwrap()[..], b"new");
    }

    #[tokio::test]
    async fn wrong_root_key_and_double_init_are_refused() {
        let (_dir, store) = store().await;
        Barrier::initialize(&store, Zeroizing::new([1u8; 32]))
            .await
            .unwrap();
        assert!(
            Barrier::initialize(&store, Zeroizing::new([1u8; 32]))
                .await
                .is_err()
        );
        assert!(matches!(
            Barrier::unseal(&store, Zeroizing::new([2u8; 32])).await,
            Err(BarrierError::WrongRootKey)
        ));
    }
}
