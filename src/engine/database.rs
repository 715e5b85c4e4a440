//! The database secrets engine: connections, roles, credential issuance, root rotation.
//!
//! Storage layout below a mount's prefix (`mount/<uuid>/`):
//! `config/<name>` (connection, admin password inside, sealed), `role/<name>`,
//! `intent/rotate-root/<name>` (write-ahead record of a root rotation, sealed).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use dbwarden_plugin::{
    ChangePassword, DatabaseBackend, DeleteUserRequest, NewUserRequest, OpenRequest,
    UpdateUserRequest, UsernameMetadata,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{EngineError, Result, invalid};
use super::lease::{self, Revocation};
use super::mounts::Mount;
use super::password_policy;
use super::ttl::{self, TtlInputs};
use crate::core::Core;

/// How long a backend may take to create a user before the request gives up. The pending
/// lease outlives this, so a creation that finishes late is still covered and revoked.
pub const CREATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A registered target database.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ConnectionConfig {
    /// Selects the backend and dialect.
    pub plugin_name: String,
    /// Informational, as in Vault.
    #[serde(default)]
    pub plugin_version: String,
    /// Everything the backend needs (URL template, admin username and password, pool).
    pub connection_details: Map<String, Value>,
    /// Role globs allowed to use this connection; empty allows none.
    pub allowed_roles: Vec<String>,
    /// Statements for root rotation; empty means the dialect's default.
    pub root_credentials_rotate_statements: Vec<String>,
    /// Password policy name for generated passwords.
    pub password_policy: String,
    /// Whether the connection was verified on write.
    pub verify_connection: bool,
    /// Seconds between automatic root rotations (0: none, or a schedule).
    #[serde(default)]
    pub rotation_period: i64,
    /// Cron schedule of automatic root rotations.
    #[serde(default)]
    pub rotation_schedule: String,
    /// Window after a scheduled time in which the root rotation may run.
    #[serde(default)]
    pub rotation_window: i64,
    /// Hooks run after each root rotation.
    #[serde(default)]
    pub hooks: Vec<String>,
    /// Last successful root rotation.
    #[serde(default)]
    pub last_root_rotation: Option<DateTime<Utc>>,
}

impl ConnectionConfig {
    /// The admin username, if any.
    pub fn admin_username(&self) -> Option<&str> {
        self.connection_details
            .get("username")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// The details as a client may see them: no password, and the URL's password redacted.
    pub fn redacted_details(&self) -> Map<String, Value> {
        let mut details = self.connection_details.clone();
        details.remove("password");
        details.remove("private_key");
        if let Some(Value::String(url)) = details.get("connection_url").cloned() {
            details.insert("connection_url".into(), Value::String(redact_url(&url)));
        }
        details
    }

    /// The automatic root rotation schedule, if any.
    pub fn root_schedule(&self) -> Result<Option<super::schedule::RotationSchedule>> {
        super::schedule::RotationSchedule::from_fields(
            Some(self.rotation_period),
            Some(self.rotation_schedule.as_str()),
            Some(self.rotation_window),
        )
    }

    /// Whether `role` may use this connection (`*` and globs allowed).
    pub fn allows_role(&self, role: &str) -> bool {
        self.allowed_roles.iter().any(|pattern| {
            pattern == "*" || glob::Pattern::new(pattern).is_ok_and(|p| p.matches(role))
        })
    }
}

/// Replaces a literal password in a URL with `xxxxx`, as Go's `url.Redacted` does.
pub fn redact_url(raw: &str) -> String {
    // A templated URL holds no password; the URL parser would percent-encode the braces.
    if raw.contains("{{password}}") {
        return raw.to_owned();
    }
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("xxxxx"));
            u.to_string()
        }
        _ => raw.to_owned(),
    }
}

/// A dynamic role.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct RoleEntry {
    /// The connection.
    pub db_name: String,
    /// Statements run to create a user.
    pub creation_statements: Vec<String>,
    /// Statements run to revoke a user; empty means the dialect's default revocation.
    pub revocation_statements: Vec<String>,
    /// Stored for Vault compatibility; v5 backends do not use them.
    pub rollback_statements: Vec<String>,
    /// Statements run on renewal; empty means the dialect's default.
    pub renew_statements: Vec<String>,
    /// Seconds.
    pub default_ttl: i64,
    /// Seconds.
    pub max_ttl: i64,
    /// Only `password` is supported.
    pub credential_type: String,
    /// `password_policy` for this role.
    pub credential_config: Map<String, Value>,
}

