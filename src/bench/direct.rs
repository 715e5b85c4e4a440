//! The baseline: a role's own statements run straight against the target database, with no
//! dbwarden in between, so the engine's rate can be read as a fraction of the database's.
//!
//! The statements are rendered by the same [`statement::render`] the backends use, with a
//! name from the connection's own username template (rendered for the same display name and
//! role as dbwarden's names) and a password from Vault's default policy, and run the way the
//! backends run them: one transaction per batch. The names matter: PostgreSQL's cost per
//! `CREATE ROLE` measured 8% lower with short sequential names than with the template's
//! random ones, which land all over the catalog's name index. A connection is used by one worker at a time, so
//! `connections == workers` is the database's own concurrent rate, and one connection shared
//! by every worker is the design that serialises issuance per connection.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use dbwarden_plugin::error::redact;
use dbwarden_plugin::statement::{self, SqlText, StatementVars};
use dbwarden_plugin::{UsernameMetadata, UsernameTemplate};
use mysql_async::prelude::Queryable;
use secrecy::ExposeSecret;
use tokio::sync::Mutex;

use super::BenchError;
use super::drive::OpError;
use crate::crypto::password::PasswordPolicy;

/// Which wire protocol the target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// PostgreSQL and its derivatives.
    Postgres,
    /// MySQL, MariaDB and their derivatives.
    Mysql,
}

impl Family {
    /// The family of a `plugin_name` compiled into this build, with that dialect's default
    /// username template.
    pub fn of_plugin(plugin_name: &str) -> Option<(Family, &'static str)> {
        if let Some(dialect) = dbwarden_postgres::Dialect::from_plugin_name(plugin_name) {
            Some((Family::Postgres, dialect.default_username_template()))
        } else {
            dbwarden_mysql::Dialect::from_plugin_name(plugin_name)
                .map(|dialect| (Family::Mysql, dialect.default_username_template()))
        }
    }

    /// The plain drop used when a role has no revocation statements: the least any
    /// revocation must do (dbwarden's default also locks the user and ends its sessions).
    fn minimal_revocation(self) -> &'static str {
        match self {
            Family::Postgres => r#"DROP ROLE IF EXISTS "{{name}}";"#,
            Family::Mysql => "DROP USER IF EXISTS '{{name}}'@'%';",
        }
    }
}

enum Conn {
    Postgres(tokio_postgres::Client),
    Mysql(mysql_async::Conn),
}

impl Conn {
    /// One connection made the way the family's backend makes its own (URL forms, TLS).
    async fn open(family: Family, url: &str) -> Result<Conn, BenchError> {
        let setup = |e: dbwarden_plugin::BackendError| {
            BenchError::Baseline(format!("cannot connect with --baseline-url: {e}"))
        };
        Ok(match family {
            Family::Postgres => Conn::Postgres(
                dbwarden_postgres::connect_direct(url)
                    .await
                    .map_err(setup)?,
            ),
            Family::Mysql => Conn::Mysql(dbwarden_mysql::connect_direct(url).await.map_err(setup)?),
        })
    }

    /// Runs `statements` in one transaction, with the backend's own method.
    async fn batch(&mut self, statements: &[SqlText]) -> Result<(), String> {
        match self {
            Conn::Postgres(client) => dbwarden_postgres::execute_batch(client, statements)
                .await
                .map_err(|e| e.to_string()),
            Conn::Mysql(conn) => {
                let mut tx = conn
                    .start_transaction(mysql_async::TxOpts::default())
                    .await
                    .map_err(|e| e.to_string())?;
                for stmt in statements {
                    tx.query_drop(stmt.as_str())
                        .await
                        .map_err(|e| e.to_string())?;
                }
                tx.commit().await.map_err(|e| e.to_string())
            }
        }
    }
}

/// What the baseline creates: a role's statements and how its users are named.
pub struct DirectRole {
    /// The role's creation statements.
    pub creation: Vec<String>,
    /// The role's revocation statements (empty: the family's plain drop).
    pub revocation: Vec<String>,
    /// `{{expiration}}` in the statements.
    pub expiration: DateTime<Utc>,
    /// The connection's username template.
    pub names: UsernameTemplate,
    /// What the template is rendered with: the bench token's display name and the role.
    pub meta: UsernameMetadata,
}

