//! Secrets engine mounts (`sys/mounts`): which paths serve a database engine.

use serde::{Deserialize, Serialize};

use super::error::{EngineError, Result, invalid};
use crate::core::Core;

const MOUNTS_KEY: &str = "core/mounts";

/// Mount tunables.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountConfig {
    /// Default lease TTL, seconds (0 = system default).
    pub default_lease_ttl: i64,
    /// Max lease TTL, seconds (0 = system default).
    pub max_lease_ttl: i64,
}

/// One mounted secrets engine.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Mount {
    /// The path, without leading or trailing slash (`database`, `team-a/db`).
    pub path: String,
    /// Engine type; only `database` exists.
    #[serde(rename = "type")]
    pub kind: String,
    /// Free text.
    pub description: String,
    /// `database_<8 hex>`.
    pub accessor: String,
    /// Storage namespace; a re-enabled path never sees an old mount's data.
    pub uuid: String,
    /// Tunables.
    pub config: MountConfig,
}

impl Mount {
    /// Prefix of this mount's storage keys.
    pub fn storage_prefix(&self) -> String {
        format!("mount/{}/", self.uuid)
    }
}

/// Paths that cannot be used for mounts.
const RESERVED: &[&str] = &["sys", "auth", "cubbyhole", "identity"];

/// Normalises a mount path: trims slashes, refuses reserved or empty paths.
pub fn normalize_path(path: &str) -> Result<String> {
    let path = path.trim_matches('/');
    if path.is_empty() {
        return Err(invalid("mount path must not be empty"));
    }
    let first = path.split('/').next().unwrap_or_default();
    if RESERVED.contains(&first) {
        return Err(invalid(format!(
            "cannot mount at reserved path \"{path}/\""
        )));
    }
    if path
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(invalid(format!("invalid mount path \"{path}\"")));
    }
    Ok(path.to_owned())
}

/// All mounts.
pub async fn list(core: &Core) -> Result<Vec<Mount>> {
    Ok(core
        .get_json::<Vec<Mount>>(MOUNTS_KEY)
        .await?
        .unwrap_or_default())
}

/// Mounts a database engine at `path`.
pub async fn enable(
    core: &Core,
    path: &str,
    kind: &str,
    description: &str,
    config: MountConfig,
) -> Result<Mount> {
    let path = normalize_path(path)?;
    if kind != "database" {
        return Err(invalid(format!("plugin not found in the catalog: {kind}")));
    }
    let mut mounts = list(core).await?;
    if mounts.iter().any(|m| {
        m.path == path
            || path.starts_with(&format!("{}/", m.path))
            || m.path.starts_with(&format!("{path}/"))
    }) {
        return Err(invalid(format!("path is already in use at {path}/")));
    }
    let uuid = uuid::Uuid::new_v4().to_string();
    let mount = Mount {
        accessor: format!("database_{}", &uuid[..8]),
        path,
        kind: kind.to_owned(),
        description: description.to_owned(),
        uuid,
        config,
    };
    mounts.push(mount.clone());
    core.put_json(MOUNTS_KEY, &mounts).await?;
    Ok(mount)
}

/// Changes a mount's tunables.
pub async fn tune(core: &Core, path: &str, config: MountConfig) -> Result<()> {
    let path = normalize_path(path)?;
    let mut mounts = list(core).await?;
    let mount = mounts
        .iter_mut()
        .find(|m| m.path == path)
        .ok_or_else(|| invalid(format!("no mount at {path}/")))?;
    mount.config = config;
    core.put_json(MOUNTS_KEY, &mounts).await
}

/// Unmounts: revokes every lease of the mount, then deletes its storage.
pub async fn disable(core: &Core, path: &str) -> Result<()> {
    let path = normalize_path(path)?;
    let mounts = list(core).await?;
    let Some(mount) = mounts.iter().find(|m| m.path == path).cloned() else {
        // Vault answers 204 for a path that is not mounted.
        return Ok(());
    };
    super::lease::revoke_prefix(core, &format!("{path}/"), false).await?;
    core.backends.close_prefix(&mount.storage_prefix()).await;
    for key in core.store.list(&mount.storage_prefix()).await? {
        core.store.delete(&key).await?;
    }
    let remaining: Vec<Mount> = mounts.into_iter().filter(|m| m.path != path).collect();
    core.put_json(MOUNTS_KEY, &remaining).await
}

/// Finds the mount serving `path` (longest prefix) and the rest of the path.
pub async fn resolve(core: &Core, path: &str) -> Result<Option<(Mount, String)>> {
    let mounts = list(core).await?;
    Ok(mounts
        .into_iter()
        .filter(|m| path == m.path || path.starts_with(&format!("{}/", m.path)))
        .max_by_key(|m| m.path.len())
        .map(|m| {
            let rest = path[m.path.len()..].trim_start_matches('/').to_owned();
            (m, rest)
        }))
}

/// Finds a mount by exact path.
pub async fn get(core: &Core, path: &str) -> Result<Mount> {
    let path = path.trim_matches('/');
    list(core)
        .await?
        .into_iter()
        .find(|m| m.path == path)
        .ok_or_else(|| EngineError::UnsupportedPath(format!("no handler for route \"{path}\"")))
}
