//! The SQL this backend writes itself, and how it reads PostgreSQL's errors.
//!
//! Everything here is pure: statements are built with [`SqlBuilder`] (identifiers quoted, never
//! formatted in) and tested with hostile names below and in the golden SQL under
//! `testdata/dialects/`. The backend runs exactly what these functions return.

use dbwarden_plugin::{Quoting, SqlBuilder, SqlText};

use crate::Dialect;
use crate::dialect::RevocationStyle;

/// Where a dialect keeps roles and sessions, and the queries the backend runs against them.
///
/// Each query takes the role name (or, for `terminate_by_oid`, its oid) as `$1`.
#[derive(Debug, PartialEq, Eq)]
pub struct Catalog {
    /// The catalog schema, for messages.
    pub schema: &'static str,
    /// Finds a role: its oid, and whether the admin already has its privileges (which
    /// `pg_terminate_backend`, `REASSIGN OWNED` and `DROP OWNED` need).
    pub find_role: &'static str,
    /// Terminates every other session of a role, by name; returns how many.
    pub terminate_by_name: &'static str,
    /// Terminates every other session of a role, by oid (still works once the role is
    /// dropped, when the session view's user name has become NULL); returns how many.
    pub terminate_by_oid: &'static str,
}

/// PostgreSQL's catalog, which every member of the family has except KingbaseES.
pub const PG_CATALOG: Catalog = Catalog {
    schema: "pg_catalog",
    find_role: "SELECT oid, pg_has_role(current_user, oid, 'USAGE') FROM pg_catalog.pg_roles WHERE rolname = $1",
    terminate_by_name: "SELECT count(pg_catalog.pg_terminate_backend(pid)) \
     FROM pg_catalog.pg_stat_activity WHERE usename = $1 AND pid <> pg_catalog.pg_backend_pid()",
    terminate_by_oid: "SELECT count(pg_catalog.pg_terminate_backend(pid)) \
     FROM pg_catalog.pg_stat_activity WHERE usesysid = $1 AND pid <> pg_catalog.pg_backend_pid()",
};

/// KingbaseES's catalog: `sys_catalog.sys_roles`, `sys_stat_activity` and
/// `sys_terminate_backend` (help.kingbase.com.cn, 管理进程 / 系统视图 \[D\]). The schema is
/// named because Kingbase's `search_path` may not include it. Whether Kingbase has
/// `pg_has_role` is \[U\], so the admin is assumed to lack the role's privileges and is granted
/// them first (harmless for a superuser).
pub const KINGBASE_CATALOG: Catalog = Catalog {
    schema: "sys_catalog",
    find_role: "SELECT oid, false FROM sys_catalog.sys_roles WHERE rolname = $1",
    terminate_by_name: "SELECT count(sys_catalog.sys_terminate_backend(pid)) \
     FROM sys_catalog.sys_stat_activity WHERE usename = $1",
    terminate_by_oid: "SELECT count(sys_catalog.sys_terminate_backend(pid)) \
     FROM sys_catalog.sys_stat_activity WHERE usesysid = $1",
};

/// Whether an error means "this server has no such catalog" (try the next one): undefined
/// schema, table or function.
pub fn is_missing_catalog(sqlstate: &str) -> bool {
    matches!(sqlstate, "3F000" | "42P01" | "42883")
}

/// `SELECT 1`, the connection check.
pub const PING: &str = "SELECT 1";

/// Refuses new logins at once (committed before sessions are ended): `ALTER ROLE "u" NOLOGIN`,
/// or openGauss's `ALTER USER "u" ACCOUNT LOCK`.
pub fn lock_role(dialect: Dialect, role: &str) -> SqlText {
    match dialect.revocation_style() {
        RevocationStyle::NoLoginReassignDrop => SqlBuilder::new(Quoting::Ansi)
            .push("ALTER ROLE ")
            .ident(role)
            .push(" NOLOGIN")
            .finish(),
        RevocationStyle::AccountLockDropCascade => SqlBuilder::new(Quoting::Ansi)
            .push("ALTER USER ")
            .ident(role)
            .push(" ACCOUNT LOCK")
            .finish(),
    }
}