fn config_key(mount: &Mount, name: &str) -> String {
    format!("{}config/{name}", mount.storage_prefix())
}

fn role_key(mount: &Mount, name: &str) -> String {
    format!("{}role/{name}", mount.storage_prefix())
}

fn root_intent_key(mount: &Mount, name: &str) -> String {
    format!("{}intent/rotate-root/{name}", mount.storage_prefix())
}

/// Checks an object name from a path.
pub fn check_name(kind: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || name.len() > 128 {
        return Err(invalid(format!(
            "{kind} name must be 1 to 128 characters without '/'"
        )));
    }
    Ok(())
}

/// Reads a connection.
pub async fn read_connection(
    core: &Core,
    mount: &Mount,
    name: &str,
) -> Result<Option<ConnectionConfig>> {
    core.get_json(&config_key(mount, name)).await
}

/// Lists connection names.
pub async fn list_connections(core: &Core, mount: &Mount) -> Result<Vec<String>> {
    core.list(&format!("{}config/", mount.storage_prefix()))
        .await
}

fn open_request(config: &ConnectionConfig, verify: bool) -> OpenRequest {
    OpenRequest {
        plugin_name: config.plugin_name.clone(),
        details: config.connection_details.clone(),
        verify_connection: verify,
    }
}

/// Validates a connection (opening it, verifying if asked) and stores it.
pub async fn write_connection(
    core: &Core,
    mount: &Mount,
    name: &str,
    config: ConnectionConfig,
) -> Result<()> {
    check_name("connection", name)?;
    if !config.password_policy.is_empty()
        && password_policy::read(core, &config.password_policy)
            .await?
            .is_none()
    {
        return Err(invalid(format!(
            "password policy \"{}\" does not exist",
            config.password_policy
        )));
    }
    for key in ["username", "password"] {
        if let Some(Value::String(v)) = config.connection_details.get(key)
            && (v.contains("{{username}}") || v.contains("{{password}}"))
        {
            return Err(invalid(format!(
                "{key} may not contain {{{{username}}}} or {{{{password}}}} templates"
            )));
        }
    }
    // Open before storing, as Vault does: a bad URL or template fails the write.
    let descriptor = super::backends::descriptor(&config.plugin_name)?;
    let backend = (descriptor.open)(open_request(&config, config.verify_connection)).await?;
    backend.close().await;
    let key = config_key(mount, name);
    core.put_json(&key, &config).await?;
    core.backends.close(&key).await;
    Ok(())
}

/// Stores a connection as is (no re-open): bookkeeping such as the last rotation time.
pub async fn store_connection(
    core: &Core,
    mount: &Mount,
    name: &str,
    config: &ConnectionConfig,
) -> Result<()> {
    core.put_json(&config_key(mount, name), config).await
}

/// Deletes a connection (roles and leases are left alone, as in Vault).
pub async fn delete_connection(core: &Core, mount: &Mount, name: &str) -> Result<()> {
    let key = config_key(mount, name);
    core.store
        .delete_rotation(&super::rotation::rotation_id(mount, "root", name))
        .await?;
    core.delete(&key).await?;
    core.backends.close(&key).await;
    Ok(())
}

/// Closes the cached backend and re-opens it from storage, verifying the connection.
pub async fn reset_connection(core: &Core, mount: &Mount, name: &str) -> Result<()> {
    let config = read_connection(core, mount, name).await?.ok_or_else(|| {
        invalid(format!(
            "unable to reset: connection \"{name}\" does not exist"
        ))
    })?;
    let key = config_key(mount, name);
    core.backends.close(&key).await;
    let backend = backend_for(core, mount, name, &config).await?;
    backend.verify_connection().await?;
    Ok(())
}

/// The open backend of a connection.
pub async fn backend_for(
    core: &Core,
    mount: &Mount,
    name: &str,
    config: &ConnectionConfig,
) -> Result<Arc<dyn DatabaseBackend>> {
    core.backends
        .get_or_open(&config_key(mount, name), || open_request(config, false))
        .await
}

