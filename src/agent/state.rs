//! The agent's state file: what it holds, so that a restart in the same Pod reuses it.
//!
//! Vault's agent keeps nothing: an init container and the sidecar each mint a credential,
//! and every restart mints another (vault#14634, vault#27739). dbwarden's agent records its
//! token, each secret's lease and the old leases still waiting for revocation in a JSON file
//! beside the outputs (an in-memory `emptyDir` lives as long as the Pod, exactly the scope
//! wanted). On start it looks the recorded lease up and, while valid, renews it instead of
//! minting. The file is as sensitive as the credentials next to it (it holds the token), so
//! it gets mode 0400 and is written atomically like every output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::file::{Owner, write_atomic};

/// The current format of the file.
const VERSION: u32 = 1;

/// What the agent remembers across restarts.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// Format version.
    #[serde(default)]
    pub version: u32,
    /// The token, for `kubernetes` and `approle` auth (not for `token_file`).
    #[serde(default)]
    pub token: Option<String>,
    /// Secrets by name.
    #[serde(default)]
    pub secrets: BTreeMap<String, StoredSecret>,
    /// Replaced leases to revoke when their grace period ends.
    #[serde(default)]
    pub pending_revocations: Vec<PendingRevocation>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .field("secrets", &self.secrets)
            .field("pending_revocations", &self.pending_revocations)
            .finish()
    }
}

/// One secret's lease.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredSecret {
    /// The path it was read from (a changed path invalidates the record).
    pub path: String,
    /// The lease id (empty for static credentials).
    pub lease_id: String,
    /// The TTL granted at issue, asked for again at each renewal.
    pub lease_duration: u64,
}

/// A lease to revoke at `due` (Unix seconds).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingRevocation {
    /// The secret it belonged to.
    pub secret: String,
    /// The lease.
    pub lease_id: String,
    /// When, Unix seconds.
    pub due: i64,
}

/// Errors saving the state.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the state file {path}: {source}")]
pub struct StateError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

/// The state file and its in-memory copy.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    state: Mutex<State>,
}

impl StateFile {
    /// Loads the file. A missing file is an empty state; an unreadable or corrupt one is
    /// reported and treated as empty (the worst outcome is one extra credential).
    pub fn load(path: &Path) -> StateFile {
        let state = match std::fs::read(path) {
            Ok(bytes) => match serde_json::from_slice::<State>(&bytes) {
                Ok(state) if state.version == VERSION => state,
                Ok(state) => {
                    tracing::warn!(path = %path.display(), version = state.version, "ignoring a state file of another version");
                    State::default()
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring a corrupt state file");
                    State::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the state file; starting afresh");
                State::default()
            }
        };
        StateFile {
            path: path.to_owned(),
            state: Mutex::new(state),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A copy of the state.
    pub fn snapshot(&self) -> State {
        self.lock().clone()
    }

    /// Changes the state and writes the file. The write is small and happens a few times a
    /// lease lifetime, so it is done inline (under the lock, which keeps writes ordered).
    pub fn update(&self, change: impl FnOnce(&mut State)) -> Result<(), StateError> {
        let mut state = self.lock();
        change(&mut state);
        state.version = VERSION;
        let bytes = serde_json::to_vec_pretty(&*state).unwrap_or_default();
        write_atomic(&self.path, &bytes, 0o400, Owner::default()).map_err(|source| StateError {
            path: self.path.clone(),
            source,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves valid data (every change is one assignment).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn round_trip_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let file = StateFile::load(&path);
        assert_eq!(file.snapshot(), State::default());
        file.update(|s| {
            s.token = Some("s.token-value".into());
            s.secrets.insert(
                "db".into(),
                StoredSecret {
                    path: "database/creds/app".into(),
                    lease_id: "database/creds/app/x".into(),
                    lease_duration: 60,
                },
            );
        })
        .unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o400);
        let again = StateFile::load(&path).snapshot();
        assert_eq!(again.secrets["db"].lease_id, "database/creds/app/x");
        assert_eq!(again.version, VERSION);
        assert!(!format!("{again:?}").contains("token-value"));
    }

    #[test]
    fn corrupt_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(StateFile::load(&path).snapshot(), State::default());
    }
}
