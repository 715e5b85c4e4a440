//! `sys/auth` (enable, tune, list and disable login methods) and the paths of each mounted
//! method under `auth/<mount>/`. Logins are the only paths below `auth/` that need no token;
//! everything else goes through the token and ACL checks like any other path.

mod approle;
mod kubernetes;
mod userpass;

use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::envelope::Response;
use super::fields::Fields;
use super::{Operation, Request, unsupported};
use crate::auth::cidr;
use crate::auth::login::TokenParams;
use crate::auth::mounts::{self, AuthMount, AuthMountConfig, MethodKind};
use crate::auth::token::TokenEntry;
use crate::core::Core;
use crate::engine::error::{EngineError, Result, invalid};

/// The accessor shown for the built-in token method.
const TOKEN_ACCESSOR: &str = "auth_token_builtin";

/// Whether `req` is a login (the only unauthenticated paths below `auth/`).
pub async fn is_login(core: &Core, req: &Request) -> Result<bool> {
    if !req.op.is_write() {
        return Ok(false);
    }
    let Some(below) = req.path.strip_prefix("auth/") else {
        return Ok(false);
    };
    if below == "token" || below.starts_with("token/") {
        return Ok(false);
    }
    let Some((mount, rest)) = mounts::resolve(core, below).await? else {
        return Ok(false);
    };
    Ok(match mount.kind {
        MethodKind::Approle | MethodKind::Kubernetes => rest == "login",
        MethodKind::Userpass => rest
            .strip_prefix("login/")
            .is_some_and(|user| !user.is_empty() && !user.contains('/')),
    })
}

/// Whether the object a write below `auth/<mount>/` targets exists.
pub async fn exists(core: &Core, below: &str) -> Result<Option<bool>> {
    let Some((mount, rest)) = mounts::resolve(core, below).await? else {
        return Ok(None);
    };
    match mount.kind {
        MethodKind::Approle => approle::exists(core, &mount, &rest).await,
        MethodKind::Kubernetes => kubernetes::exists(core, &mount, &rest).await,
        MethodKind::Userpass => userpass::exists(core, &mount, &rest).await,
    }
}

/// Serves `auth/<below>` for mounted methods (the token method is routed elsewhere).
pub async fn handle(core: &Core, req: &Request, below: &str) -> Result<Response> {
    let Some((mount, rest)) = mounts::resolve(core, below).await? else {
        return Err(EngineError::UnsupportedPath(format!(
            "no handler for route \"auth/{below}\". route entry not found."
        )));
    };
    match mount.kind {
        MethodKind::Approle => approle::handle(core, req, &mount, &rest).await,
        MethodKind::Kubernetes => kubernetes::handle(core, req, &mount, &rest).await,
        MethodKind::Userpass => userpass::handle(core, req, &mount, &rest).await,
    }
}

/// The 404 for a path a method does not serve.
fn no_route<T>(mount: &AuthMount, rest: &str) -> Result<T> {
    Err(EngineError::UnsupportedPath(format!(
        "no handler for route \"auth/{}/{rest}\". route entry not found.",
        mount.path
    )))
}

/// The response of a successful login: Vault's `auth` block, no data.
fn login_response(token: &Zeroizing<String>, entry: &TokenEntry) -> Response {
    Response {
        auth: Some(super::token::auth_json(entry, token)),
        ..Default::default()
    }
}

/// A required string field of a login, without copying the secret around more than once.
fn secret_field(fields: &Fields, key: &str) -> Result<Option<Zeroizing<String>>> {
    Ok(fields.string(key)?.map(Zeroizing::new))
}

