//! Kubernetes paths: `config`, `role/:name`, `login`.

use serde_json::{Map, Value, json};

use super::{apply_token_params, login_response, no_route, secret_field, token_params_json};
use crate::auth::kubernetes::{self, Config, Role};
use crate::auth::mounts::AuthMount;
use crate::core::Core;
use crate::engine::error::{EngineError, Result, invalid};
use crate::http::envelope::Response;
use crate::http::{Operation, Request, split_first, unsupported};

/// Whether the object a write targets exists.
pub async fn exists(core: &Core, mount: &AuthMount, rest: &str) -> Result<Option<bool>> {
    match split_first(rest) {
        ("config", "") => Ok(Some(kubernetes::read_config(core, mount).await?.is_some())),
        ("role", name) if !name.is_empty() && !name.contains('/') => Ok(Some(
            kubernetes::read_role(core, mount, name).await?.is_some(),
        )),
        _ => Ok(None),
    }
}

/// Serves `auth/<mount>/<rest>` of a Kubernetes mount.
pub async fn handle(core: &Core, req: &Request, mount: &AuthMount, rest: &str) -> Result<Response> {
    match split_first(rest) {
        ("login", "") => {
            if !req.op.is_write() {
                return unsupported();
            }
            let role = req.data.string("role")?.unwrap_or_default();
            let jwt = secret_field(&req.data, "jwt")?.unwrap_or_default();
            let (token, entry) =
                kubernetes::login(core, mount, &req.path, &role, &jwt, req.remote).await?;
            Ok(login_response(&token, &entry))
        }
        ("config", "") => match req.op {
            Operation::Read => {
                let config = kubernetes::read_config(core, mount)
                    .await?
                    .ok_or(EngineError::NotFound)?;
                Ok(Response::data(config_json(&config)))
            }
            op if op.is_write() => {
                write_config(core, req, mount).await?;
                Ok(Response::empty())
            }
            _ => unsupported(),
        },
        ("role", "") => match req.op {
            Operation::List => Response::keys(kubernetes::list_roles(core, mount).await?),
            _ => unsupported(),
        },
        ("role", name) if !name.contains('/') => match req.op {
            Operation::Read => {
                let role = kubernetes::read_role(core, mount, name)
                    .await?
                    .ok_or(EngineError::NotFound)?;
                Ok(Response::data(role_json(&role)))
            }
            op if op.is_write() => {
                write_role(core, req, mount, name).await?;
                Ok(Response::empty())
            }
            Operation::Delete => {
                kubernetes::delete_role(core, mount, name).await?;
                Ok(Response::empty())
            }
            _ => unsupported(),
        },
        _ => no_route(mount, rest),
    }
}

/// Splits text holding one or more PEM blocks (concatenated, or comma-separated as Vault's
/// comma list allows) into blocks.
fn pem_blocks(text: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN ";
    const END: &str = "-----END ";
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let block = &rest[start..];
        let Some(end) = block.find(END) else {
            // An unterminated block: keep it, so validation reports it.
            out.push(block.trim().to_owned());
            break;
        };
        let after_end = end + END.len();
        let close = block[after_end..]
            .find("-----")
            .map_or(block.len(), |i| after_end + i + 5);
        out.push(block[..close].to_owned());
        rest = &block[close..];
    }
    out
}

/// `pem_keys` arrives as a list, or as one string that may hold several PEM blocks.
fn pem_list(value: &Value) -> Result<Vec<String>> {
    let bad = || invalid("pem_keys must be a list of PEM strings");
    match value {
        Value::Null => Ok(Vec::new()),
        Value::String(s) if s.trim().is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(pem_blocks(s)),
        Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                let Value::String(s) = item else {
                    return Err(bad());
                };
                out.extend(pem_blocks(s));
            }
            Ok(out)
        }
        _ => Err(bad()),
    }
}

