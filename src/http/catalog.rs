//! `sys/plugins/catalog/*`: Vault's plugin catalog, for database plugins (all paths need
//! `sudo`).
//!
//! | Path | Operations |
//! |---|---|
//! | `sys/plugins/catalog` | read: `{"database": [names], "detailed": [...]}` |
//! | `sys/plugins/catalog/database` | list: registered names and built-in ones |
//! | `sys/plugins/catalog/database/:name` | write `{command, args, env, sha256, version}`, read, delete |

use serde_json::{Value, json};

use super::envelope::Response;
use super::{Operation, Request, split_first, unsupported};
use crate::core::Core;
use crate::engine::backends;
use crate::engine::catalog::{self, CatalogEntry, Registration};
use crate::engine::error::{EngineError, Result, invalid};

/// Serves `sys/plugins/<rest>`.
pub async fn handle(core: &Core, req: &Request, rest: &str) -> Result<Response> {
    let (head, tail) = split_first(rest);
    if head != "catalog" {
        return Err(EngineError::UnsupportedPath(format!(
            "no handler for route \"sys/plugins/{rest}\". route entry not found."
        )));
    }
    let (kind, name) = split_first(tail);
    match (kind, name) {
        ("", _) if req.op == Operation::Read => overview(core).await,
        ("database", "") if matches!(req.op, Operation::List | Operation::Read) => {
            Response::keys(names(core).await?)
        }
        ("database", name) if !name.is_empty() => entry(core, req, name).await,
        ("auth" | "secret", _) => Err(invalid(format!(
            "dbwarden has no {kind} plugins; only database plugins can be registered"
        ))),
        _ => unsupported(),
    }
}

/// Registered and built-in names, sorted and deduplicated.
async fn names(core: &Core) -> Result<Vec<String>> {
    let mut names = catalog::list(core).await?;
    names.extend(backends::builtin_names().into_iter().map(str::to_owned));
    names.sort();
    names.dedup();
    Ok(names)
}

async fn overview(core: &Core) -> Result<Response> {
    let registered = catalog::list(core).await?;
    let mut detailed = Vec::new();
    for name in &registered {
        if let Some(e) = catalog::read(core, name).await? {
            detailed.push(entry_json(&e));
        }
    }
    for name in backends::builtin_names() {
        if !registered.iter().any(|r| r == name) {
            detailed.push(builtin_json(name));
        }
    }
    Ok(Response::data(json!({
        "database": names(core).await?,
        "detailed": detailed,
    })))
}

fn entry_json(e: &CatalogEntry) -> Value {
    json!({
        "name": e.name,
        "type": "database",
        "command": e.command,
        "args": e.args,
        "sha256": e.sha256,
        "version": e.version,
        "builtin": false,
        "deprecation_status": "",
    })
}

fn builtin_json(name: &str) -> Value {
    json!({
        "name": name,
        "type": "database",
        "command": "",
        "args": [],
        "sha256": "",
        "version": format!("v{}+builtin.dbwarden", env!("CARGO_PKG_VERSION")),
        "builtin": true,
        "deprecation_status": "supported",
    })
}

async fn entry(core: &Core, req: &Request, name: &str) -> Result<Response> {
    match req.op {
        Operation::Read => match catalog::read(core, name).await? {
            Some(e) => Ok(Response::data(entry_json(&e))),
            None if backends::builtin_names().contains(&name) => {
                Ok(Response::data(builtin_json(name)))
            }
            None => Err(EngineError::NotFound),
        },
        op if op.is_write() => {
            let command = req
                .data
                .string("command")?
                .filter(|c| !c.trim().is_empty())
                .ok_or_else(|| invalid("command is required"))?;
            let sha256 = req
                .data
                .string("sha256")?
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| invalid("sha256 is required"))?;
            if let Some(Value::String(s)) = req.data.raw("oci_image")
                && !s.is_empty()
            {
                return Err(invalid("oci_image plugins are not supported"));
            }
            catalog::register(
                core,
                name,
                Registration {
                    command,
                    args: req.data.string_list("args")?.unwrap_or_default(),
                    env: req.data.string_list("env")?.unwrap_or_default(),
                    sha256,
                    version: req.data.string("version")?.unwrap_or_default(),
                },
            )
            .await?;
            Ok(Response::empty())
        }
        Operation::Delete => {
            if let Some(version) = req.data.string("version")?.filter(|v| !v.is_empty())
                && let Some(e) = catalog::read(core, name).await?
                && e.version != version
            {
                // Vault deletes only the named version; a different one is left alone.
                return Ok(Response::empty());
            }
            catalog::delete(core, name).await?;
            Ok(Response::empty())
        }
        _ => unsupported(),
    }
}
