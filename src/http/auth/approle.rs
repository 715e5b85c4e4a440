//! AppRole paths: `role/:name` and its `role-id`, `secret-id`, `custom-secret-id`,
//! `secret-id/lookup|destroy`, `secret-id-accessor/lookup|destroy`; `login`; `tidy/secret-id`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::{
    apply_token_params, login_response, no_route, rfc3339, secret_field, token_params_json,
};
use crate::auth::approle::{self, Role, SecretIdInfo, SecretIdRequest};
use crate::auth::mounts::AuthMount;
use crate::core::Core;
use crate::engine::error::{EngineError, Result, invalid};
use crate::http::envelope::Response;
use crate::http::fields::Fields;
use crate::http::{Operation, Request, split_first, unsupported};

/// Whether the object a write targets exists.
pub async fn exists(core: &Core, mount: &AuthMount, rest: &str) -> Result<Option<bool>> {
    match split_first(rest) {
        ("role", name) if !name.is_empty() && !name.contains('/') => {
            Ok(Some(approle::read_role(core, mount, name).await?.is_some()))
        }
        _ => Ok(None),
    }
}

/// Serves `auth/<mount>/<rest>` of an AppRole mount.
pub async fn handle(core: &Core, req: &Request, mount: &AuthMount, rest: &str) -> Result<Response> {
    if rest == "login" {
        if !req.op.is_write() {
            return unsupported();
        }
        let role_id = req.data.string("role_id")?.unwrap_or_default();
        let secret_id = secret_field(&req.data, "secret_id")?;
        let (token, entry, _) = approle::login(
            core,
            mount,
            &req.path,
            &role_id,
            secret_id.as_deref().map(String::as_str),
            req.remote,
        )
        .await?;
        return Ok(login_response(&token, &entry));
    }
    if rest == "tidy/secret-id" {
        if !req.op.is_write() {
            return unsupported();
        }
        let removed = approle::tidy(core, mount).await?;
        tracing::info!(mount = %mount.path, removed, "tidied expired secret IDs");
        return Ok(Response {
            accepted: true,
            warnings: vec![format!(
                "Tidy operation finished: {removed} expired secret IDs removed."
            )],
            ..Default::default()
        });
    }
    let (head, tail) = split_first(rest);
    if head != "role" {
        return no_route(mount, rest);
    }
    if tail.is_empty() {
        return match req.op {
            Operation::List => Response::keys(approle::list_roles(core, mount).await?),
            _ => unsupported(),
        };
    }
    let (name, sub) = split_first(tail);
    let name = approle::normalize_name(name)?;
    if sub.is_empty() {
        return match req.op {
            Operation::Read => {
                let role = approle::read_role(core, mount, &name)
                    .await?
                    .ok_or(EngineError::NotFound)?;
                Ok(Response::data(role_json(&role)))
            }
            op if op.is_write() => {
                write_role(core, req, mount, &name).await?;
                Ok(Response::empty())
            }
            Operation::Delete => {
                approle::delete_role(core, mount, &name).await?;
                Ok(Response::empty())
            }
            _ => unsupported(),
        };
    }
    let role = approle::read_role(core, mount, &name).await?;
    let need_role = || {
        role.clone()
            .ok_or_else(|| invalid(format!("role \"{name}\" does not exist")))
    };
    match (sub, req.op) {
        ("role-id", Operation::Read) => {
            let role_id = role.as_ref().ok_or(EngineError::NotFound)?.role_id.clone();
            Ok(Response::data(json!({ "role_id": role_id })))
        }
        ("role-id", op) if op.is_write() => {
            let mut role = need_role()?;
            role.role_id = req
                .data
                .string("role_id")?
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| invalid("missing role_id"))?;
            approle::write_role(core, mount, &role).await?;
            Ok(Response::empty())
        }
        ("secret-id", Operation::List) => {
            let role = need_role()?;
            Response::keys(approle::list_accessors(core, mount, &role).await?)
        }
        ("secret-id", op) if op.is_write() => {
            let role = need_role()?;
            let request = secret_id_request(&req.data, None)?;
            issue_secret_id(core, mount, &role, request).await
        }
        ("custom-secret-id", op) if op.is_write() => {
            let role = need_role()?;
            let secret = secret_field(&req.data, "secret_id")?
                .ok_or_else(|| invalid("missing secret_id"))?;
            let request = secret_id_request(&req.data, Some(secret))?;
            issue_secret_id(core, mount, &role, request).await
        }
        ("secret-id/lookup", op) if op.is_write() => {
            let role = need_role()?;
            let secret = secret_field(&req.data, "secret_id")?
                .ok_or_else(|| invalid("missing secret_id"))?;
            // Vault answers an unknown secret ID with no content.
            match approle::lookup_secret_id(core, mount, &role, &secret).await? {
                Some(info) => Ok(Response::data(secret_id_json(&info))),
                None => Ok(Response::empty()),
            }
        }
        ("secret-id/destroy", op) if op.is_write() || op == Operation::Delete => {
            let role = need_role()?;
            let secret = secret_field(&req.data, "secret_id")?
                .ok_or_else(|| invalid("missing secret_id"))?;
            approle::destroy_secret_id(core, mount, &role, &secret).await?;
            Ok(Response::empty())
        }
        ("secret-id-accessor/lookup", op) if op.is_write() => {
            let role = need_role()?;
            let accessor = accessor_field(&req.data)?;
            let info = approle::lookup_accessor(core, mount, &role, &accessor)
                .await?
                .ok_or(EngineError::NotFound)?;
            Ok(Response::data(secret_id_json(&info)))
        }
        ("secret-id-accessor/destroy", op) if op.is_write() || op == Operation::Delete => {
            let role = need_role()?;
            let accessor = accessor_field(&req.data)?;
            approle::destroy_accessor(core, mount, &role, &accessor).await?;
            Ok(Response::empty())
        }
        (
            "role-id"
            | "secret-id"
            | "custom-secret-id"
            | "secret-id/lookup"
            | "secret-id/destroy"
            | "secret-id-accessor/lookup"
            | "secret-id-accessor/destroy",
            _,
        ) => unsupported(),
        _ => no_route(mount, rest),
    }
}