async fn write_config(core: &Core, req: &Request, mount: &AuthMount) -> Result<()> {
    let d = &req.data;
    // An update keeps what it does not mention (hvac's configure always sends the host).
    let mut c = kubernetes::read_config(core, mount)
        .await?
        .unwrap_or_default();
    for (key, slot) in [
        ("kubernetes_host", &mut c.kubernetes_host),
        ("kubernetes_ca_cert", &mut c.kubernetes_ca_cert),
        ("token_reviewer_jwt", &mut c.token_reviewer_jwt),
        ("issuer", &mut c.issuer),
        ("jwks_url", &mut c.jwks_url),
        ("jwks_ca_pem", &mut c.jwks_ca_pem),
    ] {
        if let Some(v) = d.string(key)? {
            *slot = v.trim().to_owned();
        }
    }
    if let Some(v) = d.raw("pem_keys") {
        c.pem_keys = pem_list(v)?;
    }
    if let Some(v) = d.bool("disable_iss_validation")? {
        c.disable_iss_validation = v;
    }
    if let Some(v) = d.bool("disable_local_ca_jwt")? {
        c.disable_local_ca_jwt = v;
    }
    if let Some(v) = d.duration("jwks_min_refresh_interval")? {
        c.jwks_min_refresh_interval = v;
    }
    kubernetes::write_config(core, mount, &c).await
}

fn config_json(c: &Config) -> Value {
    json!({
        "kubernetes_host": c.kubernetes_host,
        "kubernetes_ca_cert": c.kubernetes_ca_cert,
        "pem_keys": c.pem_keys,
        "issuer": c.issuer,
        "disable_iss_validation": c.disable_iss_validation,
        "disable_local_ca_jwt": c.disable_local_ca_jwt,
        // The reviewer JWT is a credential: say whether it is set, never what it is.
        "token_reviewer_jwt_set": !c.token_reviewer_jwt.is_empty(),
        "jwks_url": c.jwks_url,
        "jwks_ca_pem": c.jwks_ca_pem,
        "jwks_min_refresh_interval": if c.jwks_min_refresh_interval > 0 {
            c.jwks_min_refresh_interval
        } else {
            kubernetes::DEFAULT_JWKS_MIN_REFRESH_SECONDS
        },
    })
}

async fn write_role(core: &Core, req: &Request, mount: &AuthMount, name: &str) -> Result<()> {
    let d = &req.data;
    let mut role: Role = kubernetes::read_role(core, mount, name)
        .await?
        .unwrap_or_default();
    if let Some(v) = d.comma_list("bound_service_account_names")? {
        role.bound_service_account_names = v;
    }
    if let Some(v) = d.comma_list("bound_service_account_namespaces")? {
        role.bound_service_account_namespaces = v;
    }
    if d.has("bound_service_account_namespace_selector")
        && !d
            .string("bound_service_account_namespace_selector")?
            .unwrap_or_default()
            .is_empty()
    {
        return Err(invalid(
            "bound_service_account_namespace_selector is not supported; list the namespaces",
        ));
    }
    if let Some(v) = d.string("audience")? {
        role.audience = v.trim().to_owned();
    }
    if let Some(v) = d.string("alias_name_source")? {
        role.alias_name_source = v;
    }
    apply_token_params(d, &mut role.token)?;
    kubernetes::write_role(core, mount, name, &role).await
}

fn role_json(role: &Role) -> Value {
    let mut out = Map::new();
    out.insert(
        "bound_service_account_names".into(),
        json!(role.bound_service_account_names),
    );
    out.insert(
        "bound_service_account_namespaces".into(),
        json!(role.bound_service_account_namespaces),
    );
    out.insert("audience".into(), json!(role.audience));
    out.insert(
        "alias_name_source".into(),
        json!(if role.alias_name_source.is_empty() {
            "serviceaccount_uid"
        } else {
            role.alias_name_source.as_str()
        }),
    );
    token_params_json(&role.token, &mut out);
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_split_lists_and_concatenations() {
        let a = "-----BEGIN PUBLIC KEY-----\nAAA\n-----END PUBLIC KEY-----";
        let b = "-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----";
        assert_eq!(pem_blocks(&format!("{a}\n{b}\n")), vec![a, b]);
        assert_eq!(pem_blocks(&format!("{a},{b}")), vec![a, b]);
        assert_eq!(pem_list(&json!([a, b])).unwrap(), vec![a, b]);
        assert!(pem_list(&json!(3)).is_err());
        assert!(pem_list(&json!("")).unwrap().is_empty());
    }
}