/// Reads a role.
pub async fn read_role(core: &Core, mount: &Mount, name: &str) -> Result<Option<RoleEntry>> {
    core.get_json(&role_key(mount, name)).await
}

/// Stores a role.
pub async fn write_role(core: &Core, mount: &Mount, name: &str, role: &RoleEntry) -> Result<()> {
    check_name("role", name)?;
    if role.db_name.is_empty() {
        return Err(invalid("database name is required"));
    }
    if role.credential_type != "password" {
        return Err(invalid(format!(
            "credential_type \"{}\" is not supported; this server supports \"password\"",
            role.credential_type
        )));
    }
    core.put_json(&role_key(mount, name), role).await
}

/// Deletes a role; its leases keep their revocation snapshot.
pub async fn delete_role(core: &Core, mount: &Mount, name: &str) -> Result<()> {
    core.delete(&role_key(mount, name)).await
}

/// Lists role names.
pub async fn list_roles(core: &Core, mount: &Mount) -> Result<Vec<String>> {
    core.list(&format!("{}role/", mount.storage_prefix())).await
}

/// A credential handed to a client.
#[derive(Debug)]
pub struct IssuedCredential {
    /// The lease id.
    pub lease_id: String,
    /// Lease duration in seconds.
    pub lease_duration: i64,
    /// The database username.
    pub username: String,
    /// The database password (never stored).
    pub password: SecretString,
    /// Warnings (TTL capped).
    pub warnings: Vec<String>,
}

/// Who is asking for a credential.
#[derive(Debug, Clone)]
pub struct Requester {
    /// HMAC of the token, which will own the lease.
    pub token_hmac: Option<String>,
    /// Accessor of that token, shown in lease lookups.
    pub token_accessor: Option<String>,
    /// The token's display name, for username templates.
    pub display_name: String,
}

/// Issues a fresh database user and its lease.
///
/// The lease is durable as *pending* before the user is created, so whatever happens
/// afterwards (an error, a timeout, the process being killed) the user is covered by a
/// lease that the worker will revoke. If this future is dropped half-way, the same holds.
pub async fn issue_credential(
    core: &Core,
    mount: &Mount,
    role_name: &str,
    requester: &Requester,
) -> Result<IssuedCredential> {
    let role = read_role(core, mount, role_name)
        .await?
        .ok_or_else(|| invalid(format!("unknown role: {role_name}")))?;
    let config = read_connection(core, mount, &role.db_name)
        .await?
        .ok_or_else(|| invalid(format!("connection \"{}\" does not exist", role.db_name)))?;
    if !config.allows_role(role_name) {
        return Err(EngineError::Internal(format!(
            "\"{role_name}\" is not an allowed role"
        )));
    }
    if role.creation_statements.is_empty() {
        return Err(invalid("empty creation statements"));
    }
    let now = Utc::now();
    let inputs = TtlInputs {
        backend_ttl: role.default_ttl,
        backend_max_ttl: role.max_ttl,
        mount_default_ttl: mount.config.default_lease_ttl,
        mount_max_ttl: mount.config.max_lease_ttl,
        ..Default::default()
    };
    let (ttl_secs, warning) = ttl::calculate(inputs, now.timestamp(), now.timestamp())?;
    let max_ttl = effective_max_ttl(&role, mount);
    let backend = backend_for(core, mount, &role.db_name, &config).await?;
    let username = backend.generate_username(&UsernameMetadata {
        display_name: requester.display_name.clone(),
        role_name: role_name.to_owned(),
    })?;
    let policy_name = role
        .credential_config
        .get("password_policy")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(&config.password_policy)
        .to_owned();
    let password = new_password(core, &policy_name, backend.as_ref()).await?;
    let lease_id = format!(
        "{}/creds/{role_name}/{}",
        mount.path,
        crate::crypto::random_base62(24)
    );
    let revocation = Revocation {
        mount_uuid: mount.uuid.clone(),
        revocation_statements: role.revocation_statements.clone(),
        renew_statements: role.renew_statements.clone(),
        role_max_ttl: role.max_ttl,
        role_default_ttl: role.default_ttl,
    };
    let expire = now + chrono::Duration::seconds(ttl_secs);
    let pending = lease::PendingLease {
        id: lease_id.clone(),
        mount: mount.path.clone(),
        role_name: role_name.to_owned(),
        connection_name: role.db_name.clone(),
        username: username.clone(),
        owner: requester.token_hmac.clone(),
        owner_accessor: requester.token_accessor.clone(),
        issue_time: now,
        expire_time: expire,
        max_expire_time: now + chrono::Duration::seconds(max_ttl),
        revocation,
    };
    lease::insert_pending(core, &pending).await?;

    let started = std::time::Instant::now();
    let labels = [
        ("mount", mount.path.clone()),
        ("connection", role.db_name.clone()),
    ];
    let created = tokio::time::timeout(
        CREATE_TIMEOUT,
        backend.new_user(NewUserRequest {
            username: username.clone(),
            password: password.clone(),
            statements: role.creation_statements.clone(),
            // Vault adds 5 s so the database never cuts the user before the lease ends.
            expiration: expire + chrono::Duration::seconds(5),
        }),
    )
    .await;
    let failure = match created {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(EngineError::Backend(e)),
        Err(_) => Some(EngineError::Internal(format!(
            "creating the user took longer than {}s; it will be revoked if it exists",
            CREATE_TIMEOUT.as_secs()
        ))),
    };
    metrics::histogram!("dbwarden_issue_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    if let Some(err) = failure {
        metrics::counter!("dbwarden_issue_failures_total", &labels).increment(1);
        if let EngineError::Backend(b) = &err {
            metrics::counter!("dbwarden_backend_errors_total", "kind" => b.kind()).increment(1);
        }
        // Undo now (this request still holds the pending lease's claim); if that fails too,
        // the lease stays with a retry time, so the user cannot be orphaned either way.
        if let Ok(Some(row)) = core.store.get_lease(&lease_id).await
            && let Err(revoke_err) = lease::revoke_claimed(core, &row).await
        {
            tracing::warn!(lease_id = %lease_id, error = %revoke_err, "cleanup after failed creation deferred to the lease worker");
        }
        return Err(err);
    }
    lease::activate(core, &lease_id, expire).await?;
    metrics::counter!("dbwarden_credentials_issued_total", &labels).increment(1);
    Ok(IssuedCredential {
        lease_id,
        lease_duration: ttl_secs,
        username,
        password,
        warnings: warning.into_iter().collect(),
    })
}

