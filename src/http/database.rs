//! The database engine's paths below a mount: `config`, `reset`, `rotate-root`, `roles`,
//! `creds`.

use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};

use super::envelope::Response;
use super::fields::Fields;
use super::{Operation, Request, split_first, unsupported};
use crate::core::Core;
use crate::engine::database::{self, ConnectionConfig, Requester, RoleEntry};
use crate::engine::error::{EngineError, Result, invalid};
use crate::engine::mounts::Mount;

/// Fields of `config/:name` that the engine consumes; everything else is connection details.
const ENGINE_FIELDS: &[&str] = &[
    "plugin_name",
    "plugin_version",
    "verify_connection",
    "allowed_roles",
    "root_rotation_statements",
    "password_policy",
];

/// Whether the object a write targets exists.
pub async fn exists(core: &Core, mount: &Mount, rest: &str) -> Result<Option<bool>> {
    Ok(match split_first(rest) {
        ("config", name) if !name.is_empty() => Some(
            database::read_connection(core, mount, name)
                .await?
                .is_some(),
        ),
        ("roles", name) if !name.is_empty() => {
            Some(database::read_role(core, mount, name).await?.is_some())
        }
        _ => None,
    })
}

/// Serves `<mount>/<rest>`.
pub async fn handle(core: &Core, req: &Request, mount: &Mount, rest: &str) -> Result<Response> {
    let (head, name) = split_first(rest);
    match (head, req.op, name.is_empty()) {
        ("config", Operation::List, true) => {
            Response::keys(database::list_connections(core, mount).await?)
        }
        ("config", Operation::Read, false) => read_connection(core, mount, name).await,
        ("config", op, false) if op.is_write() => write_connection(core, req, mount, name).await,
        ("config", Operation::Delete, false) => {
            database::delete_connection(core, mount, name).await?;
            Ok(Response::empty())
        }
        ("reset", op, false) if op.is_write() => {
            database::reset_connection(core, mount, name).await?;
            Ok(Response::empty())
        }
        ("rotate-root", op, false) if op.is_write() => {
            database::rotate_root(core, mount, name).await?;
            Ok(Response::empty())
        }
        ("roles", Operation::List, true) => {
            Response::keys(database::list_roles(core, mount).await?)
        }
        ("roles", Operation::Read, false) => {
            let role = database::read_role(core, mount, name)
                .await?
                .ok_or(EngineError::NotFound)?;
            Ok(Response::data(role_json(&role)))
        }
        ("roles", op, false) if op.is_write() => write_role(core, req, mount, name).await,
        ("roles", Operation::Delete, false) => {
            database::delete_role(core, mount, name).await?;
            Ok(Response::empty())
        }
        ("creds", Operation::Read, false) => issue(core, req, mount, name).await,
        ("config" | "reset" | "rotate-root" | "roles" | "creds", _, _) => unsupported(),
        _ => Err(EngineError::UnsupportedPath(format!(
            "no handler for route \"{}/{rest}\". route entry not found.",
            mount.path
        ))),
    }
}

async fn read_connection(core: &Core, mount: &Mount, name: &str) -> Result<Response> {
    let config = database::read_connection(core, mount, name)
        .await?
        .ok_or(EngineError::NotFound)?;
    Ok(Response::data(json!({
        "plugin_name": config.plugin_name,
        "plugin_version": config.plugin_version,
        "connection_details": config.redacted_details(),
        "allowed_roles": config.allowed_roles,
        "root_credentials_rotate_statements": config.root_credentials_rotate_statements,
        "password_policy": config.password_policy,
        "verify_connection": config.verify_connection,
    })))
}

