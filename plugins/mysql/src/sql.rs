//! The SQL this backend writes itself, and how it reads MySQL's errors.
//!
//! Account names go into DDL as quoted literals built by [`SqlBuilder`] (MySQL refuses bind
//! parameters in `ALTER USER`/`DROP USER`, and so does OceanBase \[V\]); queries use bind
//! parameters. Everything here is pure; the golden SQL under `testdata/dialects/` is rendered
//! by these functions, and the backend runs exactly what they return.

use dbwarden_plugin::{Quoting, SqlBuilder, SqlText};

use crate::Dialect;
use crate::dialect::DropForm;

/// Every account with a user name, whatever its host.
pub const FIND_ACCOUNTS: &str = "SELECT user, host FROM mysql.user WHERE user = ?";

/// `SELECT 1`, the connection check.
pub const PING: &str = "SELECT 1";

/// Unknown thread id: the session ended on its own.
pub const ER_NO_SUCH_THREAD: u16 = 1094;

/// `DROP USER` of an account that does not exist (or `CREATE USER` of one that does).
pub const ER_CANNOT_USER: u16 = 1396;

/// How a session is ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillForm {
    /// `KILL CONNECTION <id>` (MySQL, MariaDB, OceanBase, and TiDB ≥ 6.1).
    Connection,
    /// `KILL TIDB <id>`: TiDB's own form, accepted by every TiDB version.
    Tidb,
}

/// Where a dialect lists a user's sessions, and how it ends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCatalog {
    /// Returns the session ids of a user name (`?`). Needs the PROCESS privilege.
    pub find: &'static str,
    /// How each id is killed.
    pub kill: KillForm,
}

/// `information_schema.processlist`: the sessions of the server the admin is connected to.
pub const INFORMATION_SCHEMA: SessionCatalog = SessionCatalog {
    find: "SELECT id FROM information_schema.processlist WHERE user = ?",
    kill: KillForm::Connection,
};

/// OceanBase's cluster-wide session view (every OBServer of the tenant). seekdb, a single
/// node, does not have it \[V\]; the dialect then uses `information_schema.processlist`.
pub const OCEANBASE_CLUSTER: SessionCatalog = SessionCatalog {
    find: "SELECT id FROM oceanbase.GV$OB_PROCESSLIST WHERE user = ?",
    kill: KillForm::Connection,
};

/// TiDB's cluster-wide session view (TiDB ≥ 4.0) and its own `KILL TIDB`, which before 6.1
/// only reaches sessions on the TiDB node the admin is connected to (docs.pingcap.com, KILL).
pub const TIDB_CLUSTER: SessionCatalog = SessionCatalog {
    find: "SELECT id FROM INFORMATION_SCHEMA.CLUSTER_PROCESSLIST WHERE user = ?",
    kill: KillForm::Tidb,
};

/// Whether an error means "this server has no such session view" (try the next one):
/// 1146 no such table, 1109 unknown information_schema table, 1049 unknown database,
/// 1142 no access to that view.
pub fn is_missing_view(code: u16) -> bool {
    matches!(code, 1146 | 1109 | 1049 | 1142)
}

/// `KILL CONNECTION <id>` or `KILL TIDB <id>`. Ids come from the server as unsigned 64-bit
/// numbers; one that does not fit a signed one cannot be a real session id.
pub fn kill_session(form: KillForm, id: u64) -> Option<SqlText> {
    let id = i64::try_from(id).ok()?;
    let keywords = match form {
        KillForm::Connection => "KILL CONNECTION ",
        KillForm::Tidb => "KILL TIDB ",
    };
    Some(
        SqlBuilder::new(Quoting::MySql)
            .push(keywords)
            .integer(id)
            .finish(),
    )
}

fn account(builder: SqlBuilder, user: &str, host: &str) -> SqlBuilder {
    builder.literal(user).push("@").literal(host)
}

/// `ALTER USER 'u'@'h' ACCOUNT LOCK` (MySQL 5.7.6+, MariaDB 10.4+, OceanBase, TiDB): refuses
/// new logins at once.
pub fn lock_account(user: &str, host: &str) -> SqlText {
    account(
        SqlBuilder::new(Quoting::MySql).push("ALTER USER "),
        user,
        host,
    )
    .push(" ACCOUNT LOCK")
    .finish()
}

/// `REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'u'@'h'`.
pub fn revoke_all(user: &str, host: &str) -> SqlText {
    account(
        SqlBuilder::new(Quoting::MySql).push("REVOKE ALL PRIVILEGES, GRANT OPTION FROM "),
        user,
        host,
    )
    .finish()
}

/// `DROP USER IF EXISTS 'u'@'h'`, or `DROP USER 'u'@'h'` where the dialect lacks `IF EXISTS`
/// (neither ends live sessions: they are killed separately).
pub fn drop_user(dialect: Dialect, user: &str, host: &str) -> SqlText {
    let keywords = match dialect.drop_form() {
        DropForm::IfExists => "DROP USER IF EXISTS ",
        DropForm::Plain => "DROP USER ",
    };
    account(SqlBuilder::new(Quoting::MySql).push(keywords), user, host).finish()
}

