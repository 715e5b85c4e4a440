//! AppRole: machines log in with a role ID (which says who they claim to be) and a secret ID
//! (which proves it), as in Vault.
//!
//! Storage below the mount (`auth/<uuid>/`), every value sealed by the barrier:
//! - `role/<name>`: the role.
//! - `role-id/<hmac(role_id)>`: which role a role ID names.
//! - `secret-id/<name>/<hmac(secret_id)>`: a secret ID's properties. The secret ID itself is
//!   never stored, only its HMAC under the core's sealed key, so storage cannot give it back.
//! - `accessor/<accessor>`: the non-secret handle of a secret ID, for lookups and revocation.
//! - `secret-id-use/<hmac>/<n>`: one marker per spent use of a limited secret ID. A use is
//!   spent by creating its marker with insert-if-absent, so two logins (even on two replicas
//!   sharing PostgreSQL) can never both spend the last use.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::cidr;
use super::login::{self, Identity, TokenParams};
use super::mounts::AuthMount;
use super::token::TokenEntry;
use crate::core::Core;
use crate::engine::error::{EngineError, Result, invalid};

/// The one answer to every failed credential check: which part was wrong is not revealed.
const INVALID_CREDENTIALS: &str = "invalid role or secret ID";

/// An AppRole role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Role {
    /// The role name (lower case).
    pub name: String,
    /// The role ID (not a secret: it names the role, like a username).
    pub role_id: String,
    /// Whether a secret ID is required at login (default true).
    pub bind_secret_id: bool,
    /// Uses of each new secret ID (0 = unlimited).
    pub secret_id_num_uses: i64,
    /// Life of each new secret ID, seconds (0 = no expiry).
    pub secret_id_ttl: i64,
    /// Networks logins with this role's secret IDs may come from.
    pub secret_id_bound_cidrs: Vec<String>,
    /// Accepted and returned for Vault compatibility; there is no replication here.
    pub local_secret_ids: bool,
    /// Settings of the tokens its logins get.
    pub token: TokenParams,
}

impl Role {
    /// A new role with Vault's defaults and a random role ID.
    pub fn new(name: &str) -> Role {
        Role {
            name: name.to_owned(),
            role_id: uuid::Uuid::new_v4().to_string(),
            bind_secret_id: true,
            secret_id_num_uses: 0,
            secret_id_ttl: 0,
            secret_id_bound_cidrs: Vec::new(),
            local_secret_ids: false,
            token: TokenParams::default(),
        }
    }

    /// Checks the role as a whole before it is stored.
    pub fn validate(&self) -> Result<()> {
        self.token.validate()?;
        if self.secret_id_num_uses < 0 {
            return Err(invalid("secret_id_num_uses cannot be negative"));
        }
        if self.role_id.trim().is_empty() {
            return Err(invalid("role_id must not be empty"));
        }
        // Vault: a role that checks nothing would hand a token to anyone who knows its ID.
        if !self.bind_secret_id
            && self.secret_id_bound_cidrs.is_empty()
            && self.token.bound_cidrs.is_empty()
        {
            return Err(invalid(
                "at least one constraint should be enabled on the role: bind_secret_id, secret_id_bound_cidrs or token_bound_cidrs",
            ));
        }
        Ok(())
    }
}

/// A stored secret ID (without the secret).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SecretIdEntry {
    accessor: String,
    role: String,
    creation_time: i64,
    expiration_time: Option<i64>,
    /// Uses granted at creation (0 = unlimited).
    num_uses: i64,
    /// The TTL it was created with, seconds.
    ttl: i64,
    cidr_list: Vec<String>,
    token_bound_cidrs: Vec<String>,
    metadata: BTreeMap<String, String>,
    last_updated_time: i64,
}

#[derive(Serialize, Deserialize)]
struct RoleIdIndex {
    name: String,
}

#[derive(Serialize, Deserialize)]
struct AccessorIndex {
    role: String,
    hmac: String,
}

/// What may be asked of a new secret ID.
#[derive(Debug, Default, Clone)]
pub struct SecretIdRequest {
    /// A caller-chosen secret (`custom-secret-id`); `None` generates one.
    pub secret_id: Option<Zeroizing<String>>,
    /// Metadata attached to the tokens of its logins.
    pub metadata: BTreeMap<String, String>,
    /// Networks its logins may come from (within the role's).
    pub cidr_list: Vec<String>,
    /// Networks its tokens are bound to (within the role's).
    pub token_bound_cidrs: Vec<String>,
    /// Its life, seconds (at most the role's).
    pub ttl: Option<i64>,
    /// Its uses (at most the role's).
    pub num_uses: Option<i64>,
}

