//! [`OdbcBackend`]: the statements of each operation, run on pooled ODBC connections.
//!
//! Every database call happens inside one blocking closure (see [`crate::pool`]), which uses
//! the helpers at the end of this file. Cancellation: if the caller's future is dropped, the
//! closure still runs to its end; a creation batch is committed or rolled back as a whole
//! (dialects without transactional DDL clean up by name), and every revocation step is
//! idempotent, so the engine's retry finishes whatever was left.

use std::sync::Arc;

use async_trait::async_trait;
use dbwarden_plugin::details::{MAX_ATTEMPTS, UsernameRules, backoff};
use dbwarden_plugin::error::{batch_failure, redact};
use dbwarden_plugin::statement::{self, StatementVars};
use dbwarden_plugin::{
    BackendError, DatabaseBackend, DeleteUserRequest, NewUserRequest, SqlText, UpdateUserRequest,
    UsernameMetadata,
};
use odbc_api::{Connection, Cursor};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

use crate::config::Settings;
use crate::dialect::{Dialect, is_connection_lost};
use crate::pool::{OdbcFailure, Outcome, Pool, PoolError};

/// One ODBC connection configuration: a dialect and a pool of admin connections.
pub(crate) struct OdbcBackend {
    dialect: Dialect,
    pool: Pool,
    usernames: UsernameRules,
    admin_secrets: Vec<String>,
}

/// Where a statement batch failed: 0-based index (`None` for `COMMIT` or the transaction
/// set-up), and the error.
#[derive(Debug)]
struct BatchFailure {
    index: Option<usize>,
    failure: OdbcFailure,
}

impl Outcome for Result<(), BatchFailure> {
    fn connection_lost(&self) -> bool {
        matches!(self, Err(f) if is_connection_lost(&f.failure.state))
    }
}

/// Why a revocation failed.
#[derive(Debug)]
enum RevokeError {
    /// One of dbwarden's own steps failed.
    Step(&'static str, OdbcFailure),
    /// Statement `index` (0-based) of the role's revocation statements failed.
    Statement {
        index: usize,
        total: usize,
        failure: OdbcFailure,
    },
    /// PostgreSQL: the role still has privileges or objects elsewhere (SQLSTATE 2BP01).
    DependentObjects(OdbcFailure),
}

impl RevokeError {
    /// The underlying ODBC error.
    fn failure(&self) -> &OdbcFailure {
        match self {
            RevokeError::Step(_, f)
            | RevokeError::Statement { failure: f, .. }
            | RevokeError::DependentObjects(f) => f,
        }
    }
}

impl Outcome for Result<(), RevokeError> {
    fn connection_lost(&self) -> bool {
        matches!(self, Err(e) if is_connection_lost(&e.failure().state))
    }
}

impl OdbcBackend {
    /// Parses the details and builds the pool; connects lazily.
    pub(crate) fn open(
        dialect: Dialect,
        details: &Map<String, Value>,
    ) -> Result<Self, BackendError> {
        let settings = Settings::from_details(dialect, details)?;
        Ok(OdbcBackend {
            dialect,
            pool: Pool::new(
                settings.connection_string,
                settings.connect_timeout,
                settings.pool,
            ),
            usernames: settings.usernames,
            admin_secrets: settings.admin_secrets,
        })
    }

