//! Tokens: creation, lookup, renewal and revocation, with Vault's TTL rules.
//!
//! A token is `dbw.` followed by 32 base62 characters (about 190 bits). Storage never holds
//! it: entries live at `token/id/<hmac>` where `<hmac>` is the HMAC-SHA256 of the token
//! under a key sealed by the barrier. Accessors (`token/accessor/<accessor>`) point to the
//! HMAC, and `token/parent/<parent>/<child>` records the tree used for cascading revocation.

use std::collections::BTreeMap;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::core::Core;
use crate::engine::error::{EngineError, Result, invalid};

/// Vault's system default and maximum token TTL: 768 hours.
pub const SYSTEM_MAX_TTL: i64 = 768 * 3600;

/// A stored token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenEntry {
    /// HMAC of the token (its storage identity).
    pub id_hmac: String,
    /// The accessor: a non-secret handle that can look up and revoke the token.
    pub accessor: String,
    /// Policies attached to the token.
    pub policies: Vec<String>,
    /// HMAC of the parent token, unless orphan.
    pub parent: Option<String>,
    /// Shown in usernames and audit (`token`, `root`, ...).
    pub display_name: String,
    /// Free-form metadata.
    pub meta: BTreeMap<String, String>,
    /// Remaining uses; 0 means unlimited.
    pub num_uses: i64,
    /// Whether the token survives its parent's revocation.
    pub orphan: bool,
    /// Unix seconds of creation.
    pub creation_time: i64,
    /// TTL at creation, seconds (0 for never-expiring tokens).
    pub creation_ttl: i64,
    /// Hard cap on the token's life, seconds (0 for none).
    pub explicit_max_ttl: i64,
    /// Unix seconds when it expires; `None` means never.
    pub expire_time: Option<i64>,
    /// Periodic tokens renew to this TTL, seconds (0 for not periodic).
    pub period: i64,
    /// Whether renew-self is allowed.
    pub renewable: bool,
    /// The creation path (`auth/token/create`, `auth/token/root`).
    pub path: String,
    /// Unix seconds of the last renewal.
    pub last_renewal: Option<i64>,
    /// Networks the token may be used from; empty means anywhere. Checked on every request.
    #[serde(default)]
    pub bound_cidrs: Vec<String>,
    /// The longest life renewals may give it, seconds from creation (0 = the system
    /// maximum). Set from an auth method's `token_max_ttl`.
    #[serde(default)]
    pub max_ttl: i64,
}

impl TokenEntry {
    /// Whether this is a root token.
    pub fn is_root(&self) -> bool {
        self.policies.iter().any(|p| p == "root")
    }

    /// Seconds left, or 0 for a never-expiring token.
    pub fn ttl(&self, now: i64) -> i64 {
        self.expire_time.map_or(0, |e| (e - now).max(0))
    }
}

/// What a caller may ask for when creating a token.
#[derive(Debug, Default, Clone)]
pub struct CreateToken {
    /// Requested policies; empty means the parent's.
    pub policies: Vec<String>,
    /// Do not add the `default` policy.
    pub no_default_policy: bool,
    /// Requested TTL, seconds.
    pub ttl: Option<i64>,
    /// Hard cap, seconds.
    pub explicit_max_ttl: Option<i64>,
    /// Period, seconds.
    pub period: Option<i64>,
    /// Create without a parent.
    pub orphan: bool,
    /// Number of uses (0 = unlimited).
    pub num_uses: i64,
    /// Display name suffix.
    pub display_name: Option<String>,
    /// Metadata.
    pub meta: BTreeMap<String, String>,
    /// Renewable (default true).
    pub renewable: Option<bool>,
}

fn new_token() -> Zeroizing<String> {
    Zeroizing::new(format!("dbw.{}", crate::crypto::random_base62(32)))
}

fn id_key(hmac: &str) -> String {
    format!("token/id/{hmac}")
}

fn accessor_key(accessor: &str) -> String {
    format!("token/accessor/{accessor}")
}

