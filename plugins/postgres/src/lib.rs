//! dbwarden's backend for the PostgreSQL wire family (tokio-postgres, deadpool, rustls).
//!
//! | Dialect | `plugin_name` | Run against a server here | Username limit | Default username template |
//! |---|---|---|---|---|
//! | PostgreSQL | `postgresql-database-plugin` | PostgreSQL 15 | 63 bytes | Vault's (`v-<display 8>-<role 8>-<random 20>-<unix time>`) |
//! | KingbaseES, HighGo, PolarDB for PostgreSQL | see [`dialect`] | the PostgreSQL-common part, on PostgreSQL 15 | 63 bytes | Vault's |
//! | openGauss, GaussDB, Vastbase, MogDB | see [`dialect`] | no (golden SQL; authentication detection against a fake server) | 63 bytes | Vault's |
//!
//! | Feature | Behaviour |
//! |---|---|
//! | Issuance | In parallel, one pooled connection per call (pool: `max_open_connections`, default 4); all creation statements in one transaction; `40001`, `40P01` and "tuple concurrently updated" retried up to 5 times with jittered backoff |
//! | `password_authentication` | `password` (default) or `scram-sha-256` (the verifier is computed here with `postgres-protocol`, in creation and rotation statements; refused for openGauss) |
//! | Default rotation / renew | per dialect: Vault's `ALTER ROLE ... WITH PASSWORD`, `ALTER ROLE ... VALID UNTIL`; openGauss `ALTER USER ... IDENTIFIED BY` |
//! | Default revocation | lock (`NOLOGIN`; openGauss `ACCOUNT LOCK`), terminate sessions, then `REASSIGN OWNED` to the admin, `DROP OWNED`, `DROP ROLE IF EXISTS` (openGauss: `DROP USER IF EXISTS ... CASCADE`); a missing role is already revoked |
//! | Custom revocation | lock and terminate sessions, then the role's statements in one transaction, then a final session sweep |
//! | Default password policy | Vault's for PostgreSQL; [`dbwarden_plugin::complexity::COMMON_POLICY`] for the other dialects |
//! | openGauss authentication | SHA256 / MD5_SHA256 / SM3 requests are detected and answered with the server setting that enables MD5 (see `gauss_auth`) |
//! | TLS | libpq `sslmode` semantics, see [`tls`] |
//!
//! Limits worth knowing:
//! - `REASSIGN OWNED` and `DROP OWNED` act on the connection's database (and shared objects)
//!   only. Privileges or objects of the role in *other* databases still block `DROP ROLE`;
//!   the revocation then fails with a message naming them, after the role has been locked
//!   and its sessions ended, so access is cut even though the role still exists. Give such
//!   roles custom revocation statements, or keep grants to one database per connection.
//! - Creation statements with per-table `GRANT`s contend when run in parallel: concurrent
//!   grants on one table update the same catalog row and fail with "tuple concurrently
//!   updated" (the conformance suite's 16 parallel issuances hit it every run). The retry
//!   absorbs it, at the cost of latency; granting membership in a prepared role
//!   (`CREATE ROLE ... IN ROLE app_readonly`) avoids it.
//! - An admin that is not a superuser needs `CREATEROLE`; the backend grants itself membership
//!   in a role before revoking it, because `pg_terminate_backend` and `DROP OWNED` need the
//!   role's privileges. openGauss's admin must be a `SYSADMIN` instead.
//!
//! Layout: [`dialect`] holds what differs between members of the family, [`config`] reads
//! the connection details, [`tls`] builds rustls configurations, [`sql`] holds the statements
//! this backend writes itself (pure), `gauss_auth` recognises openGauss authentication
//! requests, `backend` runs the SQL.

mod backend;
pub mod config;
pub mod dialect;
mod gauss_auth;
pub mod sql;
pub mod tls;

pub use dialect::Dialect;

use dbwarden_plugin::{BackendDescriptor, BackendError, DatabaseBackend, OpenFuture, OpenRequest};

/// The backend descriptor: the `plugin_name`s this crate serves and how to open one.
///
/// The list is every [`Dialect::plugin_names`]; a unit test keeps the two in step.
pub static DESCRIPTOR: BackendDescriptor = BackendDescriptor {
    plugin_names: &[
        "postgresql-database-plugin",
        "kingbase-database-plugin",
        "kingbasees-database-plugin",
        "highgo-database-plugin",
        "polardb-postgresql-database-plugin",
        "polardb-pg-database-plugin",
        "opengauss-database-plugin",
        "gaussdb-database-plugin",
        "vastbase-database-plugin",
        "mogdb-database-plugin",
    ],
    open,
};

fn open(req: OpenRequest) -> OpenFuture {
    Box::pin(async move {
        let dialect = Dialect::from_plugin_name(&req.plugin_name).ok_or_else(|| {
            BackendError::InvalidConfig(format!(
                "plugin {:?} is not served by the PostgreSQL backend",
                req.plugin_name
            ))
        })?;
        let backend = backend::PostgresBackend::open(dialect, &req.details)?;
        if req.verify_connection {
            backend.verify_connection().await?;
        }
        Ok(Box::new(backend) as Box<dyn DatabaseBackend>)
    })
}

/// Opens one plain connection exactly as the backend would for `connection_url` (same
/// parsing, `sslmode` and TLS), for measuring the database without dbwarden in between
/// (`dbwarden bench --baseline`). Errors never quote the URL's password.
pub async fn connect_direct(connection_url: &str) -> Result<tokio_postgres::Client, BackendError> {
    let mut details = serde_json::Map::new();
    details.insert("connection_url".into(), connection_url.into());
    let settings = config::Settings::from_details(Dialect::Postgres, &details)?;
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls::client_config(
        settings.ssl_mode,
        settings.ssl_root_cert.as_deref(),
    )?);
    let (client, connection) = settings.pg.connect(tls).await.map_err(|e| {
        let secrets: Vec<&str> = settings.admin_secrets.iter().map(String::as_str).collect();
        BackendError::Connect(dbwarden_plugin::error::redact(&e.to_string(), &secrets))
    })?;
    tokio::spawn(connection);
    Ok(client)
}

/// Runs `statements` as one transaction in one round trip: a single simple-query message,
/// which PostgreSQL runs as one implicit transaction (all or nothing). The error does not
/// say which statement failed. The backend issues users this way, and
/// `dbwarden bench --baseline` runs the same statements the same way.
pub async fn execute_batch(
    client: &tokio_postgres::Client,
    statements: &[dbwarden_plugin::statement::SqlText],
) -> Result<(), tokio_postgres::Error> {
    // A newline before each `;` ends any trailing `--` comment of the statement before it.
    let joined = statements
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join("\n;\n");
    client.batch_execute(&joined).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_names_are_exactly_the_dialects_names() {
        let mut from_dialects: Vec<&str> = Dialect::ALL
            .iter()
            .flat_map(|d| d.plugin_names().iter().copied())
            .collect();
        let mut listed = DESCRIPTOR.plugin_names.to_vec();
        from_dialects.sort_unstable();
        listed.sort_unstable();
        assert_eq!(from_dialects, listed);
    }
}