/// The max TTL a lease of this role may reach.
pub fn effective_max_ttl(role: &RoleEntry, mount: &Mount) -> i64 {
    let mount_max = if mount.config.max_lease_ttl > 0 {
        mount.config.max_lease_ttl
    } else {
        ttl::DEFAULT_MOUNT_TTL
    };
    if role.max_ttl > 0 && role.max_ttl < mount_max {
        role.max_ttl
    } else {
        mount_max
    }
}

/// The write-ahead record of a root rotation; sealed by the barrier like every entry.
#[derive(Serialize, Deserialize)]
struct RootRotationIntent {
    connection: String,
    username: String,
    new_password: String,
    started: DateTime<Utc>,
}

/// A password from the named policy or, when none is named, from the backend's default policy
/// (its database's complexity rule, see `dbwarden_plugin::complexity`), else Vault's default.
pub async fn new_password(
    core: &Core,
    policy_name: &str,
    backend: &dyn DatabaseBackend,
) -> Result<SecretString> {
    match backend
        .default_password_policy()
        .filter(|_| policy_name.is_empty())
    {
        Some(source) => crate::crypto::password::PasswordPolicy::parse(source)
            .and_then(|policy| policy.generate())
            .map_err(|e| {
                EngineError::Internal(format!("the backend's default password policy: {e}"))
            }),
        None => password_policy::generate(core, policy_name).await,
    }
}

/// Rotates the admin password of a connection.
///
/// The new password is written to an intent before the database changes, so a crash at
/// any point can be finished by [`recover_root_rotations`]: the database and dbwarden never
/// disagree about the password for longer than the recovery takes.
pub async fn rotate_root(core: &Core, mount: &Mount, name: &str) -> Result<()> {
    let config = read_connection(core, mount, name)
        .await?
        .ok_or_else(|| invalid(format!("connection \"{name}\" does not exist")))?;
    let username = config
        .admin_username()
        .ok_or_else(|| invalid("unable to rotate root credentials: no username in configuration"))?
        .to_owned();
    if !config.connection_details.contains_key("password") {
        return Err(invalid(
            "unable to rotate root credentials: no password in configuration",
        ));
    }
    let backend = backend_for(core, mount, name, &config).await?;
    let password = new_password(core, &config.password_policy, backend.as_ref()).await?;
    let intent = RootRotationIntent {
        connection: name.to_owned(),
        username,
        new_password: password.expose_secret().to_owned(),
        started: Utc::now(),
    };
    let intent_key = root_intent_key(mount, name);
    core.put_json(&intent_key, &intent).await?;
    finish_root_rotation(core, mount, config, intent).await?;
    core.delete(&intent_key).await
}