/// A freshly created secret ID: shown once, never again.
#[derive(Debug)]
pub struct IssuedSecretId {
    /// The secret.
    pub secret_id: Zeroizing<String>,
    /// Its accessor.
    pub accessor: String,
    /// Its TTL, seconds (0 = none).
    pub ttl: i64,
    /// Its uses (0 = unlimited).
    pub num_uses: i64,
}

/// What a lookup shows of a secret ID.
#[derive(Debug, Clone)]
pub struct SecretIdInfo {
    /// The accessor.
    pub accessor: String,
    /// Unix seconds of creation.
    pub creation_time: i64,
    /// Unix seconds of expiry, if any.
    pub expiration_time: Option<i64>,
    /// Unix seconds of the last use or change.
    pub last_updated_time: i64,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// Uses left (0 = unlimited).
    pub num_uses_left: i64,
    /// The TTL it was created with, seconds.
    pub ttl: i64,
    /// Networks its logins may come from.
    pub cidr_list: Vec<String>,
    /// Networks its tokens are bound to.
    pub token_bound_cidrs: Vec<String>,
}

/// Normalises a role name: Vault's AppRole names are case-insensitive.
pub fn normalize_name(name: &str) -> Result<String> {
    let name = name.trim().to_lowercase();
    if name.is_empty() || name.contains('/') {
        return Err(invalid("role name must be non-empty and contain no '/'"));
    }
    Ok(name)
}

fn role_key(mount: &AuthMount, name: &str) -> String {
    mount.key(&format!("role/{name}"))
}

fn role_id_key(core: &Core, mount: &AuthMount, role_id: &str) -> String {
    let h = core.hmac(&format!("approle-role-id\0{}\0{role_id}", mount.uuid));
    mount.key(&format!("role-id/{h}"))
}

fn secret_hmac(core: &Core, mount: &AuthMount, secret: &str) -> String {
    // Domain-separated from token HMACs, and bound to the mount.
    core.hmac(&format!("approle-secret-id\0{}\0{secret}", mount.uuid))
}

fn secret_key(mount: &AuthMount, role: &str, hmac: &str) -> String {
    mount.key(&format!("secret-id/{role}/{hmac}"))
}

fn uses_prefix(mount: &AuthMount, hmac: &str) -> String {
    mount.key(&format!("secret-id-use/{hmac}/"))
}

fn accessor_key(mount: &AuthMount, accessor: &str) -> String {
    mount.key(&format!("accessor/{accessor}"))
}

/// Reads a role.
pub async fn read_role(core: &Core, mount: &AuthMount, name: &str) -> Result<Option<Role>> {
    let name = normalize_name(name)?;
    core.get_json(&role_key(mount, &name)).await
}

/// Lists role names.
pub async fn list_roles(core: &Core, mount: &AuthMount) -> Result<Vec<String>> {
    core.list(&mount.key("role/")).await
}

/// Stores a role (new or changed), keeping the role ID index right.
pub async fn write_role(core: &Core, mount: &AuthMount, role: &Role) -> Result<()> {
    role.validate()?;
    let previous: Option<Role> = core.get_json(&role_key(mount, &role.name)).await?;
    let new_index = role_id_key(core, mount, &role.role_id);
    if let Some(existing) = core.get_json::<RoleIdIndex>(&new_index).await?
        && existing.name != role.name
    {
        return Err(invalid("role_id already in use"));
    }
    core.put_json(
        &new_index,
        &RoleIdIndex {
            name: role.name.clone(),
        },
    )
    .await?;
    core.put_json(&role_key(mount, &role.name), role).await?;
    if let Some(previous) = previous
        && previous.role_id != role.role_id
    {
        core.delete(&role_id_key(core, mount, &previous.role_id))
            .await?;
    }
    Ok(())
}

