//! dbwarden's backend for the PostgreSQL wire family (tokio-postgres, deadpool, rustls).
//!
//! | Dialect | `plugin_name` | Versions tested here | Username limit | Default username template |
//! |---|---|---|---|---|
//! | PostgreSQL | `postgresql-database-plugin` | 15 | 63 bytes | Vault's (`v-<display 8>-<role 8>-<random 20>-<unix time>`) |
//!
//! | Feature | Behaviour |
//! |---|---|
//! | Issuance | In parallel, one pooled connection per call (pool: `max_open_connections`, default 4); all creation statements in one transaction; `40001`, `40P01` and "tuple concurrently updated" retried up to 5 times with jittered backoff |
//! | `password_authentication` | `password` (default) or `scram-sha-256` (the verifier is computed here with `postgres-protocol`, in creation and rotation statements) |
//! | Default rotation / renew | Vault's: `ALTER ROLE ... WITH PASSWORD`, `ALTER ROLE ... VALID UNTIL` |
//! | Default revocation | lock (`NOLOGIN`), terminate sessions, `REASSIGN OWNED` to the admin, `DROP OWNED`, `DROP ROLE IF EXISTS`; a missing role is already revoked |
//! | Custom revocation | lock and terminate sessions, then the role's statements in one transaction, then a final session sweep |
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
//!   role's privileges.
//!
//! Layout: [`config`] reads the connection details, [`tls`] builds rustls configurations,
//! `sql` holds the statements this backend writes itself, `backend` runs them.

mod backend;
pub mod config;
mod sql;
pub mod tls;

use dbwarden_plugin::{BackendDescriptor, BackendError, DatabaseBackend, OpenFuture, OpenRequest};

/// The backend descriptor: the `plugin_name`s this crate serves and how to open one.
pub static DESCRIPTOR: BackendDescriptor = BackendDescriptor {
    plugin_names: &["postgresql-database-plugin"],
    open,
};

/// A SQL personality inside the PostgreSQL wire family.
///
/// Only PostgreSQL itself exists today; Kingbase, HighGo, PolarDB-PG and openGauss will differ
/// in catalog names, the session-kill function, limits and default templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
}

impl Dialect {
    /// Maps a `plugin_name` to its dialect.
    pub fn from_plugin_name(name: &str) -> Option<Self> {
        match name {
            "postgresql-database-plugin" => Some(Dialect::Postgres),
            _ => None,
        }
    }

    /// Vault's default username template for this dialect.
    pub fn default_username_template(self) -> &'static str {
        match self {
            Dialect::Postgres => {
                r#"{{ printf "v-%s-%s-%s-%s" (.DisplayName | truncate 8) (.RoleName | truncate 8) (random 20) (unix_time) | truncate 63 }}"#
            }
        }
    }

    /// The longest role name, in bytes (`NAMEDATALEN - 1`).
    pub fn max_username_bytes(self) -> usize {
        match self {
            Dialect::Postgres => 63,
        }
    }

    /// How error messages name the limit.
    fn username_limit_name(self) -> &'static str {
        match self {
            Dialect::Postgres => "PostgreSQL's NAMEDATALEN-1",
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_names_map_to_dialects() {
        for name in DESCRIPTOR.plugin_names {
            assert!(Dialect::from_plugin_name(name).is_some(), "{name}");
        }
        assert_eq!(Dialect::from_plugin_name("mysql-database-plugin"), None);
    }
}
