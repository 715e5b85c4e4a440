//! The SQL personalities of the PostgreSQL wire family.
//!
//! Evidence marks follow `reference/dialects.md`: **\[V\]** ran here against a server, **\[D\]**
//! vendor documentation, **\[U\]** unverified (the conservative choice is taken and documented).
//!
//! | Dialect | `plugin_name`s | Name limit | Rotation / renew default | Lock, sessions, drop |
//! |---|---|---|---|---|
//! | PostgreSQL | `postgresql-database-plugin` | 63 bytes \[V\] | Vault's `ALTER ROLE` | `NOLOGIN`, `pg_terminate_backend`, `REASSIGN`/`DROP OWNED`, `DROP ROLE IF EXISTS` \[V\] |
//! | KingbaseES | `kingbase-database-plugin`, `kingbasees-database-plugin` | 63 bytes \[D\] | as PostgreSQL | as PostgreSQL, with `sys_catalog.sys_roles`, `sys_stat_activity` and `sys_terminate_backend` \[D\]; falls back to the `pg_catalog` names when the server has no `sys_catalog` |
//! | HighGo DB | `highgo-database-plugin` | 63 bytes \[D\] | as PostgreSQL | as PostgreSQL \[D\] |
//! | PolarDB for PostgreSQL | `polardb-postgresql-database-plugin`, `polardb-pg-database-plugin` | 63 bytes \[D\] | as PostgreSQL | as PostgreSQL \[D\] |
//! | openGauss, GaussDB (centralized), Vastbase, MogDB | `opengauss-database-plugin`, `gaussdb-database-plugin`, `vastbase-database-plugin`, `mogdb-database-plugin` | 63 bytes (the server truncates silently, so dbwarden refuses) \[D\] | `ALTER USER ... IDENTIFIED BY`, `ALTER USER ... VALID UNTIL` \[D\] | `ACCOUNT LOCK`, `pg_terminate_backend`, `DROP USER IF EXISTS ... CASCADE` \[D\] |

use dbwarden_plugin::complexity::{self, CharClass, PasswordRules};

/// Vault's default username template for PostgreSQL, which every dialect of the family keeps:
/// the names fit 63 bytes and use characters every member accepts in quoted identifiers.
const VAULT_TEMPLATE: &str = r#"{{ printf "v-%s-%s-%s-%s" (.DisplayName | truncate 8) (.RoleName | truncate 8) (random 20) (unix_time) | truncate 63 }}"#;

/// A SQL personality inside the PostgreSQL wire family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// KingbaseES V8/V9 in PostgreSQL mode (人大金仓).
    Kingbase,
    /// HighGo DB (瀚高), enterprise and security editions.
    HighGo,
    /// PolarDB for PostgreSQL (Alibaba Cloud).
    PolarDbPg,
    /// openGauss and its derivatives: Huawei GaussDB (centralized), Vastbase, MogDB.
    OpenGauss,
}

