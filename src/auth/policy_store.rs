//! Stored ACL policies (`sys/policy/:name`, `sys/policies/acl/:name`) and the ACL of a token.

use serde::{Deserialize, Serialize};

use super::policy::{Acl, DEFAULT_POLICY, Policy};
use super::token::TokenEntry;
use crate::core::Core;
use crate::engine::error::{Result, invalid};

#[derive(Serialize, Deserialize)]
struct StoredPolicy {
    name: String,
    policy: String,
}

fn key(name: &str) -> String {
    format!("policy/acl/{name}")
}

/// Normalises and validates a policy name (Vault lowercases them).
pub fn normalize_name(name: &str) -> Result<String> {
    let name = name.trim().to_lowercase();
    if name.is_empty() || name.contains('/') {
        return Err(invalid("policy name must be non-empty and contain no '/'"));
    }
    Ok(name)
}

/// Writes the built-in `default` policy if it is missing.
pub async fn install_default(core: &Core) -> Result<()> {
    if read(core, "default").await?.is_none() {
        write(core, "default", DEFAULT_POLICY).await?;
    }
    Ok(())
}

/// Parses and stores a policy.
pub async fn write(core: &Core, name: &str, source: &str) -> Result<()> {
    let name = normalize_name(name)?;
    if name == "root" {
        return Err(invalid("cannot update root policy"));
    }
    Policy::parse(&name, source).map_err(|e| invalid(format!("failed to parse policy: {e}")))?;
    core.put_json(
        &key(&name),
        &StoredPolicy {
            name: name.clone(),
            policy: source.to_owned(),
        },
    )
    .await
}

/// Reads a policy's source text.
pub async fn read(core: &Core, name: &str) -> Result<Option<String>> {
    let name = normalize_name(name)?;
    Ok(core
        .get_json::<StoredPolicy>(&key(&name))
        .await?
        .map(|p| p.policy))
}

/// Deletes a policy; `default` and `root` cannot be deleted.
pub async fn delete(core: &Core, name: &str) -> Result<()> {
    let name = normalize_name(name)?;
    if name == "root" || name == "default" {
        return Err(invalid(format!("cannot delete {name} policy")));
    }
    core.delete(&key(&name)).await
}

/// Lists policy names, including `root`.
pub async fn list(core: &Core) -> Result<Vec<String>> {
    let mut names = core.list("policy/acl/").await?;
    names.push("root".into());
    names.sort();
    Ok(names)
}

/// Builds the ACL of a token from its stored policies. Unknown policy names grant nothing.
pub async fn acl_for(core: &Core, token: &TokenEntry) -> Result<Acl> {
    if token.is_root() {
        return Ok(Acl::root());
    }
    let mut policies = Vec::new();
    for name in &token.policies {
        if let Some(source) = read(core, name).await? {
            match Policy::parse(name, &source) {
                Ok(p) => policies.push(p),
                Err(e) => {
                    tracing::warn!(policy = %name, error = %e, "stored policy no longer parses; ignoring it")
                }
            }
        }
    }
    Ok(Acl::new(&policies))
}
