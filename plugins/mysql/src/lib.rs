//! dbwarden's backend for the MySQL wire family (mysql_async with rustls).
//!
//! | Dialect | `plugin_name` | Versions tested here | Username limit | Default username template |
//! |---|---|---|---|---|
//! | MySQL / MariaDB | `mysql-database-plugin` | MariaDB 10.11 | 32 characters | Vault's (`v-<display 10>-<role 10>-<random 20>-<unix time>`, truncated to 32) |
//! | MySQL < 5.7.8 ("legacy"), RDS, Aurora | `mysql-legacy-database-plugin`, `mysql-rds-database-plugin`, `mysql-aurora-database-plugin` | MariaDB 10.11 | 16 characters | Vault's legacy (`v-<role 4>-<random>`, truncated to 16) |
//!
//! | Feature | Behaviour |
//! |---|---|
//! | Issuance | In parallel, one pooled connection per call (pool: `max_open_connections`, default 4); statements run in one transaction, but MySQL commits DDL (`CREATE USER`, `GRANT`) implicitly, so a failure after `CREATE USER` is cleaned up by running the default revocation for the new name; 1213 (deadlock) and 1205 (lock wait timeout) are retried up to 5 times with jittered backoff, after the same clean-up |
//! | Existing account with the new name | refused before any statement runs (the clean-up must never drop someone else's account) |
//! | Default rotation / renew | Vault's: `ALTER USER '{{username}}'@'%' IDENTIFIED BY ...`; renewal does nothing unless the role has renew statements |
//! | Default revocation | every account with the name, whatever its host: `ACCOUNT LOCK`, kill its sessions, `REVOKE ALL PRIVILEGES, GRANT OPTION`, `DROP USER IF EXISTS`, kill again; no account is already revoked |
//! | Custom revocation | the role's statements one by one, then kill every remaining session of the name |
//! | TLS | see [`config`] |
//!
//! Why sessions are killed: `DROP USER` does not end live sessions on MySQL or MariaDB (Vault
//! issue #10681), so a dropped user keeps working until it disconnects. Killing needs the
//! admin to hold `PROCESS` (to see the sessions) and `CONNECTION ADMIN` or `SUPER`.
//!
//! Layout: [`config`] reads the connection details, `sql` holds the statements this backend
//! writes itself, `backend` runs them.

mod backend;
pub mod config;
mod sql;

use dbwarden_plugin::{BackendDescriptor, BackendError, DatabaseBackend, OpenFuture, OpenRequest};

/// The backend descriptor: the `plugin_name`s this crate serves and how to open one.
pub static DESCRIPTOR: BackendDescriptor = BackendDescriptor {
    plugin_names: &[
        "mysql-database-plugin",
        "mysql-legacy-database-plugin",
        "mysql-rds-database-plugin",
        "mysql-aurora-database-plugin",
    ],
    open,
};

/// A SQL personality inside the MySQL wire family.
///
/// TiDB, OceanBase, PolarDB-X and GoldenDB will be further dialects (name rules, KILL form,
/// expiry support, error codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// MySQL ≥ 5.7.8 and MariaDB: 32-character user names.
    Mysql,
    /// Old MySQL, RDS and Aurora as Vault configures them: 16-character user names.
    Legacy,
}

impl Dialect {
    /// Maps a `plugin_name` to its dialect.
    pub fn from_plugin_name(name: &str) -> Option<Self> {
        match name {
            "mysql-database-plugin" => Some(Dialect::Mysql),
            "mysql-legacy-database-plugin"
            | "mysql-rds-database-plugin"
            | "mysql-aurora-database-plugin" => Some(Dialect::Legacy),
            _ => None,
        }
    }

    /// Vault's default username template for this dialect.
    pub fn default_username_template(self) -> &'static str {
        match self {
            Dialect::Mysql => {
                r#"{{ printf "v-%s-%s-%s-%s" (.DisplayName | truncate 10) (.RoleName | truncate 10) (random 20) (unix_time) | truncate 32 }}"#
            }
            Dialect::Legacy => {
                r#"{{ printf "v-%s-%s" (.RoleName | truncate 4) (random 20) | truncate 16 }}"#
            }
        }
    }

    /// The longest user name, in characters.
    pub fn max_username_chars(self) -> usize {
        match self {
            Dialect::Mysql => 32,
            Dialect::Legacy => 16,
        }
    }

    fn username_limit_name(self) -> &'static str {
        match self {
            Dialect::Mysql => "MySQL 5.7.8+ user names",
            Dialect::Legacy => "legacy MySQL user names",
        }
    }
}

fn open(req: OpenRequest) -> OpenFuture {
    Box::pin(async move {
        let dialect = Dialect::from_plugin_name(&req.plugin_name).ok_or_else(|| {
            BackendError::InvalidConfig(format!(
                "plugin {:?} is not served by the MySQL backend",
                req.plugin_name
            ))
        })?;
        let backend = backend::MysqlBackend::open(dialect, &req.details)?;
        if req.verify_connection
            && let Err(e) = backend.verify_connection().await
        {
            backend.close().await;
            return Err(e);
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
        assert_eq!(
            Dialect::from_plugin_name("mysql-rds-database-plugin"),
            Some(Dialect::Legacy)
        );
        assert_eq!(
            Dialect::from_plugin_name("postgresql-database-plugin"),
            None
        );
    }
}
