//! The MariaDB/MySQL server the tests use.

use std::sync::OnceLock;

use mysql_async::prelude::Queryable as _;
use mysql_async::{Conn, Opts, OptsBuilder};

static SHARED: OnceLock<TestMysql> = OnceLock::new();

/// Where the MariaDB/MySQL test server is, and an admin account on it.
///
/// Defaults to `127.0.0.1:3306` as `root` without a password (Debian's MariaDB:
/// `root@127.0.0.1` uses `mysql_native_password` with an empty password over TCP).
/// `DBWARDEN_TEST_MYSQL_URL=mysql://user:pass@host:port` overrides it.
///
/// The server is shared by every test: give each test its own database
/// ([`TestMysql::create_database`]) and its own user-name prefix ([`crate::unique_name`]).
#[derive(Debug, Clone)]
pub struct TestMysql {
    host: String,
    port: u16,
    user: String,
    password: String,
}

impl TestMysql {
    /// The server of this test process (read from the environment once).
    pub fn shared() -> &'static TestMysql {
        SHARED.get_or_init(|| match std::env::var("DBWARDEN_TEST_MYSQL_URL") {
            Ok(url) if !url.trim().is_empty() => {
                let opts = Opts::from_url(url.trim()).unwrap_or_else(|e| {
                    panic!("DBWARDEN_TEST_MYSQL_URL is not a mysql:// URL: {e}")
                });
                TestMysql {
                    host: opts.ip_or_hostname().to_owned(),
                    port: opts.tcp_port(),
                    user: opts.user().unwrap_or("root").to_owned(),
                    password: opts.pass().unwrap_or("").to_owned(),
                }
            }
            _ => TestMysql {
                host: "127.0.0.1".into(),
                port: 3306,
                user: "root".into(),
                password: String::new(),
            },
        })
    }

    /// A MySQL-wire server at `host:port` administered by `user` (another server than the
    /// shared MariaDB, such as [`crate::TestSeekdb`]'s).
    pub fn at(host: &str, port: u16, user: &str, password: &str) -> TestMysql {
        TestMysql {
            host: host.to_owned(),
            port,
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }

    /// Host name or address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin user.
    pub fn admin_user(&self) -> &str {
        &self.user
    }

    /// The admin password (may be empty).
    pub fn admin_password(&self) -> &str {
        &self.password
    }

    /// The admin as a `mysql://` URL.
    pub fn admin_url(&self) -> String {
        let auth = if self.password.is_empty() {
            self.user.clone()
        } else {
            format!("{}:{}", self.user, self.password)
        };
        format!("mysql://{auth}@{}:{}", self.host, self.port)
    }

    /// A Vault-style `connection_url` (Go MySQL driver DSN) for `db`, with `{{username}}` and
    /// `{{password}}`.
    pub fn connection_url_template(&self, db: &str) -> String {
        format!(
            "{{{{username}}}}:{{{{password}}}}@tcp({}:{})/{db}",
            self.host, self.port
        )
    }

    /// Connection options for `user` (TCP only, no socket upgrade), optionally with a database.
    pub fn opts_as(&self, user: &str, password: &str, db: Option<&str>) -> Opts {
        OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(user))
            .pass(Some(password))
            .db_name(db)
            .prefer_socket(false)
            .into()
    }

    /// Connects as the admin.
    pub async fn connect(&self) -> Conn {
        Conn::new(self.opts_as(&self.user, &self.password, None))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot connect to MariaDB/MySQL at {}:{}: {e}",
                    self.host, self.port
                )
            })
    }

    /// Connects as any user (the error is returned, for "login must fail" checks).
    pub async fn connect_as(
        &self,
        user: &str,
        password: &str,
        db: Option<&str>,
    ) -> Result<Conn, mysql_async::Error> {
        Conn::new(self.opts_as(user, password, db)).await
    }

    /// Creates a database named `<prefix><random>` and returns its name.
    pub async fn create_database(&self, prefix: &str) -> String {
        let name = crate::unique_name(prefix);
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "database names in tests are [a-z0-9_]: {name:?}"
        );
        let mut conn = self.connect().await;
        conn.query_drop(format!("CREATE DATABASE `{name}`"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = conn.disconnect().await;
        name
    }

    /// Drops a database made by [`TestMysql::create_database`].
    pub async fn drop_database(&self, name: &str) {
        let mut conn = self.connect().await;
        conn.query_drop(format!(
            "DROP DATABASE IF EXISTS `{}`",
            name.replace('`', "``")
        ))
        .await
        .unwrap_or_else(|e| panic!("DROP DATABASE {name}: {e}"));
        let _ = conn.disconnect().await;
    }

    /// Drops every account whose user name starts with `prefix` (cleanup after a failed test).
    pub async fn drop_users_with_prefix(&self, prefix: &str) {
        let mut conn = self.connect().await;
        let pattern = format!(
            "{}%",
            prefix
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let accounts: Vec<(String, String)> = conn
            .exec(
                "SELECT user, host FROM mysql.user WHERE user LIKE ?",
                (pattern,),
            )
            .await
            .unwrap_or_else(|e| panic!("listing users: {e}"));
        for (user, host) in accounts {
            let q = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"));
            let _ = conn
                .query_drop(format!("DROP USER IF EXISTS {}@{}", q(&user), q(&host)))
                .await;
        }
        let _ = conn.disconnect().await;
    }
}
