//! `dbwarden operator init`: create the seal material, the schema and the root token.

use zeroize::Zeroizing;

use crate::config::ServerConfig;
use crate::core::Core;
use crate::engine::error::EngineError;

/// Errors of `operator init`.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// Storage already holds a keyring; nothing was changed.
    #[error("storage is already initialised; nothing was changed")]
    AlreadyInitialized,
    /// The seal key file exists already; nothing was changed.
    #[error("seal key file {0} already exists; refusing to overwrite it")]
    KeyFileExists(std::path::PathBuf),
    /// Storage could not be opened.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// Initialisation failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Initialises the storage named by `config` and returns the root token.
///
/// Checks everything that could make it refuse *before* writing anything, so running it
/// twice leaves the first initialisation untouched.
pub async fn init(config: &ServerConfig) -> Result<Zeroizing<String>, InitError> {
    if let crate::config::SealConfig::Keyfile { path } = &config.seal
        && path.exists()
    {
        return Err(InitError::KeyFileExists(path.clone()));
    }
    let store = config.storage.open().await?;
    if Core::is_initialized(&store).await? {
        return Err(InitError::AlreadyInitialized);
    }
    let (_core, token) = Core::initialize(store, &config.seal(), None).await?;
    Ok(token)
}
