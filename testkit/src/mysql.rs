//! The MariaDB/MySQL server the tests use.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable as _;
use mysql_async::{Conn, Opts, OptsBuilder};

static SHARED: OnceLock<TestMysql> = OnceLock::new();

/// How long the admin helpers keep retrying a connection or a statement.
const RETRY_FOR: Duration = Duration::from_secs(30);
const RETRY_PAUSE: Duration = Duration::from_millis(200);

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

    /// Connects as the admin, retrying for a while: a loaded seekdb sometimes refuses or drops
    /// a new connection for a moment.
    pub async fn connect(&self) -> Conn {
        let deadline = Instant::now() + RETRY_FOR;
        loop {
            match Conn::new(self.opts_as(&self.user, &self.password, None)).await {
                Ok(conn) => return conn,
                Err(e) if Instant::now() >= deadline => panic!(
                    "cannot connect to MariaDB/MySQL at {}:{}: {e}",
                    self.host, self.port
                ),
                Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
            }
        }
    }

    /// Runs one admin statement (no result set), retrying while the server answers that it should be retried
    /// (OceanBase refuses DDL that races other DDL) or the connection breaks; panics with the
    /// last error after a while.
    pub async fn execute(&self, statement: &str) {
        let deadline = Instant::now() + RETRY_FOR;
        loop {
            let mut conn = self.connect().await;
            let result = conn.query_drop(statement).await;
            let _ = conn.disconnect().await;
            match result {
                Ok(()) => return,
                Err(e) if Instant::now() < deadline && worth_retrying(&e) => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                // The verb only: a statement may carry a password.
                Err(e) => panic!("{}: {e}", statement_kind(statement)),
            }
        }
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
        self.execute(&format!("CREATE DATABASE IF NOT EXISTS `{name}`"))
            .await;
        name
    }

    /// Drops a database made by [`TestMysql::create_database`].
    pub async fn drop_database(&self, name: &str) {
        self.execute(&format!(
            "DROP DATABASE IF EXISTS `{}`",
            name.replace('`', "``")
        ))
        .await;
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

/// Whether an admin statement's error is worth running the statement again: a broken
/// connection, MySQL's deadlock and lock wait timeout, and what seekdb answers DDL racing other
/// DDL (1396 for user DDL, 4012 timeout, 4023 try again, 4038 not master, 6002 rolled back,
/// 6005 row lock conflict; see `dbwarden_mysql::Dialect::transient_codes`). A statement that
/// fails for good fails again and is reported when the retries run out.
fn worth_retrying(err: &mysql_async::Error) -> bool {
    match err {
        mysql_async::Error::Server(e) => {
            matches!(
                e.code,
                1205 | 1213 | 1396 | 4012 | 4023 | 4038 | 6002 | 6005
            )
        }
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => true,
        _ => false,
    }
}

/// The first two words of a statement (`CREATE USER`), for messages.
fn statement_kind(statement: &str) -> String {
    statement
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}
