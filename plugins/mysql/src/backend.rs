//! [`MysqlBackend`]: the pool and the SQL runs.
//!
//! Cancellation: every method may be dropped half-way. mysql_async rolls back an unfinished
//! transaction before the connection is reused, but MySQL has already committed any DDL that
//! ran, so a creation dropped after `CREATE USER` can leave the user behind. The engine's
//! pending lease covers it: its revocation (idempotent) removes the user.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use dbwarden_plugin::error::redact;
use dbwarden_plugin::statement::{self, StatementVars};
use dbwarden_plugin::{
    BackendError, DatabaseBackend, DeleteUserRequest, NewUserRequest, SqlText, UpdateUserRequest,
    UsernameMetadata,
};
use mysql_async::prelude::Queryable as _;
use mysql_async::{Conn, Opts, Pool, TxOpts};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

use crate::Dialect;
use crate::config::Settings;
use crate::dialect::DropForm;
use crate::sql::{self, KillForm};
use dbwarden_plugin::details::{MAX_ATTEMPTS, UsernameRules, backoff};

/// One open MySQL connection configuration: a pool of admin connections.
pub(crate) struct MysqlBackend {
    dialect: Dialect,
    pool: Pool,
    opts: Opts,
    usernames: UsernameRules,
    admin_secrets: Vec<String>,
    /// Index into [`Dialect::session_catalogs`] of the session view this server has;
    /// `usize::MAX` until the first revocation finds out.
    session_catalog: AtomicUsize,
}

/// Where a statement batch failed.
struct BatchFailure {
    /// 0-based index of the failing statement; `None` for `BEGIN`/`COMMIT`.
    index: Option<usize>,
    error: mysql_async::Error,
}

impl MysqlBackend {
    /// Parses the details and builds the pool; connects lazily.
    pub(crate) fn open(
        dialect: Dialect,
        details: &Map<String, Value>,
    ) -> Result<Self, BackendError> {
        let settings = Settings::from_details(dialect, details)?;
        Ok(MysqlBackend {
            dialect,
            pool: Pool::new(settings.opts.clone()),
            opts: settings.opts,
            usernames: settings.usernames,
            admin_secrets: settings.admin_secrets,
            session_catalog: AtomicUsize::new(usize::MAX),
        })
    }