/// `GRANT "u" TO CURRENT_USER`: gives a CREATEROLE (non-superuser) admin the privileges of the
/// role, which `pg_terminate_backend`, `REASSIGN OWNED` and `DROP OWNED` require. The membership
/// disappears with the role.
pub fn grant_role_to_admin(role: &str) -> SqlText {
    SqlBuilder::new(Quoting::Ansi)
        .push("GRANT ")
        .ident(role)
        .push(" TO CURRENT_USER")
        .finish()
}

/// `REASSIGN OWNED BY "u" TO CURRENT_USER` (current database, and shared objects).
pub fn reassign_owned(role: &str) -> SqlText {
    SqlBuilder::new(Quoting::Ansi)
        .push("REASSIGN OWNED BY ")
        .ident(role)
        .push(" TO CURRENT_USER")
        .finish()
}

/// `DROP OWNED BY "u"`: drops what is left and revokes its privileges in the current database.
pub fn drop_owned(role: &str) -> SqlText {
    SqlBuilder::new(Quoting::Ansi)
        .push("DROP OWNED BY ")
        .ident(role)
        .finish()
}

/// `DROP ROLE IF EXISTS "u"`, or openGauss's `DROP USER IF EXISTS "u" CASCADE`.
pub fn drop_role(dialect: Dialect, role: &str) -> SqlText {
    match dialect.revocation_style() {
        RevocationStyle::NoLoginReassignDrop => SqlBuilder::new(Quoting::Ansi)
            .push("DROP ROLE IF EXISTS ")
            .ident(role)
            .finish(),
        RevocationStyle::AccountLockDropCascade => SqlBuilder::new(Quoting::Ansi)
            .push("DROP USER IF EXISTS ")
            .ident(role)
            .push(" CASCADE")
            .finish(),
    }
}

/// dbwarden's default revocation of one role, in the order the backend runs it.
#[derive(Debug)]
pub struct Revocation {
    /// Autocommitted one by one before the sessions are ended: privileges for the admin (if
    /// it lacks them), then the lock, so no new session can start.
    pub cut_access: Vec<SqlText>,
    /// The session sweep, with the role name as `$1`.
    pub terminate: &'static str,
    /// One transaction: hand over or drop what the role owns, drop the role.
    pub remove: Vec<SqlText>,
}

/// The default revocation of `role` for a dialect, given the catalog the server has and
/// whether the admin already has the role's privileges.
pub fn default_revocation(
    dialect: Dialect,
    catalog: &Catalog,
    role: &str,
    admin_has_privileges: bool,
) -> Revocation {
    let mut cut_access = Vec::new();
    // openGauss's admin is expected to be a SYSADMIN (its `GRANT ... TO CURRENT_USER` form is
    // PostgreSQL 9.5 syntax, which openGauss's 9.2 grammar lacks [U]).
    if !admin_has_privileges && dialect.revocation_style() == RevocationStyle::NoLoginReassignDrop {
        cut_access.push(grant_role_to_admin(role));
    }
    cut_access.push(lock_role(dialect, role));
    let remove = match dialect.revocation_style() {
        RevocationStyle::NoLoginReassignDrop => vec![
            reassign_owned(role),
            drop_owned(role),
            drop_role(dialect, role),
        ],
        RevocationStyle::AccountLockDropCascade => vec![drop_role(dialect, role)],
    };
    Revocation {
        cut_access,
        terminate: catalog.terminate_by_name,
        remove,
    }
}

/// Whether an error is worth retrying the whole transaction for.
///
/// `40001` serialization_failure, `40P01` deadlock_detected, and `XX000` "tuple concurrently
/// updated" (concurrent GRANTs on one object update the same catalog row).
pub fn is_transient_state(sqlstate: &str, message: &str) -> bool {
    matches!(sqlstate, "40001" | "40P01")
        || (sqlstate == "XX000" && message.contains("tuple concurrently updated"))
}

/// Classifies a driver error (a closed connection is worth a retry on a fresh one).
pub(crate) fn is_transient(err: &tokio_postgres::Error) -> bool {
    match err.as_db_error() {
        Some(db) => is_transient_state(db.code().code(), db.message()),
        None => err.is_closed(),
    }
}