async fn finish_root_rotation(
    core: &Core,
    mount: &Mount,
    mut config: ConnectionConfig,
    intent: RootRotationIntent,
) -> Result<()> {
    let key = config_key(mount, &intent.connection);
    let backend = backend_for(core, mount, &intent.connection, &config).await?;
    let result = backend
        .update_user(UpdateUserRequest {
            username: intent.username.clone(),
            password: Some(ChangePassword {
                new_password: SecretString::from(intent.new_password.clone()),
                statements: config.root_credentials_rotate_statements.clone(),
            }),
            expiration: None,
        })
        .await;
    // The pool holds sessions authenticated with the old password: always start afresh.
    core.backends.close(&key).await;
    if let Err(e) = result {
        // The old password may already have been changed by an earlier attempt that
        // crashed before storing; if the new password works, roll forward.
        let mut candidate = config.clone();
        candidate.connection_details.insert(
            "password".into(),
            Value::String(intent.new_password.clone()),
        );
        let descriptor = super::backends::descriptor(&candidate.plugin_name)?;
        match (descriptor.open)(open_request(&candidate, true)).await {
            Ok(b) => b.close().await,
            Err(_) => return Err(EngineError::Backend(e)),
        }
    }
    config
        .connection_details
        .insert("password".into(), Value::String(intent.new_password));
    core.put_json(&key, &config).await
}

/// Finishes root rotations interrupted by a crash (run at start-up).
pub async fn recover_root_rotations(core: &Core) -> Result<usize> {
    let mut done = 0;
    for mount in super::mounts::list(core).await? {
        let prefix = format!("{}intent/rotate-root/", mount.storage_prefix());
        for name in core.list(&prefix).await? {
            let key = format!("{prefix}{name}");
            let Some(intent) = core.get_json::<RootRotationIntent>(&key).await? else {
                continue;
            };
            let Some(config) = read_connection(core, &mount, &name).await? else {
                core.delete(&key).await?;
                continue;
            };
            let already = config
                .connection_details
                .get("password")
                .and_then(Value::as_str)
                == Some(intent.new_password.as_str());
            if !already {
                finish_root_rotation(core, &mount, config, intent).await?;
            }
            core.delete(&key).await?;
            done += 1;
        }
    }
    Ok(done)
}

/// Revokes a user through the connection's backend (used by the lease worker).
pub async fn delete_user(
    core: &Core,
    mount: &Mount,
    connection: &str,
    username: &str,
    statements: Vec<String>,
) -> Result<()> {
    let config = read_connection(core, mount, connection)
        .await?
        .ok_or_else(|| {
            invalid(format!(
                "connection \"{connection}\" no longer exists; cannot revoke {username}"
            ))
        })?;
    let backend = backend_for(core, mount, connection, &config).await?;
    backend
        .delete_user(DeleteUserRequest {
            username: username.to_owned(),
            statements,
        })
        .await?;
    Ok(())
}

