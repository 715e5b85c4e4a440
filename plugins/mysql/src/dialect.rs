//! The SQL personalities of the MySQL wire family.
//!
//! Evidence marks follow `reference/dialects.md`: **\[V\]** ran here against a server, **\[D\]**
//! vendor documentation, **\[U\]** unverified (the conservative choice is taken and documented).
//!
//! | Dialect | `plugin_name`s | Name limit | Rotation default | Lock | Sessions (first the server has) | Drop |
//! |---|---|---|---|---|---|---|
//! | MySQL ≥ 5.7.8 | `mysql-database-plugin` | 32 characters (Vault's) | `ALTER USER ... IDENTIFIED BY` | `ACCOUNT LOCK` | `information_schema.processlist`, `KILL CONNECTION` | `DROP USER IF EXISTS` |
//! | MySQL < 5.7.8, RDS, Aurora | `mysql-legacy-database-plugin`, `mysql-rds-database-plugin`, `mysql-aurora-database-plugin` | 16 characters | as MySQL | as MySQL (failure tolerated) | as MySQL | as MySQL |
//! | MariaDB | `mariadb-database-plugin` | 80 characters (10.11 takes 128 \[V\]; 80 fits 5.5–10.5) | as MySQL | as MySQL (10.4+) | as MySQL | as MySQL |
//! | OceanBase, MySQL mode | `oceanbase-database-plugin` | 64 **bytes** [V, seekdb] | as MySQL \[V\] | as MySQL \[V\] | `oceanbase.GV$OB_PROCESSLIST` (cluster-wide \[U\]), then `information_schema.processlist` \[V\] | as MySQL \[V\] |
//! | TiDB ≥ 4.0 | `tidb-database-plugin` | 32 characters \[D\] | as MySQL \[D\] | as MySQL \[D\] | `INFORMATION_SCHEMA.CLUSTER_PROCESSLIST` + `KILL TIDB` \[D\], then `information_schema.processlist` + `KILL CONNECTION` | as MySQL \[D\] |
//! | PolarDB for MySQL | `polardb-mysql-database-plugin` | 32 characters | as MySQL | as MySQL | as MySQL | as MySQL |
//! | PolarDB-X 2.0 | `polardbx-database-plugin`, `polardb-x-database-plugin` | 4–20 letters and digits, a letter first \[D\] | `SET PASSWORD FOR ... = PASSWORD(...)` \[D\] | none (not in its SQL \[D\]) | as MySQL \[U\] | `DROP USER` \[D\] |
//! | GoldenDB | `goldendb-database-plugin` | 32 characters \[U\] | as MySQL \[U\] | as MySQL \[U\] | as MySQL \[U\] | as MySQL \[U\] |
//! | GBase 8a | `gbase8a-database-plugin` | 16 characters (MySQL 5.1 lineage \[U\]) | `SET PASSWORD` \[U\] | none \[U\] | as MySQL \[U\] | `DROP USER` \[U\] |
//! | TDSQL for MySQL | `tdsql-database-plugin`, `tdsql-mysql-database-plugin` | 32 characters \[U\] | as MySQL \[U\] | as MySQL \[U\] | as MySQL \[D\] | as MySQL \[U\] |
//!
//! Every dialect's account lookup reads `mysql.user` (\[V\] on MariaDB and seekdb; \[U\] on
//! PolarDB-X, GoldenDB, GBase 8a and TDSQL).

use dbwarden_plugin::complexity::{self, PasswordRules};
use dbwarden_plugin::details::{LengthUnit, NameAlphabet};

use crate::sql::{INFORMATION_SCHEMA, OCEANBASE_CLUSTER, SessionCatalog, TIDB_CLUSTER};

/// Vault's default username template for `mysql-database-plugin`.
const VAULT_TEMPLATE: &str = r#"{{ printf "v-%s-%s-%s-%s" (.DisplayName | truncate 10) (.RoleName | truncate 10) (random 20) (unix_time) | truncate 32 }}"#;

/// Vault's default username template for the legacy MySQL plugins.
const VAULT_LEGACY_TEMPLATE: &str =
    r#"{{ printf "v-%s-%s" (.RoleName | truncate 4) (random 20) | truncate 16 }}"#;

/// PolarDB-X takes letters and digits only, so its names carry no role or display name
/// (they may hold `-`, `_` or anything else): `v` and 19 random letters and digits.
const POLARDBX_TEMPLATE: &str = r#"{{ printf "v%s" (random 19) }}"#;

/// `ALTER USER` rotation (MySQL 5.7.6+ and most of the family).
const ALTER_USER_ROTATION: &str = "ALTER USER '{{username}}'@'%' IDENTIFIED BY '{{password}}';";