/// The server's message with SQLSTATE and detail, or the driver's description. Not redacted.
pub(crate) fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => {
            let mut out = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                out.push_str("; detail: ");
                out.push_str(detail);
            }
            if let Some(hint) = db.hint() {
                out.push_str("; hint: ");
                out.push_str(hint);
            }
            out
        }
        None => {
            // tokio-postgres puts the cause after the kind; neither holds the password.
            let mut out = err.to_string();
            let mut source = std::error::Error::source(err);
            while let Some(s) = source {
                let text = s.to_string();
                if !out.contains(&text) {
                    out.push_str(": ");
                    out.push_str(&text);
                }
                source = s.source();
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_quote_hostile_names() {
        let name = r#"v-x"; DROP TABLE t; --"#;
        assert_eq!(
            lock_role(Dialect::Postgres, name).as_str(),
            r#"ALTER ROLE "v-x""; DROP TABLE t; --" NOLOGIN"#
        );
        assert_eq!(
            lock_role(Dialect::OpenGauss, name).as_str(),
            r#"ALTER USER "v-x""; DROP TABLE t; --" ACCOUNT LOCK"#
        );
        assert_eq!(
            drop_role(Dialect::Kingbase, name).as_str(),
            r#"DROP ROLE IF EXISTS "v-x""; DROP TABLE t; --""#
        );
        assert_eq!(
            drop_role(Dialect::OpenGauss, "a").as_str(),
            r#"DROP USER IF EXISTS "a" CASCADE"#
        );
        assert_eq!(
            reassign_owned("a").as_str(),
            r#"REASSIGN OWNED BY "a" TO CURRENT_USER"#
        );
        assert_eq!(drop_owned("a").as_str(), r#"DROP OWNED BY "a""#);
        assert_eq!(
            grant_role_to_admin("a").as_str(),
            r#"GRANT "a" TO CURRENT_USER"#
        );
    }

    #[test]
    fn revocation_plans() {
        let pg = default_revocation(Dialect::Postgres, &PG_CATALOG, "r", false);
        let texts: Vec<&str> = pg.cut_access.iter().map(SqlText::as_str).collect();
        assert_eq!(
            texts,
            [r#"GRANT "r" TO CURRENT_USER"#, r#"ALTER ROLE "r" NOLOGIN"#]
        );
        assert_eq!(pg.remove.len(), 3);
        let pg = default_revocation(Dialect::HighGo, &PG_CATALOG, "r", true);
        assert_eq!(pg.cut_access.len(), 1);
        let og = default_revocation(Dialect::OpenGauss, &PG_CATALOG, "r", false);
        assert_eq!(og.cut_access.len(), 1);
        assert_eq!(og.remove.len(), 1);
        let kb = default_revocation(Dialect::Kingbase, &KINGBASE_CATALOG, "r", false);
        assert!(kb.terminate.contains("sys_terminate_backend"));
    }

    #[test]
    fn default_statements_match_vault() {
        let vars = dbwarden_plugin::statement::StatementVars {
            username: Some("v-u"),
            password: Some("Pw-1"),
            expiration: chrono::DateTime::from_timestamp(86400, 0),
        };
        let render = |t: &str| {
            dbwarden_plugin::statement::render(&[t.to_owned()], &vars).unwrap()[0]
                .as_str()
                .to_owned()
        };
        assert_eq!(
            render(Dialect::Postgres.default_rotation()),
            r#"ALTER ROLE "v-u" WITH PASSWORD 'Pw-1'"#
        );
        assert_eq!(
            render(Dialect::Postgres.default_renew()),
            r#"ALTER ROLE "v-u" VALID UNTIL '1970-01-02 00:00:00+0000'"#
        );
        assert_eq!(
            render(Dialect::OpenGauss.default_rotation()),
            r#"ALTER USER "v-u" IDENTIFIED BY 'Pw-1'"#
        );
    }

    #[test]
    fn missing_catalog_states() {
        assert!(is_missing_catalog("3F000"));
        assert!(is_missing_catalog("42P01"));
        assert!(is_missing_catalog("42883"));
        assert!(!is_missing_catalog("42501"));
    }

    #[test]
    fn transient_classification() {
        assert!(is_transient_state("40001", "could not serialize access"));
        assert!(is_transient_state("40P01", "deadlock detected"));
        assert!(is_transient_state("XX000", "tuple concurrently updated"));
        assert!(!is_transient_state("XX000", "cache lookup failed"));
        assert!(!is_transient_state("42601", "syntax error"));
        assert!(!is_transient_state("42710", "role already exists"));
    }
}