/// Deletes a role, its role ID and every secret ID it has.
pub async fn delete_role(core: &Core, mount: &AuthMount, name: &str) -> Result<()> {
    let Some(role) = read_role(core, mount, name).await? else {
        return Ok(());
    };
    for hmac in core
        .list(&mount.key(&format!("secret-id/{}/", role.name)))
        .await?
    {
        destroy_by_hmac(core, mount, &role.name, &hmac).await?;
    }
    core.delete(&role_id_key(core, mount, &role.role_id))
        .await?;
    core.delete(&role_key(mount, &role.name)).await
}

/// Creates a secret ID for a role (generated, or the caller's for `custom-secret-id`).
pub async fn create_secret_id(
    core: &Core,
    mount: &AuthMount,
    role: &Role,
    req: SecretIdRequest,
) -> Result<IssuedSecretId> {
    let cidr_list = cidr::normalize(&req.cidr_list)?;
    if !cidr::is_subset(&cidr_list, &role.secret_id_bound_cidrs) {
        return Err(invalid(
            "failed to verify the CIDR restrictions set on the secret ID: cidr_list must be a subset of the role's secret_id_bound_cidrs",
        ));
    }
    let token_bound_cidrs = cidr::normalize(&req.token_bound_cidrs)?;
    if !cidr::is_subset(&token_bound_cidrs, &role.token.bound_cidrs) {
        return Err(invalid(
            "failed to verify the CIDR restrictions set on the secret ID: token_bound_cidrs must be a subset of the role's token_bound_cidrs",
        ));
    }
    let ttl = match req.ttl {
        Some(ttl) if ttl < 0 => return Err(invalid("ttl cannot be negative")),
        Some(ttl) if role.secret_id_ttl > 0 && (ttl == 0 || ttl > role.secret_id_ttl) => {
            return Err(invalid(
                "ttl cannot be longer than the role's secret_id_ttl",
            ));
        }
        Some(ttl) if ttl > 0 => ttl,
        _ => role.secret_id_ttl,
    };
    let num_uses = match req.num_uses {
        Some(n) if n < 0 => return Err(invalid("num_uses cannot be negative")),
        Some(n) if role.secret_id_num_uses > 0 && (n == 0 || n > role.secret_id_num_uses) => {
            return Err(invalid(
                "num_uses cannot be higher than the role's secret_id_num_uses",
            ));
        }
        Some(n) if n > 0 => n,
        _ => role.secret_id_num_uses,
    };
    let secret_id = match req.secret_id {
        Some(s) if s.trim().is_empty() => return Err(invalid("secret_id must not be empty")),
        Some(s) => s,
        None => Zeroizing::new(uuid::Uuid::new_v4().to_string()),
    };
    let hmac = secret_hmac(core, mount, &secret_id);
    let key = secret_key(mount, &role.name, &hmac);
    if core.get_json::<SecretIdEntry>(&key).await?.is_some() {
        return Err(invalid("SecretID is already registered"));
    }
    let now = Utc::now().timestamp();
    let accessor = uuid::Uuid::new_v4().to_string();
    let entry = SecretIdEntry {
        accessor: accessor.clone(),
        role: role.name.clone(),
        creation_time: now,
        expiration_time: (ttl > 0).then_some(now.saturating_add(ttl)),
        num_uses,
        ttl,
        cidr_list,
        token_bound_cidrs,
        metadata: req.metadata,
        last_updated_time: now,
    };
    // The accessor first: a crash in between leaves a dangling accessor (harmless), never
    // a secret ID that cannot be listed or revoked.
    core.put_json(
        &accessor_key(mount, &accessor),
        &AccessorIndex {
            role: role.name.clone(),
            hmac: hmac.clone(),
        },
    )
    .await?;
    core.put_json(&key, &entry).await?;
    Ok(IssuedSecretId {
        secret_id,
        accessor,
        ttl,
        num_uses,
    })
}

async fn spent_uses(core: &Core, mount: &AuthMount, hmac: &str) -> Result<i64> {
    Ok(core.store.list(&uses_prefix(mount, hmac)).await?.len() as i64)
}

async fn info(
    core: &Core,
    mount: &AuthMount,
    hmac: &str,
    e: &SecretIdEntry,
) -> Result<SecretIdInfo> {
    let left = if e.num_uses > 0 {
        (e.num_uses - spent_uses(core, mount, hmac).await?).max(0)
    } else {
        0
    };
    Ok(SecretIdInfo {
        accessor: e.accessor.clone(),
        creation_time: e.creation_time,
        expiration_time: e.expiration_time,
        last_updated_time: e.last_updated_time,
        metadata: e.metadata.clone(),
        num_uses_left: left,
        ttl: e.ttl,
        cidr_list: e.cidr_list.clone(),
        token_bound_cidrs: e.token_bound_cidrs.clone(),
    })
}