async fn write_connection(
    core: &Core,
    req: &Request,
    mount: &Mount,
    name: &str,
) -> Result<Response> {
    let d = &req.data;
    // An update merges into the stored connection, as Vault does.
    let mut config = database::read_connection(core, mount, name)
        .await?
        .unwrap_or_default();
    if let Some(plugin) = d.string("plugin_name")? {
        config.plugin_name = plugin;
    }
    if config.plugin_name.is_empty() {
        return Err(invalid("empty plugin name"));
    }
    if let Some(v) = d.string("plugin_version")? {
        config.plugin_version = v;
    }
    config.verify_connection = d.bool("verify_connection")?.unwrap_or(true);
    if let Some(roles) = d.comma_list("allowed_roles")? {
        config.allowed_roles = roles;
    }
    if let Some(stmts) = d.string_list("root_rotation_statements")? {
        config.root_credentials_rotate_statements = stmts;
    }
    if let Some(policy) = d.string("password_policy")? {
        config.password_policy = policy;
    }
    for (key, value) in &d.0 {
        if !ENGINE_FIELDS.contains(&key.as_str()) && !value.is_null() {
            config.connection_details.insert(key.clone(), value.clone());
        }
    }
    if !config.connection_details.contains_key("connection_url") {
        return Err(invalid("connection_url is required"));
    }
    let warnings = password_in_url_warning(&config);
    database::write_connection(core, mount, name, config).await?;
    if warnings.is_empty() {
        Ok(Response::empty())
    } else {
        Ok(Response::default().with_warnings(warnings))
    }
}

fn password_in_url_warning(config: &ConnectionConfig) -> Vec<String> {
    let Some(Value::String(url)) = config.connection_details.get("connection_url") else {
        return Vec::new();
    };
    if url.contains("{{password}}") {
        return Vec::new();
    }
    match url::Url::parse(url) {
        Ok(u) if u.password().is_some() => vec![
            "Password found in connection_url, use a templated url to enable root rotation and prevent read access to password information.".into(),
        ],
        _ => Vec::new(),
    }
}

fn role_json(role: &RoleEntry) -> Value {
    let mut data = json!({
        "db_name": role.db_name,
        "creation_statements": role.creation_statements,
        "revocation_statements": role.revocation_statements,
        "rollback_statements": role.rollback_statements,
        "renew_statements": role.renew_statements,
        "default_ttl": role.default_ttl,
        "max_ttl": role.max_ttl,
        "credential_type": role.credential_type,
    });
    if !role.credential_config.is_empty() {
        data["credential_config"] = Value::Object(role.credential_config.clone());
    }
    data
}

fn update_list(fields: &Fields, key: &str, target: &mut Vec<String>) -> Result<()> {
    if let Some(list) = fields.string_list(key)? {
        *target = list;
    }
    Ok(())
}

async fn write_role(core: &Core, req: &Request, mount: &Mount, name: &str) -> Result<Response> {
    let d = &req.data;
    let mut role = database::read_role(core, mount, name)
        .await?
        .unwrap_or_else(|| RoleEntry {
            credential_type: "password".into(),
            ..Default::default()
        });
    if let Some(db) = d.string("db_name")? {
        role.db_name = db;
    }
    update_list(d, "creation_statements", &mut role.creation_statements)?;
    update_list(d, "revocation_statements", &mut role.revocation_statements)?;
    update_list(d, "rollback_statements", &mut role.rollback_statements)?;
    update_list(d, "renew_statements", &mut role.renew_statements)?;
    if let Some(v) = d.duration("default_ttl")? {
        role.default_ttl = v;
    }
    if let Some(v) = d.duration("max_ttl")? {
        role.max_ttl = v;
    }
    if let Some(v) = d.string("credential_type")? {
        role.credential_type = v;
    }
    match d.raw("credential_config") {
        None => {}
        Some(Value::Object(m)) => role.credential_config = m.clone(),
        Some(_) => return Err(invalid("credential_config must be a map")),
    }
    if role.creation_statements.is_empty() {
        return Err(invalid("creation_statements are required"));
    }
    database::write_role(core, mount, name, &role).await?;
    Ok(Response::empty())
}

async fn issue(core: &Core, req: &Request, mount: &Mount, role: &str) -> Result<Response> {
    let token = req.token()?;
    let requester = Requester {
        token_hmac: Some(token.id_hmac.clone()),
        token_accessor: Some(token.accessor.clone()),
        display_name: token.display_name.clone(),
    };
    let cred = database::issue_credential(core, mount, role, &requester).await?;
    let mut data = Map::new();
    data.insert("username".into(), json!(cred.username));
    data.insert("password".into(), json!(cred.password.expose_secret()));
    Ok(Response {
        data: Some(data),
        lease: Some((cred.lease_id, cred.lease_duration, true)),
        warnings: cred.warnings,
        ..Default::default()
    })
}
