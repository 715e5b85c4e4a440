//! `sys/*`: health, mounts, ACL and password policies, leases, the keyring.

use serde_json::{Map, Value, json};

use super::envelope::Response;
use super::{Operation, Request, split_first, unsupported};
use crate::auth::policy_store;
use crate::core::Core;
use crate::engine::error::{EngineError, Result, invalid};
use crate::engine::{lease, mounts, password_policy};

/// Whether the object a write under `sys/` targets exists.
pub async fn exists(core: &Core, rest: &str) -> Result<Option<bool>> {
    let (head, tail) = split_first(rest);
    Ok(match head {
        "policy" if !tail.is_empty() => Some(policy_store::read(core, tail).await?.is_some()),
        "policies" => match split_first(tail) {
            ("acl", name) if !name.is_empty() => {
                Some(policy_store::read(core, name).await?.is_some())
            }
            ("password", name) if !name.is_empty() && !name.ends_with("/generate") => {
                Some(password_policy::read(core, name).await?.is_some())
            }
            _ => None,
        },
        _ => None,
    })
}

/// Serves `sys/<rest>`.
pub async fn handle(core: &Core, req: &Request, rest: &str) -> Result<Response> {
    let (head, tail) = split_first(rest);
    match head {
        "health" | "seal-status" => health(core, head),
        "leader" => Ok(Response::data(
            json!({"ha_enabled": false, "is_self": true, "leader_address": ""}),
        )),
        "mounts" => mount_routes(core, req, tail).await,
        "auth" => super::auth::sys_routes(core, req, tail).await,
        "policy" => legacy_policy(core, req, tail).await,
        "policies" => match split_first(tail) {
            ("acl", name) => acl_policy(core, req, name).await,
            ("password", name) => password_policy_routes(core, req, name).await,
            _ => not_found(rest),
        },
        "leases" => lease_routes(core, req, tail).await,
        "rotate" if req.op.is_write() => {
            core.barrier.rotate(&core.store).await?;
            Ok(Response::empty())
        }
        "key-status" if req.op == Operation::Read => {
            let status = core.barrier.status();
            Ok(Response::data(json!({
                "term": status.term,
                "install_time": status.install_time.to_rfc3339(),
                "encryptions": status.encryptions,
            })))
        }
        "capabilities-self" if req.op.is_write() => capabilities_self(core, req).await,
        "audit" => audit_routes(core, req, tail).await,
        "wrapping" => wrapping_routes(core, req, tail).await,
        "control-group" => control_group_routes(core, req, tail).await,
        "audit-hash" if req.op.is_write() => {
            let input = req
                .data
                .string("input")?
                .ok_or_else(|| invalid("input is required"))?;
            Ok(Response::data(
                json!({ "hash": crate::audit::hash_with(core, tail, &input)? }),
            ))
        }
        "metrics" if req.op == Operation::Read => metrics(core, req).await,
        _ => not_found(rest),
    }
}

fn not_found<T>(rest: &str) -> Result<T> {
    Err(EngineError::UnsupportedPath(format!(
        "no handler for route \"sys/{rest}\". route entry not found."
    )))
}

fn health(_core: &Core, which: &str) -> Result<Response> {
    let mut body = json!({
        "initialized": true,
        "sealed": false,
        "standby": false,
        "version": env!("CARGO_PKG_VERSION"),
        "cluster_name": "dbwarden",
    });
    if which == "health" {
        body["server_time_utc"] = json!(chrono::Utc::now().timestamp());
    } else {
        body["type"] = json!("shamir");
        body["t"] = json!(1);
        body["n"] = json!(1);
        body["progress"] = json!(0);
    }
    // Vault answers these with a bare object, not the envelope.
    Ok(Response::raw(body))
}