/// A role's statements and the connections to run them on.
pub struct Direct {
    role: DirectRole,
    revocation: Vec<String>,
    conns: Vec<Mutex<Conn>>,
    created: std::sync::Mutex<Vec<String>>,
}

impl Direct {
    /// Opens `connections` connections to `url` for a role's statements.
    pub async fn open(
        family: Family,
        url: &str,
        connections: usize,
        role: DirectRole,
    ) -> Result<Arc<Direct>, BenchError> {
        let mut conns = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            conns.push(Mutex::new(Conn::open(family, url).await?));
        }
        let revocation = if role.revocation.iter().all(|s| s.trim().is_empty()) {
            vec![family.minimal_revocation().to_owned()]
        } else {
            role.revocation.clone()
        };
        Ok(Arc::new(Direct {
            role,
            revocation,
            conns,
            created: std::sync::Mutex::new(Vec::new()),
        }))
    }

    /// Creates one user as the role's creation statements say, on the worker's connection
    /// (`worker` modulo the connections: one connection serialises every worker).
    pub async fn create(&self, worker: usize) -> Result<String, OpError> {
        let name = self
            .role
            .names
            .render(&self.role.meta)
            .map_err(|e| database_error(format!("cannot render the username template: {e}")))?;
        let password = PasswordPolicy::vault_default()
            .generate()
            .map_err(|e| database_error(e.to_string()))?;
        let statements = statement::render(
            &self.role.creation,
            &StatementVars {
                username: Some(&name),
                password: Some(password.expose_secret()),
                expiration: Some(self.role.expiration),
            },
        )
        .map_err(|e| database_error(e.to_string()))?;
        let result = self.conn(worker).lock().await.batch(&statements).await;
        // A failed batch rolled back; only a committed user needs cleaning up. Database
        // errors can quote the failing statement, which holds the password.
        result.map_err(|e| database_error(redact(&e, &[password.expose_secret()])))?;
        self.created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name.clone());
        Ok(name)
    }

    /// Drops one user with the role's revocation statements (or the plain drop).
    pub async fn revoke(&self, worker: usize, name: &str) -> Result<(), OpError> {
        let statements = statement::render(
            &self.revocation,
            &StatementVars {
                username: Some(name),
                password: None,
                expiration: None,
            },
        )
        .map_err(|e| database_error(e.to_string()))?;
        self.conn(worker)
            .lock()
            .await
            .batch(&statements)
            .await
            .map_err(database_error)?;
        self.created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|n| n != name);
        Ok(())
    }

    /// Drops every user this baseline created and has not dropped yet, on all connections.
    pub async fn cleanup(self: &Arc<Self>) -> Result<usize, BenchError> {
        let names = std::mem::take(&mut *self.created.lock().unwrap_or_else(|p| p.into_inner()));
        let total = names.len();
        let names = Arc::new(std::sync::Mutex::new(names));
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..self.conns.len() {
            let this = self.clone();
            let names = names.clone();
            tasks.spawn(async move {
                loop {
                    let next = names.lock().unwrap_or_else(|p| p.into_inner()).pop();
                    let Some(name) = next else { return Ok(()) };
                    this.revoke(worker, &name).await?;
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
                .map_err(|e: OpError| {
                    BenchError::Baseline(format!("cleanup of baseline users failed: {}", e.message))
                })?;
        }
        Ok(total)
    }

    fn conn(&self, worker: usize) -> &Mutex<Conn> {
        &self.conns[worker % self.conns.len()]
    }
}

fn database_error(message: String) -> OpError {
    OpError {
        kind: "database".into(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_follow_the_compiled_in_plugins() {
        let (family, template) = Family::of_plugin("postgresql-database-plugin").unwrap();
        assert_eq!(family, Family::Postgres);
        assert!(template.contains("truncate 63"), "{template}");
        let (family, template) = Family::of_plugin("mysql-database-plugin").unwrap();
        assert_eq!(family, Family::Mysql);
        assert!(template.contains("truncate 32"), "{template}");
        assert_eq!(
            Family::of_plugin("mysql-legacy-database-plugin").map(|(f, _)| f),
            Some(Family::Mysql)
        );
        assert_eq!(Family::of_plugin("no-such-plugin"), None);
    }
}