#[derive(Serialize, Deserialize)]
struct AccessorEntry {
    id_hmac: String,
}

async fn store_entry(core: &Core, entry: &TokenEntry) -> Result<()> {
    core.put_json(&id_key(&entry.id_hmac), entry).await?;
    if let Some(expire) = entry.expire_time {
        core.store.set_token_expiry(&entry.id_hmac, expire).await?;
    }
    Ok(())
}

async fn persist_new(core: &Core, entry: &TokenEntry) -> Result<()> {
    store_entry(core, entry).await?;
    core.put_json(
        &accessor_key(&entry.accessor),
        &AccessorEntry {
            id_hmac: entry.id_hmac.clone(),
        },
    )
    .await?;
    if let Some(parent) = &entry.parent {
        core.put_json(&format!("token/parent/{parent}/{}", entry.id_hmac), &())
            .await?;
    }
    Ok(())
}

/// Creates a root token (never expires, policy `root`). `id` lets dev mode choose it.
pub async fn create_root(
    core: &Core,
    id: Option<String>,
) -> Result<(Zeroizing<String>, TokenEntry)> {
    let token = match id {
        Some(id) if id.len() < 8 => {
            return Err(invalid("a root token id must be at least 8 characters"));
        }
        Some(id) => Zeroizing::new(id),
        None => new_token(),
    };
    let entry = TokenEntry {
        id_hmac: core.hmac(&token),
        accessor: crate::crypto::random_base62(24),
        policies: vec!["root".into()],
        parent: None,
        display_name: "root".into(),
        meta: BTreeMap::new(),
        num_uses: 0,
        orphan: true,
        creation_time: Utc::now().timestamp(),
        creation_ttl: 0,
        explicit_max_ttl: 0,
        expire_time: None,
        period: 0,
        renewable: false,
        path: "auth/token/root".into(),
        last_renewal: None,
        bound_cidrs: Vec::new(),
        max_ttl: 0,
    };
    persist_new(core, &entry).await?;
    Ok((token, entry))
}

/// Creates a child token of `parent`, with Vault's policy-subset and TTL rules.
pub async fn create(
    core: &Core,
    parent: &TokenEntry,
    req: CreateToken,
) -> Result<(Zeroizing<String>, TokenEntry)> {
    let mut policies: Vec<String> = if req.policies.is_empty() {
        parent
            .policies
            .iter()
            .filter(|p| *p != "default")
            .cloned()
            .collect()
    } else {
        req.policies
            .iter()
            .map(|p| p.trim().to_lowercase())
            .filter(|p| !p.is_empty())
            .collect()
    };
    if !parent.is_root()
        && let Some(p) = policies
            .iter()
            .find(|p| !parent.policies.contains(p) && *p != "default")
    {
        return Err(EngineError::PermissionDenied(format!(
            "child policies must be subset of parent: {p:?} is not"
        )));
    }
    if !req.no_default_policy
        && !policies.iter().any(|p| p == "default")
        && !policies.iter().any(|p| p == "root")
    {
        policies.push("default".into());
    }
    policies.sort();
    policies.dedup();
    if policies.iter().any(|p| p == "root") && !parent.is_root() {
        return Err(EngineError::PermissionDenied(
            "root tokens may only be created by a root token".into(),
        ));
    }
    let now = Utc::now().timestamp();
    for (name, v) in [
        ("ttl", req.ttl),
        ("explicit_max_ttl", req.explicit_max_ttl),
        ("period", req.period),
    ] {
        if v.is_some_and(|v| v < 0) {
            return Err(invalid(format!("{name} must not be negative")));
        }
    }
    let explicit_max = req.explicit_max_ttl.unwrap_or(0);
    let period = req.period.unwrap_or(0);
    let is_root_token = policies.iter().any(|p| p == "root");
    // Vault: period wins over ttl; otherwise ttl, else the system default; then clamp to
    // explicit max and to the system maximum. A root token without ttl never expires.
    let mut ttl = if period > 0 {
        period
    } else {
        req.ttl.unwrap_or(0)
    };
    if ttl == 0 && !(is_root_token && req.ttl.is_none() && explicit_max == 0) {
        ttl = SYSTEM_MAX_TTL;
    }
    if explicit_max > 0 && ttl > explicit_max {
        ttl = explicit_max;
    }
    if period == 0 && ttl > SYSTEM_MAX_TTL {
        ttl = SYSTEM_MAX_TTL;
    }
    // A child never outlives a parent that expires (unless it is an orphan).
    let mut expire_time = (ttl > 0).then_some(now.saturating_add(ttl));
    if !req.orphan
        && let (Some(parent_exp), Some(exp)) = (parent.expire_time, expire_time)
        && exp > parent_exp
    {
        expire_time = Some(parent_exp);
        ttl = parent_exp - now;
    }
    let display_name = match req
        .display_name
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(name) => format!("token-{name}"),
        None => "token".to_owned(),
    };
    if req.num_uses < 0 {
        return Err(invalid("num_uses must not be negative"));
    }
    let token = new_token();
    let entry = TokenEntry {
        id_hmac: core.hmac(&token),
        accessor: crate::crypto::random_base62(24),
        policies,
        parent: (!req.orphan).then(|| parent.id_hmac.clone()),
        display_name,
        meta: req.meta,
        num_uses: req.num_uses,
        orphan: req.orphan,
        creation_time: now,
        creation_ttl: ttl,
        explicit_max_ttl: explicit_max,
        expire_time,
        period,
        renewable: req.renewable.unwrap_or(true) && expire_time.is_some(),
        path: "auth/token/create".into(),
        last_renewal: None,
        // A child never escapes its parent's networks: otherwise a CIDR-bound token could
        // mint an unbound one and use it from anywhere.
        bound_cidrs: parent.bound_cidrs.clone(),
        max_ttl: 0,
    };
    persist_new(core, &entry).await?;
    Ok((token, entry))
}