fn mount_json(m: &mounts::Mount) -> Value {
    json!({
        "type": m.kind,
        "description": m.description,
        "accessor": m.accessor,
        "uuid": m.uuid,
        "config": {
            "default_lease_ttl": m.config.default_lease_ttl,
            "max_lease_ttl": m.config.max_lease_ttl,
            "force_no_cache": false,
        },
        "options": null,
        "local": false,
        "seal_wrap": false,
        "external_entropy_access": false,
    })
}

fn system_mounts(out: &mut Map<String, Value>) {
    out.insert("sys/".into(), json!({"type": "system", "description": "system endpoints", "accessor": "system", "config": {"default_lease_ttl": 0, "max_lease_ttl": 0}, "options": null, "local": false, "seal_wrap": false}));
}

async fn mount_routes(core: &Core, req: &Request, tail: &str) -> Result<Response> {
    if tail.is_empty() {
        if req.op != Operation::Read {
            return unsupported();
        }
        let mut out = Map::new();
        for m in mounts::list(core).await? {
            out.insert(format!("{}/", m.path), mount_json(&m));
        }
        system_mounts(&mut out);
        return Ok(Response::data(Value::Object(out)));
    }
    if let Some(path) = tail.strip_suffix("/tune") {
        let mount = mounts::get(core, path).await?;
        return match req.op {
            Operation::Read => Ok(Response::data(json!({
                "default_lease_ttl": mount.config.default_lease_ttl,
                "max_lease_ttl": mount.config.max_lease_ttl,
                "force_no_cache": false,
                "description": mount.description,
            }))),
            op if op.is_write() => {
                let mut config = mount.config.clone();
                apply_mount_config(&mut config, &req.data)?;
                mounts::tune(core, path, config).await?;
                Ok(Response::empty())
            }
            _ => unsupported(),
        };
    }
    match req.op {
        Operation::Read => Ok(Response::data(mount_json(&mounts::get(core, tail).await?))),
        op if op.is_write() => {
            let kind = req
                .data
                .string("type")?
                .ok_or_else(|| invalid("type is required"))?;
            let description = req.data.string("description")?.unwrap_or_default();
            let mut config = mounts::MountConfig::default();
            if let Some(Value::Object(c)) = req.data.raw("config") {
                apply_mount_config(&mut config, &super::fields::Fields(c.clone()))?;
            }
            mounts::enable(core, tail, &kind, &description, config).await?;
            Ok(Response::empty())
        }
        Operation::Delete => {
            mounts::disable(core, tail).await?;
            Ok(Response::empty())
        }
        _ => unsupported(),
    }
}

fn apply_mount_config(
    config: &mut mounts::MountConfig,
    fields: &super::fields::Fields,
) -> Result<()> {
    if let Some(v) = fields.duration("default_lease_ttl")? {
        config.default_lease_ttl = v;
    }
    if let Some(v) = fields.duration("max_lease_ttl")? {
        config.max_lease_ttl = v;
    }
    if config.max_lease_ttl > 0 && config.default_lease_ttl > config.max_lease_ttl {
        return Err(invalid("default_lease_ttl must not exceed max_lease_ttl"));
    }
    Ok(())
}

fn policy_source(req: &Request) -> Result<String> {
    req.data
        .string("policy")?
        .or(req.data.string("rules")?)
        .ok_or_else(|| invalid("'policy' parameter not supplied or empty"))
}

async fn legacy_policy(core: &Core, req: &Request, name: &str) -> Result<Response> {
    if name.is_empty() {
        return match req.op {
            Operation::Read | Operation::List => {
                let names = policy_store::list(core).await?;
                Ok(Response::data(json!({"policies": names, "keys": names})))
            }
            _ => unsupported(),
        };
    }
    acl_crud(core, req, name, "rules").await
}

async fn acl_policy(core: &Core, req: &Request, name: &str) -> Result<Response> {
    if name.is_empty() {
        return match req.op {
            Operation::List => Response::keys(policy_store::list(core).await?),
            _ => unsupported(),
        };
    }
    acl_crud(core, req, name, "policy").await
}

