//! Stored password policies (`sys/policies/password/:name`).

use base64::Engine as _;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::error::{Result, invalid};
use crate::core::Core;
use crate::crypto::password::PasswordPolicy;

#[derive(Serialize, Deserialize)]
struct Stored {
    policy: String,
}

fn key(name: &str) -> String {
    format!("policy/password/{name}")
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') {
        return Err(invalid(
            "password policy name must be non-empty and contain no '/'",
        ));
    }
    Ok(())
}

/// Validates (including a test generation) and stores a policy. Base64 input is decoded.
pub async fn write(core: &Core, name: &str, source: &str) -> Result<()> {
    check_name(name)?;
    let text = match base64::engine::general_purpose::STANDARD.decode(source.trim()) {
        Ok(bytes) if !source.trim().is_empty() => {
            String::from_utf8(bytes).unwrap_or_else(|_| source.to_owned())
        }
        _ => source.to_owned(),
    };
    let policy = PasswordPolicy::parse(&text).map_err(|e| invalid(e.to_string()))?;
    policy.generate().map_err(|_| {
        invalid("unable to construct test password from provided policy: are the rules impossible?")
    })?;
    core.put_json(&key(name), &Stored { policy: text }).await
}

/// Reads a policy's source.
pub async fn read(core: &Core, name: &str) -> Result<Option<String>> {
    check_name(name)?;
    Ok(core.get_json::<Stored>(&key(name)).await?.map(|s| s.policy))
}

/// Deletes a policy.
pub async fn delete(core: &Core, name: &str) -> Result<()> {
    check_name(name)?;
    core.delete(&key(name)).await
}

/// Lists policy names.
pub async fn list(core: &Core) -> Result<Vec<String>> {
    core.list("policy/password/").await
}

/// Generates a password from the named policy, or Vault's default when `name` is empty.
pub async fn generate(core: &Core, name: &str) -> Result<SecretString> {
    let policy = if name.is_empty() {
        PasswordPolicy::vault_default()
    } else {
        let source = read(core, name)
            .await?
            .ok_or_else(|| invalid(format!("password policy \"{name}\" does not exist")))?;
        PasswordPolicy::parse(&source).map_err(|e| invalid(e.to_string()))?
    };
    policy.generate().map_err(|e| invalid(e.to_string()))
}