    /// Every secret an error of this call might contain: the call's own plus the admin's.
    fn secrets<'a>(&'a self, call: &[&'a str]) -> Vec<&'a str> {
        let mut all: Vec<&str> = call.to_vec();
        all.extend(self.admin_secrets.iter().map(String::as_str));
        all
    }

    fn message(&self, failure: &OdbcFailure, call: &[&str]) -> String {
        redact(&failure.describe(), &self.secrets(call))
    }

    fn pool_error(&self, err: PoolError, call: &[&str]) -> BackendError {
        match err {
            PoolError::Connect(f) => BackendError::Connect(self.message(&f, call)),
            PoolError::Timeout(wait) => BackendError::Connect(format!(
                "every pooled connection stayed busy for {} s (max_open_connections)",
                wait.as_secs()
            )),
            PoolError::Closed => {
                BackendError::Database("the connection pool has been closed".into())
            }
            PoolError::Panicked => {
                BackendError::Database("the ODBC driver panicked during the call".into())
            }
        }
    }

    fn revoke_error(&self, user: &str, err: RevokeError) -> BackendError {
        match err {
            RevokeError::Step(what, f) => {
                BackendError::Database(format!("{what}: {}", self.message(&f, &[])))
            }
            RevokeError::Statement {
                index,
                total,
                failure,
            } => BackendError::Statement {
                index: index + 1,
                total,
                message: self.message(&failure, &[]),
            },
            RevokeError::DependentObjects(f) => BackendError::Database(format!(
                "role {user:?} is locked (NOLOGIN) and its sessions were terminated, but it cannot \
                 be dropped: {}. REASSIGN OWNED and DROP OWNED only act on the connection's \
                 database; revoke the role's privileges in the other databases, or give the role \
                 revocation statements that do",
                self.message(&f, &[])
            )),
        }
    }

    /// The length, statement-safety and dialect alphabet rules for a user name.
    fn check_username(&self, name: &str) -> Result<(), BackendError> {
        self.usernames.check(name)?;
        self.dialect.check_username(name)
    }

    /// Whether an account named `user` exists (`false` for the generic dialect, which has no
    /// catalog query).
    async fn user_exists(&self, user: &str) -> Result<bool, BackendError> {
        let Some(find) = self.dialect.find_user(user) else {
            return Ok(false);
        };
        let rows = self
            .pool
            .run(move |conn| query(conn, &find, 1))
            .await
            .map_err(|e| self.pool_error(e, &[]))?
            .map_err(|f| {
                BackendError::Database(format!("looking the user up: {}", self.message(&f, &[])))
            })?;
        Ok(!rows.is_empty())
    }

    /// Runs statements in one transaction, retrying the whole transaction on transient errors.
    async fn run_batch(&self, statements: Vec<SqlText>, call: &[&str]) -> Result<(), BackendError> {
        let total = statements.len();
        let statements = Arc::new(statements);
        let mut attempt = 1;
        loop {
            let batch_statements = statements.clone();
            let failure = match self
                .pool
                .run(move |conn| batch(conn, &batch_statements))
                .await
                .map_err(|e| self.pool_error(e, call))?
            {
                Ok(()) => return Ok(()),
                Err(f) => f,
            };
            let transient = self.is_transient(&failure.failure);
            if transient && attempt < MAX_ATTEMPTS {
                tracing::debug!(attempt, error = %self.message(&failure.failure, call), "transient error, retrying the transaction");
                backoff(attempt).await;
                attempt += 1;
                continue;
            }
            return Err(batch_failure(
                failure.index,
                total,
                self.message(&failure.failure, call),
                transient,
                MAX_ATTEMPTS,
            ));
        }
    }

    fn is_transient(&self, f: &OdbcFailure) -> bool {
        self.dialect.is_transient(&f.state, f.native, &f.message)
    }

    /// The dialect's default revocation (lock, end sessions, drop), on one connection.
    async fn default_revoke(&self, user: &str) -> Result<(), BackendError> {
        self.revoke_with_retry(user, Arc::new(Vec::new())).await
    }

    /// Runs a revocation (default when `statements` is empty), again from the start on a
    /// transient error: every step is idempotent. Concurrent `DROP ROLE`s on PostgreSQL fail
    /// with "tuple concurrently updated" on the shared catalog rows.
    async fn revoke_with_retry(
        &self,
        user: &str,
        statements: Arc<Vec<SqlText>>,
    ) -> Result<(), BackendError> {
        let dialect = self.dialect;
        let mut attempt = 1;
        loop {
            let owned = user.to_owned();
            let stmts = statements.clone();
            let result = self
                .pool
                .run(move |conn| {
                    if stmts.is_empty() {
                        default_revoke(dialect, conn, &owned)
                    } else {
                        custom_revoke(dialect, conn, &owned, &stmts)
                    }
                })
                .await
                .map_err(|e| self.pool_error(e, &[]))?;
            match result {
                Ok(()) => return Ok(()),
                Err(e) if attempt < MAX_ATTEMPTS && self.is_transient(e.failure()) => {
                    tracing::debug!(attempt, user, error = %self.message(e.failure(), &[]), "transient error, retrying the revocation");
                    backoff(attempt).await;
                    attempt += 1;
                }
                Err(e) => return Err(self.revoke_error(user, e)),
            }
        }
    }
}

#[async_trait]
impl DatabaseBackend for OdbcBackend {
    fn type_name(&self) -> &'static str {
        self.dialect.type_name()
    }

    fn generate_username(&self, meta: &UsernameMetadata) -> Result<String, BackendError> {
        let name = self.usernames.generate(meta)?;
        self.dialect.check_username(&name)?;
        Ok(name)
    }