async fn acl_crud(core: &Core, req: &Request, name: &str, text_field: &str) -> Result<Response> {
    match req.op {
        Operation::Read => {
            let name = policy_store::normalize_name(name)?;
            if name == "root" {
                return Ok(Response::data(json!({"name": "root", text_field: ""})));
            }
            let source = policy_store::read(core, &name)
                .await?
                .ok_or(EngineError::NotFound)?;
            Ok(Response::data(json!({"name": name, text_field: source})))
        }
        op if op.is_write() => {
            policy_store::write(core, name, &policy_source(req)?).await?;
            Ok(Response::empty())
        }
        Operation::Delete => {
            policy_store::delete(core, name).await?;
            Ok(Response::empty())
        }
        _ => unsupported(),
    }
}

async fn password_policy_routes(core: &Core, req: &Request, name: &str) -> Result<Response> {
    if name.is_empty() {
        return match req.op {
            Operation::List => Response::keys(password_policy::list(core).await?),
            _ => unsupported(),
        };
    }
    if let Some(name) = name.strip_suffix("/generate") {
        if req.op != Operation::Read {
            return unsupported();
        }
        if password_policy::read(core, name).await?.is_none() {
            return Err(invalid("policy does not exist"));
        }
        let password = password_policy::generate(core, name).await?;
        use secrecy::ExposeSecret;
        return Ok(Response::data(
            json!({"password": password.expose_secret()}),
        ));
    }
    match req.op {
        Operation::Read => {
            let source = password_policy::read(core, name)
                .await?
                .ok_or(EngineError::NotFound)?;
            Ok(Response::data(json!({"policy": source})))
        }
        op if op.is_write() => {
            let source = req
                .data
                .string("policy")?
                .ok_or_else(|| invalid("missing policy"))?;
            password_policy::write(core, name, &source).await?;
            Ok(Response::empty())
        }
        Operation::Delete => {
            password_policy::delete(core, name).await?;
            Ok(Response::empty())
        }
        _ => unsupported(),
    }
}

/// The lease id from the body, else from the path after the endpoint name.
fn lease_id(req: &Request, from_path: &str) -> Result<String> {
    let id = req
        .data
        .string("lease_id")?
        .unwrap_or_else(|| from_path.to_owned());
    if id.is_empty() {
        return Err(invalid("lease_id must not be empty"));
    }
    Ok(id)
}

fn lease_json(info: &lease::LeaseInfo) -> Value {
    let mut data = json!({
        "id": info.id,
        "issue_time": info.issue_time.to_rfc3339(),
        "expire_time": info.expire_time.to_rfc3339(),
        "last_renewal": info.last_renewal.map(|t| t.to_rfc3339()),
        "renewable": info.renewable,
        "ttl": info.ttl,
        // dbwarden's additions: where the lease is in its life, and who owns it.
        "state": info.state.as_str(),
        "irrevocable": info.irrevocable,
        "revoke_attempts": info.revoke_attempts,
        "token_accessor": info.token_accessor,
        "username": info.username,
    });
    if let Some(err) = &info.revoke_error {
        data["revoke_error"] = json!(err);
    }
    data
}

