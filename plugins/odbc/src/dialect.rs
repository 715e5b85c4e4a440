//! The SQL personalities of the ODBC backend: quoting, username rules, default statements,
//! session termination and error classification.
//!
//! Everything here is pure (no I/O): the backend runs what these functions render, the unit
//! tests below check hostile input, and `tests/golden.rs` compares the Dameng renders with
//! `testdata/dialects/dameng/`.
//!
//! | Dialect | Selected by | Quoting | Username limit | Default revocation |
//! |---|---|---|---|---|
//! | generic | `odbc-database-plugin` without `dialect` | `"ident"`, `'literal'` | 128 characters | none: the role must have revocation statements |
//! | postgresql | `odbc-database-plugin`, `dialect = "postgresql"` | `"ident"`, `'literal'` | 63 bytes | `NOLOGIN`, `pg_terminate_backend`, `REASSIGN OWNED`, `DROP OWNED`, `DROP ROLE IF EXISTS` |
//! | mysql | `odbc-database-plugin`, `dialect = "mysql"` | `` `ident` ``, `'literal'` (`\` escaped) | 32 characters | `ACCOUNT LOCK`, `KILL CONNECTION`, `REVOKE ALL`, `DROP USER IF EXISTS`, for every host |
//! | dameng | `dameng-database-plugin` (or `dialect = "dameng"`) | `"IDENT"`, `'literal'` | 128 bytes, a letter then `[A-Za-z0-9_$#]` | `ACCOUNT LOCK`, `SP_CLOSE_SESSION` for each `V$SESSIONS` row, `DROP USER ... CASCADE` |

use dbwarden_plugin::complexity::{CharClass, PasswordRules};
use dbwarden_plugin::details::{self, LengthUnit};
use dbwarden_plugin::{BackendError, Quoting, SqlBuilder, SqlText};
use serde_json::{Map, Value};

/// The generic ODBC plugin name; the dialect comes from the `dialect` connection detail.
pub const ODBC_PLUGIN: &str = "odbc-database-plugin";

/// Dameng DM8 through Dameng's own ODBC driver (`libdodbc.so`).
pub const DAMENG_PLUGIN: &str = "dameng-database-plugin";

/// A SQL personality of the ODBC backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Any database: the DBA supplies every statement (rotation and revocation included).
    Generic,
    /// PostgreSQL through psqlODBC.
    Postgres,
    /// MySQL and MariaDB through MariaDB Connector/ODBC or MySQL Connector/ODBC.
    Mysql,
    /// Dameng DM8 through `libdodbc.so`. Not run against a DM server here: golden SQL only.
    Dameng,
}

/// Vault's password policy syntax for [`Dialect::Dameng`]: 20 characters with at least one
/// lower-case letter, upper-case letter, digit and punctuation character from `#%^`.
///
/// Satisfies DM's strictest documented `PWD_POLICY` (31: not the user name, at least
/// `PWD_MIN_LEN` = 9 characters, an upper-case letter, a digit and a punctuation character)
/// and its 48-byte maximum. `@` is left out because `disql user/password@host` splits on it.
pub const DAMENG_PASSWORD_POLICY: &str = r##"length = 20
rule "charset" {
  charset = "abcdefghijklmnopqrstuvwxyz"
  min-chars = 1
}
rule "charset" {
  charset = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
  min-chars = 1
}
rule "charset" {
  charset = "0123456789"
  min-chars = 1
}
rule "charset" {
  charset = "#%^"
  min-chars = 1
}
"##;

/// DM's strictest documented complexity rule, `PWD_POLICY` = 31 (DM7 documentation; the same
/// for DM8 is unverified): 9 to 48 characters with an upper-case letter, a digit and a
/// punctuation character (the policy above adds a lower-case letter).
pub const DAMENG_RULES: PasswordRules = PasswordRules {
    source: "DM PWD_POLICY = 31, PWD_MIN_LEN = 9, 48-byte maximum",
    min_len: DAMENG_MIN_PASSWORD_LEN,
    max_len: DAMENG_MAX_PASSWORD_BYTES,
    required: &[CharClass::Upper, CharClass::Digit, CharClass::Special],
    min_classes: 3,
    specials: None,
};

