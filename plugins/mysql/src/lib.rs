//! dbwarden's backend for the MySQL wire family (mysql_async with rustls).
//!
//! | Dialect | `plugin_name` | Run against a server here | Username limit | Default username template |
//! |---|---|---|---|---|
//! | MySQL / MariaDB | `mysql-database-plugin` | MariaDB 10.11 | 32 characters | Vault's (`v-<display 10>-<role 10>-<random 20>-<unix time>`, truncated to 32) |
//! | MySQL < 5.7.8 ("legacy"), RDS, Aurora | `mysql-legacy-database-plugin`, `mysql-rds-database-plugin`, `mysql-aurora-database-plugin` | MariaDB 10.11 | 16 characters | Vault's legacy (`v-<role 4>-<random>`, truncated to 16) |
//! | MariaDB | `mariadb-database-plugin` | MariaDB 10.11 | 80 characters | Vault's |
//! | OceanBase (MySQL mode) | `oceanbase-database-plugin` | seekdb 1.4 (OceanBase 4.3.5.3) | 64 bytes | Vault's |
//! | TiDB, PolarDB-X | see [`dialect`] | the MySQL-common part, on MariaDB 10.11 | 32 characters; PolarDB-X 4–20 letters and digits | Vault's; PolarDB-X `v<random 19>` |
//! | PolarDB for MySQL, GoldenDB, GBase 8a, TDSQL | see [`dialect`] | no (golden SQL) | 32 characters; GBase 8a 16 | Vault's; GBase 8a Vault's legacy |
//!
//! | Feature | Behaviour |
//! |---|---|
//! | Issuance | In parallel, one pooled connection per call (pool: `max_open_connections`, default 4); statements run in one transaction, but MySQL commits DDL (`CREATE USER`, `GRANT`) implicitly, so a failure after `CREATE USER` is cleaned up by running the default revocation for the new name; 1213 (deadlock), 1205 (lock wait timeout) and the dialect's own transient codes are retried up to 5 times with jittered backoff, after the same clean-up |
//! | Existing account with the new name | refused before any statement runs (the clean-up must never drop someone else's account) |
//! | Default rotation / renew | `ALTER USER '{{username}}'@'%' IDENTIFIED BY ...` (Vault's), `SET PASSWORD` on PolarDB-X and GBase 8a; renewal does nothing unless the role has renew statements |
//! | Default revocation | every account with the name, whatever its host: `ACCOUNT LOCK` (where the dialect has it), kill its sessions, `REVOKE ALL PRIVILEGES, GRANT OPTION`, `DROP USER [IF EXISTS]`, kill again; no account is already revoked |
//! | Custom revocation | the role's statements one by one, then kill every remaining session of the name |
//! | Default password policy | Vault's for MySQL, legacy and MariaDB; [`dbwarden_plugin::complexity::COMMON_POLICY`] for the others |
//! | TLS | see [`config`] |
//!
//! Why sessions are killed: `DROP USER` does not end live sessions on MySQL, MariaDB (Vault
//! issue #10681) or OceanBase \[V\], so a dropped user keeps working until it disconnects.
//! Killing needs the admin to hold `PROCESS` (to see the sessions) and `CONNECTION ADMIN` or
//! `SUPER`.
//!
//! Layout: [`dialect`] holds what differs between members of the family, [`config`] reads
//! the connection details, [`sql`] holds the statements this backend writes itself (pure),
//! `backend` runs them.

mod backend;
pub mod config;
pub mod dialect;
pub mod sql;

pub use dialect::Dialect;

use dbwarden_plugin::{BackendDescriptor, BackendError, DatabaseBackend, OpenFuture, OpenRequest};

/// The backend descriptor: the `plugin_name`s this crate serves and how to open one.
///
/// The list is every [`Dialect::plugin_names`]; a unit test keeps the two in step.
pub static DESCRIPTOR: BackendDescriptor = BackendDescriptor {
    plugin_names: &[
        "mysql-database-plugin",
        "mysql-legacy-database-plugin",
        "mysql-rds-database-plugin",
        "mysql-aurora-database-plugin",
        "mariadb-database-plugin",
        "oceanbase-database-plugin",
        "tidb-database-plugin",
        "polardb-mysql-database-plugin",
        "polardbx-database-plugin",
        "polardb-x-database-plugin",
        "goldendb-database-plugin",
        "gbase8a-database-plugin",
        "tdsql-database-plugin",
        "tdsql-mysql-database-plugin",
    ],
    open,
};

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

/// Opens one plain connection exactly as the backend would for `connection_url` (same
/// parsing and TLS options), for measuring the database without dbwarden in between
/// (`dbwarden bench --baseline`). Errors never quote the URL's password.
pub async fn connect_direct(connection_url: &str) -> Result<mysql_async::Conn, BackendError> {
    let mut details = serde_json::Map::new();
    details.insert("connection_url".into(), connection_url.into());
    let settings = config::Settings::from_details(Dialect::Mysql, &details)?;
    mysql_async::Conn::new(settings.opts).await.map_err(|e| {
        let secrets: Vec<&str> = settings.admin_secrets.iter().map(String::as_str).collect();
        BackendError::Connect(dbwarden_plugin::error::redact(&e.to_string(), &secrets))
    })
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
        assert_eq!(
            Dialect::from_plugin_name("mysql-rds-database-plugin"),
            Some(Dialect::Legacy)
        );
    }
}