/// Loads a live secret ID; an expired one is destroyed on the spot and reported absent.
async fn load_live(
    core: &Core,
    mount: &AuthMount,
    role: &str,
    hmac: &str,
) -> Result<Option<SecretIdEntry>> {
    let Some(entry) = core
        .get_json::<SecretIdEntry>(&secret_key(mount, role, hmac))
        .await?
    else {
        return Ok(None);
    };
    if entry
        .expiration_time
        .is_some_and(|e| e <= Utc::now().timestamp())
    {
        destroy_by_hmac(core, mount, role, hmac).await?;
        return Ok(None);
    }
    Ok(Some(entry))
}

async fn destroy_by_hmac(core: &Core, mount: &AuthMount, role: &str, hmac: &str) -> Result<()> {
    let key = secret_key(mount, role, hmac);
    if let Some(entry) = core.get_json::<SecretIdEntry>(&key).await? {
        core.delete(&accessor_key(mount, &entry.accessor)).await?;
    }
    core.delete(&key).await?;
    for marker in core.store.list(&uses_prefix(mount, hmac)).await? {
        core.store.delete(&marker).await?;
    }
    Ok(())
}

/// Looks up a secret ID of a role by its value.
pub async fn lookup_secret_id(
    core: &Core,
    mount: &AuthMount,
    role: &Role,
    secret_id: &str,
) -> Result<Option<SecretIdInfo>> {
    let hmac = secret_hmac(core, mount, secret_id);
    match load_live(core, mount, &role.name, &hmac).await? {
        Some(e) => Ok(Some(info(core, mount, &hmac, &e).await?)),
        None => Ok(None),
    }
}

/// Destroys a secret ID of a role by its value (absent is not an error).
pub async fn destroy_secret_id(
    core: &Core,
    mount: &AuthMount,
    role: &Role,
    secret_id: &str,
) -> Result<()> {
    let hmac = secret_hmac(core, mount, secret_id);
    destroy_by_hmac(core, mount, &role.name, &hmac).await
}

async fn resolve_accessor(
    core: &Core,
    mount: &AuthMount,
    role: &Role,
    accessor: &str,
) -> Result<Option<String>> {
    Ok(core
        .get_json::<AccessorIndex>(&accessor_key(mount, accessor))
        .await?
        .filter(|a| a.role == role.name)
        .map(|a| a.hmac))
}

/// Looks up a secret ID by its accessor.
pub async fn lookup_accessor(
    core: &Core,
    mount: &AuthMount,
    role: &Role,
    accessor: &str,
) -> Result<Option<SecretIdInfo>> {
    let Some(hmac) = resolve_accessor(core, mount, role, accessor).await? else {
        return Ok(None);
    };
    match load_live(core, mount, &role.name, &hmac).await? {
        Some(e) => Ok(Some(info(core, mount, &hmac, &e).await?)),
        None => Ok(None),
    }
}

/// Destroys a secret ID by its accessor; returns whether it existed.
pub async fn destroy_accessor(
    core: &Core,
    mount: &AuthMount,
    role: &Role,
    accessor: &str,
) -> Result<bool> {
    let Some(hmac) = resolve_accessor(core, mount, role, accessor).await? else {
        return Ok(false);
    };
    destroy_by_hmac(core, mount, &role.name, &hmac).await?;
    Ok(true)
}

/// Lists the accessors of a role's live secret IDs (expired ones are removed on the way).
pub async fn list_accessors(core: &Core, mount: &AuthMount, role: &Role) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for hmac in core
        .list(&mount.key(&format!("secret-id/{}/", role.name)))
        .await?
    {
        if let Some(e) = load_live(core, mount, &role.name, &hmac).await? {
            out.push(e.accessor);
        }
    }
    out.sort();
    Ok(out)
}