/// The punctuation characters [`DAMENG_PASSWORD_POLICY`] draws from.
pub const DAMENG_PASSWORD_PUNCTUATION: &str = "#%^";

/// The longest DM password, in bytes (DM7 documentation; assumed for DM8).
pub const DAMENG_MAX_PASSWORD_BYTES: usize = 48;

/// The shortest DM password under the default `PWD_MIN_LEN`.
pub const DAMENG_MIN_PASSWORD_LEN: usize = 9;

impl Dialect {
    /// Every dialect, for tests and documentation.
    pub const ALL: [Dialect; 4] = [
        Dialect::Generic,
        Dialect::Postgres,
        Dialect::Mysql,
        Dialect::Dameng,
    ];

    /// Selects the dialect from the `plugin_name` and the optional `dialect` detail.
    pub fn select(plugin_name: &str, details: &Map<String, Value>) -> Result<Self, BackendError> {
        let named = details::string(details, "dialect")?
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty());
        match plugin_name {
            DAMENG_PLUGIN => match named.as_deref() {
                None | Some("dameng" | "dm" | "dm8") => Ok(Dialect::Dameng),
                Some(other) => Err(BackendError::InvalidConfig(format!(
                    "{DAMENG_PLUGIN} always uses the dameng dialect; remove dialect = {other:?} \
                     or use {ODBC_PLUGIN}"
                ))),
            },
            ODBC_PLUGIN => match named.as_deref() {
                None | Some("generic") => Ok(Dialect::Generic),
                Some("postgresql" | "postgres") => Ok(Dialect::Postgres),
                Some("mysql" | "mariadb") => Ok(Dialect::Mysql),
                Some("dameng" | "dm" | "dm8") => Ok(Dialect::Dameng),
                Some(other) => Err(BackendError::InvalidConfig(format!(
                    "unknown dialect {other:?}; expected postgresql, mysql, dameng or generic"
                ))),
            },
            other => Err(BackendError::InvalidConfig(format!(
                "plugin {other:?} is not served by the ODBC backend"
            ))),
        }
    }

    /// The dialect's name as the `dialect` detail spells it.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Generic => "generic",
            Dialect::Postgres => "postgresql",
            Dialect::Mysql => "mysql",
            Dialect::Dameng => "dameng",
        }
    }

    /// What `type_name` reports (Vault's `Type()`).
    pub fn type_name(self) -> &'static str {
        match self {
            Dialect::Dameng => "dameng",
            _ => "odbc",
        }
    }

    /// How identifiers and literals are quoted.
    pub fn quoting(self) -> Quoting {
        match self {
            Dialect::Mysql => Quoting::MySql,
            Dialect::Generic | Dialect::Postgres | Dialect::Dameng => Quoting::Ansi,
        }
    }

    /// The default username template.
    pub fn default_username_template(self) -> &'static str {
        match self {
            Dialect::Generic | Dialect::Postgres => {
                r#"{{ printf "v-%s-%s-%s-%s" (.DisplayName | truncate 8) (.RoleName | truncate 8) (random 20) (unix_time) | truncate 63 }}"#
            }
            Dialect::Mysql => {
                r#"{{ printf "v-%s-%s-%s-%s" (.DisplayName | truncate 10) (.RoleName | truncate 10) (random 20) (unix_time) | truncate 32 }}"#
            }
            // Upper case and `_` only: DM folds unquoted names to upper case, so the name is the
            // same whether a DBA's statement quotes it or not.
            Dialect::Dameng => {
                r#"{{ printf "V_%s_%s_%s_%s" (.DisplayName | truncate 8) (.RoleName | truncate 8) (random 20) (unix_time) | replace "-" "_" | replace "." "_" | uppercase | truncate 128 }}"#
            }
        }
    }

    /// The longest user name and how it is measured.
    pub fn max_username(self) -> (usize, LengthUnit) {
        match self {
            Dialect::Generic => (128, LengthUnit::Chars),
            Dialect::Postgres => (63, LengthUnit::Bytes),
            Dialect::Mysql => (32, LengthUnit::Chars),
            Dialect::Dameng => (128, LengthUnit::Bytes),
        }
    }

    /// How error messages name the limit.
    pub fn username_limit_name(self) -> &'static str {
        match self {
            Dialect::Generic => "the SQL standard's identifier length",
            Dialect::Postgres => "PostgreSQL's NAMEDATALEN-1",
            Dialect::Mysql => "MySQL's user name column",
            Dialect::Dameng => "DM's identifier length",
        }
    }

    /// Dialect rules on the alphabet of a user name, beyond the length limit and the
    /// statement-safety rule every dialect applies.
    pub fn check_username(self, name: &str) -> Result<(), BackendError> {
        if self != Dialect::Dameng {
            return Ok(());
        }
        let mut chars = name.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '#'));
        if first_ok && rest_ok {
            Ok(())
        } else {
            Err(BackendError::InvalidRequest(format!(
                "the user name {name:?} does not follow DM's rule (a letter, then letters, digits, \
                 _, $ or #); adjust username_template (for example with `| replace \"-\" \"_\"`)"
            )))
        }
    }

    /// The password policy (Vault's HCL syntax) that satisfies the database's own complexity
    /// rules, when its defaults reject Vault's default policy.
    pub fn default_password_policy(self) -> Option<&'static str> {
        match self {
            Dialect::Dameng => Some(DAMENG_PASSWORD_POLICY),
            _ => None,
        }
    }

    /// The database's own password complexity rule, where it enforces one by default.
    pub fn password_rules(self) -> Option<PasswordRules> {
        match self {
            Dialect::Dameng => Some(DAMENG_RULES),
            _ => None,
        }
    }

    /// Creation statements to start a role from (documentation and golden SQL; roles must
    /// still carry their own creation statements, as in Vault).
    pub fn suggested_creation(self) -> Option<&'static str> {
        match self {
            Dialect::Generic => None,
            Dialect::Postgres => Some(
                r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"#,
            ),
            Dialect::Mysql => Some("CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}';"),
            Dialect::Dameng => Some(
                r#"CREATE USER "{{name}}" IDENTIFIED BY "{{password}}" DEFAULT TABLESPACE MAIN;"#,
            ),
        }
    }

    /// The rotation statement used when a static role or root rotation has none.
    pub fn default_rotation(self) -> Option<&'static str> {
        match self {
            Dialect::Generic => None,
            Dialect::Postgres => Some(r#"ALTER ROLE "{{username}}" WITH PASSWORD '{{password}}';"#),
            Dialect::Mysql => Some("ALTER USER '{{username}}'@'%' IDENTIFIED BY '{{password}}';"),
            // DM wants passwords with punctuation double-quoted.
            Dialect::Dameng => Some(r#"ALTER USER "{{username}}" IDENTIFIED BY "{{password}}";"#),
        }
    }

    /// The renew statement used when a role has none (`None`: renewal changes nothing in the
    /// database, as in Vault's MySQL plugin).
    pub fn default_renew(self) -> Option<&'static str> {
        match self {
            Dialect::Postgres => Some(r#"ALTER ROLE "{{name}}" VALID UNTIL '{{expiration}}';"#),
            // DM's ALLOW_DATETIME login window is unverified here; revocation is what ends access.
            Dialect::Generic | Dialect::Mysql | Dialect::Dameng => None,
        }
    }

    /// Whether DDL runs inside a transaction (a failed creation is rolled back). Where it does
    /// not, the backend refuses names that exist already and drops what a failed creation left.
    pub fn transactional_ddl(self) -> bool {
        match self {
            Dialect::Generic | Dialect::Postgres => true,
            // MySQL commits DDL implicitly; DM's DDL_AUTO_COMMIT defaults to 1.
            Dialect::Mysql | Dialect::Dameng => false,
        }
    }

    /// The connection check.
    pub fn ping(self) -> SqlText {
        match self {
            Dialect::Dameng => SqlText::from_static("SELECT 1 FROM DUAL"),
            _ => SqlText::from_static("SELECT 1"),
        }
    }

    /// A query returning one row per account of `user` (no row: the user does not exist), or
    /// `None` when the dialect has no catalog query (generic).
    ///
    /// Columns: PostgreSQL `oid, 'y'|'n'` (whether the admin has the role's privileges);
    /// MySQL `user, host`; DM `username`.
    pub fn find_user(self, user: &str) -> Option<SqlText> {
        let q = SqlBuilder::new(self.quoting());
        Some(match self {
            Dialect::Generic => return None,
            Dialect::Postgres => q
                .push(
                    "SELECT oid::text, CASE WHEN pg_catalog.pg_has_role(current_user, oid, 'USAGE') \
                     THEN 'y' ELSE 'n' END FROM pg_catalog.pg_roles WHERE rolname = ",
                )
                .literal(user)
                .finish(),
            Dialect::Mysql => q
                .push("SELECT User, Host FROM mysql.user WHERE User = ")
                .literal(user)
                .finish(),
            Dialect::Dameng => q
                .push("SELECT USERNAME FROM DBA_USERS WHERE USERNAME = ")
                .literal(user)
                .finish(),
        })
    }

    /// Statements that refuse new logins at once, for one account (`host` is MySQL's).
    pub fn lock(self, user: &str, host: &str) -> Vec<SqlText> {
        let q = SqlBuilder::new(self.quoting());
        match self {
            Dialect::Generic => Vec::new(),
            Dialect::Postgres => vec![q.push("ALTER ROLE ").ident(user).push(" NOLOGIN").finish()],
            Dialect::Mysql => vec![
                q.push("ALTER USER ")
                    .literal(user)
                    .push("@")
                    .literal(host)
                    .push(" ACCOUNT LOCK")
                    .finish(),
            ],
            Dialect::Dameng => vec![
                q.push("ALTER USER ")
                    .ident(user)
                    .push(" ACCOUNT LOCK")
                    .finish(),
            ],
        }
    }

    /// PostgreSQL: `GRANT "u" TO CURRENT_USER`, which a CREATEROLE (non-superuser) admin needs
    /// before `pg_terminate_backend`, `REASSIGN OWNED` and `DROP OWNED`.
    pub fn grant_role_to_admin(self, user: &str) -> Option<SqlText> {
        (self == Dialect::Postgres).then(|| {
            SqlBuilder::new(Quoting::Ansi)
                .push("GRANT ")
                .ident(user)
                .push(" TO CURRENT_USER")
                .finish()
        })
    }

    /// A query listing the session ids of `user` (other than the admin's own session).
    ///
    /// PostgreSQL terminates in the query itself and returns the count.
    pub fn list_sessions(self, user: &str) -> Option<SqlText> {
        let q = SqlBuilder::new(self.quoting());
        Some(match self {
            Dialect::Generic => return None,
            Dialect::Postgres => q
                .push(
                    "SELECT count(pg_catalog.pg_terminate_backend(pid))::text FROM \
                     pg_catalog.pg_stat_activity WHERE usename = ",
                )
                .literal(user)
                .push(" AND pid <> pg_catalog.pg_backend_pid()")
                .finish(),
            Dialect::Mysql => q
                .push("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ")
                .literal(user)
                .push(" AND ID <> CONNECTION_ID()")
                .finish(),
            Dialect::Dameng => q
                .push("SELECT SESS_ID FROM V$SESSIONS WHERE USER_NAME = ")
                .literal(user)
                .finish(),
        })
    }

    /// PostgreSQL: terminates the sessions of a role by oid (works after the role is dropped).
    pub fn terminate_by_oid(self, oid: i64) -> Option<SqlText> {
        (self == Dialect::Postgres).then(|| {
            SqlBuilder::new(Quoting::Ansi)
                .push(
                    "SELECT count(pg_catalog.pg_terminate_backend(pid))::text FROM \
                     pg_catalog.pg_stat_activity WHERE usesysid = ",
                )
                .integer(oid)
                .push(" AND pid <> pg_catalog.pg_backend_pid()")
                .finish()
        })
    }

    /// Ends one session listed by [`Dialect::list_sessions`] (not used for PostgreSQL, whose
    /// listing terminates).
    pub fn kill_session(self, id: i64) -> Option<SqlText> {
        let q = SqlBuilder::new(self.quoting());
        match self {
            Dialect::Generic | Dialect::Postgres => None,
            Dialect::Mysql => Some(q.push("KILL CONNECTION ").integer(id).finish()),
            Dialect::Dameng => Some(
                q.push("CALL SP_CLOSE_SESSION(")
                    .integer(id)
                    .push(")")
                    .finish(),
            ),
        }
    }

    /// The statements of the default revocation that remove the account once it is locked and
    /// its sessions are gone (PostgreSQL runs them in one transaction).
    pub fn drop_user(self, user: &str, host: &str) -> Vec<SqlText> {
        let q = || SqlBuilder::new(self.quoting());
        match self {
            Dialect::Generic => Vec::new(),
            Dialect::Postgres => vec![
                q().push("REASSIGN OWNED BY ")
                    .ident(user)
                    .push(" TO CURRENT_USER")
                    .finish(),
                q().push("DROP OWNED BY ").ident(user).finish(),
                q().push("DROP ROLE IF EXISTS ").ident(user).finish(),
            ],
            Dialect::Mysql => vec![
                q().push("REVOKE ALL PRIVILEGES, GRANT OPTION FROM ")
                    .literal(user)
                    .push("@")
                    .literal(host)
                    .finish(),
                q().push("DROP USER IF EXISTS ")
                    .literal(user)
                    .push("@")
                    .literal(host)
                    .finish(),
            ],
            // Each DM user owns a same-name schema; CASCADE drops its objects with it.
            Dialect::Dameng => vec![q().push("DROP USER ").ident(user).push(" CASCADE").finish()],
        }
    }

    /// Whether a failed statement is worth retrying the whole batch for.
    ///
    /// SQLSTATE 40001 (serialization failure), 40P01 (deadlock), HYT00/HYT01 (timeouts) for
    /// every dialect; PostgreSQL's "tuple concurrently updated" (concurrent GRANTs); MySQL's
    /// 1213 (deadlock) and 1205 (lock wait timeout). DM's own codes for these are not verified
    /// here, so DM relies on the SQLSTATE only.
    pub fn is_transient(self, state: &str, native: i32, message: &str) -> bool {
        if matches!(state, "40001" | "40P01" | "HYT00" | "HYT01") || is_connection_lost(state) {
            return true;
        }
        match self {
            Dialect::Postgres => message.contains("tuple concurrently updated"),
            Dialect::Mysql => matches!(native, 1213 | 1205),
            Dialect::Generic | Dialect::Dameng => false,
        }
    }

    /// Whether a failed `KILL` means the session had ended already (MySQL 1094).
    pub fn is_no_such_session(self, native: i32) -> bool {
        self == Dialect::Mysql && native == 1094
    }
}