    fn secrets<'a>(&'a self, call: &[&'a str]) -> Vec<&'a str> {
        let mut all: Vec<&str> = call.to_vec();
        all.extend(self.admin_secrets.iter().map(String::as_str));
        all
    }

    fn message(&self, err: &mysql_async::Error, call: &[&str]) -> String {
        redact(&sql::describe(self.dialect, err), &self.secrets(call))
    }

    async fn conn(&self, call: &[&str]) -> Result<Conn, BackendError> {
        tokio::time::timeout(Duration::from_secs(60), self.pool.get_conn())
            .await
            .map_err(|_| {
                BackendError::Connect("timed out waiting for a database connection".into())
            })?
            .map_err(|e| BackendError::Connect(self.message(&e, call)))
    }

    /// The accounts (user, host) with this user name.
    async fn accounts(
        &self,
        conn: &mut Conn,
        user: &str,
    ) -> Result<Vec<(String, String)>, BackendError> {
        conn.exec(sql::FIND_ACCOUNTS, (user,)).await.map_err(|e| {
            BackendError::Database(format!("listing accounts: {}", self.message(&e, &[])))
        })
    }

    /// The session ids of a user name, from the first of the dialect's session views this
    /// server has (remembered after the first success), and how to kill them.
    async fn sessions(
        &self,
        conn: &mut Conn,
        user: &str,
    ) -> Result<(Vec<u64>, KillForm), BackendError> {
        let catalogs = self.dialect.session_catalogs();
        let known = self.session_catalog.load(Ordering::Relaxed);
        let candidates = if known < catalogs.len() {
            known..known + 1
        } else {
            0..catalogs.len()
        };
        let mut last_error = None;
        for index in candidates {
            let catalog = catalogs[index];
            match conn.exec(catalog.find, (user,)).await {
                Ok(ids) => {
                    if known != index {
                        self.session_catalog.store(index, Ordering::Relaxed);
                        tracing::info!(
                            dialect = self.dialect.name(),
                            query = catalog.find,
                            "using this view to find sessions"
                        );
                    }
                    return Ok((ids, catalog.kill));
                }
                Err(e) if sql::code(&e).is_some_and(sql::is_missing_view) => {
                    tracing::debug!(query = catalog.find, error = %self.message(&e, &[]), "session view not usable here");
                    last_error = Some(e);
                }
                Err(e) => {
                    return Err(BackendError::Database(format!(
                        "listing sessions: {}",
                        self.message(&e, &[])
                    )));
                }
            }
        }
        Err(BackendError::Database(format!(
            "listing sessions: no session view of the {} dialect is usable here{}",
            self.dialect.name(),
            last_error
                .map(|e| format!(": {}", self.message(&e, &[])))
                .unwrap_or_default()
        )))
    }

    /// Kills every session of a user name; sessions that end meanwhile are fine.
    async fn kill_sessions(&self, conn: &mut Conn, user: &str) -> Result<usize, BackendError> {
        let (ids, form) = self.sessions(conn, user).await?;
        let mut killed = 0;
        for id in ids {
            let Some(kill) = sql::kill_session(form, id) else {
                tracing::warn!(user, id, "a session id out of range was not killed");
                continue;
            };
            match conn.query_drop(kill.as_str()).await {
                Ok(()) => killed += 1,
                Err(e) if sql::code(&e) == Some(sql::ER_NO_SUCH_THREAD) => {}
                Err(e) => {
                    return Err(BackendError::Database(format!(
                        "killing a session of {user:?}: {}",
                        self.message(&e, &[])
                    )));
                }
            }
        }
        if killed > 0 {
            tracing::info!(user, killed, "killed sessions of a revoked user");
        }
        Ok(killed)
    }

    async fn exec(&self, conn: &mut Conn, stmt: &SqlText) -> Result<(), mysql_async::Error> {
        conn.query_drop(stmt.as_str()).await
    }

    /// dbwarden's default revocation ([`sql::default_revocation`]), for every host of the
    /// name: lock all, kill sessions, revoke and drop each, kill again (a session that slipped
    /// in before the lock).
    ///
    /// `ACCOUNT LOCK` and `REVOKE` failures are logged and passed over (old servers lack
    /// `ACCOUNT LOCK`; `DROP USER` removes the privileges anyway); a `DROP USER` failure is
    /// the error, except "no such account" after a plain `DROP USER` (dropped meanwhile).
    async fn default_revoke(&self, conn: &mut Conn, user: &str) -> Result<(), BackendError> {
        let accounts = self.accounts(conn, user).await?;
        let plan = sql::default_revocation(self.dialect, &accounts);
        for (stmt, (u, h)) in plan.lock.iter().zip(&accounts) {
            if let Err(e) = self.exec(conn, stmt).await {
                tracing::warn!(user = %u, host = %h, error = %self.message(&e, &[]), "ACCOUNT LOCK failed");
            }
        }
        self.kill_sessions(conn, user).await?;
        for ((revoke, drop), (u, h)) in plan.remove.iter().zip(&accounts) {
            if let Err(e) = self.exec(conn, revoke).await {
                tracing::debug!(user = %u, host = %h, error = %self.message(&e, &[]), "REVOKE ALL failed");
            }
            match self.exec(conn, drop).await {
                Ok(()) => {}
                Err(e)
                    if sql::code(&e) == Some(sql::ER_CANNOT_USER)
                        && self.dialect.drop_form() == DropForm::Plain => {}
                Err(e) => {
                    return Err(BackendError::Database(format!(
                        "dropping '{u}'@'{h}': {}",
                        self.message(&e, &[])
                    )));
                }
            }
        }
        self.kill_sessions(conn, user).await?;
        Ok(())
    }

    /// Removes whatever a failed creation left (DDL commits implicitly in MySQL).
    async fn clean_up_failed_creation(&self, user: &str) -> Result<(), BackendError> {
        let mut conn = self.conn(&[]).await?;
        self.default_revoke(&mut conn, user).await
    }

    async fn try_batch(conn: &mut Conn, statements: &[SqlText]) -> Result<(), BatchFailure> {
        let mut tx = conn
            .start_transaction(TxOpts::default())
            .await
            .map_err(|error| BatchFailure { index: None, error })?;
        for (index, stmt) in statements.iter().enumerate() {
            if let Err(error) = tx.query_drop(stmt.as_str()).await {
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

    fn batch_error(&self, failure: &BatchFailure, total: usize, call: &[&str]) -> BackendError {
        dbwarden_plugin::error::batch_failure(
            failure.index,
            total,
            self.message(&failure.error, call),
            sql::is_transient(self.dialect, &failure.error),
            MAX_ATTEMPTS,
        )
    }

    /// Runs statements in one transaction, retrying on transient errors (a fresh connection
    /// each time). Used for rotation and renewal, which create nothing.
    async fn run_batch(&self, statements: &[SqlText], call: &[&str]) -> Result<(), BackendError> {
        let mut attempt = 1;
        loop {
            let mut conn = self.conn(call).await?;
            match Self::try_batch(&mut conn, statements).await {
                Ok(()) => return Ok(()),
                Err(f) if sql::is_transient(self.dialect, &f.error) && attempt < MAX_ATTEMPTS => {
                    drop(conn);
                    backoff(attempt).await;
                    attempt += 1;
                }
                Err(f) => return Err(self.batch_error(&f, statements.len(), call)),
            }
        }
    }
}

#[async_trait]
impl DatabaseBackend for MysqlBackend {
    /// `mysql`, Vault's name for its MySQL driver, for every dialect: they share it.
    fn type_name(&self) -> &'static str {
        "mysql"
    }

    fn default_password_policy(&self) -> Option<&'static str> {
        self.dialect.default_password_policy()
    }

    fn generate_username(&self, meta: &UsernameMetadata) -> Result<String, BackendError> {
        self.usernames.generate(meta)
    }

    /// Logs in afresh with the admin credential (not through the pool) and runs `SELECT 1`.
    async fn verify_connection(&self) -> Result<(), BackendError> {
        let mut conn = Conn::new(self.opts.clone())
            .await
            .map_err(|e| BackendError::Connect(self.message(&e, &[])))?;
        let result = conn
            .query_drop(sql::PING)
            .await
            .map_err(|e| BackendError::Connect(self.message(&e, &[])));
        let _ = conn.disconnect().await;
        result
    }

    /// Renders the creation statements and runs them in one transaction; if any fails, the
    /// default revocation removes whatever was created before the error is returned.
    async fn new_user(&self, req: NewUserRequest) -> Result<(), BackendError> {
        if req.statements.iter().all(|s| s.trim().is_empty()) {
            return Err(BackendError::InvalidRequest(
                "empty creation statements".into(),
            ));
        }
        self.usernames.check(&req.username)?;
        let password = req.password.expose_secret();
        let statements = statement::render(
            &req.statements,
            &StatementVars {
                username: Some(&req.username),
                password: Some(password),
                expiration: Some(req.expiration),
            },
        )?;
        if statements.is_empty() {
            return Err(BackendError::InvalidRequest(
                "empty creation statements".into(),
            ));
        }
        let call = [password];
        {
            let mut conn = self.conn(&call).await?;
            if !self.accounts(&mut conn, &req.username).await?.is_empty() {
                return Err(BackendError::InvalidRequest(format!(
                    "an account named {:?} already exists; refusing to take it over",
                    req.username
                )));
            }
        }
        let mut attempt = 1;
        loop {
            let failure = {
                let mut conn = self.conn(&call).await?;
                match Self::try_batch(&mut conn, &statements).await {
                    Ok(()) => return Ok(()),
                    Err(f) => f,
                }
            };
            let error = self.batch_error(&failure, statements.len(), &call);
            if let Err(cleanup) = self.clean_up_failed_creation(&req.username).await {
                return Err(BackendError::Database(format!(
                    "{error}; removing the partly created user {:?} also failed: {cleanup}",
                    req.username
                )));
            }
            if sql::is_transient(self.dialect, &failure.error) && attempt < MAX_ATTEMPTS {
                tracing::debug!(attempt, %error, "transient error, retrying the creation");
                backoff(attempt).await;
                attempt += 1;
                continue;
            }
            return Err(error);
        }
    }

    /// Password change (rotation statements, default Vault's) and/or expiry change (renew
    /// statements; none by default, as in Vault), in one transaction.
    async fn update_user(&self, req: UpdateUserRequest) -> Result<(), BackendError> {
        let mut statements = Vec::new();
        let mut secrets = Vec::new();
        if let Some(change) = &req.password {
            let password = change.new_password.expose_secret();
            let templates = if change.statements.iter().all(|s| s.trim().is_empty()) {
                vec![self.dialect.default_rotation().to_owned()]
            } else {
                change.statements.clone()
            };
            statements.extend(statement::render(
                &templates,
                &StatementVars {
                    username: Some(&req.username),
                    password: Some(password),
                    expiration: None,
                },
            )?);
            secrets.push(password);
        }
        if let Some(change) = &req.expiration {
            statements.extend(statement::render(
                &change.statements,
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
        self.run_batch(&statements, &secrets).await
    }

    /// Revokes a user name. No account with the name means already revoked (custom
    /// statements are then not run), but stray sessions of the name are still killed.
    async fn delete_user(&self, req: DeleteUserRequest) -> Result<(), BackendError> {
        let user = req.username.as_str();
        let mut conn = self.conn(&[]).await?;
        if req.statements.iter().all(|s| s.trim().is_empty()) {
            return self.default_revoke(&mut conn, user).await;
        }
        if self.accounts(&mut conn, user).await?.is_empty() {
            self.kill_sessions(&mut conn, user).await?;
            return Ok(());
        }
        let statements = statement::render(
            &req.statements,
            &StatementVars {
                username: Some(user),
                ..Default::default()
            },
        )?;
        let total = statements.len();
        let mut attempt = 1;
        'attempts: loop {
            for (index, stmt) in statements.iter().enumerate() {
                let Err(e) = self.exec(&mut conn, stmt).await else {
                    continue;
                };
                // A user that is gone is revoked, whatever the failing statement said
                // (OceanBase answers DDL racing other DDL with 1396 "DROP USER failed").
                if self.accounts(&mut conn, user).await?.is_empty() {
                    break 'attempts;
                }
                if sql::is_transient(self.dialect, &e) && attempt < MAX_ATTEMPTS {
                    attempt += 1;
                    backoff(attempt).await;
                    continue 'attempts;
                }
                return Err(BackendError::Statement {
                    index: index + 1,
                    total,
                    message: self.message(&e, &[]),
                });
            }
            break;
        }
        self.kill_sessions(&mut conn, user).await?;
        Ok(())
    }

    async fn close(&self) {
        if let Err(e) = self.pool.clone().disconnect().await {
            tracing::debug!(error = %self.message(&e, &[]), "closing the MySQL pool");
        }
    }
}
