//! Auth method mounts (`sys/auth`): which paths under `auth/` serve which login method.
//!
//! The built-in `token/` mount always exists and is not stored. Each other mount has a
//! storage namespace `auth/<uuid>/`, so disabling and re-enabling a path never shows the old
//! mount's roles, users or secret IDs.

use serde::{Deserialize, Serialize};

use crate::core::Core;
use crate::engine::error::{EngineError, Result, invalid};

const AUTH_MOUNTS_KEY: &str = "core/auth";

/// The login methods dbwarden implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MethodKind {
    /// Machines: a role ID and a secret ID.
    Approle,
    /// Workloads: a Kubernetes ServiceAccount JWT.
    Kubernetes,
    /// People: a username, a password and optionally a TOTP code.
    Userpass,
}

impl MethodKind {
    /// Parses the `type` of `sys/auth/:path`.
    pub fn parse(kind: &str) -> Result<MethodKind> {
        match kind {
            "approle" => Ok(MethodKind::Approle),
            "kubernetes" => Ok(MethodKind::Kubernetes),
            "userpass" => Ok(MethodKind::Userpass),
            "token" => Err(invalid(
                "the token auth method is built in and cannot be mounted again",
            )),
            other => Err(invalid(format!("plugin not found in the catalog: {other}"))),
        }
    }

    /// The name Vault uses.
    pub fn as_str(self) -> &'static str {
        match self {
            MethodKind::Approle => "approle",
            MethodKind::Kubernetes => "kubernetes",
            MethodKind::Userpass => "userpass",
        }
    }
}

/// Vault's `user_lockout_config` of a mount (used by userpass).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockoutConfig {
    /// Consecutive failures that lock a user.
    pub threshold: u32,
    /// How long a locked user stays locked, seconds.
    pub duration: i64,
    /// Failures older than this no longer count, seconds.
    pub counter_reset: i64,
    /// Turns lock-out off.
    pub disabled: bool,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        // Vault's defaults.
        LockoutConfig {
            threshold: 5,
            duration: 15 * 60,
            counter_reset: 15 * 60,
            disabled: false,
        }
    }
}

/// Tunables of an auth mount.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuthMountConfig {
    /// Default token TTL of logins through this mount, seconds (0 = system default).
    pub default_lease_ttl: i64,
    /// Max token TTL of logins through this mount, seconds (0 = system default).
    pub max_lease_ttl: i64,
    /// Lock-out of repeated login failures.
    #[serde(default)]
    pub lockout: LockoutConfig,
}

/// One mounted auth method.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuthMount {
    /// The path below `auth/`, without slashes at the ends (`approle`, `k8s/prod`).
    pub path: String,
    /// The method.
    #[serde(rename = "type")]
    pub kind: MethodKind,
    /// Free text.
    pub description: String,
    /// `auth_<type>_<8 hex>`.
    pub accessor: String,
    /// Storage namespace.
    pub uuid: String,
    /// Tunables.
    pub config: AuthMountConfig,
}

impl AuthMount {
    /// Prefix of this mount's storage keys.
    pub fn storage_prefix(&self) -> String {
        format!("auth/{}/", self.uuid)
    }

    /// A storage key inside this mount.
    pub fn key(&self, rest: &str) -> String {
        format!("auth/{}/{rest}", self.uuid)
    }

    /// The token display name prefix, as Vault builds it: the mount path with `/` as `-`.
    pub fn display_prefix(&self) -> String {
        self.path.replace('/', "-")
    }
}

/// Normalises a mount path below `auth/`.
pub fn normalize_path(path: &str) -> Result<String> {
    let path = path.trim_matches('/');
    if path.is_empty() {
        return Err(invalid("auth mount path must not be empty"));
    }
    if path == "token" || path.starts_with("token/") {
        return Err(invalid("path is already in use at token/"));
    }
    if path
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(invalid(format!("invalid auth mount path \"{path}\"")));
    }
    Ok(path.to_owned())
}

/// All stored auth mounts (not including the built-in `token/`).
pub async fn list(core: &Core) -> Result<Vec<AuthMount>> {
    Ok(core
        .get_json::<Vec<AuthMount>>(AUTH_MOUNTS_KEY)
        .await?
        .unwrap_or_default())
}

/// Enables a method at `auth/<path>`.
pub async fn enable(
    core: &Core,
    path: &str,
    kind: MethodKind,
    description: &str,
    config: AuthMountConfig,
) -> Result<AuthMount> {
    let path = normalize_path(path)?;
    let mut mounts = list(core).await?;
    if mounts.iter().any(|m| {
        m.path == path
            || path.starts_with(&format!("{}/", m.path))
            || m.path.starts_with(&format!("{path}/"))
    }) {
        return Err(invalid(format!("path is already in use at {path}/")));
    }
    let uuid = uuid::Uuid::new_v4().to_string();
    let mount = AuthMount {
        accessor: format!("auth_{}_{}", kind.as_str(), &uuid[..8]),
        path,
        kind,
        description: description.to_owned(),
        uuid,
        config,
    };
    mounts.push(mount.clone());
    core.put_json(AUTH_MOUNTS_KEY, &mounts).await?;
    Ok(mount)
}

/// Changes a mount's tunables.
pub async fn tune(core: &Core, path: &str, config: AuthMountConfig) -> Result<()> {
    let path = normalize_path(path)?;
    let mut mounts = list(core).await?;
    let mount = mounts
        .iter_mut()
        .find(|m| m.path == path)
        .ok_or_else(|| invalid(format!("no auth mount at {path}/")))?;
    mount.config = config;
    core.put_json(AUTH_MOUNTS_KEY, &mounts).await
}

/// Disables a method: revokes every token its logins issued (and so their leases), then
/// deletes its storage. Vault answers 204 for a path that is not mounted, and so does this.
pub async fn disable(core: &Core, path: &str) -> Result<()> {
    let path = normalize_path(path)?;
    let mounts = list(core).await?;
    let Some(mount) = mounts.iter().find(|m| m.path == path).cloned() else {
        return Ok(());
    };
    // Remove the mount first: a login racing with the disable then finds no method, and
    // the sweep below cannot miss a token issued after it started.
    let remaining: Vec<AuthMount> = mounts.into_iter().filter(|m| m.path != path).collect();
    core.put_json(AUTH_MOUNTS_KEY, &remaining).await?;
    let revoked = super::token::revoke_by_path_prefix(core, &format!("auth/{path}/")).await?;
    if revoked > 0 {
        tracing::info!(mount = %path, tokens = revoked, "auth method disabled; its tokens were revoked");
    }
    for key in core.store.list(&mount.storage_prefix()).await? {
        core.store.delete(&key).await?;
    }
    core.auth.forget_mount(&mount.uuid);
    Ok(())
}

/// Finds the auth mount serving `path` (below `auth/`, longest prefix) and the rest.
pub async fn resolve(core: &Core, path: &str) -> Result<Option<(AuthMount, String)>> {
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
pub async fn get(core: &Core, path: &str) -> Result<AuthMount> {
    let path = path.trim_matches('/');
    list(core)
        .await?
        .into_iter()
        .find(|m| m.path == path)
        .ok_or_else(|| {
            EngineError::InvalidRequest(format!("no auth method mounted at auth/{path}/"))
        })
}