/// Applies the `token_*` fields (and Vault's legacy aliases) present in a write. The
/// `token_` name wins when both are sent, as in Vault's `tokenutil`.
fn apply_token_params(d: &Fields, p: &mut TokenParams) -> Result<()> {
    let pick = |new: &str, legacy: &str| {
        if d.has(new) {
            new.to_owned()
        } else {
            legacy.to_owned()
        }
    };
    let key = pick("token_policies", "policies");
    if let Some(v) = d.comma_list(&key)? {
        p.policies = v.into_iter().map(|s| s.to_lowercase()).collect();
    }
    for (new, legacy, slot) in [
        ("token_ttl", "ttl", &mut p.ttl),
        ("token_max_ttl", "max_ttl", &mut p.max_ttl),
        ("token_period", "period", &mut p.period),
        (
            "token_explicit_max_ttl",
            "token_explicit_max_ttl",
            &mut p.explicit_max_ttl,
        ),
    ] {
        if let Some(v) = d.duration(&pick(new, legacy))? {
            *slot = v;
        }
    }
    if let Some(v) = d.int(&pick("token_num_uses", "num_uses"))? {
        if v < 0 {
            return Err(invalid("token_num_uses cannot be negative"));
        }
        p.num_uses = v;
    }
    if let Some(v) = d.bool("token_no_default_policy")? {
        p.no_default_policy = v;
    }
    if let Some(v) = d.comma_list(&pick("token_bound_cidrs", "bound_cidrs"))? {
        p.bound_cidrs = cidr::normalize(&v)?;
    }
    if let Some(v) = d.string("token_type")? {
        p.token_type = v;
    }
    p.validate()
}

/// Adds the token settings to a read, in both the `token_*` and the legacy form, as Vault's
/// methods return them.
fn token_params_json(p: &TokenParams, out: &mut Map<String, Value>) {
    let token_type = if p.token_type.is_empty() || p.token_type == "default-service" {
        "default"
    } else {
        p.token_type.as_str()
    };
    let fields = [
        ("token_policies", json!(p.policies)),
        ("token_ttl", json!(p.ttl)),
        ("token_max_ttl", json!(p.max_ttl)),
        ("token_period", json!(p.period)),
        ("token_explicit_max_ttl", json!(p.explicit_max_ttl)),
        ("token_num_uses", json!(p.num_uses)),
        ("token_no_default_policy", json!(p.no_default_policy)),
        ("token_bound_cidrs", json!(p.bound_cidrs)),
        ("token_type", json!(token_type)),
        ("policies", json!(p.policies)),
        ("ttl", json!(p.ttl)),
        ("max_ttl", json!(p.max_ttl)),
        ("period", json!(p.period)),
        ("num_uses", json!(p.num_uses)),
        ("bound_cidrs", json!(p.bound_cidrs)),
    ];
    for (k, v) in fields {
        out.insert(k.to_owned(), v);
    }
}

fn rfc3339(unix: i64) -> Value {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| json!(t.to_rfc3339()))
        .unwrap_or(Value::Null)
}

// ---- sys/auth ----

fn lockout_json(c: &mounts::LockoutConfig) -> Value {
    json!({
        "lockout_threshold": c.threshold,
        "lockout_duration": c.duration,
        "lockout_counter_reset": c.counter_reset,
        "disable_lockout": c.disabled,
    })
}

fn mount_json(m: &AuthMount) -> Value {
    json!({
        "type": m.kind.as_str(),
        "description": m.description,
        "accessor": m.accessor,
        "uuid": m.uuid,
        "config": {
            "default_lease_ttl": m.config.default_lease_ttl,
            "max_lease_ttl": m.config.max_lease_ttl,
            "token_type": "default-service",
            "force_no_cache": false,
            "user_lockout_config": lockout_json(&m.config.lockout),
        },
        "options": null,
        "local": false,
        "seal_wrap": false,
        "external_entropy_access": false,
    })
}

fn token_mount_json() -> Value {
    json!({
        "type": "token",
        "description": "token based credentials",
        "accessor": TOKEN_ACCESSOR,
        "uuid": "",
        "config": {"default_lease_ttl": 0, "max_lease_ttl": 0, "token_type": "default-service", "force_no_cache": false},
        "options": null,
        "local": false,
        "seal_wrap": false,
        "external_entropy_access": false,
    })
}