/// What an auth method's login asks for: the role's `token_*` settings, resolved against
/// the mount, plus who logged in.
#[derive(Debug, Default, Clone)]
pub struct LoginToken {
    /// Policies of the role or user.
    pub policies: Vec<String>,
    /// Do not add the `default` policy.
    pub no_default_policy: bool,
    /// `token_ttl`, seconds (0 = the mount's default, else the system default).
    pub ttl: i64,
    /// `token_max_ttl`, seconds (0 = the mount's max, else the system max).
    pub max_ttl: i64,
    /// `token_explicit_max_ttl`, seconds (0 = none).
    pub explicit_max_ttl: i64,
    /// `token_period`, seconds (0 = not periodic).
    pub period: i64,
    /// `token_num_uses` (0 = unlimited).
    pub num_uses: i64,
    /// `token_bound_cidrs`.
    pub bound_cidrs: Vec<String>,
    /// The mount's default TTL, seconds (0 = system default).
    pub mount_default_ttl: i64,
    /// The mount's max TTL, seconds (0 = system max).
    pub mount_max_ttl: i64,
    /// Display name, already prefixed with the mount (`approle`, `userpass-alice`).
    pub display_name: String,
    /// Metadata shown in lookups and the `auth` block.
    pub meta: BTreeMap<String, String>,
    /// The login path (`auth/approle/login`), used to revoke by mount.
    pub path: String,
}

