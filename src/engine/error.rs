//! The engine's error type. `http` maps it to a status code, once, at the edge.

use dbwarden_plugin::BackendError;

use crate::crypto::{BarrierError, SealError};
use crate::storage::StorageError;

/// Everything a request can fail with below the HTTP layer.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The object does not exist (404 with an empty error list, as Vault).
    #[error("not found")]
    NotFound,
    /// The request is invalid (400).
    #[error("{0}")]
    InvalidRequest(String),
    /// Missing or insufficient token, or a failed condition (403).
    #[error("{0}")]
    PermissionDenied(String),
    /// No handler serves this path (404 with a message).
    #[error("{0}")]
    UnsupportedPath(String),
    /// The path exists but not with this operation (405).
    #[error("unsupported operation")]
    UnsupportedOperation,
    /// A backend failed (status depends on the kind).
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Storage failed (500).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The barrier failed (500).
    #[error(transparent)]
    Barrier(#[from] BarrierError),
    /// The seal failed (500).
    #[error(transparent)]
    Seal(#[from] SealError),
    /// Anything else that is the server's fault (500).
    #[error("{0}")]
    Internal(String),
}

/// Result alias for the engine.
pub type Result<T> = std::result::Result<T, EngineError>;

/// Shorthand for a 400 with a message.
pub fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidRequest(msg.into())
}