/// `SET PASSWORD` rotation, for servers without `ALTER USER ... IDENTIFIED BY`.
const SET_PASSWORD_ROTATION: &str =
    "SET PASSWORD FOR '{{username}}'@'%' = PASSWORD('{{password}}');";

/// A SQL personality inside the MySQL wire family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// MySQL ≥ 5.7.8 (and MariaDB through Vault's plugin name): 32-character user names.
    Mysql,
    /// Old MySQL, RDS and Aurora as Vault configures them: 16-character user names.
    Legacy,
    /// MariaDB under its own name: 80-character user names.
    MariaDb,
    /// OceanBase in MySQL mode (including seekdb).
    OceanBase,
    /// TiDB.
    Tidb,
    /// PolarDB for MySQL (Alibaba Cloud).
    PolarDbMysql,
    /// PolarDB-X 2.0 (Alibaba Cloud, distributed).
    PolarDbX,
    /// GoldenDB (ZTE), through its computing node.
    GoldenDb,
    /// GBase 8a (南大通用, MPP).
    Gbase8a,
    /// TDSQL for MySQL (Tencent).
    Tdsql,
}

/// How a dialect removes an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropForm {
    /// `DROP USER IF EXISTS 'u'@'h'`.
    IfExists,
    /// `DROP USER 'u'@'h'`, for servers without `IF EXISTS`; only accounts just found are
    /// dropped, and "no such account" (1396) counts as dropped.
    Plain,
}

impl Dialect {
    /// Every dialect, for tests and documentation.
    pub const ALL: [Dialect; 10] = [
        Dialect::Mysql,
        Dialect::Legacy,
        Dialect::MariaDb,
        Dialect::OceanBase,
        Dialect::Tidb,
        Dialect::PolarDbMysql,
        Dialect::PolarDbX,
        Dialect::GoldenDb,
        Dialect::Gbase8a,
        Dialect::Tdsql,
    ];

    /// Maps a `plugin_name` to its dialect.
    pub fn from_plugin_name(name: &str) -> Option<Self> {
        Dialect::ALL
            .into_iter()
            .find(|d| d.plugin_names().contains(&name))
    }

