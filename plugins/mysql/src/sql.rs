//! The SQL this backend writes itself, and how it reads MySQL's errors.
//!
//! Account names go into DDL as quoted literals built by [`SqlBuilder`] (MySQL refuses bind
//! parameters in `ALTER USER`/`DROP USER`); queries use bind parameters.

use dbwarden_plugin::{Quoting, SqlBuilder, SqlText};

/// Vault's default rotation statement (static roles, root rotation). Renewal has no default.
pub(crate) const DEFAULT_ROTATION: &str =
    "ALTER USER '{{username}}'@'%' IDENTIFIED BY '{{password}}';";

/// Every account with a user name, whatever its host.
pub(crate) const FIND_ACCOUNTS: &str = "SELECT user, host FROM mysql.user WHERE user = ?";

/// The sessions of a user name (needs the PROCESS privilege to see other users' sessions).
pub(crate) const FIND_SESSIONS: &str =
    "SELECT id FROM information_schema.processlist WHERE user = ?";

/// Ends one session (KILL is allowed in prepared statements on MySQL and MariaDB).
pub(crate) const KILL: &str = "KILL CONNECTION ?";

/// `SELECT 1`, the connection check.
pub(crate) const PING: &str = "SELECT 1";

/// Unknown thread id: the session ended on its own.
pub(crate) const ER_NO_SUCH_THREAD: u16 = 1094;

fn account(builder: SqlBuilder, user: &str, host: &str) -> SqlBuilder {
    builder.literal(user).push("@").literal(host)
}

/// `ALTER USER 'u'@'h' ACCOUNT LOCK` (MySQL 5.7.6+, MariaDB 10.4+): refuses new logins at once.
pub(crate) fn lock_account(user: &str, host: &str) -> SqlText {
    account(
        SqlBuilder::new(Quoting::MySql).push("ALTER USER "),
        user,
        host,
    )
    .push(" ACCOUNT LOCK")
    .finish()
}

/// `REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'u'@'h'`.
pub(crate) fn revoke_all(user: &str, host: &str) -> SqlText {
    account(
        SqlBuilder::new(Quoting::MySql).push("REVOKE ALL PRIVILEGES, GRANT OPTION FROM "),
        user,
        host,
    )
    .finish()
}

/// `DROP USER IF EXISTS 'u'@'h'` (does not end live sessions: they are killed separately).
pub(crate) fn drop_user(user: &str, host: &str) -> SqlText {
    account(
        SqlBuilder::new(Quoting::MySql).push("DROP USER IF EXISTS "),
        user,
        host,
    )
    .finish()
}

/// Whether a server error code is worth retrying the batch for: 1213 deadlock, 1205 lock wait
/// timeout.
pub(crate) fn is_transient_code(code: u16) -> bool {
    matches!(code, 1213 | 1205)
}

/// Classifies a driver error.
pub(crate) fn is_transient(err: &mysql_async::Error) -> bool {
    matches!(err, mysql_async::Error::Server(e) if is_transient_code(e.code))
}

/// The server error code, if the server answered.
pub(crate) fn code(err: &mysql_async::Error) -> Option<u16> {
    match err {
        mysql_async::Error::Server(e) => Some(e.code),
        _ => None,
    }
}

/// The server's message with its code, or the driver's description. Not redacted.
pub(crate) fn describe(err: &mysql_async::Error) -> String {
    match err {
        mysql_async::Error::Server(e) => {
            format!("{} (error {}, SQLSTATE {})", e.message, e.code, e.state)
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_quote_hostile_names() {
        assert_eq!(
            lock_account("v-u", "%").as_str(),
            "ALTER USER 'v-u'@'%' ACCOUNT LOCK"
        );
        assert_eq!(
            drop_user("a'b\\", "h'; DROP DATABASE x; --").as_str(),
            "DROP USER IF EXISTS 'a''b\\\\'@'h''; DROP DATABASE x; --'"
        );
        assert_eq!(
            revoke_all("u", "10.%").as_str(),
            "REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'u'@'10.%'"
        );
    }

    #[test]
    fn default_rotation_matches_vault() {
        let vars = dbwarden_plugin::statement::StatementVars {
            username: Some("v-u"),
            password: Some("Pw-1"),
            expiration: None,
        };
        let got = dbwarden_plugin::statement::render(&[DEFAULT_ROTATION.into()], &vars).unwrap();
        assert_eq!(got[0].as_str(), "ALTER USER 'v-u'@'%' IDENTIFIED BY 'Pw-1'");
    }

    #[test]
    fn transient_classification() {
        assert!(is_transient_code(1213));
        assert!(is_transient_code(1205));
        assert!(!is_transient_code(1064));
        assert!(!is_transient_code(1396));
    }
}
