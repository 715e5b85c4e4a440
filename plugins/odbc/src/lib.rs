//! dbwarden's backend over ODBC (`odbc-api` on unixODBC): any database with an ODBC driver,
//! with dialects for PostgreSQL, MySQL/MariaDB and Dameng DM8.
//!
//! | `plugin_name` | Dialect | Driver | Run against a real server here |
//! |---|---|---|---|
//! | `odbc-database-plugin` + `dialect = "postgresql"` | PostgreSQL | psqlODBC (`odbc-postgresql`, `Driver={PostgreSQL Unicode}`) | PostgreSQL 15, the whole conformance kit |
//! | `odbc-database-plugin` + `dialect = "mysql"` | MySQL / MariaDB | MariaDB Connector/ODBC (`odbc-mariadb`, `Driver={MariaDB Unicode}`) | MariaDB 10.11, the whole conformance kit |
//! | `dameng-database-plugin` (or `dialect = "dameng"`) | Dameng DM8 | Dameng's `libdodbc.so` | **no**: not run against a DM server here; golden SQL only (`testdata/dialects/dameng/`) |
//! | `odbc-database-plugin` without `dialect` | generic | any | through the PostgreSQL driver, with DBA-supplied statements |
//!
//! | Feature | Behaviour |
//! |---|---|
//! | Blocking calls | every ODBC call runs on tokio's blocking threads (`spawn_blocking`), never on an async worker |
//! | Pool | at most `max_open_connections` (default 4) connections open or in use; `max_idle_connections` kept; `max_connection_lifetime` honoured; broken connections (SQLSTATE class 08) discarded |
//! | Issuance | creation statements in one transaction; where DDL commits implicitly (MySQL, DM) an existing name is refused first and a failed creation is cleaned up by name; transient errors retried up to 5 times |
//! | Default revocation | lock, end sessions, drop, end sessions again (see [`dialect`]); the generic dialect has none and needs revocation statements |
//! | Custom revocation | lock and end sessions first, then the role's statements, then a final sweep |
//! | DM password policy | [`DatabaseBackend::default_password_policy`] returns [`dialect::DAMENG_PASSWORD_POLICY`] (20 characters, upper, lower, digit, one of `#%^`) |
//!
//! The crate also ships `dbwarden-plugin-odbc`, this backend as an out-of-process plugin: a
//! driver that crashes then takes down only its plugin process, never the server.
//!
//! Layout: [`dialect`] holds the pure SQL of each dialect, [`config`] reads the connection
//! details, `pool` runs blocking calls on pooled connections, `backend` runs the operations.

mod backend;
pub mod config;
pub mod dialect;
mod pool;

use dbwarden_plugin::{BackendDescriptor, BackendError, DatabaseBackend, OpenFuture, OpenRequest};

pub use dialect::Dialect;

/// The backend descriptor: the `plugin_name`s this crate serves and how to open one.
pub static DESCRIPTOR: BackendDescriptor = BackendDescriptor {
    plugin_names: &[dialect::ODBC_PLUGIN, dialect::DAMENG_PLUGIN],
    open,
};

fn open(req: OpenRequest) -> OpenFuture {
    Box::pin(async move {
        let dialect = Dialect::select(&req.plugin_name, &req.details)?;
        let backend = backend::OdbcBackend::open(dialect, &req.details)?;
        if req.verify_connection {
            backend.verify_connection().await?;
        }
        Ok(Box::new(backend) as Box<dyn DatabaseBackend>)
    })
}

/// Checks that the ODBC driver manager can be loaded and lists the installed drivers
/// (`odbcinst.ini`), for diagnostics.
pub fn installed_drivers() -> Result<Vec<String>, BackendError> {
    let env = odbc_api::environment().map_err(|e| {
        BackendError::InvalidConfig(format!("cannot initialise the ODBC driver manager: {e}"))
    })?;
    let drivers = env
        .drivers()
        .map_err(|e| BackendError::InvalidConfig(format!("cannot list the ODBC drivers: {e}")))?;
    Ok(drivers.into_iter().map(|d| d.description).collect())
}
