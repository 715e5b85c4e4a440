//! The SQL this backend writes itself, and how it reads PostgreSQL's errors.
//!
//! Everything here is pure: statements are built with [`SqlBuilder`] (identifiers quoted, never
//! formatted in) and tested with hostile names below.

use dbwarden_plugin::{Quoting, SqlBuilder, SqlText};

/// Vault's default rotation statement (static roles, root rotation).
pub(crate) const DEFAULT_ROTATION: &str =
    r#"ALTER ROLE "{{username}}" WITH PASSWORD '{{password}}';"#;

/// Vault's default renew statement.
pub(crate) const DEFAULT_RENEW: &str = r#"ALTER ROLE "{{name}}" VALID UNTIL '{{expiration}}';"#;

/// Finds a role: its oid, and whether the admin already has its privileges
/// (needed by `pg_terminate_backend`, `REASSIGN OWNED` and `DROP OWNED`).
pub(crate) const FIND_ROLE: &str = "SELECT oid, pg_has_role(current_user, oid, 'USAGE') FROM pg_catalog.pg_roles WHERE rolname = $1";

/// Terminates every other session of a role, by name.
pub(crate) const TERMINATE_BY_NAME: &str = "SELECT count(pg_catalog.pg_terminate_backend(pid)) \
     FROM pg_catalog.pg_stat_activity WHERE usename = $1 AND pid <> pg_catalog.pg_backend_pid()";

/// Terminates every other session of a role, by oid (still works once the role is dropped,
/// when `pg_stat_activity.usename` has become NULL).
pub(crate) const TERMINATE_BY_OID: &str = "SELECT count(pg_catalog.pg_terminate_backend(pid)) \
     FROM pg_catalog.pg_stat_activity WHERE usesysid = $1 AND pid <> pg_catalog.pg_backend_pid()";

/// `SELECT 1`, the connection check.
pub(crate) const PING: &str = "SELECT 1";

/// `ALTER ROLE "u" NOLOGIN`: refuses new logins at once (committed before sessions are ended).
pub(crate) fn lock_role(role: &str) -> SqlText {
    SqlBuilder::new(Quoting::Ansi)
        .push("ALTER ROLE ")
        .ident(role)
        .push(" NOLOGIN")
        .finish()
}

/// `GRANT "u" TO CURRENT_USER`: gives a CREATEROLE (non-superuser) admin the privileges of the
/// role, which `pg_terminate_backend`, `REASSIGN OWNED` and `DROP OWNED` require. The membership
/// disappears with the role.
pub(crate) fn grant_role_to_admin(role: &str) -> SqlText {
    SqlBuilder::new(Quoting::Ansi)
        .push("GRANT ")
        .ident(role)
        .push(" TO CURRENT_USER")
        .finish()
}

/// `REASSIGN OWNED BY "u" TO CURRENT_USER` (current database, and shared objects).
pub(crate) fn reassign_owned(role: &str) -> SqlText {
    SqlBuilder::new(Quoting::Ansi)
        .push("REASSIGN OWNED BY ")
        .ident(role)
        .push(" TO CURRENT_USER")
        .finish()
}

/// `DROP OWNED BY "u"`: drops what is left and revokes its privileges in the current database.
pub(crate) fn drop_owned(role: &str) -> SqlText {
    SqlBuilder::new(Quoting::Ansi)
        .push("DROP OWNED BY ")
        .ident(role)
        .finish()
}

/// `DROP ROLE IF EXISTS "u"`.
pub(crate) fn drop_role(role: &str) -> SqlText {
    SqlBuilder::new(Quoting::Ansi)
        .push("DROP ROLE IF EXISTS ")
        .ident(role)
        .finish()
}

/// Whether an error is worth retrying the whole transaction for.
///
/// `40001` serialization_failure, `40P01` deadlock_detected, and `XX000` "tuple concurrently
/// updated" (concurrent GRANTs on one object update the same catalog row).
pub(crate) fn is_transient_state(sqlstate: &str, message: &str) -> bool {
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
            lock_role(name).as_str(),
            r#"ALTER ROLE "v-x""; DROP TABLE t; --" NOLOGIN"#
        );
        assert_eq!(
            drop_role(name).as_str(),
            r#"DROP ROLE IF EXISTS "v-x""; DROP TABLE t; --""#
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
    fn default_statements_match_vault() {
        let vars = dbwarden_plugin::statement::StatementVars {
            username: Some("v-u"),
            password: Some("Pw-1"),
            expiration: chrono::DateTime::from_timestamp(86400, 0),
        };
        let rotation =
            dbwarden_plugin::statement::render(&[DEFAULT_ROTATION.into()], &vars).unwrap();
        assert_eq!(
            rotation[0].as_str(),
            r#"ALTER ROLE "v-u" WITH PASSWORD 'Pw-1'"#
        );
        let renew = dbwarden_plugin::statement::render(&[DEFAULT_RENEW.into()], &vars).unwrap();
        assert_eq!(
            renew[0].as_str(),
            r#"ALTER ROLE "v-u" VALID UNTIL '1970-01-02 00:00:00+0000'"#
        );
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
