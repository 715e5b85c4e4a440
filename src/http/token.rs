//! `auth/token/*`: create, look up, renew and revoke tokens.

use serde_json::{Value, json};

use super::envelope::Response;
use super::{Operation, Request, unsupported};
use crate::auth::token::{self, CreateToken, TokenEntry};
use crate::core::Core;
use crate::engine::error::{EngineError, Result, invalid};

/// Serves `auth/token/<rest>`.
pub async fn handle(core: &Core, req: &Request, rest: &str) -> Result<Response> {
    let caller = req.token()?;
    match (rest, req.op) {
        ("create" | "create-orphan", op) if op.is_write() => {
            create(core, req, caller, rest == "create-orphan").await
        }
        ("lookup-self", Operation::Read)
        | ("lookup-self", Operation::Update | Operation::Create) => {
            Ok(Response::data(lookup_data(caller)))
        }
        ("lookup", op) if op.is_write() || op == Operation::Read => {
            let entry = resolve_token_field(core, req).await?;
            Ok(Response::data(lookup_data(&entry)))
        }
        ("lookup-accessor", op) if op.is_write() => {
            let entry = resolve_accessor(core, req).await?;
            let mut data = lookup_data(&entry);
            // An accessor lookup never reveals the token itself.
            data["id"] = json!("");
            Ok(Response::data(data))
        }
        ("renew-self", op) if op.is_write() => renew(core, req, caller).await,
        ("renew", op) if op.is_write() => {
            let entry = resolve_token_field(core, req).await?;
            renew(core, req, &entry).await
        }
        ("renew-accessor", op) if op.is_write() => {
            let entry = resolve_accessor(core, req).await?;
            renew(core, req, &entry).await
        }
        ("revoke-self", op) if op.is_write() => {
            token::revoke_tree(core, caller).await?;
            Ok(Response::empty())
        }
        ("revoke", op) if op.is_write() => {
            let text = req
                .data
                .string("token")?
                .ok_or_else(|| invalid("missing token"))?;
            if let Some(entry) = token::lookup(core, &text).await? {
                token::revoke_tree(core, &entry).await?;
            }
            Ok(Response::empty())
        }
        ("revoke-accessor", op) if op.is_write() => {
            let entry = resolve_accessor(core, req).await?;
            token::revoke_tree(core, &entry).await?;
            Ok(Response::empty())
        }
        ("accessors", Operation::List) => Response::keys(token::list_accessors(core).await?),
        _ => unsupported(),
    }
}

async fn resolve_token_field(core: &Core, req: &Request) -> Result<TokenEntry> {
    let text = req
        .data
        .string("token")?
        .ok_or_else(|| invalid("missing token"))?;
    token::lookup(core, &text)
        .await?
        .ok_or_else(|| invalid("bad token"))
}

async fn resolve_accessor(core: &Core, req: &Request) -> Result<TokenEntry> {
    let accessor = req
        .data
        .string("accessor")?
        .ok_or_else(|| invalid("missing accessor"))?;
    token::lookup_accessor(core, &accessor)
        .await?
        .ok_or_else(|| invalid("invalid accessor"))
}

async fn create(
    core: &Core,
    req: &Request,
    caller: &TokenEntry,
    orphan_path: bool,
) -> Result<Response> {
    let d = &req.data;
    let orphan = orphan_path || d.bool("no_parent")?.unwrap_or(false);
    if orphan && !caller.is_root() && !req.sudo {
        return Err(EngineError::PermissionDenied(
            "root or sudo privileges required to create orphan token".into(),
        ));
    }
    if d.has("id") {
        return Err(invalid("custom token ids are not supported"));
    }
    let request = CreateToken {
        policies: d.comma_list("policies")?.unwrap_or_default(),
        no_default_policy: d.bool("no_default_policy")?.unwrap_or(false),
        ttl: d.duration("ttl")?,
        explicit_max_ttl: d.duration("explicit_max_ttl")?,
        period: d.duration("period")?,
        orphan,
        num_uses: d.int("num_uses")?.unwrap_or(0),
        display_name: d.string("display_name")?,
        meta: d.kv_pairs("meta")?.unwrap_or_default(),
        renewable: d.bool("renewable")?,
    };
    // A root caller may grant anything; others are limited by token::create's subset rule.
    let (text, entry) = token::create(core, caller, request).await?;
    Ok(Response {
        auth: Some(auth_json(&entry, &text)),
        ..Default::default()
    })
}

async fn renew(core: &Core, req: &Request, entry: &TokenEntry) -> Result<Response> {
    let increment = req.data.duration("increment")?;
    let (updated, warning) = token::renew(core, entry, increment).await?;
    Ok(Response {
        auth: Some(auth_json(&updated, "")),
        warnings: warning.into_iter().collect(),
        ..Default::default()
    })
}

/// The `auth` block of a response. `client_token` is empty when renewing (Vault omits it
/// only on lookups; renewals echo it, but dbwarden never holds the token to echo).
pub fn auth_json(entry: &TokenEntry, client_token: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    let token_policies: Vec<&String> = entry.policies.iter().collect();
    json!({
        "client_token": client_token,
        "accessor": entry.accessor,
        "policies": token_policies,
        "token_policies": token_policies,
        "identity_policies": null,
        "metadata": entry.meta,
        "lease_duration": entry.ttl(now),
        "renewable": entry.renewable,
        "entity_id": "",
        "token_type": "service",
        "orphan": entry.orphan,
        "mfa_requirement": null,
        "num_uses": entry.num_uses,
    })
}

fn lookup_data(entry: &TokenEntry) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        // The token itself is never stored, so lookups cannot return it.
        "id": "",
        "accessor": entry.accessor,
        "policies": entry.policies,
        "path": entry.path,
        "meta": entry.meta,
        "display_name": entry.display_name,
        "num_uses": entry.num_uses,
        "orphan": entry.orphan,
        "creation_time": entry.creation_time,
        "creation_ttl": entry.creation_ttl,
        "expire_time": entry.expire_time.and_then(|t| chrono::DateTime::from_timestamp(t, 0)).map(|t| t.to_rfc3339()),
        "ttl": entry.ttl(now),
        "explicit_max_ttl": entry.explicit_max_ttl,
        "period": if entry.period > 0 { json!(entry.period) } else { Value::Null },
        "entity_id": "",
        "type": "service",
        "issue_time": chrono::DateTime::from_timestamp(entry.creation_time, 0).map(|t| t.to_rfc3339()),
        "renewable": entry.renewable,
        "last_renewal_time": entry.last_renewal,
        "bound_cidrs": entry.bound_cidrs,
    })
}
