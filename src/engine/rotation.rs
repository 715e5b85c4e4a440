//! Static roles and scheduled rotation of static and root credentials.
//!
//! Every rotation is crash-safe: an intent holding the new password (sealed by the barrier)
//! is written before the database changes; then the password is changed, then stored with
//! the rotation time, then the intent is deleted. An intent found later (after a crash, or
//! by another replica) is rolled *forward*: the same password is applied again, so the
//! database and dbwarden end up agreeing on one password. If the database keeps rejecting
//! an intent's password, a new one is generated instead of retrying forever.
//!
//! Due rotations live in the `rotations` table and are claimed through storage (with
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL), so with several replicas each runs once.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dbwarden_plugin::{ChangePassword, UpdateUserRequest};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::database::{self, ConnectionConfig};
use super::error::{EngineError, Result, invalid};
use super::hooks::{self, RotationEvent};
use super::mounts::{self, Mount};
use super::password_policy;
use super::schedule::RotationSchedule;
use crate::core::Core;
use crate::storage::RotationRow;

/// Tunables of rotation (`[rotation]` in the configuration file).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RotationSettings {
    /// First retry delay after a failed rotation.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    /// Longest delay between retries.
    #[serde(with = "humantime_serde")]
    pub retry_cap: Duration,
    /// Failures with the same new password after which a fresh password is generated.
    pub regenerate_after_failures: u32,
    /// How long a process owns a rotation it has claimed.
    #[serde(with = "humantime_serde")]
    pub claim_timeout: Duration,
}

impl Default for RotationSettings {
    fn default() -> Self {
        RotationSettings {
            retry_base: Duration::from_secs(5),
            retry_cap: Duration::from_secs(3600),
            regenerate_after_failures: 3,
            claim_timeout: Duration::from_secs(60),
        }
    }
}

/// A static role: an existing account whose password dbwarden owns.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct StaticRole {
    /// The connection.
    pub db_name: String,
    /// The database account (immutable).
    pub username: String,
    /// Statements that change the password; empty means the dialect's default.
    pub rotation_statements: Vec<String>,
    /// Only `password`.
    pub credential_type: String,
    /// `password_policy` for this role.
    pub credential_config: Map<String, Value>,
    /// Seconds between rotations (0 with a schedule).
    pub rotation_period: i64,
    /// Cron expression (empty with a period).
    pub rotation_schedule: String,
    /// Seconds after a scheduled time the rotation may still run.
    pub rotation_window: i64,
    /// Hooks to run after each rotation.
    pub hooks: Vec<String>,
    /// The current password (sealed in storage with the rest of the entry).
    pub password: String,
    /// Last successful rotation.
    pub last_vault_rotation: Option<DateTime<Utc>>,
    /// Next scheduled rotation.
    pub next_vault_rotation: Option<DateTime<Utc>>,
    /// Last rotation error (redacted), while failing.
    pub last_error: Option<String>,
    /// Consecutive failed rotations.
    pub failed_attempts: i64,
    /// When the failing rotation is retried.
    pub next_attempt: Option<DateTime<Utc>>,
}

impl StaticRole {
    /// The role's schedule.
    pub fn schedule(&self) -> Result<RotationSchedule> {
        let period = (self.rotation_period > 0).then_some(self.rotation_period);
        let window = (self.rotation_window > 0).then_some(self.rotation_window);
        RotationSchedule::from_fields(period, Some(self.rotation_schedule.as_str()), window)?
            .ok_or_else(|| invalid("one of rotation_period or rotation_schedule is required"))
    }
}