/// Removes every expired secret ID of the mount; returns how many went.
pub async fn tidy(core: &Core, mount: &AuthMount) -> Result<usize> {
    let mut removed = 0;
    for role in list_roles(core, mount).await? {
        for hmac in core.list(&mount.key(&format!("secret-id/{role}/"))).await? {
            if load_live(core, mount, &role, &hmac).await?.is_none() {
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Spends one use of a limited secret ID; false when none is left. The last use destroys it.
async fn spend_use(
    core: &Core,
    mount: &AuthMount,
    role: &str,
    hmac: &str,
    entry: &SecretIdEntry,
) -> Result<bool> {
    let prefix = uses_prefix(mount, hmac);
    let mut n = spent_uses(core, mount, hmac).await? + 1;
    while n <= entry.num_uses {
        let key = format!("{prefix}{n:010}");
        let sealed = core.barrier.seal(&key, b"{}");
        if core.store.put_if_absent(&key, &sealed).await? {
            // The secret ID may have been destroyed (its markers with it) between our read
            // and our claim, for example by a concurrent login spending the last use: only
            // a claim made while the entry still exists counts. Destruction removes the
            // entry before the markers, so this check cannot miss it.
            if core
                .get_json::<SecretIdEntry>(&secret_key(mount, role, hmac))
                .await?
                .is_none()
            {
                core.store.delete(&key).await?;
                return Ok(false);
            }
            if n == entry.num_uses {
                destroy_by_hmac(core, mount, role, hmac).await?;
            }
            return Ok(true);
        }
        // Someone spent use n concurrently: try the next one.
        n += 1;
    }
    Ok(false)
}

/// `login`: checks the role ID, the secret ID (existence, expiry, networks, uses) and issues
/// the token. Every credential failure gives the same answer.
pub async fn login(
    core: &Core,
    mount: &AuthMount,
    path: &str,
    role_id: &str,
    secret_id: Option<&str>,
    remote: Option<IpAddr>,
) -> Result<(Zeroizing<String>, TokenEntry, Role)> {
    let role_id = role_id.trim();
    if role_id.is_empty() {
        return Err(invalid("missing role_id"));
    }
    let Some(index) = core
        .get_json::<RoleIdIndex>(&role_id_key(core, mount, role_id))
        .await?
    else {
        return Err(invalid(INVALID_CREDENTIALS));
    };
    let Some(role) = core.get_json::<Role>(&role_key(mount, &index.name)).await? else {
        return Err(invalid(INVALID_CREDENTIALS));
    };
    let mut identity = Identity::default();
    if role.bind_secret_id {
        let secret_id = secret_id.map(str::trim).unwrap_or_default();
        if secret_id.is_empty() {
            return Err(invalid("missing secret_id"));
        }
        let hmac = secret_hmac(core, mount, secret_id);
        let Some(entry) = load_live(core, mount, &role.name, &hmac).await? else {
            return Err(invalid(INVALID_CREDENTIALS));
        };
        // Networks before uses: a login from the wrong place must not burn a use.
        if !cidr::allows(&entry.cidr_list, remote) {
            return Err(source_refused(remote, "secret ID"));
        }
        if !cidr::allows(&role.secret_id_bound_cidrs, remote) {
            return Err(source_refused(remote, "role"));
        }
        if !entry.token_bound_cidrs.is_empty() {
            identity.bound_cidrs = Some(entry.token_bound_cidrs.clone());
        }
        login::check_login_network(
            identity
                .bound_cidrs
                .as_deref()
                .unwrap_or(&role.token.bound_cidrs),
            remote,
            mount,
        )?;
        if entry.num_uses > 0 && !spend_use(core, mount, &role.name, &hmac, &entry).await? {
            return Err(invalid(INVALID_CREDENTIALS));
        }
        identity.meta = entry.metadata.clone();
    } else {
        if !cidr::allows(&role.secret_id_bound_cidrs, remote) {
            return Err(source_refused(remote, "role"));
        }
        login::check_login_network(&role.token.bound_cidrs, remote, mount)?;
    }
    identity
        .meta
        .insert("role_name".to_owned(), role.name.clone());
    let (token, entry) = login::issue(core, mount, path, &role.token, identity).await?;
    Ok((token, entry, role))
}

fn source_refused(remote: Option<IpAddr>, what: &str) -> EngineError {
    let addr = remote.map_or_else(|| "unknown".to_owned(), |a| a.to_string());
    invalid(format!(
        "source address {addr:?} unauthorized by CIDR restrictions on the {what}"
    ))
}