/// Issues an orphan token for a successful login, with Vault's TTL rules for auth methods:
/// the role's TTL or the mount's default, clamped to the role's max or the mount's max (a
/// periodic token renews to its period with no max, unless an explicit max is set).
pub async fn create_login(core: &Core, req: LoginToken) -> Result<(Zeroizing<String>, TokenEntry)> {
    let mut policies: Vec<String> = req
        .policies
        .iter()
        .map(|p| p.trim().to_lowercase())
        .filter(|p| !p.is_empty())
        .collect();
    if policies.iter().any(|p| p == "root") {
        // Vault refuses this too: a login must never mint a root token.
        return Err(invalid(
            "auth methods cannot issue tokens with the root policy",
        ));
    }
    if !req.no_default_policy && !policies.iter().any(|p| p == "default") {
        policies.push("default".into());
    }
    policies.sort();
    policies.dedup();
    for (name, v) in [
        ("token_ttl", req.ttl),
        ("token_max_ttl", req.max_ttl),
        ("token_explicit_max_ttl", req.explicit_max_ttl),
        ("token_period", req.period),
        ("token_num_uses", req.num_uses),
    ] {
        if v < 0 {
            return Err(invalid(format!("{name} must not be negative")));
        }
    }
    let mount_max = if req.mount_max_ttl > 0 {
        req.mount_max_ttl.min(SYSTEM_MAX_TTL)
    } else {
        SYSTEM_MAX_TTL
    };
    let max_ttl = if req.max_ttl > 0 {
        req.max_ttl.min(mount_max)
    } else {
        mount_max
    };
    let mut ttl = if req.period > 0 {
        req.period
    } else if req.ttl > 0 {
        req.ttl
    } else if req.mount_default_ttl > 0 {
        req.mount_default_ttl
    } else {
        SYSTEM_MAX_TTL
    };
    if req.period == 0 {
        ttl = ttl.min(max_ttl);
    }
    if req.explicit_max_ttl > 0 {
        ttl = ttl.min(req.explicit_max_ttl);
    }
    let now = Utc::now().timestamp();
    let token = new_token();
    let entry = TokenEntry {
        id_hmac: core.hmac(&token),
        accessor: crate::crypto::random_base62(24),
        policies,
        parent: None,
        display_name: req.display_name,
        meta: req.meta,
        num_uses: req.num_uses,
        orphan: true,
        creation_time: now,
        creation_ttl: ttl,
        explicit_max_ttl: req.explicit_max_ttl,
        expire_time: Some(now.saturating_add(ttl)),
        period: req.period,
        renewable: true,
        path: req.path,
        last_renewal: None,
        bound_cidrs: req.bound_cidrs,
        max_ttl,
    };
    persist_new(core, &entry).await?;
    Ok((token, entry))
}

/// Resolves a token; an expired token is revoked on the spot and reported as absent.
pub async fn lookup(core: &Core, token: &str) -> Result<Option<TokenEntry>> {
    lookup_hmac(core, &core.hmac(token)).await
}

/// Resolves a token by its HMAC.
pub async fn lookup_hmac(core: &Core, id_hmac: &str) -> Result<Option<TokenEntry>> {
    let Some(entry) = core.get_json::<TokenEntry>(&id_key(id_hmac)).await? else {
        return Ok(None);
    };
    if entry
        .expire_time
        .is_some_and(|e| e <= Utc::now().timestamp())
    {
        revoke_tree(core, &entry).await?;
        return Ok(None);
    }
    Ok(Some(entry))
}

/// Resolves an accessor to its token entry.
pub async fn lookup_accessor(core: &Core, accessor: &str) -> Result<Option<TokenEntry>> {
    match core
        .get_json::<AccessorEntry>(&accessor_key(accessor))
        .await?
    {
        Some(a) => lookup_hmac(core, &a.id_hmac).await,
        None => Ok(None),
    }
}

/// Spends one use of a limited-use token; revokes it when the last use is spent.
pub async fn spend_use(core: &Core, entry: &TokenEntry) -> Result<()> {
    if entry.num_uses <= 0 {
        return Ok(());
    }
    if entry.num_uses == 1 {
        // The last use: the request goes ahead, the token does not survive it.
        return revoke_tree(core, entry).await;
    }
    let mut updated = entry.clone();
    updated.num_uses -= 1;
    store_entry(core, &updated).await
}

