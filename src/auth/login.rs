//! What every login method shares: the `token_*` settings of a role or user, and issuing
//! the token of a successful login.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::mounts::AuthMount;
use super::token::{self, LoginToken, TokenEntry};
use crate::core::Core;
use crate::engine::error::{EngineError, Result, invalid};

/// Vault's common token settings of an auth-method role (`tokenutil.TokenParams`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenParams {
    /// `token_policies` (legacy: `policies`).
    pub policies: Vec<String>,
    /// `token_ttl` (legacy: `ttl`), seconds.
    pub ttl: i64,
    /// `token_max_ttl` (legacy: `max_ttl`), seconds.
    pub max_ttl: i64,
    /// `token_explicit_max_ttl`, seconds.
    pub explicit_max_ttl: i64,
    /// `token_period` (legacy: `period`), seconds.
    pub period: i64,
    /// `token_num_uses` (legacy: `num_uses`).
    pub num_uses: i64,
    /// `token_no_default_policy`.
    pub no_default_policy: bool,
    /// `token_bound_cidrs` (legacy: `bound_cidrs`).
    pub bound_cidrs: Vec<String>,
    /// `token_type`: only service tokens exist here, so `default` or `service`.
    pub token_type: String,
}

impl TokenParams {
    /// Checks the settings together (each field was checked on its own when parsed).
    pub fn validate(&self) -> Result<()> {
        if self.max_ttl > 0 && self.ttl > self.max_ttl {
            return Err(invalid(
                "\"token_ttl\" cannot be greater than \"token_max_ttl\"",
            ));
        }
        if self
            .policies
            .iter()
            .any(|p| p.trim().eq_ignore_ascii_case("root"))
        {
            return Err(invalid(
                "auth methods cannot issue tokens with the root policy",
            ));
        }
        match self.token_type.as_str() {
            "" | "default" | "service" | "default-service" => Ok(()),
            "batch" | "default-batch" => Err(invalid(
                "batch tokens are not supported; use token_type \"service\"",
            )),
            other => Err(invalid(format!("invalid token_type {other:?}"))),
        }
    }
}

/// Who logged in, as the method established it.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// The method's part of the display name (`""` for AppRole, `<ns>-<sa>`, `<user>`).
    pub display_name: String,
    /// Token metadata (`role_name`, `service_account_name`, `username`, ...).
    pub meta: BTreeMap<String, String>,
    /// Overrides the role's `token_bound_cidrs` (an AppRole secret ID may narrow them).
    pub bound_cidrs: Option<Vec<String>>,
}

/// Refuses a login from outside the networks the token would be bound to: the token could
/// not be used from there anyway, and Vault's core refuses it the same way.
pub fn check_login_network(
    bound_cidrs: &[String],
    remote: Option<IpAddr>,
    mount: &AuthMount,
) -> Result<()> {
    if super::cidr::allows(bound_cidrs, remote) {
        return Ok(());
    }
    tracing::warn!(
        mount = %mount.path,
        remote = ?remote,
        "login refused: caller address outside token_bound_cidrs"
    );
    Err(EngineError::PermissionDenied("permission denied".into()))
}

/// Issues the token of a successful login through `mount`, requested at `path`.
pub async fn issue(
    core: &Core,
    mount: &AuthMount,
    path: &str,
    params: &TokenParams,
    identity: Identity,
) -> Result<(Zeroizing<String>, TokenEntry)> {
    let prefix = mount.display_prefix();
    let display_name = if identity.display_name.is_empty() {
        prefix
    } else {
        format!("{prefix}-{}", identity.display_name)
    };
    token::create_login(
        core,
        LoginToken {
            policies: params.policies.clone(),
            no_default_policy: params.no_default_policy,
            ttl: params.ttl,
            max_ttl: params.max_ttl,
            explicit_max_ttl: params.explicit_max_ttl,
            period: params.period,
            num_uses: params.num_uses,
            bound_cidrs: identity
                .bound_cidrs
                .unwrap_or_else(|| params.bound_cidrs.clone()),
            mount_default_ttl: mount.config.default_lease_ttl,
            mount_max_ttl: mount.config.max_lease_ttl,
            display_name,
            meta: identity.meta,
            path: path.to_owned(),
        },
    )
    .await
}