    fn default_password_policy(&self) -> Option<&'static str> {
        self.dialect.default_password_policy()
    }

    /// Logs in afresh with the admin credential (not through the pool) and runs the ping.
    async fn verify_connection(&self) -> Result<(), BackendError> {
        let ping = self.dialect.ping();
        self.pool
            .with_fresh(move |conn| query(conn, &ping, 1))
            .await
            .map_err(|e| self.pool_error(e, &[]))?
            .map(|_| ())
            .map_err(|f| BackendError::Connect(self.message(&f, &[])))
    }

    /// Renders the creation statements and runs them in one transaction.
    ///
    /// Where DDL is not transactional (MySQL, DM), a name that exists already is refused
    /// before anything runs, and a failed creation is cleaned up with the default revocation.
    async fn new_user(&self, req: NewUserRequest) -> Result<(), BackendError> {
        if req.statements.iter().all(|s| s.trim().is_empty()) {
            return Err(BackendError::InvalidRequest(
                "empty creation statements".into(),
            ));
        }
        self.check_username(&req.username)?;
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
        if self.dialect.transactional_ddl() {
            return self.run_batch(statements, &call).await;
        }
        if self.user_exists(&req.username).await? {
            return Err(BackendError::InvalidRequest(format!(
                "an account named {:?} already exists; refusing to take it over",
                req.username
            )));
        }
        let total = statements.len();
        let statements = Arc::new(statements);
        let mut attempt = 1;
        loop {
            let batch_statements = statements.clone();
            let failure = match self
                .pool
                .run(move |conn| batch(conn, &batch_statements))
                .await
                .map_err(|e| self.pool_error(e, &call))?
            {
                Ok(()) => return Ok(()),
                Err(f) => f,
            };
            let transient = self.is_transient(&failure.failure);
            let error = batch_failure(
                failure.index,
                total,
                self.message(&failure.failure, &call),
                transient,
                MAX_ATTEMPTS,
            );
            if let Err(cleanup) = self.default_revoke(&req.username).await {
                return Err(BackendError::Database(format!(
                    "{error}; removing the partly created user {:?} also failed: {cleanup}",
                    req.username
                )));
            }
            if transient && attempt < MAX_ATTEMPTS {
                tracing::debug!(attempt, %error, "transient error, retrying the creation");
                backoff(attempt).await;
                attempt += 1;
                continue;
            }
            return Err(error);
        }
    }