/// Renews a token by `increment` seconds (or its creation TTL), within its limits.
/// Returns the entry and a warning when the TTL was capped.
pub async fn renew(
    core: &Core,
    entry: &TokenEntry,
    increment: Option<i64>,
) -> Result<(TokenEntry, Option<String>)> {
    if entry.expire_time.is_none() {
        return Err(invalid("token is not renewable: it does not expire"));
    }
    if !entry.renewable {
        return Err(invalid("token is not renewable"));
    }
    let now = Utc::now().timestamp();
    let mut ttl = if entry.period > 0 {
        entry.period
    } else {
        increment.filter(|i| *i > 0).unwrap_or(entry.creation_ttl)
    };
    let mut warning = None;
    let max_ttl = if entry.max_ttl > 0 {
        entry.max_ttl
    } else {
        SYSTEM_MAX_TTL
    };
    let mut max_valid = entry.creation_time.saturating_add(max_ttl);
    if entry.explicit_max_ttl > 0 {
        max_valid = max_valid.min(entry.creation_time.saturating_add(entry.explicit_max_ttl));
    }
    if entry.period > 0 && entry.explicit_max_ttl == 0 {
        max_valid = i64::MAX;
    }
    let remaining = max_valid.saturating_sub(now);
    if remaining <= 0 {
        return Err(invalid("past the max TTL, cannot renew"));
    }
    if ttl > remaining {
        warning = Some(format!(
            "TTL of \"{}\" exceeded the effective max_ttl of \"{}\"; TTL value is capped accordingly",
            crate::engine::ttl::format_duration(ttl),
            crate::engine::ttl::format_duration(remaining)
        ));
        ttl = remaining;
    }
    let mut updated = entry.clone();
    updated.expire_time = Some(now.saturating_add(ttl));
    updated.last_renewal = Some(now);
    store_entry(core, &updated).await?;
    Ok((updated, warning))
}

/// Revokes a token, its non-orphan descendants, and every lease they own.
pub async fn revoke_tree(core: &Core, entry: &TokenEntry) -> Result<()> {
    let mut stack = vec![entry.id_hmac.clone()];
    let mut order = Vec::new();
    while let Some(id) = stack.pop() {
        let prefix = format!("token/parent/{id}/");
        for child in core.list(&prefix).await? {
            stack.push(child);
        }
        order.push(id);
    }
    // Children first, so a crash half-way never leaves a child whose parent is gone
    // without also being reachable from a surviving parent.
    for id in order.iter().rev() {
        revoke_one(core, id).await?;
    }
    Ok(())
}

async fn revoke_one(core: &Core, id_hmac: &str) -> Result<()> {
    let Some(entry) = core.get_json::<TokenEntry>(&id_key(id_hmac)).await? else {
        return Ok(());
    };
    crate::engine::lease::revoke_by_owner(core, id_hmac).await?;
    for child in core.list(&format!("token/parent/{id_hmac}/")).await? {
        core.delete(&format!("token/parent/{id_hmac}/{child}"))
            .await?;
    }
    if let Some(parent) = &entry.parent {
        core.delete(&format!("token/parent/{parent}/{id_hmac}"))
            .await?;
    }
    core.delete(&accessor_key(&entry.accessor)).await?;
    core.delete(&id_key(id_hmac)).await?;
    core.store.delete_token_expiry(id_hmac).await?;
    Ok(())
}

/// Revokes every token created through a path below `prefix` (an auth mount being
/// disabled). Tokens are not indexed by path, so this reads them all: disabling a method is
/// rare, and an index would have to be kept right on every revocation.
pub async fn revoke_by_path_prefix(core: &Core, prefix: &str) -> Result<usize> {
    let mut revoked = 0;
    for id_hmac in core.list("token/id/").await? {
        let Some(entry) = core.get_json::<TokenEntry>(&id_key(&id_hmac)).await? else {
            continue;
        };
        if entry.path.starts_with(prefix) {
            revoke_tree(core, &entry).await?;
            revoked += 1;
        }
    }
    Ok(revoked)
}

/// Lists all accessors (for `auth/token/accessors`).
pub async fn list_accessors(core: &Core) -> Result<Vec<String>> {
    core.list("token/accessor/").await
}
