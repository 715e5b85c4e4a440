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
use crate::engine::hooks::{self, Hook, HookKind};
use crate::engine::mounts::Mount;
use crate::engine::rotation::{self, StaticRole, StaticRoleInput};

/// Fields of `config/:name` that the engine consumes; everything else is connection details.
const ENGINE_FIELDS: &[&str] = &[
    "plugin_name",
    "plugin_version",
    "verify_connection",
    "allowed_roles",
    "root_rotation_statements",
    "password_policy",
    "rotation_period",
    "rotation_schedule",
    "rotation_window",
    "disable_automated_rotation",
    "hooks",
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
        ("static-roles", name) if !name.is_empty() => Some(
            rotation::read_static_role(core, mount, name)
                .await?
                .is_some(),
        ),
        ("hooks", name) if !name.is_empty() => {
            Some(hooks::read(core, mount, name).await?.is_some())
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
            rotation::rotate_root(core, mount, name).await?;
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
        ("static-roles", Operation::List, true) => {
            Response::keys(rotation::list_static_roles(core, mount).await?)
        }
        ("static-roles", Operation::Read, false) => {
            let role = rotation::read_static_role(core, mount, name)
                .await?
                .ok_or(EngineError::NotFound)?;
            Ok(Response::data(static_role_json(&role)))
        }
        ("static-roles", op, false) if op.is_write() => {
            write_static_role(core, req, mount, name).await
        }
        ("static-roles", Operation::Delete, false) => {
            rotation::delete_static_role(core, mount, name).await?;
            Ok(Response::empty())
        }
        ("static-creds", Operation::Read, false) => {
            let role = rotation::static_creds(core, mount, name).await?;
            Ok(Response::data(static_creds_json(&role)))
        }
        ("rotate-role", op, false) if op.is_write() => {
            if rotation::read_static_role(core, mount, name)
                .await?
                .is_none()
            {
                return Err(invalid(format!(
                    "no static role found for role name \"{name}\""
                )));
            }
            rotation::rotate_static(core, mount, name).await?;
            Ok(Response::empty())
        }
        ("hooks", Operation::List, true) => Response::keys(hooks::list(core, mount).await?),
        ("hooks", Operation::Read, false) => {
            let hook = hooks::read(core, mount, name)
                .await?
                .ok_or(EngineError::NotFound)?;
            Ok(Response::data(hook_json(&hook)))
        }
        ("hooks", op, false) if op.is_write() => write_hook(core, req, mount, name).await,
        ("hooks", Operation::Delete, false) => {
            hooks::delete(core, mount, name).await?;
            Ok(Response::empty())
        }
        (
            "config" | "reset" | "rotate-root" | "roles" | "creds" | "static-roles"
            | "static-creds" | "rotate-role" | "hooks",
            _,
            _,
        ) => unsupported(),
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
        "rotation_period": config.rotation_period,
        "rotation_schedule": config.rotation_schedule,
        "rotation_window": config.rotation_window,
        "hooks": config.hooks,
        "last_root_rotation": config.last_root_rotation.map(|t| t.to_rfc3339()),
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
    if d.bool("disable_automated_rotation")? == Some(true) {
        config.rotation_period = 0;
        config.rotation_schedule.clear();
        config.rotation_window = 0;
    }
    if let Some(p) = d.duration("rotation_period")? {
        config.rotation_period = p;
        if p != 0 {
            config.rotation_schedule.clear();
        }
    }
    if let Some(s) = d.string("rotation_schedule")? {
        if !s.is_empty() && d.duration("rotation_period")?.unwrap_or(0) == 0 {
            config.rotation_period = 0;
        }
        config.rotation_schedule = s;
    }
    if let Some(w) = d.duration("rotation_window")? {
        config.rotation_window = w;
    }
    config.root_schedule()?;
    if let Some(names) = d.string_list("hooks")? {
        hooks::check_names(core, mount, &names).await?;
        config.hooks = names;
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
    database::write_connection(core, mount, name, config.clone()).await?;
    rotation::schedule_root(core, mount, name, &config).await?;
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
    if rotation::read_static_role(core, mount, name)
        .await?
        .is_some()
    {
        return Err(invalid("Role and Static Role names must be unique"));
    }
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

fn schedule_fields(data: &mut Value, period: i64, schedule: &str, window: i64) {
    // Vault returns only the form in use.
    if schedule.is_empty() {
        data["rotation_period"] = json!(period);
    } else {
        data["rotation_schedule"] = json!(schedule);
        if window > 0 {
            data["rotation_window"] = json!(window);
        }
    }
}

fn failure_fields(data: &mut Value, role: &StaticRole) {
    if let Some(err) = &role.last_error {
        data["last_error"] = json!(err);
        data["failed_attempts"] = json!(role.failed_attempts);
        data["next_attempt"] = json!(role.next_attempt.map(|t| t.to_rfc3339()));
    }
}

fn static_role_json(role: &StaticRole) -> Value {
    let mut data = json!({
        "db_name": role.db_name,
        "username": role.username,
        "rotation_statements": role.rotation_statements,
        "credential_type": role.credential_type,
        "last_vault_rotation": role.last_vault_rotation.map(|t| t.to_rfc3339()),
        "next_vault_rotation": role.next_vault_rotation.map(|t| t.to_rfc3339()),
        "hooks": role.hooks,
    });
    if !role.credential_config.is_empty() {
        data["credential_config"] = Value::Object(role.credential_config.clone());
    }
    schedule_fields(
        &mut data,
        role.rotation_period,
        &role.rotation_schedule,
        role.rotation_window,
    );
    failure_fields(&mut data, role);
    data
}

fn static_creds_json(role: &StaticRole) -> Value {
    let now = chrono::Utc::now();
    // Vault's rule: ttl 0 means a rotation is due, running or failing.
    let ttl = match (role.next_vault_rotation, &role.last_error) {
        (Some(next), None) => (next - now).num_seconds().max(0),
        _ => 0,
    };
    let mut data = json!({
        "username": role.username,
        "password": role.password,
        "last_vault_rotation": role.last_vault_rotation.map(|t| t.to_rfc3339()),
        "ttl": ttl,
    });
    schedule_fields(
        &mut data,
        role.rotation_period,
        &role.rotation_schedule,
        role.rotation_window,
    );
    failure_fields(&mut data, role);
    data
}

async fn write_static_role(
    core: &Core,
    req: &Request,
    mount: &Mount,
    name: &str,
) -> Result<Response> {
    let d = &req.data;
    let credential_config = match d.raw("credential_config") {
        None => None,
        Some(Value::Object(m)) => Some(m.clone()),
        Some(_) => return Err(invalid("credential_config must be a map")),
    };
    let input = StaticRoleInput {
        db_name: d.string("db_name")?,
        username: d.string("username")?,
        rotation_statements: d.string_list("rotation_statements")?,
        rotation_period: d.duration("rotation_period")?,
        rotation_schedule: d.string("rotation_schedule")?,
        rotation_window: d.duration("rotation_window")?,
        credential_type: d.string("credential_type")?,
        credential_config,
        hooks: d.string_list("hooks")?,
        skip_import_rotation: d.bool("skip_import_rotation")?.unwrap_or(false),
        password: d.string("password")?,
    };
    rotation::write_static_role(core, mount, name, input).await?;
    Ok(Response::empty())
}

fn hook_json(hook: &Hook) -> Value {
    // The secret is never returned.
    json!({
        "type": hook.kind,
        "url": hook.url,
        "command": hook.command,
        "args": hook.args,
        "include_password": hook.include_password,
        "timeout_seconds": hook.timeout_seconds,
        "max_attempts": hook.max_attempts,
    })
}

async fn write_hook(core: &Core, req: &Request, mount: &Mount, name: &str) -> Result<Response> {
    let d = &req.data;
    let existing = hooks::read(core, mount, name).await?;
    let kind = match d.string("type")?.as_deref() {
        Some("webhook") => HookKind::Webhook,
        Some("command") => HookKind::Command,
        Some(other) => {
            return Err(invalid(format!(
                "unknown hook type \"{other}\"; use webhook or command"
            )));
        }
        None => existing
            .as_ref()
            .map(|h| h.kind)
            .ok_or_else(|| invalid("type is required"))?,
    };
    let base = existing.unwrap_or(Hook {
        kind,
        url: String::new(),
        secret: String::new(),
        command: String::new(),
        args: Vec::new(),
        include_password: false,
        timeout_seconds: 10,
        max_attempts: 5,
    });
    let hook = Hook {
        kind,
        url: d.string("url")?.unwrap_or(base.url),
        secret: d.string("secret")?.unwrap_or(base.secret),
        command: d.string("command")?.unwrap_or(base.command),
        args: d.string_list("args")?.unwrap_or(base.args),
        include_password: d.bool("include_password")?.unwrap_or(base.include_password),
        timeout_seconds: d
            .int("timeout_seconds")?
            .map_or(base.timeout_seconds, |v| v.max(0) as u64),
        max_attempts: d
            .int("max_attempts")?
            .map_or(base.max_attempts, |v| v.clamp(0, 100) as u32),
    };
    hooks::write(core, mount, name, &hook).await?;
    Ok(Response::empty())
}