/// The fields a write may carry; `None` leaves the stored value.
#[derive(Debug, Default)]
pub struct StaticRoleInput {
    /// `db_name`.
    pub db_name: Option<String>,
    /// `username`.
    pub username: Option<String>,
    /// `rotation_statements`.
    pub rotation_statements: Option<Vec<String>>,
    /// `rotation_period`.
    pub rotation_period: Option<i64>,
    /// `rotation_schedule`.
    pub rotation_schedule: Option<String>,
    /// `rotation_window`.
    pub rotation_window: Option<i64>,
    /// `credential_type`.
    pub credential_type: Option<String>,
    /// `credential_config`.
    pub credential_config: Option<Map<String, Value>>,
    /// `hooks`.
    pub hooks: Option<Vec<String>>,
    /// `skip_import_rotation`: do not rotate on create.
    pub skip_import_rotation: bool,
    /// `password`: the account's current password, with `skip_import_rotation`.
    pub password: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Intent {
    new_password: String,
    started: DateTime<Utc>,
    /// Attempts the database answered with an error.
    failures: u32,
    /// An attempt is running, or was cut off before it could record its outcome.
    #[serde(default)]
    in_flight: bool,
    /// Some attempt was cut off: the database may hold this password, or may not.
    #[serde(default)]
    possibly_applied: bool,
}

fn role_key(mount: &Mount, name: &str) -> String {
    format!("{}static-role/{name}", mount.storage_prefix())
}

fn intent_key(mount: &Mount, name: &str) -> String {
    format!("{}intent/static/{name}", mount.storage_prefix())
}

/// The id of a rotation row.
pub fn rotation_id(mount: &Mount, kind: &str, name: &str) -> String {
    format!("{}/{kind}/{name}", mount.uuid)
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Reads a static role.
pub async fn read_static_role(
    core: &Core,
    mount: &Mount,
    name: &str,
) -> Result<Option<StaticRole>> {
    core.get_json(&role_key(mount, name)).await
}

/// Lists static role names.
pub async fn list_static_roles(core: &Core, mount: &Mount) -> Result<Vec<String>> {
    core.list(&format!("{}static-role/", mount.storage_prefix()))
        .await
}

/// Creates or updates a static role. A new role's password is rotated at once (unless
/// `skip_import_rotation`); if that fails, the role is not stored.
pub async fn write_static_role(
    core: &Core,
    mount: &Mount,
    name: &str,
    input: StaticRoleInput,
) -> Result<()> {
    database::check_name("static role", name)?;
    if database::read_role(core, mount, name).await?.is_some() {
        return Err(invalid("Role and Static Role names must be unique"));
    }
    let existing = read_static_role(core, mount, name).await?;
    let creating = existing.is_none();
    let mut role = existing.unwrap_or_else(|| StaticRole {
        credential_type: "password".into(),
        ..Default::default()
    });
    if let Some(username) = input.username.filter(|u| !u.is_empty()) {
        if !creating && username != role.username {
            return Err(invalid("cannot update static account username"));
        }
        role.username = username;
    }
    if role.username.is_empty() {
        return Err(invalid(
            "username is a required field to create a static account",
        ));
    }
    if let Some(db) = input.db_name {
        role.db_name = db;
    }
    if role.db_name.is_empty() {
        return Err(invalid("database name is a required field"));
    }
    if let Some(v) = input.rotation_statements {
        role.rotation_statements = v;
    }
    if let Some(v) = input.credential_type {
        role.credential_type = v;
    }
    if role.credential_type != "password" {
        return Err(invalid(
            "only credential_type \"password\" is supported for static roles",
        ));
    }
    if let Some(v) = input.credential_config {
        role.credential_config = v;
    }
    if let Some(v) = input.hooks {
        hooks::check_names(core, mount, &v).await?;
        role.hooks = v;
    }
    // Period and schedule replace each other, as in Vault.
    match (input.rotation_period, input.rotation_schedule.as_deref()) {
        (Some(p), Some(s)) if p != 0 && !s.is_empty() => {
            RotationSchedule::from_fields(Some(p), Some(s), None)?;
        }
        (Some(p), _) if p != 0 => {
            role.rotation_period = p;
            role.rotation_schedule.clear();
            role.rotation_window = 0;
        }
        (_, Some(s)) if !s.is_empty() => {
            role.rotation_schedule = s.to_owned();
            role.rotation_period = 0;
        }
        _ => {}
    }
    if let Some(w) = input.rotation_window {
        role.rotation_window = w;
    }
    let schedule = role.schedule()?;
    let config = database::read_connection(core, mount, &role.db_name)
        .await?
        .ok_or_else(|| invalid(format!("connection \"{}\" does not exist", role.db_name)))?;
    if !config.allows_role(name) {
        return Err(invalid(format!("\"{name}\" is not an allowed role")));
    }
    let id = rotation_id(mount, "static", name);
    if creating && !input.skip_import_rotation {
        // Store first so the rotation (and a crash during it) has a role to work on; a
        // failed first rotation removes it again.
        core.put_json(&role_key(mount, name), &role).await?;
        let now = Utc::now();
        core.store
            .upsert_rotation(&RotationRow {
                id: id.clone(),
                mount_uuid: mount.uuid.clone(),
                kind: "static".into(),
                name: name.to_owned(),
                next_rotation: ms(schedule.next_after(now)),
                claimed_until: 0,
            })
            .await?;
        if let Err(e) = rotate_static(core, mount, name).await {
            core.delete(&role_key(mount, name)).await?;
            core.delete(&intent_key(mount, name)).await?;
            core.store.delete_rotation(&id).await?;
            return Err(e);
        }
        return Ok(());
    }
    if creating {
        role.password = input.password.unwrap_or_default();
        role.last_vault_rotation = Some(Utc::now());
    }
    let base = role.last_vault_rotation.unwrap_or_else(Utc::now);
    let next = schedule.next_after(base);
    role.next_vault_rotation = Some(next);
    core.put_json(&role_key(mount, name), &role).await?;
    core.store
        .upsert_rotation(&RotationRow {
            id,
            mount_uuid: mount.uuid.clone(),
            kind: "static".into(),
            name: name.to_owned(),
            next_rotation: ms(role.next_attempt.unwrap_or(next)),
            claimed_until: 0,
        })
        .await?;
    core.rotation_wake.notify_one();
    Ok(())
}

/// Deletes a static role, its intent and its schedule. The database account is left as is.
pub async fn delete_static_role(core: &Core, mount: &Mount, name: &str) -> Result<()> {
    core.store
        .delete_rotation(&rotation_id(mount, "static", name))
        .await?;
    core.delete(&intent_key(mount, name)).await?;
    core.delete(&role_key(mount, name)).await
}

/// Claims a rotation row, waiting briefly if another request or replica holds it.
async fn claim(core: &Core, id: &str) -> Result<()> {
    for _ in 0..200 {
        let now = Utc::now().timestamp_millis();
        let until =
            now + i64::try_from(core.rotation.claim_timeout.as_millis()).unwrap_or(i64::MAX);
        if core.store.claim_rotation(id, now, until).await? {
            return Ok(());
        }
        if core.store.get_rotation(id).await?.is_none() {
            return Err(EngineError::NotFound);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(EngineError::Internal(
        "another process is rotating this credential; try again".into(),
    ))
}

/// Rotates a static role now (`rotate-role`, and the first rotation on create).
pub async fn rotate_static(core: &Core, mount: &Mount, name: &str) -> Result<()> {
    let id = rotation_id(mount, "static", name);
    claim(core, &id).await?;
    let result = rotate_claimed_static(core, mount, name).await;
    release(core, mount, name, &id).await?;
    result
}

/// Releases a static role's claim with its next due time (retry time while failing).
async fn release(core: &Core, mount: &Mount, name: &str, id: &str) -> Result<()> {
    match read_static_role(core, mount, name).await? {
        Some(role) => {
            let next = role
                .next_attempt
                .or(role.next_vault_rotation)
                .unwrap_or_else(Utc::now);
            core.store.release_rotation(id, ms(next)).await?;
            core.rotation_wake.notify_one();
        }
        None => core.store.delete_rotation(id).await?,
    }
    Ok(())
}

async fn new_password(
    core: &Core,
    role_policy: Option<&str>,
    config: &ConnectionConfig,
) -> Result<SecretString> {
    let name = role_policy
        .filter(|p| !p.is_empty())
        .unwrap_or(&config.password_policy);
    password_policy::generate(core, name).await
}

/// The rotation itself, for a caller holding the claim.
async fn rotate_claimed_static(core: &Core, mount: &Mount, name: &str) -> Result<()> {
    let mut role = read_static_role(core, mount, name)
        .await?
        .ok_or(EngineError::NotFound)?;
    let config = database::read_connection(core, mount, &role.db_name)
        .await?
        .ok_or_else(|| invalid(format!("connection \"{}\" does not exist", role.db_name)))?;
    if !config.allows_role(name) {
        return Err(invalid(format!("\"{name}\" is not an allowed role")));
    }
    let ikey = intent_key(mount, name);
    // Roll an interrupted rotation forward with its password, unless the database has
    // rejected that password too often: then start over with a new one.
    let previous = core.get_json::<Intent>(&ikey).await?;
    // An attempt that never recorded its outcome was cut off (a crash): from then on the
    // database may hold the intent's password, and reads must finish the rotation.
    let possibly_applied = previous
        .as_ref()
        .is_some_and(|i| i.in_flight || i.possibly_applied);
    let mut intent = match previous {
        Some(i) if i.failures < core.rotation.regenerate_after_failures => i,
        stale => {
            if stale.is_some() {
                tracing::warn!(role = %name, "the database keeps rejecting the pending password; generating a new one");
            }
            let policy = role
                .credential_config
                .get("password_policy")
                .and_then(Value::as_str);
            Intent {
                new_password: new_password(core, policy, &config)
                    .await?
                    .expose_secret()
                    .to_owned(),
                started: Utc::now(),
                failures: 0,
                in_flight: false,
                possibly_applied,
            }
        }
    };
    intent.possibly_applied = possibly_applied;
    intent.in_flight = true;
    core.put_json(&ikey, &intent).await?;
    let now = Utc::now();
    let backend = database::backend_for(core, mount, &role.db_name, &config).await?;
    let changed = backend
        .update_user(UpdateUserRequest {
            username: role.username.clone(),
            password: Some(ChangePassword {
                new_password: SecretString::from(intent.new_password.clone()),
                statements: role.rotation_statements.clone(),
            }),
            expiration: None,
        })
        .await;
    let schedule = role.schedule()?;
    let labels = [("mount", mount.path.clone()), ("kind", "static".to_owned())];
    match changed {
        Ok(()) => {
            role.password = std::mem::take(&mut intent.new_password);
            role.last_vault_rotation = Some(now);
            role.next_vault_rotation = Some(schedule.next_after(now));
            role.last_error = None;
            role.failed_attempts = 0;
            role.next_attempt = None;
            core.put_json(&role_key(mount, name), &role).await?;
            core.delete(&ikey).await?;
            metrics::counter!(
                "dbwarden_rotations_total",
                &[&labels[..], &[("outcome", "ok".to_owned())]].concat()
            )
            .increment(1);
            tracing::info!(mount = %mount.path, role = %name, username = %role.username, "static role rotated");
            let event = event(
                "rotation.succeeded",
                mount,
                "static-role",
                name,
                &role.username,
                now,
                role.next_vault_rotation,
                None,
            );
            hooks::fire(core, mount, &role.hooks, event, Some(role.password.clone())).await;
            Ok(())
        }
        Err(e) => {
            intent.failures += 1;
            intent.in_flight = false;
            core.put_json(&ikey, &intent).await?;
            let message = e.to_string();
            role.failed_attempts += 1;
            role.last_error = Some(message.clone());
            let retry = super::lease::backoff(
                core.rotation.retry_base,
                core.rotation.retry_cap,
                role.failed_attempts,
            );
            role.next_attempt = Some(now + chrono::Duration::from_std(retry).unwrap_or_default());
            core.put_json(&role_key(mount, name), &role).await?;
            metrics::counter!(
                "dbwarden_rotations_total",
                &[&labels[..], &[("outcome", "error".to_owned())]].concat()
            )
            .increment(1);
            metrics::counter!("dbwarden_backend_errors_total", "kind" => e.kind()).increment(1);
            tracing::warn!(mount = %mount.path, role = %name, attempts = role.failed_attempts, retry_in_s = retry.as_secs(), error = %message, "static role rotation failed; will retry");
            let event = event(
                "rotation.failed",
                mount,
                "static-role",
                name,
                &role.username,
                now,
                role.next_attempt,
                Some(message),
            );
            hooks::fire(core, mount, &role.hooks, event, None).await;
            Err(EngineError::Internal(format!(
                "unable to finish rotating credentials; retries will continue in the background but it is also safe to retry manually: {e}"
            )))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn event(
    kind_of_event: &'static str,
    mount: &Mount,
    kind: &'static str,
    name: &str,
    username: &str,
    at: DateTime<Utc>,
    next: Option<DateTime<Utc>>,
    error: Option<String>,
) -> RotationEvent {
    RotationEvent {
        event: kind_of_event,
        mount: mount.path.clone(),
        kind,
        name: name.to_owned(),
        username: username.to_owned(),
        rotation_time: at,
        next_rotation: next,
        error,
        password: None,
    }
}

/// What `static-creds` returns. If a rotation was interrupted, it is finished first (or
/// awaited, if another request is running it), so the password returned always logs in.
pub async fn static_creds(core: &Core, mount: &Mount, name: &str) -> Result<StaticRole> {
    let role = read_static_role(core, mount, name)
        .await?
        .ok_or_else(|| invalid(format!("unknown role: {name}")))?;
    let config = database::read_connection(core, mount, &role.db_name).await?;
    if !config.as_ref().is_some_and(|c| c.allows_role(name)) {
        return Err(EngineError::Internal(format!(
            "\"{name}\" is not an allowed role"
        )));
    }
    // An intent whose attempt was cut off (a crash, or one running now) may already be in
    // the database: finish it before answering. One the database only ever rejected leaves
    // the stored password working, and the background retry in charge.
    if core
        .get_json::<Intent>(&intent_key(mount, name))
        .await?
        .is_some_and(|i| i.in_flight || i.possibly_applied)
    {
        // Waits for a live rotation, or finishes a dead one.
        if let Err(e) = rotate_static(core, mount, name).await {
            tracing::warn!(role = %name, error = %e, "finishing an interrupted rotation failed");
        }
        return read_static_role(core, mount, name)
            .await?
            .ok_or(EngineError::NotFound);
    }
    Ok(role)
}

/// Schedules (or unschedules) the automatic rotation of a connection's root credential.
pub async fn schedule_root(
    core: &Core,
    mount: &Mount,
    name: &str,
    config: &ConnectionConfig,
) -> Result<()> {
    let id = rotation_id(mount, "root", name);
    match config.root_schedule()? {
        Some(schedule) => {
            let base = config.last_root_rotation.unwrap_or_else(Utc::now);
            core.store
                .upsert_rotation(&RotationRow {
                    id,
                    mount_uuid: mount.uuid.clone(),
                    kind: "root".into(),
                    name: name.to_owned(),
                    next_rotation: ms(schedule.next_after(base)),
                    claimed_until: 0,
                })
                .await?;
            core.rotation_wake.notify_one();
        }
        None => core.store.delete_rotation(&id).await?,
    }
    Ok(())
}

/// Rotates a connection's root credential now, with hooks, holding the rotation claim.
pub async fn rotate_root(core: &Core, mount: &Mount, name: &str) -> Result<()> {
    let id = rotation_id(mount, "root", name);
    let scheduled = core.store.get_rotation(&id).await?.is_some();
    if scheduled {
        claim(core, &id).await?;
    }
    let result = rotate_root_claimed(core, mount, name).await;
    if scheduled {
        let next = match database::read_connection(core, mount, name).await? {
            Some(config) => match (&result, config.root_schedule()?) {
                (Ok(()), Some(s)) => s.next_after(Utc::now()),
                (Err(_), Some(_)) => {
                    Utc::now()
                        + chrono::Duration::from_std(core.rotation.retry_base).unwrap_or_default()
                }
                (_, None) => DateTime::<Utc>::MAX_UTC,
            },
            None => DateTime::<Utc>::MAX_UTC,
        };
        core.store.release_rotation(&id, ms(next)).await?;
    }
    result
}

async fn rotate_root_claimed(core: &Core, mount: &Mount, name: &str) -> Result<()> {
    let now = Utc::now();
    let result = database::rotate_root(core, mount, name).await;
    let config = database::read_connection(core, mount, name).await?;
    let (username, hook_names, next) = match &config {
        Some(c) => (
            c.admin_username().unwrap_or_default().to_owned(),
            c.hooks.clone(),
            c.root_schedule()?.map(|s| s.next_after(now)),
        ),
        None => (String::new(), Vec::new(), None),
    };
    let labels = [("mount", mount.path.clone()), ("kind", "root".to_owned())];
    match &result {
        Ok(()) => {
            if let Some(mut c) = config {
                c.last_root_rotation = Some(now);
                database::store_connection(core, mount, name, &c).await?;
            }
            metrics::counter!(
                "dbwarden_rotations_total",
                &[&labels[..], &[("outcome", "ok".to_owned())]].concat()
            )
            .increment(1);
            tracing::info!(mount = %mount.path, connection = %name, "root credential rotated");
            let e = event(
                "rotation.succeeded",
                mount,
                "root",
                name,
                &username,
                now,
                next,
                None,
            );
            hooks::fire(core, mount, &hook_names, e, None).await;
        }
        Err(err) => {
            metrics::counter!(
                "dbwarden_rotations_total",
                &[&labels[..], &[("outcome", "error".to_owned())]].concat()
            )
            .increment(1);
            tracing::warn!(mount = %mount.path, connection = %name, error = %err, "root rotation failed");
            let e = event(
                "rotation.failed",
                mount,
                "root",
                name,
                &username,
                now,
                None,
                Some(err.to_string()),
            );
            hooks::fire(core, mount, &hook_names, e, None).await;
        }
    }
    result
}

/// One pass: claims due rotations and runs them. Returns how many it claimed.
async fn run_due(core: &Core) -> Result<usize> {
    let now = Utc::now();
    let until = now + chrono::Duration::from_std(core.rotation.claim_timeout).unwrap_or_default();
    let due = core
        .store
        .claim_due_rotations(ms(now), ms(until), 32)
        .await?;
    let mounts = mounts::list(core).await?;
    for row in &due {
        let Some(mount) = mounts.iter().find(|m| m.uuid == row.mount_uuid) else {
            core.store.delete_rotation(&row.id).await?;
            continue;
        };
        match row.kind.as_str() {
            "static" => {
                let Some(role) = read_static_role(core, mount, &row.name).await? else {
                    core.store.delete_rotation(&row.id).await?;
                    continue;
                };
                // Outside its window, a scheduled rotation waits for the next time (Vault).
                let schedule = role.schedule()?;
                let scheduled = role.next_vault_rotation.unwrap_or(now);
                if role.next_attempt.is_none() && !schedule.within_window(scheduled, now) {
                    let mut role = role;
                    role.next_vault_rotation = Some(schedule.next_after(now));
                    core.put_json(&role_key(mount, &row.name), &role).await?;
                    release(core, mount, &row.name, &row.id).await?;
                    continue;
                }
                let _ = rotate_claimed_static(core, mount, &row.name).await;
                release(core, mount, &row.name, &row.id).await?;
            }
            "root" => {
                let result = rotate_root_claimed(core, mount, &row.name).await;
                let next = match database::read_connection(core, mount, &row.name).await? {
                    Some(c) => match (result, c.root_schedule()?) {
                        (Ok(()), Some(s)) => s.next_after(Utc::now()),
                        (Err(_), Some(_)) => {
                            Utc::now()
                                + chrono::Duration::from_std(core.rotation.retry_base)
                                    .unwrap_or_default()
                        }
                        (_, None) => DateTime::<Utc>::MAX_UTC,
                    },
                    None => DateTime::<Utc>::MAX_UTC,
                };
                core.store.release_rotation(&row.id, ms(next)).await?;
            }
            other => tracing::error!(kind = other, id = %row.id, "unknown rotation kind"),
        }
    }
    Ok(due.len())
}

/// The rotation worker: runs due rotations, sleeping until the next one or until woken.
pub async fn worker(core: Arc<Core>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    const MAX_SLEEP: Duration = Duration::from_secs(5);
    loop {
        if let Err(e) = run_due(&core).await {
            tracing::error!(error = %e, "rotation pass failed");
        }
        let sleep = match core.store.next_rotation_due().await {
            Ok(Some(at)) => Duration::from_millis(
                u64::try_from(at - Utc::now().timestamp_millis()).unwrap_or(0),
            )
            .min(MAX_SLEEP),
            _ => MAX_SLEEP,
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = core.rotation_wake.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Static intents left by a crash, made due now (start-up on single-process storage).
pub async fn recover(core: &Core) -> Result<usize> {
    let mut found = 0;
    for mount in mounts::list(core).await? {
        for name in core
            .list(&format!("{}intent/static/", mount.storage_prefix()))
            .await?
        {
            let id = rotation_id(&mount, "static", &name);
            core.store
                .release_rotation(&id, Utc::now().timestamp_millis())
                .await?;
            found += 1;
        }
    }
    Ok(found)
}