async fn write_role(core: &Core, req: &Request, mount: &AuthMount, name: &str) -> Result<()> {
    let d = &req.data;
    let mut role = approle::read_role(core, mount, name)
        .await?
        .unwrap_or_else(|| Role::new(name));
    if let Some(v) = d.string("role_id")?.map(|s| s.trim().to_owned()) {
        if v.is_empty() {
            return Err(invalid("role_id must not be empty"));
        }
        role.role_id = v;
    }
    if let Some(v) = d.bool("bind_secret_id")? {
        role.bind_secret_id = v;
    }
    if let Some(v) = d.int("secret_id_num_uses")? {
        role.secret_id_num_uses = v;
    }
    if let Some(v) = d.duration("secret_id_ttl")? {
        role.secret_id_ttl = v;
    }
    // `bound_cidr_list` is the name older Vault versions used.
    let cidr_key = if d.has("secret_id_bound_cidrs") {
        "secret_id_bound_cidrs"
    } else {
        "bound_cidr_list"
    };
    if let Some(v) = d.comma_list(cidr_key)? {
        role.secret_id_bound_cidrs = crate::auth::cidr::normalize(&v)?;
    }
    if let Some(v) = d
        .bool("local_secret_ids")?
        .or(d.bool("enable_local_secret_ids")?)
    {
        role.local_secret_ids = v;
    }
    apply_token_params(d, &mut role.token)?;
    approle::write_role(core, mount, &role).await
}

fn role_json(role: &Role) -> Value {
    let mut out = Map::new();
    out.insert("bind_secret_id".into(), json!(role.bind_secret_id));
    out.insert("secret_id_num_uses".into(), json!(role.secret_id_num_uses));
    out.insert("secret_id_ttl".into(), json!(role.secret_id_ttl));
    out.insert(
        "secret_id_bound_cidrs".into(),
        json!(role.secret_id_bound_cidrs),
    );
    out.insert("local_secret_ids".into(), json!(role.local_secret_ids));
    token_params_json(&role.token, &mut out);
    Value::Object(out)
}

fn accessor_field(d: &Fields) -> Result<String> {
    d.string("secret_id_accessor")?
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid("missing secret_id_accessor"))
}

/// Vault takes `metadata` as a JSON-encoded string of string pairs; an object is accepted too.
fn metadata(d: &Fields) -> Result<BTreeMap<String, String>> {
    let bad = || invalid("metadata must be a JSON object of string values");
    let object = match d.raw("metadata") {
        None => return Ok(BTreeMap::new()),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(BTreeMap::new()),
        Some(Value::String(s)) => serde_json::from_str::<Value>(s).map_err(|_| bad())?,
        Some(v) => v.clone(),
    };
    let Value::Object(map) = object else {
        return Err(bad());
    };
    map.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            _ => Err(bad()),
        })
        .collect()
}

fn secret_id_request(d: &Fields, secret: Option<Zeroizing<String>>) -> Result<SecretIdRequest> {
    Ok(SecretIdRequest {
        secret_id: secret,
        metadata: metadata(d)?,
        cidr_list: d.comma_list("cidr_list")?.unwrap_or_default(),
        token_bound_cidrs: d.comma_list("token_bound_cidrs")?.unwrap_or_default(),
        ttl: d.duration("ttl")?,
        num_uses: d.int("num_uses")?,
    })
}

async fn issue_secret_id(
    core: &Core,
    mount: &AuthMount,
    role: &Role,
    request: SecretIdRequest,
) -> Result<Response> {
    let issued = approle::create_secret_id(core, mount, role, request).await?;
    Ok(Response::data(json!({
        "secret_id": issued.secret_id.as_str(),
        "secret_id_accessor": issued.accessor,
        "secret_id_ttl": issued.ttl,
        "secret_id_num_uses": issued.num_uses,
    })))
}

fn secret_id_json(info: &SecretIdInfo) -> Value {
    json!({
        "secret_id_accessor": info.accessor,
        "creation_time": rfc3339(info.creation_time),
        // Vault shows the zero time for a secret ID that does not expire.
        "expiration_time": info.expiration_time.map_or(json!("0001-01-01T00:00:00Z"), rfc3339),
        "last_updated_time": rfc3339(info.last_updated_time),
        "metadata": info.metadata,
        "secret_id_num_uses": info.num_uses_left,
        "secret_id_ttl": info.ttl,
        "cidr_list": info.cidr_list,
        "token_bound_cidrs": info.token_bound_cidrs,
    })
}