async fn lease_routes(core: &Core, req: &Request, tail: &str) -> Result<Response> {
    let (endpoint, rest) = split_first(tail);
    match (endpoint, req.op) {
        ("", Operation::Read) => {
            if req.data.string("type")?.as_deref() != Some("irrevocable") {
                return Err(invalid("type must be \"irrevocable\""));
            }
            let limit = match req.data.string("limit")?.as_deref() {
                Some("none") => i64::MAX,
                Some(l) => l
                    .parse()
                    .map_err(|_| invalid("limit must be a number or \"none\""))?,
                None => 10_000,
            };
            let leases = lease::irrevocable(core, limit).await?;
            let list: Vec<Value> = leases.iter().map(lease_json).collect();
            Ok(Response::data(
                json!({"lease_count": list.len(), "leases": list}),
            ))
        }
        ("count", Operation::Read) => {
            let count = match req.data.string("type")?.as_deref() {
                Some("irrevocable") => lease::count_irrevocable(core).await?,
                Some("all") | None => core.store.count_leases().await?,
                Some(other) => return Err(invalid(format!("unknown lease type \"{other}\""))),
            };
            Ok(Response::data(
                json!({"lease_count": count, "counts": {"root": count}}),
            ))
        }
        ("tidy", op) if op.is_write() => {
            let found = lease::tidy(core).await?;
            tracing::info!(orphaned = found, "lease tidy finished");
            Ok(Response {
                accepted: true,
                warnings: vec![format!(
                    "Tidy operation successfully started. Any information from the operation will be printed to the server logs. {found} leases without a valid token were handed to the revocation worker."
                )],
                ..Default::default()
            })
        }
        ("lookup", Operation::List) => {
            let prefix = if rest.is_empty() {
                String::new()
            } else {
                format!("{rest}/")
            };
            Response::keys(lease::list(core, &prefix).await?)
        }
        ("lookup", op) if op.is_write() => {
            let info = lease::lookup(core, &lease_id(req, rest)?).await?;
            Ok(Response::data(lease_json(&info)))
        }
        ("renew", op) if op.is_write() => {
            let id = lease_id(req, rest)?;
            let increment = req.data.duration("increment")?;
            let (ttl, warning) = lease::renew(core, &id, increment).await?;
            Ok(Response {
                lease: Some((id, ttl, true)),
                warnings: warning.into_iter().collect(),
                ..Default::default()
            })
        }
        ("revoke", op) if op.is_write() => {
            let id = lease_id(req, rest)?;
            if req.data.bool("sync")? == Some(false) {
                lease::revoke_later(core, &id).await?;
                return Ok(Response {
                    accepted: true,
                    ..Default::default()
                });
            }
            lease::revoke(core, &id).await?;
            Ok(Response::empty())
        }
        ("revoke-prefix", op) if op.is_write() => {
            lease::revoke_prefix(core, rest, false).await?;
            Ok(Response::empty())
        }
        ("revoke-force", op) if op.is_write() => {
            lease::revoke_prefix(core, rest, true).await?;
            Ok(Response::empty())
        }
        _ => unsupported(),
    }
}

async fn metrics(core: &Core, req: &Request) -> Result<Response> {
    let format = req
        .data
        .string("format")?
        .unwrap_or_else(|| "prometheus".into());
    if format != "prometheus" {
        return Err(invalid("only format=prometheus is supported"));
    }
    let handle = core.metrics.as_ref().ok_or_else(|| {
        EngineError::UnsupportedPath("metrics are not enabled in this process".into())
    })?;
    // Gauges that describe storage are computed at scrape time: a query, not a counter
    // that could drift from the truth (and they stay right across replicas).
    let mut by_state: std::collections::HashMap<String, i64> = ["pending", "active", "revoking"]
        .iter()
        .map(|s| (s.to_string(), 0))
        .collect();
    for (state, n) in core.store.count_leases_by_state().await? {
        by_state.insert(state, n);
    }
    for (state, n) in by_state {
        metrics::gauge!("dbwarden_leases", "state" => state).set(n as f64);
    }
    metrics::gauge!("dbwarden_leases", "state" => "irrevocable")
        .set(lease::count_irrevocable(core).await? as f64);
    let now = chrono::Utc::now().timestamp_millis();
    let lag = core.store.oldest_due(now).await?.map_or(0, |t| now - t);
    metrics::gauge!("dbwarden_revocation_queue_lag_seconds").set(lag as f64 / 1000.0);
    Ok(Response::text(handle.render(), "text/plain; version=0.0.4"))
}