    /// The `plugin_name`s that select this dialect; the first is the canonical one.
    pub fn plugin_names(self) -> &'static [&'static str] {
        match self {
            Dialect::Mysql => &["mysql-database-plugin"],
            Dialect::Legacy => &[
                "mysql-legacy-database-plugin",
                "mysql-rds-database-plugin",
                "mysql-aurora-database-plugin",
            ],
            Dialect::MariaDb => &["mariadb-database-plugin"],
            Dialect::OceanBase => &["oceanbase-database-plugin"],
            Dialect::Tidb => &["tidb-database-plugin"],
            Dialect::PolarDbMysql => &["polardb-mysql-database-plugin"],
            Dialect::PolarDbX => &["polardbx-database-plugin", "polardb-x-database-plugin"],
            Dialect::GoldenDb => &["goldendb-database-plugin"],
            Dialect::Gbase8a => &["gbase8a-database-plugin"],
            Dialect::Tdsql => &["tdsql-database-plugin", "tdsql-mysql-database-plugin"],
        }
    }

    /// A short stable name (the directory of its golden SQL under `testdata/dialects/`).
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Mysql => "mysql",
            Dialect::Legacy => "mysql-legacy",
            Dialect::MariaDb => "mariadb",
            Dialect::OceanBase => "oceanbase",
            Dialect::Tidb => "tidb",
            Dialect::PolarDbMysql => "polardb-mysql",
            Dialect::PolarDbX => "polardb-x",
            Dialect::GoldenDb => "goldendb",
            Dialect::Gbase8a => "gbase8a",
            Dialect::Tdsql => "tdsql",
        }
    }

    /// The default username template.
    pub fn default_username_template(self) -> &'static str {
        match self {
            Dialect::Legacy | Dialect::Gbase8a => VAULT_LEGACY_TEMPLATE,
            Dialect::PolarDbX => POLARDBX_TEMPLATE,
            _ => VAULT_TEMPLATE,
        }
    }

    /// The longest user name, and whether it is counted in characters or bytes.
    pub fn username_limit(self) -> (usize, LengthUnit) {
        match self {
            Dialect::Legacy | Dialect::Gbase8a => (16, LengthUnit::Chars),
            Dialect::MariaDb => (80, LengthUnit::Chars),
            Dialect::OceanBase => (64, LengthUnit::Bytes),
            Dialect::PolarDbX => (20, LengthUnit::Chars),
            Dialect::Mysql
            | Dialect::Tidb
            | Dialect::PolarDbMysql
            | Dialect::GoldenDb
            | Dialect::Tdsql => (32, LengthUnit::Chars),
        }
    }

    /// The longest user name in characters (ASCII names), as the conformance kit counts.
    pub fn max_username_chars(self) -> usize {
        self.username_limit().0
    }

    /// How error messages name the limit.
    pub fn username_limit_name(self) -> &'static str {
        match self {
            Dialect::Mysql => "MySQL 5.7.8+ user names",
            Dialect::Legacy => "legacy MySQL user names",
            Dialect::MariaDb => "MariaDB user names",
            Dialect::OceanBase => "OceanBase user names, counted in bytes",
            Dialect::Tidb => "TiDB user names",
            Dialect::PolarDbMysql => "PolarDB for MySQL user names",
            Dialect::PolarDbX => "PolarDB-X user names: 4 to 20 letters and digits",
            Dialect::GoldenDb => "GoldenDB user names, taken as MySQL's",
            Dialect::Gbase8a => "GBase 8a user names, taken as MySQL 5.1's",
            Dialect::Tdsql => "TDSQL user names, taken as MySQL's",
        }
    }

    /// Characters the dialect accepts in user names, and how refusals describe the rule.
    pub fn username_alphabet(self) -> Option<(NameAlphabet, &'static str)> {
        match self {
            Dialect::PolarDbX => Some((
                NameAlphabet::LetterThenAlphanumeric { min_len: 4 },
                "PolarDB-X: 4 to 20 letters and digits, starting with a letter",
            )),
            _ => None,
        }
    }

    /// The rotation statement used when a caller gives none.
    pub fn default_rotation(self) -> &'static str {
        match self {
            Dialect::PolarDbX | Dialect::Gbase8a => SET_PASSWORD_ROTATION,
            _ => ALTER_USER_ROTATION,
        }
    }

    /// Creation statements a DBA can start from (the README and golden SQL show them); a
    /// role must still give its own, as in Vault.
    pub fn example_creation_statements(self) -> &'static str {
        "CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'; GRANT SELECT ON app.* TO '{{name}}'@'%';"
    }

    /// Whether the default revocation locks accounts first (`ALTER USER ... ACCOUNT LOCK`).
    pub fn locks_accounts(self) -> bool {
        !matches!(self, Dialect::PolarDbX | Dialect::Gbase8a)
    }

    /// How accounts are dropped.
    pub fn drop_form(self) -> DropForm {
        match self {
            Dialect::PolarDbX | Dialect::Gbase8a => DropForm::Plain,
            _ => DropForm::IfExists,
        }
    }

    /// Where sessions are listed and how they are killed, in the order to try: the first
    /// listing the server has is used from then on.
    pub fn session_catalogs(self) -> &'static [SessionCatalog] {
        const OCEANBASE: &[SessionCatalog] = &[OCEANBASE_CLUSTER, INFORMATION_SCHEMA];
        const TIDB: &[SessionCatalog] = &[TIDB_CLUSTER, INFORMATION_SCHEMA];
        const DEFAULT: &[SessionCatalog] = &[INFORMATION_SCHEMA];
        match self {
            Dialect::OceanBase => OCEANBASE,
            Dialect::Tidb => TIDB,
            _ => DEFAULT,
        }
    }

    /// Server error codes worth retrying the whole batch for, beyond MySQL's 1205 (lock wait
    /// timeout) and 1213 (deadlock).
    pub fn transient_codes(self) -> &'static [u16] {
        match self {
            // 1396 ("Operation CREATE USER failed") and 4023 ("Try again", OB_EAGAIN) are what
            // seekdb answers user DDL that races other DDL (CREATE DATABASE); the same
            // statement succeeds when retried [V]. Creation checks first that no account has
            // the name, so a 1396 there is never "the account exists". 4012 timeout, 4038 not
            // master (leader moved) [U], 6002 transaction rolled back (the MySQL-compatible
            // code of several rollback causes), 6005 row lock conflict (seekdb error-code
            // reference [D]).
            Dialect::OceanBase => &[1396, 4012, 4023, 4038, 6002, 6005],
            // 8002, 8005, 8022, 8028: commit conflicts and schema changes, "safely retry the
            // transaction"; 9001-9005, 9007: PD/TiKV timeouts, busy, unavailable region,
            // write conflict (docs.pingcap.com error-codes [D]).
            Dialect::Tidb => &[8002, 8005, 8022, 8028, 9001, 9002, 9003, 9005, 9007],
            _ => &[],
        }
    }

    /// A sentence that explains a server error code in this dialect's terms, if any.
    pub fn error_hint(self, code: u16) -> Option<&'static str> {
        match (self, code) {
            (Dialect::OceanBase, 1045) => Some(
                "OceanBase answers a GRANT to an account that does not exist with 1045 (access denied): \
                 check that the creation statements create the account, with the same host, before granting to it",
            ),
            (_, 1133) => Some(
                "the account named in a GRANT does not exist: create it first, with the same host",
            ),
            (_, 1410) => Some(
                "MySQL 8 does not create accounts in GRANT: create the account first, with the same host",
            ),
            (_, 1470) => Some(
                "the server's user-name limit is lower than this dialect's: pick the plugin_name that matches the server, or shorten username_template",
            ),
            (_, 1095 | 1227) => Some(
                "ending other users' sessions needs the PROCESS privilege and CONNECTION ADMIN (or SUPER)",
            ),
            (Dialect::OceanBase, 1064) => Some(
                "OceanBase's MySQL mode has no PASSWORD EXPIRE clauses; dbwarden revokes on time without them",
            ),
            _ => None,
        }
    }

    /// The password policy the engine uses when the connection has none: Vault's default for
    /// the dialects Vault serves (MySQL, legacy, MariaDB), [`complexity::COMMON_POLICY`] for
    /// the others.
    pub fn default_password_policy(self) -> Option<&'static str> {
        match self {
            Dialect::Mysql | Dialect::Legacy | Dialect::MariaDb => None,
            _ => Some(complexity::COMMON_POLICY),
        }
    }

    /// The database's own rule for new passwords, which the default policy must satisfy.
    pub fn password_rules(self) -> PasswordRules {
        match self {
            Dialect::MariaDb => PasswordRules {
                source: "MariaDB simple_password_check defaults",
                ..complexity::MYSQL_MEDIUM
            },
            // OceanBase's validate_password is off by default [V]; the MEDIUM rule is what a
            // DBA can turn on, so the default policy satisfies it.
            Dialect::OceanBase => PasswordRules {
                source: "OceanBase validate_password (MEDIUM when enabled)",
                ..complexity::MYSQL_MEDIUM
            },
            Dialect::PolarDbX => PasswordRules {
                source: "PolarDB-X: 6-20 letters, digits and @#$%^&+=",
                min_len: 6,
                max_len: 20,
                required: &[],
                min_classes: 1,
                specials: Some("@#$%^&+="),
            },
            Dialect::PolarDbMysql => PasswordRules {
                source: "PolarDB for MySQL account rule: 8-32, 3 of 4 classes",
                min_len: 8,
                max_len: 32,
                required: &[],
                min_classes: 3,
                specials: Some("!@#$%^&*()_+-="),
            },
            Dialect::Tidb => PasswordRules {
                source: "TiDB validate_password MEDIUM",
                ..complexity::MYSQL_MEDIUM
            },
            Dialect::Mysql
            | Dialect::Legacy
            | Dialect::GoldenDb
            | Dialect::Gbase8a
            | Dialect::Tdsql => complexity::MYSQL_MEDIUM,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_are_unique_and_map_back() {
        let mut seen = std::collections::HashSet::new();
        for d in Dialect::ALL {
            for name in d.plugin_names() {
                assert!(seen.insert(*name), "{name} listed twice");
                assert_eq!(Dialect::from_plugin_name(name), Some(d));
            }
        }
        assert_eq!(
            Dialect::from_plugin_name("postgresql-database-plugin"),
            None
        );
    }

    #[test]
    fn limits_follow_the_evidence() {
        assert_eq!(Dialect::OceanBase.username_limit(), (64, LengthUnit::Bytes));
        assert_eq!(Dialect::Tidb.max_username_chars(), 32);
        assert_eq!(Dialect::PolarDbX.max_username_chars(), 20);
        assert!(Dialect::PolarDbX.username_alphabet().is_some());
        assert_eq!(Dialect::Mysql.default_password_policy(), None);
    }

    #[test]
    fn error_hints_are_dialect_aware() {
        assert!(
            Dialect::OceanBase
                .error_hint(1045)
                .unwrap()
                .contains("GRANT")
        );
        assert_eq!(Dialect::Mysql.error_hint(1045), None);
        assert!(
            Dialect::Tidb
                .error_hint(1470)
                .unwrap()
                .contains("plugin_name")
        );
        assert!(Dialect::Mysql.error_hint(1227).unwrap().contains("PROCESS"));
        assert_eq!(Dialect::Mysql.error_hint(1094), None);
    }
}