impl Dialect {
    /// Every dialect, for tests and documentation.
    pub const ALL: [Dialect; 5] = [
        Dialect::Postgres,
        Dialect::Kingbase,
        Dialect::HighGo,
        Dialect::PolarDbPg,
        Dialect::OpenGauss,
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
            Dialect::Postgres => &["postgresql-database-plugin"],
            Dialect::Kingbase => &["kingbase-database-plugin", "kingbasees-database-plugin"],
            Dialect::HighGo => &["highgo-database-plugin"],
            Dialect::PolarDbPg => &[
                "polardb-postgresql-database-plugin",
                "polardb-pg-database-plugin",
            ],
            Dialect::OpenGauss => &[
                "opengauss-database-plugin",
                "gaussdb-database-plugin",
                "vastbase-database-plugin",
                "mogdb-database-plugin",
            ],
        }
    }

    /// A short stable name (the directory of its golden SQL under `testdata/dialects/`).
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgresql",
            Dialect::Kingbase => "kingbase",
            Dialect::HighGo => "highgo",
            Dialect::PolarDbPg => "polardb-pg",
            Dialect::OpenGauss => "opengauss",
        }
    }

    /// The default username template.
    pub fn default_username_template(self) -> &'static str {
        VAULT_TEMPLATE
    }

    /// The longest role name, in bytes (`NAMEDATALEN - 1` in every member of the family).
    pub fn max_username_bytes(self) -> usize {
        63
    }

    /// How error messages name the limit.
    pub fn username_limit_name(self) -> &'static str {
        match self {
            Dialect::Postgres => "PostgreSQL's NAMEDATALEN-1",
            Dialect::Kingbase => "KingbaseES's NAMEDATALEN-1",
            Dialect::HighGo => "HighGo's NAMEDATALEN-1",
            Dialect::PolarDbPg => "PolarDB for PostgreSQL's NAMEDATALEN-1",
            Dialect::OpenGauss => {
                "openGauss's NAMEDATALEN-1; longer names would be truncated silently"
            }
        }
    }

    /// The rotation statements used when a caller gives none.
    pub fn default_rotation(self) -> &'static str {
        match self {
            Dialect::OpenGauss => r#"ALTER USER "{{username}}" IDENTIFIED BY '{{password}}';"#,
            _ => r#"ALTER ROLE "{{username}}" WITH PASSWORD '{{password}}';"#,
        }
    }

    /// The renew statements used when a role has none (they move `VALID UNTIL`).
    pub fn default_renew(self) -> &'static str {
        match self {
            Dialect::OpenGauss => r#"ALTER USER "{{name}}" VALID UNTIL '{{expiration}}';"#,
            _ => r#"ALTER ROLE "{{name}}" VALID UNTIL '{{expiration}}';"#,
        }
    }

    /// Creation statements a DBA can start from (the README and golden SQL show them); a
    /// role must still give its own, as in Vault.
    pub fn example_creation_statements(self) -> &'static str {
        match self {
            Dialect::OpenGauss => {
                r#"CREATE USER "{{name}}" IDENTIFIED BY '{{password}}' VALID UNTIL '{{expiration}}'; GRANT USAGE ON SCHEMA app TO "{{name}}"; GRANT SELECT ON ALL TABLES IN SCHEMA app TO "{{name}}";"#
            }
            _ => {
                r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT USAGE ON SCHEMA app TO "{{name}}"; GRANT SELECT ON ALL TABLES IN SCHEMA app TO "{{name}}";"#
            }
        }
    }

    /// The catalogs to look roles and sessions up in, in the order to try them: the first
    /// one the server has is used from then on.
    pub fn catalogs(self) -> &'static [&'static crate::sql::Catalog] {
        match self {
            Dialect::Kingbase => &[&crate::sql::KINGBASE_CATALOG, &crate::sql::PG_CATALOG],
            _ => &[&crate::sql::PG_CATALOG],
        }
    }

    /// How the default revocation cuts access and removes the role.
    pub fn revocation_style(self) -> RevocationStyle {
        match self {
            Dialect::OpenGauss => RevocationStyle::AccountLockDropCascade,
            _ => RevocationStyle::NoLoginReassignDrop,
        }
    }

    /// Whether `password_authentication = "scram-sha-256"` (a verifier computed here) works:
    /// openGauss stores its own SHA256/SM3 formats and would take a PostgreSQL verifier as
    /// the password itself.
    pub fn accepts_scram_verifiers(self) -> bool {
        !matches!(self, Dialect::OpenGauss)
    }

    /// The password policy the engine uses when the connection has none: Vault's default
    /// for PostgreSQL (as Vault does), [`complexity::COMMON_POLICY`] for the others.
    pub fn default_password_policy(self) -> Option<&'static str> {
        match self {
            Dialect::Postgres => None,
            _ => Some(complexity::COMMON_POLICY),
        }
    }

    /// The database's own rule for new passwords, which the default policy must satisfy.
    pub fn password_rules(self) -> PasswordRules {
        const ALL4: &[CharClass] = &[
            CharClass::Lower,
            CharClass::Upper,
            CharClass::Digit,
            CharClass::Special,
        ];
        match self {
            // No rule unless the `passwordcheck` module is loaded; its sample rule is 8+
            // characters with letters and a non-letter.
            Dialect::Postgres => PasswordRules {
                source: "PostgreSQL passwordcheck module",
                min_len: 8,
                max_len: 100,
                required: &[],
                min_classes: 2,
                specials: None,
            },
            // The default of Kingbase's complexity plugin is [U]; taken as strict as HighGo's.
            Dialect::Kingbase => PasswordRules {
                source: "KingbaseES passwordcheck (assumed: 8+, every class)",
                min_len: 8,
                max_len: 63,
                required: ALL4,
                min_classes: 4,
                specials: None,
            },
            Dialect::HighGo => PasswordRules {
                source: "HighGo passwordlength 8-1024 and passwordstrength",
                min_len: 8,
                max_len: 1024,
                required: ALL4,
                min_classes: 4,
                specials: Some("!@#$%^&*()"),
            },
            Dialect::PolarDbPg => PasswordRules {
                source: "PolarDB account password rule: 8-32, 3 of 4 classes",
                min_len: 8,
                max_len: 32,
                required: &[],
                min_classes: 3,
                specials: Some("!@#$%^&*()_+-="),
            },
            Dialect::OpenGauss => PasswordRules {
                source: "openGauss password_policy = 1 (GaussDB(DWS): 8-32)",
                min_len: 8,
                max_len: 32,
                required: &[],
                min_classes: 3,
                specials: Some("~!@#$%^&*()-_=+\\|[{}];:,<.>/?"),
            },
        }
    }
}

/// The shape of the default revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationStyle {
    /// PostgreSQL: `NOLOGIN`, terminate sessions, `REASSIGN OWNED` to the admin,
    /// `DROP OWNED`, `DROP ROLE IF EXISTS`.
    NoLoginReassignDrop,
    /// openGauss: `ACCOUNT LOCK`, terminate sessions, `DROP USER IF EXISTS ... CASCADE` (which
    /// also drops the same-name schema openGauss creates with every user, and its objects).
    AccountLockDropCascade,
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
        assert_eq!(Dialect::from_plugin_name("mysql-database-plugin"), None);
    }

    #[test]
    fn scram_verifiers_only_where_postgresql_auth_is_used() {
        assert!(Dialect::Kingbase.accepts_scram_verifiers());
        assert!(!Dialect::OpenGauss.accepts_scram_verifiers());
    }
}