/// Applies mount tunables from `config` (enable) or the body of `tune`.
fn apply_mount_config(config: &mut AuthMountConfig, f: &Fields) -> Result<()> {
    if let Some(v) = f.duration("default_lease_ttl")? {
        config.default_lease_ttl = v;
    }
    if let Some(v) = f.duration("max_lease_ttl")? {
        config.max_lease_ttl = v;
    }
    if config.max_lease_ttl > 0 && config.default_lease_ttl > config.max_lease_ttl {
        return Err(invalid("default_lease_ttl must not exceed max_lease_ttl"));
    }
    apply_lockout(&mut config.lockout, f.raw("user_lockout_config"))
}

/// Applies Vault's `user_lockout_config` object, when present.
fn apply_lockout(lock: &mut mounts::LockoutConfig, value: Option<&Value>) -> Result<()> {
    let Some(value) = value else {
        return Ok(());
    };
    let Value::Object(l) = value else {
        return Err(invalid("user_lockout_config must be an object"));
    };
    let l = Fields(l.clone());
    if let Some(v) = l.int("lockout_threshold")? {
        lock.threshold = u32::try_from(v)
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| invalid("lockout_threshold must be a positive number"))?;
    }
    if let Some(v) = l.duration("lockout_duration")? {
        lock.duration = v;
    }
    if let Some(v) = l.duration("lockout_counter_reset")? {
        lock.counter_reset = v;
    }
    if let Some(v) = l.bool("disable_lockout")? {
        lock.disabled = v;
    }
    Ok(())
}

/// Serves `sys/auth` and `sys/auth/<tail>`.
pub async fn sys_routes(core: &Core, req: &Request, tail: &str) -> Result<Response> {
    if tail.is_empty() {
        if req.op != Operation::Read {
            return unsupported();
        }
        let mut out = Map::new();
        for m in mounts::list(core).await? {
            out.insert(format!("{}/", m.path), mount_json(&m));
        }
        out.insert("token/".into(), token_mount_json());
        return Ok(Response::data(Value::Object(out)));
    }
    if let Some(path) = tail.strip_suffix("/tune") {
        if path.trim_matches('/') == "token" {
            return match req.op {
                Operation::Read => Ok(Response::data(json!({
                    "default_lease_ttl": crate::auth::token::SYSTEM_MAX_TTL,
                    "max_lease_ttl": crate::auth::token::SYSTEM_MAX_TTL,
                    "description": "token based credentials",
                    "force_no_cache": false,
                    "token_type": "default-service",
                }))),
                _ => Err(invalid("the built-in token method cannot be tuned")),
            };
        }
        let mount = mounts::get(core, path).await?;
        return match req.op {
            Operation::Read => Ok(Response::data(json!({
                "default_lease_ttl": mount.config.default_lease_ttl,
                "max_lease_ttl": mount.config.max_lease_ttl,
                "description": mount.description,
                "force_no_cache": false,
                "token_type": "default-service",
                "user_lockout_config": lockout_json(&mount.config.lockout),
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
        Operation::Read => {
            if tail.trim_matches('/') == "token" {
                return Ok(Response::data(token_mount_json()));
            }
            Ok(Response::data(mount_json(&mounts::get(core, tail).await?)))
        }
        op if op.is_write() => {
            let kind = req
                .data
                .string("type")?
                .ok_or_else(|| invalid("type is required"))?;
            let kind = MethodKind::parse(&kind)?;
            let description = req.data.string("description")?.unwrap_or_default();
            let mut config = AuthMountConfig::default();
            if let Some(Value::Object(c)) = req.data.raw("config") {
                apply_mount_config(&mut config, &Fields(c.clone()))?;
            }
            // Vault also takes the lock-out settings at the top level of the body.
            apply_lockout(&mut config.lockout, req.data.raw("user_lockout_config"))?;
            mounts::enable(core, tail, kind, &description, config).await?;
            Ok(Response::empty())
        }
        Operation::Delete => {
            if tail.trim_matches('/') == "token" {
                return Err(invalid("the built-in token method cannot be disabled"));
            }
            mounts::disable(core, tail).await?;
            Ok(Response::empty())
        }
        _ => unsupported(),
    }
}
