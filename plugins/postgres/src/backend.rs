//! [`PostgresBackend`]: the pool and the SQL runs.
//!
//! Cancellation: every method may be dropped half-way (the HTTP request went away). A dropped
//! transaction is rolled back by tokio-postgres (it queues `ROLLBACK` when the transaction
//! handle is dropped), so a half-run creation leaves nothing behind. The autocommitted steps of
//! a revocation (`NOLOGIN`, membership grant, session termination) are each safe to leave
//! half-done: the engine retries revocation, and every step is idempotent.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use dbwarden_plugin::error::redact;
use dbwarden_plugin::statement::{self, StatementVars};
use dbwarden_plugin::{
    BackendError, DatabaseBackend, DeleteUserRequest, NewUserRequest, SqlText, UpdateUserRequest,
    UsernameMetadata,
};
use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime,
};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{PasswordAuthentication, Settings};
use crate::dialect::RevocationStyle;
use crate::sql::{self, Catalog};
use crate::tls::SslMode;
use crate::{Dialect, gauss_auth, tls};
use dbwarden_plugin::details::{MAX_ATTEMPTS, UsernameRules, backoff};

/// One open PostgreSQL connection configuration: a pool of admin connections.
pub(crate) struct PostgresBackend {
    dialect: Dialect,
    pool: Pool,
    max_idle: usize,
    /// For [`DatabaseBackend::verify_connection`], which logs in afresh instead of reusing the pool.
    pg: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    ssl_mode: SslMode,
    password_authentication: PasswordAuthentication,
    usernames: UsernameRules,
    admin_secrets: Vec<String>,
    /// Index into [`Dialect::catalogs`] of the catalog this server has; `usize::MAX` until
    /// the first role lookup finds out.
    catalog: AtomicUsize,
}

/// A pooled connection that is discarded instead of returned when enough are idle already
/// (deadpool has no idle limit of its own).
struct Pooled<'a> {
    obj: Option<Object>,
    pool: &'a Pool,
    max_idle: usize,
}

impl Deref for Pooled<'_> {
    type Target = Object;
    fn deref(&self) -> &Object {
        self.obj.as_ref().expect("present until drop")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Object {
        self.obj.as_mut().expect("present until drop")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(obj) = self.obj.take()
            && self.pool.status().available >= self.max_idle
        {
            drop(Object::take(obj));
        }
    }
}

/// Why a batch did not commit.
enum BatchError {
    /// No connection could be had.
    Pool(BackendError),
    /// The batch failed (after retries, if the error was transient).
    Failed(BatchFailure),
}

/// Where a statement batch failed.
struct BatchFailure {
    /// 0-based index of the failing statement; `None` for `BEGIN`/`COMMIT`.
    index: Option<usize>,
    error: tokio_postgres::Error,
}

