//! The server configuration file (TOML). Unknown keys are errors that name the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::crypto::Seal;
use crate::storage::Store;

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is invalid or has unknown keys.
    #[error("invalid configuration {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key and line).
        message: String,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `host:port` to listen on.
    pub listen_address: SocketAddr,
    /// Listener options.
    #[serde(default)]
    pub listener: ListenerConfig,
    /// Where dbwarden keeps its state.
    pub storage: StorageConfig,
    /// How the barrier's root key is obtained.
    pub seal: SealConfig,
    /// Log level filter (`info`, `debug`, or a tracing filter); default `info`.
    #[serde(default)]
    pub log_level: Option<String>,
    /// Revocation retry and worker tunables.
    #[serde(default)]
    pub leases: crate::engine::lease::LeaseSettings,
    /// Rotation retry tunables.
    #[serde(default)]
    pub rotation: crate::engine::rotation::RotationSettings,
    /// The directory external plugin commands resolve against
    /// (`sys/plugins/catalog/database/:name`); without one, no plugin can be registered.
    #[serde(default)]
    pub plugin_directory: Option<PathBuf>,
}

/// Listener options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// TLS, if wanted.
    pub tls: Option<TlsConfig>,
}

/// TLS certificate and key (PEM files).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain.
    pub cert_file: PathBuf,
    /// Private key.
    pub key_file: PathBuf,
}

/// Storage backends.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
pub enum StorageConfig {
    /// An embedded SQLite file.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A PostgreSQL database shared by replicas.
    Postgres {
        /// `postgres://user:pass@host/db`.
        url: String,
    },
}

/// Seal types.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SealConfig {
    /// A key file (created by `operator init`, mode 0400).
    Keyfile {
        /// The file.
        path: PathBuf,
    },
    /// A passphrase read from an environment variable.
    Passphrase {
        /// The variable; default `DBWARDEN_SEAL_PASSPHRASE`.
        #[serde(default = "default_passphrase_env")]
        env: String,
    },
}

fn default_passphrase_env() -> String {
    "DBWARDEN_SEAL_PASSPHRASE".into()
}

impl ServerConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses configuration text.
    pub fn parse(text: &str) -> Result<ServerConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim().replace('\n', " "))
    }

    /// The seal this configuration describes.
    pub fn seal(&self) -> Seal {
        match &self.seal {
            SealConfig::Keyfile { path } => Seal::KeyFile(path.clone()),
            SealConfig::Passphrase { env } => Seal::Passphrase { env: env.clone() },
        }
    }
}

impl StorageConfig {
    /// Opens the storage (creating the schema if needed).
    pub async fn open(&self) -> Result<Store, crate::storage::StorageError> {
        match self {
            StorageConfig::Sqlite { path } => Store::open_sqlite(path).await,
            StorageConfig::Postgres { url } => Store::open_postgres(url).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_config() {
        let c = ServerConfig::parse(
            r#"
            listen_address = "127.0.0.1:8200"
            [listener.tls]
            cert_file = "c.pem"
            key_file = "k.pem"
            [storage]
            backend = "postgres"
            url = "postgres://x@localhost/db"
            [seal]
            type = "passphrase"
            "#,
        )
        .unwrap();
        assert!(c.listener.tls.is_some());
        assert!(matches!(c.storage, StorageConfig::Postgres { .. }));
        assert!(matches!(c.seal(), Seal::Passphrase { env } if env == "DBWARDEN_SEAL_PASSPHRASE"));
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = ServerConfig::parse(
            "listen_address = \"127.0.0.1:1\"\nlisten_adress = 1\n[storage]\nbackend = \"sqlite\"\npath = \"x\"\n[seal]\ntype = \"keyfile\"\npath = \"k\"\n",
        )
        .unwrap_err();
        assert!(err.contains("listen_adress"), "{err}");
        let err = ServerConfig::parse(
            "listen_address = \"127.0.0.1:1\"\n[storage]\nbackend = \"sqlite\"\npath = \"x\"\nurl = \"y\"\n[seal]\ntype = \"keyfile\"\npath = \"k\"\n",
        )
        .unwrap_err();
        assert!(err.contains("url"), "{err}");
    }
}