/// The statements of dbwarden's default revocation for the accounts of one user name.
#[derive(Debug)]
pub struct Revocation {
    /// `ACCOUNT LOCK` for each account, run first (failures are logged, not fatal: old
    /// servers lack it and `DROP USER` cuts access anyway); empty where the dialect has none.
    pub lock: Vec<SqlText>,
    /// For each account: `REVOKE ALL` (failure logged) and the drop (failure is the error).
    pub remove: Vec<(SqlText, SqlText)>,
}

/// dbwarden's default revocation of the accounts `(user, host)`; the backend ends the name's
/// sessions after the lock and again after the drop.
pub fn default_revocation(dialect: Dialect, accounts: &[(String, String)]) -> Revocation {
    Revocation {
        lock: if dialect.locks_accounts() {
            accounts.iter().map(|(u, h)| lock_account(u, h)).collect()
        } else {
            Vec::new()
        },
        remove: accounts
            .iter()
            .map(|(u, h)| (revoke_all(u, h), drop_user(dialect, u, h)))
            .collect(),
    }
}

/// Whether a server error code is worth retrying the batch for: 1213 deadlock, 1205 lock wait
/// timeout, and the dialect's own ([`Dialect::transient_codes`]).
pub fn is_transient_code(dialect: Dialect, code: u16) -> bool {
    matches!(code, 1213 | 1205) || dialect.transient_codes().contains(&code)
}

/// Classifies a driver error.
pub(crate) fn is_transient(dialect: Dialect, err: &mysql_async::Error) -> bool {
    matches!(err, mysql_async::Error::Server(e) if is_transient_code(dialect, e.code))
}

/// The server error code, if the server answered.
pub(crate) fn code(err: &mysql_async::Error) -> Option<u16> {
    match err {
        mysql_async::Error::Server(e) => Some(e.code),
        _ => None,
    }
}

/// The server's message with its code and the dialect's hint, or the driver's description.
/// Not redacted.
pub(crate) fn describe(dialect: Dialect, err: &mysql_async::Error) -> String {
    match err {
        mysql_async::Error::Server(e) => {
            let mut out = format!("{} (error {}, SQLSTATE {})", e.message, e.code, e.state);
            if let Some(hint) = dialect.error_hint(e.code) {
                out.push_str("; hint: ");
                out.push_str(hint);
            }
            out
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
            drop_user(Dialect::Mysql, "a'b\\", "h'; DROP DATABASE x; --").as_str(),
            "DROP USER IF EXISTS 'a''b\\\\'@'h''; DROP DATABASE x; --'"
        );
        assert_eq!(
            drop_user(Dialect::PolarDbX, "vabc", "%").as_str(),
            "DROP USER 'vabc'@'%'"
        );
        assert_eq!(
            revoke_all("u", "10.%").as_str(),
            "REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'u'@'10.%'"
        );
    }

    #[test]
    fn kill_forms() {
        assert_eq!(
            kill_session(KillForm::Connection, 7).unwrap().as_str(),
            "KILL CONNECTION 7"
        );
        assert_eq!(
            kill_session(KillForm::Tidb, 8306449708033769879)
                .unwrap()
                .as_str(),
            "KILL TIDB 8306449708033769879"
        );
        assert!(kill_session(KillForm::Tidb, u64::MAX).is_none());
    }

    #[test]
    fn revocation_plans() {
        let accounts = vec![
            ("u".to_owned(), "%".to_owned()),
            ("u".to_owned(), "h".to_owned()),
        ];
        let plan = default_revocation(Dialect::OceanBase, &accounts);
        assert_eq!(plan.lock.len(), 2);
        assert_eq!(plan.remove.len(), 2);
        let plan = default_revocation(Dialect::PolarDbX, &accounts);
        assert!(plan.lock.is_empty());
        assert_eq!(plan.remove[1].1.as_str(), "DROP USER 'u'@'h'");
    }

    #[test]
    fn default_rotation_matches_vault() {
        let vars = dbwarden_plugin::statement::StatementVars {
            username: Some("v-u"),
            password: Some("Pw-1"),
            expiration: None,
        };
        let render = |t: &str| {
            dbwarden_plugin::statement::render(&[t.to_owned()], &vars).unwrap()[0]
                .as_str()
                .to_owned()
        };
        assert_eq!(
            render(Dialect::Mysql.default_rotation()),
            "ALTER USER 'v-u'@'%' IDENTIFIED BY 'Pw-1'"
        );
        assert_eq!(
            render(Dialect::PolarDbX.default_rotation()),
            "SET PASSWORD FOR 'v-u'@'%' = PASSWORD('Pw-1')"
        );
    }

    #[test]
    fn transient_classification() {
        assert!(is_transient_code(Dialect::Mysql, 1213));
        assert!(is_transient_code(Dialect::Mysql, 1205));
        assert!(!is_transient_code(Dialect::Mysql, 1064));
        assert!(!is_transient_code(Dialect::Mysql, 1396));
        assert!(!is_transient_code(Dialect::Mysql, 6002));
        assert!(is_transient_code(Dialect::OceanBase, 6002));
        assert!(is_transient_code(Dialect::Tidb, 9007));
        assert!(!is_transient_code(Dialect::OceanBase, 9007));
    }

    #[test]
    fn missing_views() {
        for code in [1146, 1109, 1049, 1142] {
            assert!(is_missing_view(code));
        }
        assert!(!is_missing_view(1064));
    }
}