/// SQLSTATE class 08: the connection is gone (the statement may be retried on a new one).
pub fn is_connection_lost(state: &str) -> bool {
    state.starts_with("08")
}

#[cfg(test)]
mod tests {
    use super::*;
    use dbwarden_plugin::statement::{StatementVars, render};
    use serde_json::json;

    fn details(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn selection() {
        let none = Map::new();
        assert_eq!(
            Dialect::select(DAMENG_PLUGIN, &none).unwrap(),
            Dialect::Dameng
        );
        assert_eq!(
            Dialect::select(ODBC_PLUGIN, &none).unwrap(),
            Dialect::Generic
        );
        for (name, want) in [
            ("postgresql", Dialect::Postgres),
            (" MariaDB ", Dialect::Mysql),
            ("dm8", Dialect::Dameng),
            ("", Dialect::Generic),
        ] {
            assert_eq!(
                Dialect::select(ODBC_PLUGIN, &details(json!({ "dialect": name }))).unwrap(),
                want
            );
        }
        for (plugin, d) in [
            (ODBC_PLUGIN, json!({"dialect": "oracle"})),
            (DAMENG_PLUGIN, json!({"dialect": "mysql"})),
            ("postgresql-database-plugin", json!({})),
        ] {
            assert!(matches!(
                Dialect::select(plugin, &details(d)),
                Err(BackendError::InvalidConfig(_))
            ));
        }
    }

    #[test]
    fn quoting_of_hostile_names() {
        let name = "x\"'\\%`;";
        assert_eq!(
            Dialect::Dameng.lock(name, "")[0].as_str(),
            r#"ALTER USER "x""'\%`;" ACCOUNT LOCK"#
        );
        assert_eq!(
            Dialect::Dameng.find_user(name).unwrap().as_str(),
            r#"SELECT USERNAME FROM DBA_USERS WHERE USERNAME = 'x"''\%`;'"#
        );
        assert_eq!(
            Dialect::Mysql.lock(name, "%")[0].as_str(),
            r#"ALTER USER 'x"''\\%`;'@'%' ACCOUNT LOCK"#
        );
        assert_eq!(
            Dialect::Postgres.drop_user(name, "")[2].as_str(),
            r#"DROP ROLE IF EXISTS "x""'\%`;""#
        );
        assert_eq!(
            Dialect::Dameng.kill_session(42).unwrap().as_str(),
            "CALL SP_CLOSE_SESSION(42)"
        );
        assert_eq!(
            Dialect::Mysql.kill_session(7).unwrap().as_str(),
            "KILL CONNECTION 7"
        );
        assert!(Dialect::Postgres.kill_session(7).is_none());
    }

    #[test]
    fn default_statements_render() {
        let vars = StatementVars {
            username: Some("V_APP_1"),
            password: Some("Pw#2024abcdef"),
            expiration: chrono::DateTime::from_timestamp(0, 0),
        };
        let rot = render(&[Dialect::Dameng.default_rotation().unwrap().into()], &vars).unwrap();
        assert_eq!(
            rot[0].as_str(),
            r#"ALTER USER "V_APP_1" IDENTIFIED BY "Pw#2024abcdef""#
        );
        assert!(Dialect::Generic.default_rotation().is_none());
        assert!(Dialect::Dameng.default_renew().is_none());
    }

    #[test]
    fn dameng_username_alphabet() {
        for ok in ["V_APP_1", "a", "A$B#C_9"] {
            Dialect::Dameng.check_username(ok).unwrap();
        }
        for bad in ["1ABC", "_A", "A-B", "A B", "用户", "A'B", ""] {
            assert!(
                Dialect::Dameng.check_username(bad).is_err(),
                "{bad:?} accepted"
            );
        }
        Dialect::Postgres.check_username("v-a-b").unwrap();
    }

    #[test]
    fn default_templates_fit_their_limits() {
        use dbwarden_plugin::UsernameMetadata;
        use dbwarden_plugin::details::UsernameRules;
        for dialect in Dialect::ALL {
            let (limit, unit) = dialect.max_username();
            let rules = UsernameRules::from_details(
                &Map::new(),
                dialect.default_username_template(),
                limit,
                unit,
                dialect.username_limit_name(),
            )
            .unwrap();
            let name = rules
                .generate(&UsernameMetadata {
                    display_name: "kubernetes-ns.sa-with-a-long-name".into(),
                    role_name: "read-only-role".into(),
                })
                .unwrap();
            dialect.check_username(&name).unwrap();
        }
    }

    #[test]
    fn transient_classification() {
        for d in Dialect::ALL {
            assert!(d.is_transient("40001", 0, ""));
            assert!(d.is_transient("08S01", 0, ""));
            assert!(!d.is_transient("42000", 0, "syntax error"));
        }
        assert!(Dialect::Postgres.is_transient("XX000", 7, "ERROR: tuple concurrently updated"));
        assert!(Dialect::Mysql.is_transient("HY000", 1213, "Deadlock found"));
        assert!(!Dialect::Dameng.is_transient("HY000", 1213, "x"));
    }
}