impl PostgresBackend {
    /// Parses the details and builds the pool; connects lazily.
    pub(crate) fn open(
        dialect: Dialect,
        details: &Map<String, Value>,
    ) -> Result<Self, BackendError> {
        let settings = Settings::from_details(dialect, details)?;
        let tls = MakeRustlsConnect::new(tls::client_config(
            settings.ssl_mode,
            settings.ssl_root_cert.as_deref(),
        )?);
        let manager = Manager::from_config(
            settings.pg.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let mut builder = Pool::builder(manager)
            .max_size(settings.pool.max_open)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(60)))
            .create_timeout(Some(Duration::from_secs(30)))
            .recycle_timeout(Some(Duration::from_secs(5)));
        if let Some(lifetime) = settings.pool.max_lifetime {
            builder = builder.pre_recycle(Hook::sync_fn(move |_, metrics| {
                if metrics.age() >= lifetime {
                    Err(HookError::message("max_connection_lifetime reached"))
                } else {
                    Ok(())
                }
            }));
        }
        let pool = builder.build().map_err(|e| {
            BackendError::InvalidConfig(format!("cannot build the connection pool: {e}"))
        })?;
        Ok(PostgresBackend {
            dialect,
            pool,
            max_idle: settings.pool.max_idle,
            pg: settings.pg,
            tls,
            ssl_mode: settings.ssl_mode,
            password_authentication: settings.password_authentication,
            usernames: settings.usernames,
            admin_secrets: settings.admin_secrets,
            catalog: AtomicUsize::new(usize::MAX),
        })
    }

    /// The `Connect` error for a failed login; when the server failed it without an error of
    /// its own, a probe checks for an openGauss authentication request and explains the fix.
    async fn connect_error(&self, err: &tokio_postgres::Error, call: &[&str]) -> BackendError {
        let message = self.message(err, call);
        if gauss_auth::worth_probing(err)
            && let Some(kind) = gauss_auth::probe(&self.pg, self.ssl_mode, &self.tls).await
        {
            return BackendError::Connect(format!("{message}; {}", kind.advice()));
        }
        BackendError::Connect(message)
    }

    /// The catalog to use: the one found before, or the first of the dialect's catalogs whose
    /// role lookup the server accepts. Returns the role's oid and whether the admin already
    /// has its privileges, or `None` if there is no such role.
    async fn find_role(
        &self,
        client: &Object,
        role: &str,
    ) -> Result<(&'static Catalog, Option<(u32, bool)>), BackendError> {
        let catalogs = self.dialect.catalogs();
        let known = self.catalog.load(Ordering::Relaxed);
        let candidates = if known < catalogs.len() {
            known..known + 1
        } else {
            0..catalogs.len()
        };
        let mut last_error = None;
        for index in candidates {
            let catalog = catalogs[index];
            match client.query_opt(catalog.find_role, &[&role]).await {
                Ok(row) => {
                    if known != index {
                        self.catalog.store(index, Ordering::Relaxed);
                        tracing::info!(
                            dialect = self.dialect.name(),
                            catalog = catalog.schema,
                            "using this catalog for roles and sessions"
                        );
                    }
                    return Ok((catalog, row.map(|r| (r.get(0), r.get(1)))));
                }
                Err(e)
                    if e.code()
                        .is_some_and(|state| sql::is_missing_catalog(state.code())) =>
                {
                    tracing::debug!(catalog = catalog.schema, error = %self.message(&e, &[]), "catalog not on this server");
                    last_error = Some(e);
                }
                Err(e) => return Err(BackendError::Database(self.message(&e, &[]))),
            }
        }
        Err(BackendError::Database(match last_error {
            Some(e) => format!(
                "none of the catalogs of the {} dialect is on this server: {}",
                self.dialect.name(),
                self.message(&e, &[])
            ),
            None => "no catalog to look roles up in".to_owned(),
        }))
    }

    /// Every secret an error of this call might contain: the call's own plus the admin password.
    fn secrets<'a>(&'a self, call: &[&'a str]) -> Vec<&'a str> {
        let mut all: Vec<&str> = call.to_vec();
        all.extend(self.admin_secrets.iter().map(String::as_str));
        all
    }

    fn message(&self, err: &tokio_postgres::Error, call: &[&str]) -> String {
        redact(&sql::describe(err), &self.secrets(call))
    }

    async fn client(&self, call: &[&str]) -> Result<Pooled<'_>, BackendError> {
        match self.pool.get().await {
            Ok(obj) => Ok(Pooled {
                obj: Some(obj),
                pool: &self.pool,
                max_idle: self.max_idle,
            }),
            Err(deadpool_postgres::PoolError::Backend(e)) => {
                Err(self.connect_error(&e, call).await)
            }
            Err(deadpool_postgres::PoolError::Closed) => Err(BackendError::Database(
                "the connection pool has been closed".into(),
            )),
            Err(e) => Err(BackendError::Connect(redact(
                &e.to_string(),
                &self.secrets(call),
            ))),
        }
    }

    /// Writes `{{password}}` as the connection's `password_authentication` asks.
    ///
    /// The plain password must pass the statement-safety rule even when only its verifier is
    /// substituted, so a password policy behaves the same in both modes.
    async fn password_for_statements(&self, password: &str) -> Result<String, BackendError> {
        statement::render(
            &["{{password}}".to_owned()],
            &StatementVars {
                password: Some(password),
                ..Default::default()
            },
        )?;
        match self.password_authentication {
            PasswordAuthentication::Password => Ok(password.to_owned()),
            PasswordAuthentication::ScramSha256 => {
                // 4096 PBKDF2 rounds: a few milliseconds of CPU, kept off the async workers.
                let password = password.to_owned();
                tokio::task::spawn_blocking(move || {
                    postgres_protocol::password::scram_sha_256(password.as_bytes())
                })
                .await
                .map_err(|_| BackendError::Database("computing the SCRAM verifier failed".into()))
            }
        }
    }

    /// Runs statements in one transaction, retrying the whole transaction (on a fresh pooled
    /// connection) on transient errors.
    async fn run_batch(&self, statements: &[SqlText], call: &[&str]) -> Result<(), BackendError> {
        self.run_batch_raw(statements, call)
            .await
            .map_err(|e| self.batch_error(e, statements.len(), call))
    }

    async fn run_batch_raw(&self, statements: &[SqlText], call: &[&str]) -> Result<(), BatchError> {
        let mut attempt = 1;
        loop {
            let failure = {
                let mut client = self.client(call).await.map_err(BatchError::Pool)?;
                match Self::try_batch(&mut client, statements).await {
                    Ok(()) => return Ok(()),
                    Err(f) => f,
                }
            };
            if sql::is_transient(&failure.error) && attempt < MAX_ATTEMPTS {
                tracing::debug!(attempt, error = %self.message(&failure.error, call), "transient error, retrying the transaction");
                backoff(attempt).await;
                attempt += 1;
                continue;
            }
            return Err(BatchError::Failed(failure));
        }
    }

    /// The standard mapping of a failed batch.
    fn batch_error(&self, err: BatchError, total: usize, call: &[&str]) -> BackendError {
        let failure = match err {
            BatchError::Pool(e) => return e,
            BatchError::Failed(f) => f,
        };
        dbwarden_plugin::error::batch_failure(
            failure.index,
            total,
            self.message(&failure.error, call),
            sql::is_transient(&failure.error),
            MAX_ATTEMPTS,
        )
    }

    async fn try_batch(client: &mut Object, statements: &[SqlText]) -> Result<(), BatchFailure> {
        if crate::execute_batch(client, statements).await.is_ok() {
            return Ok(());
        }
        // The batch rolled back as a whole. Run it again one statement at a time in an
        // explicit transaction, to name the statement that fails (or to get past a transient
        // error, which the caller retries).
        let tx = client
            .transaction()
            .await
            .map_err(|error| BatchFailure { index: None, error })?;
        for (index, stmt) in statements.iter().enumerate() {
            // The simple-query protocol runs `DO $$ ... $$` blocks and any DDL as written.
            if let Err(error) = tx.batch_execute(stmt.as_str()).await {
                // Dropping `tx` would roll back too; saying so explicitly keeps the
                // connection clean before it returns to the pool.
                let _ = tx.rollback().await;
                return Err(BatchFailure {
                    index: Some(index),
                    error,
                });
            }
        }
        tx.commit()
            .await
            .map_err(|error| BatchFailure { index: None, error })
    }

    /// Runs one autocommitted statement.
    async fn exec(
        &self,
        client: &Object,
        stmt: &SqlText,
        call: &[&str],
    ) -> Result<(), BackendError> {
        client
            .batch_execute(stmt.as_str())
            .await
            .map_err(|e| BackendError::Database(self.message(&e, call)))
    }

    /// Runs the access-cutting statements (privileges for the admin, lock), then ends the
    /// role's sessions.
    async fn cut_access_and_terminate(
        &self,
        client: &Object,
        role: &str,
        revocation: &sql::Revocation,
    ) -> Result<(), BackendError> {
        for stmt in &revocation.cut_access {
            self.exec(client, stmt, &[]).await?;
        }
        let terminated: i64 = client
            .query_one(revocation.terminate, &[&role])
            .await
            .map_err(|e| {
                BackendError::Database(format!("terminating sessions: {}", self.message(&e, &[])))
            })?
            .get(0);
        if terminated > 0 {
            tracing::info!(role, terminated, "terminated sessions of a revoked role");
        }
        Ok(())
    }

    /// dbwarden's default revocation ([`sql::default_revocation`]), in this order:
    /// 1. (autocommit) membership for a non-superuser admin, the lock, terminate sessions;
    /// 2. (one transaction) hand over or drop what the role owns, drop the role.
    ///
    /// If step 2 fails (typically: privileges in another database), the role stays locked and
    /// without sessions, and the error says why it could not be dropped.
    async fn default_revoke(
        &self,
        role: &str,
        revocation: sql::Revocation,
    ) -> Result<(), BackendError> {
        {
            // Returned to the pool before the transaction takes one: holding two connections
            // per call could exhaust the pool under parallel revocations.
            let client = self.client(&[]).await?;
            self.cut_access_and_terminate(&client, role, &revocation)
                .await?;
        }
        let lock = match self.dialect.revocation_style() {
            RevocationStyle::NoLoginReassignDrop => "NOLOGIN",
            RevocationStyle::AccountLockDropCascade => "ACCOUNT LOCK",
        };
        match self.run_batch_raw(&revocation.remove, &[]).await {
            Ok(()) => Ok(()),
            Err(BatchError::Failed(f))
                if f.error.code()
                    == Some(&tokio_postgres::error::SqlState::DEPENDENT_OBJECTS_STILL_EXIST) =>
            {
                Err(BackendError::Database(format!(
                    "role {role:?} is locked ({lock}) and its sessions were terminated, but it cannot be \
                     dropped: {}. REASSIGN OWNED and DROP OWNED only act on the connection's database; \
                     revoke the role's privileges in the other databases, or give the role revocation \
                     statements that do",
                    self.message(&f.error, &[])
                )))
            }
            Err(e) => Err(match self.batch_error(e, revocation.remove.len(), &[]) {
                BackendError::Statement { message, .. } => {
                    BackendError::Database(format!("revoking role {role:?}: {message}"))
                }
                other => other,
            }),
        }
    }

    /// A role's own revocation statements: lock and terminate first (so no session survives,
    /// whatever the statements do), then the statements in one transaction, then a final sweep
    /// by oid for any session that slipped in (best effort: it needs the role's privileges,
    /// which end with the role unless the admin is a superuser or in `pg_signal_backend`).
    async fn custom_revoke(
        &self,
        role: &str,
        oid: u32,
        catalog: &Catalog,
        revocation: sql::Revocation,
        templates: &[String],
    ) -> Result<(), BackendError> {
        let statements = statement::render(
            templates,
            &StatementVars {
                username: Some(role),
                ..Default::default()
            },
        )?;
        {
            let client = self.client(&[]).await?;
            self.cut_access_and_terminate(&client, role, &revocation)
                .await?;
        }
        self.run_batch(&statements, &[]).await?;
        let client = self.client(&[]).await?;
        match client.query_one(catalog.terminate_by_oid, &[&oid]).await {
            Ok(row) => {
                let n: i64 = row.get(0);
                if n > 0 {
                    tracing::info!(
                        role,
                        terminated = n,
                        "terminated sessions after revocation statements"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(role, error = %self.message(&e, &[]), "final session sweep failed")
            }
        }
        Ok(())
    }
}

#[async_trait]
impl DatabaseBackend for PostgresBackend {
    /// `pgx`, Vault's name for its PostgreSQL driver, for every dialect: they share it.
    fn type_name(&self) -> &'static str {
        "pgx"
    }

    fn default_password_policy(&self) -> Option<&'static str> {
        self.dialect.default_password_policy()
    }

    fn generate_username(&self, meta: &UsernameMetadata) -> Result<String, BackendError> {
        self.usernames.generate(meta)
    }

    /// Logs in afresh with the admin credential (not through the pool) and runs `SELECT 1`.
    async fn verify_connection(&self) -> Result<(), BackendError> {
        let (client, connection) = match self.pg.connect(self.tls.clone()).await {
            Ok(pair) => pair,
            Err(e) => return Err(self.connect_error(&e, &[]).await),
        };
        let task = tokio::spawn(connection);
        let result = client
            .simple_query(sql::PING)
            .await
            .map(|_| ())
            .map_err(|e| BackendError::Connect(self.message(&e, &[])));
        drop(client);
        let _ = task.await;
        result
    }

    /// Renders the creation statements and runs them in one transaction.
    ///
    /// Parallel up to the pool size; no lock is held across calls.
    async fn new_user(&self, req: NewUserRequest) -> Result<(), BackendError> {
        if req.statements.iter().all(|s| s.trim().is_empty()) {
            return Err(BackendError::InvalidRequest(
                "empty creation statements".into(),
            ));
        }
        self.usernames.check(&req.username)?;
        let password = req.password.expose_secret();
        let substituted = self.password_for_statements(password).await?;
        let statements = statement::render(
            &req.statements,
            &StatementVars {
                username: Some(&req.username),
                password: Some(&substituted),
                expiration: Some(req.expiration),
            },
        )?;
        if statements.is_empty() {
            return Err(BackendError::InvalidRequest(
                "empty creation statements".into(),
            ));
        }
        self.run_batch(&statements, &[password, &substituted]).await
    }

    /// Password change (rotation statements) and/or expiry change (renew statements), in one
    /// transaction.
    async fn update_user(&self, req: UpdateUserRequest) -> Result<(), BackendError> {
        let mut statements = Vec::new();
        let mut secrets = Vec::new();
        if let Some(change) = &req.password {
            let password = change.new_password.expose_secret();
            let substituted = self.password_for_statements(password).await?;
            let templates = if change.statements.iter().all(|s| s.trim().is_empty()) {
                vec![self.dialect.default_rotation().to_owned()]
            } else {
                change.statements.clone()
            };
            statements.extend(statement::render(
                &templates,
                &StatementVars {
                    username: Some(&req.username),
                    password: Some(&substituted),
                    expiration: None,
                },
            )?);
            secrets.push(password.to_owned());
            secrets.push(substituted);
        }
        if let Some(change) = &req.expiration {
            let templates = if change.statements.iter().all(|s| s.trim().is_empty()) {
                vec![self.dialect.default_renew().to_owned()]
            } else {
                change.statements.clone()
            };
            statements.extend(statement::render(
                &templates,
                &StatementVars {
                    username: Some(&req.username),
                    password: None,
                    expiration: Some(change.new_expiration),
                },
            )?);
        }
        if statements.is_empty() {
            return Ok(());
        }
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        self.run_batch(&statements, &secrets).await
    }

    /// Revokes a role; a role that does not exist is already revoked (and its custom
    /// statements are not run, so `DROP ROLE "x"` without `IF EXISTS` cannot fail a retry).
    async fn delete_user(&self, req: DeleteUserRequest) -> Result<(), BackendError> {
        let role = req.username.as_str();
        let (catalog, found) = {
            let client = self.client(&[]).await?;
            self.find_role(&client, role).await?
        };
        let Some((oid, admin_has_privileges)) = found else {
            return Ok(());
        };
        let revocation = sql::default_revocation(self.dialect, catalog, role, admin_has_privileges);
        if req.statements.iter().all(|s| s.trim().is_empty()) {
            self.default_revoke(role, revocation).await
        } else {
            self.custom_revoke(role, oid, catalog, revocation, &req.statements)
                .await
        }
    }

    async fn close(&self) {
        self.pool.close();
    }
}