    /// Password change (rotation statements, or the dialect's default) and/or expiry change
    /// (renew statements, or the dialect's default, which may be none), in one transaction.
    async fn update_user(&self, req: UpdateUserRequest) -> Result<(), BackendError> {
        let mut statements = Vec::new();
        let mut secrets = Vec::new();
        if let Some(change) = &req.password {
            let password = change.new_password.expose_secret();
            let templates = if change.statements.iter().all(|s| s.trim().is_empty()) {
                vec![
                    self.dialect
                        .default_rotation()
                        .ok_or_else(|| {
                            BackendError::InvalidRequest(format!(
                                "the {} ODBC dialect has no default rotation statement; give the \
                                 role rotation statements, or set the connection's dialect",
                                self.dialect.name()
                            ))
                        })?
                        .to_owned(),
                ]
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
            secrets.push(password.to_owned());
        }
        if let Some(change) = &req.expiration {
            let templates = if change.statements.iter().all(|s| s.trim().is_empty()) {
                self.dialect
                    .default_renew()
                    .map(|s| vec![s.to_owned()])
                    .unwrap_or_default()
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
        self.run_batch(statements, &secrets).await
    }

    /// Revokes a user (statements that render to nothing mean the dialect's default). A user
    /// that does not exist is already revoked: its custom statements are not run, but stray
    /// sessions of the name are still ended.
    async fn delete_user(&self, req: DeleteUserRequest) -> Result<(), BackendError> {
        let user = req.username.as_str();
        let statements = statement::render(
            &req.statements,
            &StatementVars {
                username: Some(user),
                ..Default::default()
            },
        )?;
        if statements.is_empty() {
            if self.dialect == Dialect::Generic {
                return Err(BackendError::InvalidRequest(
                    "the generic ODBC dialect has no default revocation; give the role \
                     revocation statements, or set the connection's dialect"
                        .into(),
                ));
            }
            return self.default_revoke(user).await;
        }
        self.revoke_with_retry(user, Arc::new(statements)).await
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Blocking helpers: they run inside a pool closure, on a blocking thread.

/// Executes one statement and discards any result set.
fn exec(conn: &Connection<'_>, sql: &SqlText) -> Result<(), OdbcFailure> {
    if let Some(mut cursor) = conn.execute(sql.as_str(), (), None)? {
        while cursor.next_row()?.is_some() {}
    }
    Ok(())
}

/// Runs a query and returns its first `columns` columns as text (NULL as empty).
fn query(
    conn: &Connection<'_>,
    sql: &SqlText,
    columns: u16,
) -> Result<Vec<Vec<String>>, OdbcFailure> {
    let mut rows = Vec::new();
    if let Some(mut cursor) = conn.execute(sql.as_str(), (), None)? {
        let mut buf = Vec::new();
        while let Some(mut row) = cursor.next_row()? {
            let mut values = Vec::with_capacity(usize::from(columns));
            for col in 1..=columns {
                buf.clear();
                let present = row.get_text(col, &mut buf)?;
                values.push(if present {
                    String::from_utf8_lossy(&buf).into_owned()
                } else {
                    String::new()
                });
            }
            rows.push(values);
        }
    }
    Ok(rows)
}

/// Runs statements in one transaction; rolls back on failure.
fn batch(conn: &Connection<'_>, statements: &[SqlText]) -> Result<(), BatchFailure> {
    conn.set_autocommit(false).map_err(|e| BatchFailure {
        index: None,
        failure: e.into(),
    })?;
    for (index, stmt) in statements.iter().enumerate() {
        if let Err(failure) = exec(conn, stmt) {
            let _ = conn.rollback();
            return Err(BatchFailure {
                index: Some(index),
                failure,
            });
        }
    }
    conn.commit().map_err(|e| {
        let _ = conn.rollback();
        BatchFailure {
            index: None,
            failure: e.into(),
        }
    })
}

fn step<T>(what: &'static str, result: Result<T, OdbcFailure>) -> Result<T, RevokeError> {
    result.map_err(|f| RevokeError::Step(what, f))
}

/// Ends every session of `user` (other than this one). Returns how many were ended.
fn end_sessions(dialect: Dialect, conn: &Connection<'_>, user: &str) -> Result<usize, RevokeError> {
    let Some(list) = dialect.list_sessions(user) else {
        return Ok(0);
    };
    let rows = step("listing sessions", query(conn, &list, 1))?;
    let ended = if dialect == Dialect::Postgres {
        // The listing terminates as it goes and returns the count.
        rows.first()
            .and_then(|r| r[0].trim().parse().ok())
            .unwrap_or(0)
    } else {
        let mut ended = 0;
        for row in rows {
            let Ok(id) = row[0].trim().parse::<i64>() else {
                continue;
            };
            let Some(kill) = dialect.kill_session(id) else {
                continue;
            };
            match exec(conn, &kill) {
                Ok(()) => ended += 1,
                Err(f) if dialect.is_no_such_session(f.native) => {}
                Err(f) => return Err(RevokeError::Step("ending a session", f)),
            }
        }
        ended
    };
    if ended > 0 {
        tracing::info!(user, ended, "ended sessions of a revoked user");
    }
    Ok(ended)
}

/// The accounts of `user`: PostgreSQL `(oid, admin has privileges)`, MySQL `(user, host)`,
/// DM `(name, "")`.
fn accounts(
    dialect: Dialect,
    conn: &Connection<'_>,
    user: &str,
) -> Result<Vec<(String, String)>, RevokeError> {
    let Some(find) = dialect.find_user(user) else {
        return Ok(Vec::new());
    };
    let columns = if dialect == Dialect::Dameng { 1 } else { 2 };
    let rows = step("looking the user up", query(conn, &find, columns))?;
    Ok(rows
        .into_iter()
        .map(|mut r| {
            let second = if r.len() > 1 {
                r.remove(1)
            } else {
                String::new()
            };
            (r.remove(0), second)
        })
        .collect())
}

/// Locks every account of `user` and ends its sessions. PostgreSQL first gives a
/// non-superuser admin the role's privileges, which terminating and dropping need.
fn lock_and_end_sessions(
    dialect: Dialect,
    conn: &Connection<'_>,
    user: &str,
    accounts: &[(String, String)],
) -> Result<(), RevokeError> {
    for (first, second) in accounts {
        match dialect {
            Dialect::Postgres => {
                if second != "y"
                    && let Some(grant) = dialect.grant_role_to_admin(user)
                {
                    step("taking the role's privileges", exec(conn, &grant))?;
                }
                for lock in dialect.lock(user, "") {
                    step("locking the role", exec(conn, &lock))?;
                }
            }
            Dialect::Mysql => {
                for lock in dialect.lock(first, second) {
                    // Old servers lack ACCOUNT LOCK; DROP USER still removes the account.
                    if let Err(f) = exec(conn, &lock) {
                        tracing::warn!(user = %first, host = %second, error = %f.describe(), "ACCOUNT LOCK failed");
                    }
                }
            }
            Dialect::Dameng => {
                for lock in dialect.lock(first, "") {
                    step("locking the user", exec(conn, &lock))?;
                }
            }
            Dialect::Generic => {}
        }
    }
    end_sessions(dialect, conn, user)?;
    Ok(())
}

/// The default revocation: lock, end sessions, drop, and end sessions again (a session that
/// slipped in before the lock). No account: only stray sessions of the name are ended.
fn default_revoke(dialect: Dialect, conn: &Connection<'_>, user: &str) -> Result<(), RevokeError> {
    let accounts = accounts(dialect, conn, user)?;
    if accounts.is_empty() {
        if dialect != Dialect::Postgres {
            end_sessions(dialect, conn, user)?;
        }
        return Ok(());
    }
    lock_and_end_sessions(dialect, conn, user, &accounts)?;
    match dialect {
        Dialect::Postgres => {
            let statements = dialect.drop_user(user, "");
            batch(conn, &statements).map_err(|f| {
                if f.failure.state == "2BP01" {
                    RevokeError::DependentObjects(f.failure)
                } else {
                    RevokeError::Step("dropping the role", f.failure)
                }
            })?;
        }
        Dialect::Mysql => {
            for (u, h) in &accounts {
                let statements = dialect.drop_user(u, h);
                if let Some((revoke, drop)) = statements.split_first() {
                    if let Err(f) = exec(conn, revoke) {
                        tracing::debug!(user = %u, host = %h, error = %f.describe(), "REVOKE ALL failed");
                    }
                    for stmt in drop {
                        step("dropping the account", exec(conn, stmt))?;
                    }
                }
            }
            end_sessions(dialect, conn, user)?;
        }
        Dialect::Dameng => {
            for stmt in dialect.drop_user(user, "") {
                step("dropping the user", exec(conn, &stmt))?;
            }
            end_sessions(dialect, conn, user)?;
        }
        Dialect::Generic => {}
    }
    Ok(())
}

/// A role's own revocation statements. Dialects with a catalog first lock the user and end
/// its sessions (so no session survives, whatever the statements do) and sweep afterwards.
fn custom_revoke(
    dialect: Dialect,
    conn: &Connection<'_>,
    user: &str,
    statements: &[SqlText],
) -> Result<(), RevokeError> {
    let total = statements.len();
    let as_statement = |f: BatchFailure| match f.index {
        Some(index) => RevokeError::Statement {
            index,
            total,
            failure: f.failure,
        },
        None => RevokeError::Step("committing the revocation statements", f.failure),
    };
    if dialect == Dialect::Generic {
        return batch(conn, statements).map_err(as_statement);
    }
    let accounts = accounts(dialect, conn, user)?;
    if accounts.is_empty() {
        if dialect != Dialect::Postgres {
            end_sessions(dialect, conn, user)?;
        }
        return Ok(());
    }
    lock_and_end_sessions(dialect, conn, user, &accounts)?;
    if dialect.transactional_ddl() {
        batch(conn, statements).map_err(as_statement)?;
    } else {
        for (index, stmt) in statements.iter().enumerate() {
            exec(conn, stmt).map_err(|failure| RevokeError::Statement {
                index,
                total,
                failure,
            })?;
        }
    }
    if dialect == Dialect::Postgres {
        // By oid: the name is gone from pg_stat_activity once the role is dropped. Best effort:
        // it needs the role's privileges, which end with the role unless the admin is a
        // superuser or in pg_signal_backend.
        if let Some(sweep) = accounts[0]
            .0
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(|oid| dialect.terminate_by_oid(oid))
            && let Err(f) = query(conn, &sweep, 1)
        {
            tracing::warn!(user, error = %f.describe(), "final session sweep failed");
        }
    } else {
        end_sessions(dialect, conn, user)?;
    }
    Ok(())
}