async fn capabilities_self(core: &Core, req: &Request) -> Result<Response> {
    let token = req.token()?;
    let paths = req
        .data
        .string_list("paths")?
        .or(req.data.string_list("path")?)
        .ok_or_else(|| invalid("paths is required"))?;
    let acl = policy_store::acl_for(core, token).await?;
    let mut data = Map::new();
    let mut all: Vec<&str> = Vec::new();
    for path in &paths {
        let caps = acl.capabilities(path.trim_start_matches('/'));
        all.extend(caps.iter().copied());
        data.insert(path.clone(), json!(caps));
    }
    if paths.len() == 1 {
        data.insert("capabilities".into(), json!(all));
    }
    Ok(Response::data(Value::Object(data)))
}

async fn audit_routes(core: &Core, req: &Request, path: &str) -> Result<Response> {
    use crate::audit::{self, DeviceKind};
    match (req.op, path.is_empty()) {
        (Operation::Read, true) => {
            let mut out = Map::new();
            for (config, seq, last_hash) in core.audit.describe() {
                // The salt is a secret: never returned.
                let mut options = config.options.clone();
                options.remove("salt");
                out.insert(
                    format!("{}/", config.path),
                    json!({
                        "type": config.kind,
                        "description": config.description,
                        "options": options,
                        "path": format!("{}/", config.path),
                        "local": false,
                        // dbwarden: where each chain stands, to anchor `dbwarden audit verify`.
                        "last_seq": seq,
                        "last_hash": last_hash,
                    }),
                );
            }
            Ok(Response::data(Value::Object(out)))
        }
        (op, false) if op.is_write() => {
            let kind = match req.data.string("type")?.as_deref() {
                Some("file") => DeviceKind::File,
                Some("stdout") => DeviceKind::Stdout,
                Some("socket") => DeviceKind::Socket,
                Some(other) => {
                    return Err(invalid(format!(
                        "unknown audit device type \"{other}\"; use file, stdout or socket"
                    )));
                }
                None => return Err(invalid("type is required")),
            };
            let options = match req.data.raw("options") {
                Some(Value::Object(m)) => m.clone(),
                None => Map::new(),
                Some(_) => return Err(invalid("options must be a map")),
            };
            let description = req.data.string("description")?.unwrap_or_default();
            audit::enable(core, path, kind, &description, options).await?;
            Ok(Response::empty())
        }
        (Operation::Delete, false) => {
            audit::disable(core, path).await?;
            Ok(Response::empty())
        }
        _ => unsupported(),
    }
}

async fn wrapping_routes(core: &Core, req: &Request, endpoint: &str) -> Result<Response> {
    use crate::auth::wrapping::{self, Unwrapped};
    if !req.op.is_write() {
        return unsupported();
    }
    let token = req
        .data
        .string("token")?
        .ok_or_else(|| invalid("token is required"))?;
    match endpoint {
        "lookup" => Ok(Response::data(wrapping::lookup(core, &token).await?)),
        "unwrap" => match wrapping::unwrap(core, &token).await? {
            Unwrapped::Response(r) => Ok(Response {
                data: r.data,
                auth: r.auth,
                lease: r.lease,
                warnings: r.warnings,
                ..Default::default()
            }),
            Unwrapped::Approved(pending) => {
                tracing::info!(path = %pending.path, requester = %pending.requester_name, "running an approved request");
                super::replay(core, pending, req.remote).await
            }
        },
        _ => unsupported(),
    }
}

async fn control_group_routes(core: &Core, req: &Request, endpoint: &str) -> Result<Response> {
    use crate::auth::wrapping;
    let caller = req.token()?;
    match (endpoint, req.op) {
        ("request", Operation::List) => Response::keys(wrapping::pending_for(core, caller).await?),
        ("request", op) if op.is_write() => {
            let accessor = req
                .data
                .string("accessor")?
                .ok_or_else(|| invalid("accessor is required"))?;
            Ok(Response::data(wrapping::status(core, &accessor).await?))
        }
        ("authorize", op) if op.is_write() => {
            let accessor = req
                .data
                .string("accessor")?
                .ok_or_else(|| invalid("accessor is required"))?;
            let approved = wrapping::authorize(core, &accessor, caller).await?;
            Ok(Response::data(json!({ "approved": approved })))
        }
        _ => unsupported(),
    }
}
