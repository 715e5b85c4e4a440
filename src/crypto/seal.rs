//! The seal: where the barrier's 256-bit root key comes from.
//!
//! - `keyfile`: 32 random bytes, base64 in a file created with mode 0400 by `operator init`.
//! - `passphrase`: Argon2id over a passphrase read from an environment variable, with a
//!   random salt kept in storage (the salt is not secret; the passphrase is).
//! - dev mode: a random key that lives only in memory.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::barrier::KeyBytes;
use crate::storage::{StorageError, Store};

/// Storage key of the passphrase seal's parameters (salt and Argon2 cost).
pub const SEAL_CONFIG_KEY: &str = "core/seal";

/// Errors of the seal.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key file could not be read or has the wrong content.
    #[error("seal key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The passphrase variable is unset or empty.
    #[error("seal passphrase: environment variable {0} is not set or empty")]
    MissingPassphrase(String),
    /// The passphrase seal's parameters are missing from storage.
    #[error(
        "storage has no passphrase seal parameters (was it initialised with another seal type?)"
    )]
    MissingParameters,
    /// Key derivation failed.
    #[error("seal key derivation failed: {0}")]
    Derive(String),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// How the root key is obtained.
#[derive(Debug, Clone)]
pub enum Seal {
    /// A key file.
    KeyFile(PathBuf),
    /// A passphrase from the named environment variable.
    Passphrase {
        /// The variable holding the passphrase.
        env: String,
    },
    /// A random in-memory key (dev mode).
    Ephemeral,
}

#[derive(Serialize, Deserialize)]
struct PassphraseParams {
    salt: String,
    m_cost: u32,
    t_cost: u32,
    p_cost: u32,
}

impl Seal {
    /// Creates the seal material for a new storage and returns the root key.
    ///
    /// For a key file, refuses to overwrite an existing file.
    pub async fn create(&self, store: &Store) -> Result<KeyBytes, SealError> {
        match self {
            Seal::KeyFile(path) => create_key_file(path),
            Seal::Passphrase { env } => {
                let passphrase = read_passphrase(env)?;
                let params = PassphraseParams {
                    salt: base64::engine::general_purpose::STANDARD
                        .encode(super::random_bytes::<16>()),
                    // OWASP's Argon2id recommendation: 19 MiB, 2 passes, 1 lane.
                    m_cost: 19 * 1024,
                    t_cost: 2,
                    p_cost: 1,
                };
                let key = derive(&passphrase, &params)?;
                store
                    .put(
                        SEAL_CONFIG_KEY,
                        &serde_json::to_vec(&params).expect("params serialise"),
                    )
                    .await?;
                Ok(key)
            }
            Seal::Ephemeral => Ok(Zeroizing::new(super::random_bytes::<32>())),
        }
    }

    /// Loads the root key of an initialised storage.
    pub async fn root_key(&self, store: &Store) -> Result<KeyBytes, SealError> {
        match self {
            Seal::KeyFile(path) => read_key_file(path),
            Seal::Passphrase { env } => {
                let passphrase = read_passphrase(env)?;
                let raw = store
                    .get(SEAL_CONFIG_KEY)
                    .await?
                    .ok_or(SealError::MissingParameters)?;
                let params: PassphraseParams =
                    serde_json::from_slice(&raw).map_err(|_| SealError::MissingParameters)?;
                derive(&passphrase, &params)
            }
            Seal::Ephemeral => Ok(Zeroizing::new(super::random_bytes::<32>())),
        }
    }
}

fn read_passphrase(env: &str) -> Result<Zeroizing<String>, SealError> {
    match std::env::var(env) {
        Ok(v) if !v.is_empty() => Ok(Zeroizing::new(v)),
        _ => Err(SealError::MissingPassphrase(env.to_owned())),
    }
}

fn derive(passphrase: &str, params: &PassphraseParams) -> Result<KeyBytes, SealError> {
    let salt = base64::engine::general_purpose::STANDARD
        .decode(&params.salt)
        .map_err(|_| SealError::MissingParameters)?;
    let argon_params = Params::new(params.m_cost, params.t_cost, params.p_cost, Some(32))
        .map_err(|e| SealError::Derive(e.to_string()))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.as_bytes(), &salt, &mut key[..])
        .map_err(|e| SealError::Derive(e.to_string()))?;
    Ok(key)
}

fn key_file_error(path: &Path, reason: impl Into<String>) -> SealError {
    SealError::KeyFile {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn create_key_file(path: &Path) -> Result<KeyBytes, SealError> {
    let key = Zeroizing::new(super::random_bytes::<32>());
    let encoded = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&key[..]));
    // create_new: never overwrite an existing key, which would make its storage unreadable.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(path)
        .map_err(|e| key_file_error(path, e.to_string()))?;
    file.write_all(encoded.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(|e| key_file_error(path, e.to_string()))?;
    Ok(key)
}

fn read_key_file(path: &Path) -> Result<KeyBytes, SealError> {
    let meta = std::fs::metadata(path).map_err(|e| key_file_error(path, e.to_string()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(key_file_error(
            path,
            "is readable or writable by group or others; chmod 0400 it",
        ));
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| key_file_error(path, e.to_string()))?,
    );
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| key_file_error(path, "is not base64"))?,
    );
    let array: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| key_file_error(path, "does not hold a 32-byte key"))?;
    Ok(Zeroizing::new(array))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn key_file_is_created_0400_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("s.db")).await.unwrap();
        let path = dir.path().join("seal.key");
        let seal = Seal::KeyFile(path.clone());
        let key = seal.create(&store).await.unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o400
        );
        assert_eq!(*seal.root_key(&store).await.unwrap(), *key);
        assert!(seal.create(&store).await.is_err(), "must not overwrite");
    }

    #[tokio::test]
    async fn passphrase_derives_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("s.db")).await.unwrap();
        // SAFETY of env mutation: this variable name is used by this test only.
        unsafe { std::env::set_var("DBWARDEN_TEST_SEAL_PASSPHRASE", "correct horse") };
        let seal = Seal::Passphrase {
            env: "DBWARDEN_TEST_SEAL_PASSPHRASE".into(),
        };
        let key = seal.create(&store).await.unwrap();
        assert_eq!(*seal.root_key(&store).await.unwrap(), *key);
        let missing = Seal::Passphrase {
            env: "DBWARDEN_TEST_UNSET_VAR".into(),
        };
        assert!(matches!(
            missing.root_key(&store).await,
            Err(SealError::MissingPassphrase(_))
        ));
    }
}