/// Moves a user's expiry in the database (renewal).
pub async fn renew_user(
    core: &Core,
    mount: &Mount,
    connection: &str,
    username: &str,
    statements: Vec<String>,
    expiration: DateTime<Utc>,
) -> Result<()> {
    let config = read_connection(core, mount, connection)
        .await?
        .ok_or_else(|| invalid(format!("connection \"{connection}\" no longer exists")))?;
    let backend = backend_for(core, mount, connection, &config).await?;
    backend
        .update_user(UpdateUserRequest {
            username: username.to_owned(),
            password: None,
            expiration: Some(dbwarden_plugin::ChangeExpiration {
                new_expiration: expiration,
                statements,
            }),
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_redacted_but_templates_kept() {
        assert_eq!(
            redact_url("postgresql://u:secret@db:5432/x"),
            "postgresql://u:xxxxx@db:5432/x"
        );
        let templated = "postgresql://{{username}}:{{password}}@db:5432/x";
        assert_eq!(redact_url(templated), templated);
    }

    #[test]
    fn allowed_roles_globs() {
        let c = ConnectionConfig {
            allowed_roles: vec!["ro-*".into(), "admin".into()],
            ..Default::default()
        };
        assert!(c.allows_role("ro-1"));
        assert!(c.allows_role("admin"));
        assert!(!c.allows_role("rw"));
        let all = ConnectionConfig {
            allowed_roles: vec!["*".into()],
            ..Default::default()
        };
        assert!(all.allows_role("anything"));
        assert!(!ConnectionConfig::default().allows_role("x"));
    }
}

/// Crash recovery of root rotation against a real PostgreSQL (the throwaway test cluster).
#[cfg(test)]
mod rotation_recovery_tests {
    use super::*;
    use crate::crypto::Seal;
    use crate::engine::mounts;
    use crate::storage::Store;
    use dbwarden_testkit::{TempPostgres, unique_name};
    use serde_json::json;

    async fn setup(pg: &TempPostgres) -> (tempfile::TempDir, Core, Mount, String, String) {
        dbwarden_testkit::install_crypto_provider();
        let admin = unique_name("rot_admin_");
        let password = unique_name("Old-");
        pg.connect("postgres")
            .await
            .batch_execute(&format!(
                "CREATE ROLE {admin} WITH LOGIN CREATEROLE PASSWORD '{password}'"
            ))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("s.db")).await.unwrap();
        let (core, _) = Core::initialize(store, &Seal::Ephemeral, None)
            .await
            .unwrap();
        let mount = mounts::enable(&core, "database", "database", "", Default::default())
            .await
            .unwrap();
        let mut details = Map::new();
        details.insert(
            "connection_url".into(),
            json!(pg.connection_url_template("postgres")),
        );
        details.insert("username".into(), json!(admin));
        details.insert("password".into(), json!(password));
        let config = ConnectionConfig {
            plugin_name: "postgresql-database-plugin".into(),
            connection_details: details,
            allowed_roles: vec!["*".into()],
            verify_connection: true,
            ..Default::default()
        };
        write_connection(&core, &mount, "pg", config).await.unwrap();
        (dir, core, mount, admin, password)
    }

    async fn write_intent(core: &Core, mount: &Mount, admin: &str, new_password: &str) {
        let intent = RootRotationIntent {
            connection: "pg".into(),
            username: admin.to_owned(),
            new_password: new_password.to_owned(),
            started: Utc::now(),
        };
        core.put_json(&root_intent_key(mount, "pg"), &intent)
            .await
            .unwrap();
    }

    async fn stored_password(core: &Core, mount: &Mount) -> String {
        let config = read_connection(core, mount, "pg").await.unwrap().unwrap();
        config.connection_details["password"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[tokio::test]
    async fn crash_before_the_database_changed_is_rolled_forward() {
        let pg = TempPostgres::shared();
        let (_dir, core, mount, admin, old) = setup(pg).await;
        let new = unique_name("New-");
        write_intent(&core, &mount, &admin, &new).await;
        assert_eq!(recover_root_rotations(&core).await.unwrap(), 1);
        assert_eq!(stored_password(&core, &mount).await, new);
        assert!(pg.connect_as("postgres", &admin, &new).await.is_ok());
        assert!(pg.connect_as("postgres", &admin, &old).await.is_err());
        assert_eq!(
            recover_root_rotations(&core).await.unwrap(),
            0,
            "the intent is gone"
        );
    }

    #[tokio::test]
    async fn crash_after_the_database_changed_is_rolled_forward() {
        let pg = TempPostgres::shared();
        let (_dir, core, mount, admin, _old) = setup(pg).await;
        let new = unique_name("New-");
        write_intent(&core, &mount, &admin, &new).await;
        // The database took the new password, then the process died before storing it.
        pg.connect("postgres")
            .await
            .batch_execute(&format!("ALTER ROLE {admin} WITH PASSWORD '{new}'"))
            .await
            .unwrap();
        assert_eq!(recover_root_rotations(&core).await.unwrap(), 1);
        assert_eq!(stored_password(&core, &mount).await, new);
        assert!(pg.connect_as("postgres", &admin, &new).await.is_ok());
    }
}
