//! The conformance suite and MySQL-specific behaviour, against the test MariaDB/MySQL server
//! (see `dbwarden_testkit::TestMysql`) and a real OceanBase (seekdb, see
//! `dbwarden_testkit::TestSeekdb`).

use async_trait::async_trait;
use chrono::Utc;
use dbwarden_plugin::conformance::{self, ConformanceTarget, SessionProbe, generate_password};
use dbwarden_plugin::{
    BackendError, DatabaseBackend, DeleteUserRequest, NewUserRequest, OpenRequest,
};
use dbwarden_testkit::{TestMysql, TestSeekdb, install_crypto_provider, unique_name};
use mysql_async::prelude::Queryable as _;
use secrecy::SecretString;
use serde_json::{Map, Value, json};

/// A database of its own on a shared server, with a readable table.
struct MysqlTarget {
    plugin: &'static str,
    server: &'static TestMysql,
    db: String,
}

impl MysqlTarget {
    /// On the shared MariaDB.
    async fn new(plugin: &'static str) -> Self {
        Self::on(plugin, TestMysql::shared()).await
    }

    /// On the shared seekdb (a real OceanBase).
    async fn seekdb() -> Self {
        Self::on("oceanbase-database-plugin", TestSeekdb::shared().server()).await
    }

    async fn on(plugin: &'static str, server: &'static TestMysql) -> Self {
        let db = server.create_database("cf_").await;
        server
            .execute(&format!(
                "CREATE TABLE IF NOT EXISTS `{db}`.conformance_t (x int)"
            ))
            .await;
        server
            .execute(&format!("INSERT INTO `{db}`.conformance_t VALUES (1)"))
            .await;
        MysqlTarget { plugin, server, db }
    }

    async fn finish(self) {
        self.server.drop_database(&self.db).await;
    }

    async fn open(&self, overrides: Value) -> Result<Box<dyn DatabaseBackend>, BackendError> {
        let mut details = self.details();
        details.extend(overrides.as_object().cloned().unwrap_or_default());
        (dbwarden_mysql::DESCRIPTOR.open)(OpenRequest {
            plugin_name: self.plugin.into(),
            details,
            verify_connection: true,
        })
        .await
    }

    fn create_statement(&self) -> String {
        format!(
            "CREATE USER '{{{{name}}}}'@'%' IDENTIFIED BY '{{{{password}}}}'; GRANT SELECT ON `{}`.conformance_t TO '{{{{name}}}}'@'%';",
            self.db
        )
    }

    async fn accounts(&self, user: &str) -> Vec<(String, String)> {
        let mut conn = self.server.connect().await;
        let rows = conn
            .exec("SELECT user, host FROM mysql.user WHERE user = ?", (user,))
            .await
            .unwrap();
        let _ = conn.disconnect().await;
        rows
    }
}

struct MysqlSession(mysql_async::Conn);

#[async_trait]
impl SessionProbe for MysqlSession {
    async fn is_alive(&mut self) -> bool {
        self.0.query_drop("SELECT 1").await.is_ok()
    }
}

#[async_trait]
impl ConformanceTarget for MysqlTarget {
    fn plugin_name(&self) -> &str {
        self.plugin
    }

    fn details(&self) -> Map<String, Value> {
        let server = self.server;
        json!({
            "connection_url": server.connection_url_template(&self.db),
            "username": server.admin_user(),
            "password": server.admin_password(),
        })
        .as_object()
        .cloned()
        .unwrap()
    }

    fn creation_statements(&self) -> Vec<String> {
        vec![self.create_statement()]
    }

    fn revocation_statements(&self) -> Vec<String> {
        vec![
            "REVOKE ALL PRIVILEGES, GRANT OPTION FROM '{{name}}'@'%'; DROP USER '{{name}}'@'%';"
                .to_owned(),
        ]
    }

    fn failing_statement(&self) -> String {
        // MySQL echoes the statement around a syntax error: `... near 'SELEC '<password>''`.
        "SELEC '{{password}}'".to_owned()
    }

    fn failing_statement_echoes_password(&self) -> bool {
        true
    }

    fn max_username_len(&self) -> usize {
        dbwarden_mysql::Dialect::from_plugin_name(self.plugin)
            .unwrap()
            .max_username_chars()
    }

    async fn login_and_query(&self, user: &str, password: &str) -> Result<(), String> {
        let mut conn = self
            .server
            .connect_as(user, password, Some(&self.db))
            .await
            .map_err(|e| e.to_string())?;
        let result = conn
            .query_drop("SELECT COUNT(*) FROM conformance_t")
            .await
            .map_err(|e| e.to_string());
        let _ = conn.disconnect().await;
        result
    }

    async fn user_exists(&self, user: &str) -> bool {
        !self.accounts(user).await.is_empty()
    }

    async fn open_session(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Box<dyn SessionProbe>, String> {
        let conn = self
            .server
            .connect_as(user, password, Some(&self.db))
            .await
            .map_err(|e| e.to_string())?;
        Ok(Box::new(MysqlSession(conn)))
    }
}

fn new_user(user: &str, password: &str, statements: Vec<String>) -> NewUserRequest {
    NewUserRequest {
        username: user.into(),
        password: SecretString::from(password.to_owned()),
        statements,
        expiration: Utc::now() + chrono::Duration::hours(1),
    }
}

fn revoke(user: &str) -> DeleteUserRequest {
    DeleteUserRequest {
        username: user.into(),
        statements: vec![],
    }
}

#[tokio::test]
async fn conformance_mysql() {
    install_crypto_provider();
    let target = MysqlTarget::new("mysql-database-plugin").await;
    conformance::run_all(&target, dbwarden_mysql::DESCRIPTOR.open).await;
    target.finish().await;
}

#[tokio::test]
async fn conformance_mysql_legacy() {
    install_crypto_provider();
    let target = MysqlTarget::new("mysql-legacy-database-plugin").await;
    conformance::run_all(&target, dbwarden_mysql::DESCRIPTOR.open).await;
    target.finish().await;
}

/// MariaDB under its own name: an 80-character limit, run for real at the limit.
#[tokio::test]
async fn conformance_mariadb() {
    install_crypto_provider();
    let target = MysqlTarget::new("mariadb-database-plugin").await;
    conformance::run_all(&target, dbwarden_mysql::DESCRIPTOR.open).await;
    target.finish().await;
}

/// The whole kit against a real OceanBase: seekdb 1.4 (OceanBase 4.3.5.3, MySQL mode).
#[tokio::test]
async fn conformance_oceanbase_seekdb() {
    install_crypto_provider();
    eprintln!("seekdb: {}", TestSeekdb::shared().version());
    let target = MysqlTarget::seekdb().await;
    conformance::run_all(&target, dbwarden_mysql::DESCRIPTOR.open).await;
    target.finish().await;
}

/// The MySQL-common part of TiDB on MariaDB: its 32-character names, Vault's statements, and
/// the fallback session view (MariaDB has no `CLUSTER_PROCESSLIST`, so `KILL TIDB` never
/// runs here; that syntax is covered by golden SQL only).
#[tokio::test]
async fn conformance_tidb_on_mariadb() {
    install_crypto_provider();
    let target = MysqlTarget::new("tidb-database-plugin").await;
    conformance::run_all(&target, dbwarden_mysql::DESCRIPTOR.open).await;
    target.finish().await;
}

/// The MySQL-common part of PolarDB-X on MariaDB: letters-and-digits names of 4 to 20,
/// `SET PASSWORD` rotation, revocation without `ACCOUNT LOCK` and with a plain `DROP USER`.
#[tokio::test]
async fn conformance_polardbx_on_mariadb() {
    install_crypto_provider();
    let target = MysqlTarget::new("polardbx-database-plugin").await;
    conformance::run_all(&target, dbwarden_mysql::DESCRIPTOR.open).await;
    target.finish().await;
}

/// On OceanBase, `DROP USER` leaves the user's sessions working [V]; revocation kills them
/// (through `information_schema.processlist`, since seekdb has no `GV$OB_PROCESSLIST`).
#[tokio::test]
async fn oceanbase_drop_user_alone_leaves_sessions_and_revocation_kills_them() {
    install_crypto_provider();
    let target = MysqlTarget::seekdb().await;
    let backend = target.open(json!({})).await.unwrap();
    let user = unique_name("obstray");
    let password = generate_password();
    backend
        .new_user(new_user(&user, &password, target.creation_statements()))
        .await
        .unwrap();
    let mut session = target.open_session(&user, &password).await.unwrap();
    target
        .server
        .execute(&format!("DROP USER '{user}'@'%'"))
        .await;
    assert!(
        session.is_alive().await,
        "OceanBase ended the session on DROP USER; the premise changed"
    );
    backend.delete_user(revoke(&user)).await.unwrap();
    assert!(!session.is_alive().await, "the stray session survived");
    backend.close().await;
    target.finish().await;
}

/// OceanBase's lock, as the default revocation renders it, refuses logins and shows in
/// `mysql.user.account_locked` [V]; every host of the name is revoked.
#[tokio::test]
async fn oceanbase_lock_and_every_host() {
    install_crypto_provider();
    let target = MysqlTarget::seekdb().await;
    let backend = target.open(json!({})).await.unwrap();
    let user = unique_name("oblock");
    let password = generate_password();
    let statements = vec![
        target.create_statement(),
        "CREATE USER '{{name}}'@'10.1.2.%' IDENTIFIED BY '{{password}}'".to_owned(),
    ];
    backend
        .new_user(new_user(&user, &password, statements))
        .await
        .unwrap();
    assert_eq!(target.accounts(&user).await.len(), 2);
    let plan = dbwarden_mysql::sql::default_revocation(
        dbwarden_mysql::Dialect::OceanBase,
        &[(user.clone(), "%".to_owned())],
    );
    target.server.execute(plan.lock[0].as_str()).await;
    let mut admin = target.server.connect().await;
    let locked: Option<String> = admin
        .exec_first(
            "SELECT account_locked FROM mysql.user WHERE user = ? AND host = '%'",
            (&user,),
        )
        .await
        .unwrap();
    assert_eq!(locked.as_deref(), Some("Y"));
    assert!(
        target.login_and_query(&user, &password).await.is_err(),
        "a locked account logged in"
    );
    backend.delete_user(revoke(&user)).await.unwrap();
    assert!(target.accounts(&user).await.is_empty());
    let _ = admin.disconnect().await;
    backend.close().await;
    target.finish().await;
}

/// OceanBase counts the name limit in bytes [V]: 21 three-byte characters (63 bytes) are
/// created, 22 (66 bytes) are refused before any SQL runs.
#[tokio::test]
async fn oceanbase_limit_is_in_bytes() {
    install_crypto_provider();
    let target = MysqlTarget::seekdb().await;
    let fits = "中".repeat(21);
    let backend = target
        .open(json!({"username_template": fits.clone()}))
        .await
        .unwrap();
    let user = backend
        .generate_username(&dbwarden_plugin::UsernameMetadata::default())
        .unwrap();
    let password = generate_password();
    backend
        .new_user(new_user(&user, &password, target.creation_statements()))
        .await
        .unwrap();
    target.login_and_query(&user, &password).await.unwrap();
    backend.delete_user(revoke(&user)).await.unwrap();
    backend.close().await;
    let too_long = target
        .open(json!({"username_template": "中".repeat(22)}))
        .await
        .unwrap();
    let err = too_long
        .generate_username(&dbwarden_plugin::UsernameMetadata::default())
        .unwrap_err();
    assert!(err.to_string().contains("66 bytes"), "{err}");
    assert!(err.to_string().contains("64 bytes"), "{err}");
    too_long.close().await;
    target.finish().await;
}

#[tokio::test]
async fn revocation_covers_every_host() {
    install_crypto_provider();
    let target = MysqlTarget::new("mysql-database-plugin").await;
    let backend = target.open(json!({})).await.unwrap();
    let user = unique_name("hosts");
    let password = generate_password();
    let statements = vec![
        target.create_statement(),
        "CREATE USER '{{name}}'@'localhost' IDENTIFIED BY '{{password}}'; CREATE USER '{{name}}'@'10.1.2.%' IDENTIFIED BY '{{password}}';".to_owned(),
    ];
    backend
        .new_user(new_user(&user, &password, statements))
        .await
        .unwrap();
    assert_eq!(target.accounts(&user).await.len(), 3);
    let mut session = target.open_session(&user, &password).await.unwrap();
    backend.delete_user(revoke(&user)).await.unwrap();
    assert!(target.accounts(&user).await.is_empty());
    assert!(!session.is_alive().await, "the session survived revocation");
    backend.close().await;
    target.finish().await;
}

#[tokio::test]
async fn an_existing_account_is_never_taken_over_or_dropped() {
    install_crypto_provider();
    let target = MysqlTarget::new("mysql-database-plugin").await;
    let backend = target.open(json!({})).await.unwrap();
    let user = unique_name("taken");
    let mut admin = TestMysql::shared().connect().await;
    admin
        .query_drop(format!(
            "CREATE USER '{user}'@'%' IDENTIFIED BY 'Someone-Elses-1'"
        ))
        .await
        .unwrap();
    let statements =
        vec!["CREATE USER IF NOT EXISTS '{{name}}'@'%' IDENTIFIED BY '{{password}}'".to_owned()];
    let err = backend
        .new_user(new_user(&user, &generate_password(), statements))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::InvalidRequest(_)), "{err:?}");
    assert_eq!(
        target.accounts(&user).await.len(),
        1,
        "the existing account must survive"
    );
    target.login_and_query(&user, "Someone-Elses-1").await.ok();
    backend.delete_user(revoke(&user)).await.unwrap();
    let _ = admin.disconnect().await;
    backend.close().await;
    target.finish().await;
}

/// `DROP USER` alone leaves sessions running (Vault issue #10681); revoking the name again
/// kills them even though no account is left.
#[tokio::test]
async fn stray_sessions_of_a_dropped_user_are_killed() {
    install_crypto_provider();
    let target = MysqlTarget::new("mysql-database-plugin").await;
    let backend = target.open(json!({})).await.unwrap();
    let user = unique_name("stray");
    let password = generate_password();
    backend
        .new_user(new_user(&user, &password, target.creation_statements()))
        .await
        .unwrap();
    let mut session = target.open_session(&user, &password).await.unwrap();
    let mut admin = TestMysql::shared().connect().await;
    admin
        .query_drop(format!("DROP USER '{user}'@'%'"))
        .await
        .unwrap();
    assert!(
        session.is_alive().await,
        "MariaDB ended the session on DROP USER; the premise changed"
    );
    backend.delete_user(revoke(&user)).await.unwrap();
    assert!(!session.is_alive().await, "the stray session survived");
    let _ = admin.disconnect().await;
    backend.close().await;
    target.finish().await;
}

#[tokio::test]
async fn mysql_urls_and_custom_renew_statements() {
    install_crypto_provider();
    let target = MysqlTarget::new("mysql-database-plugin").await;
    let server = TestMysql::shared();
    let backend = target
        .open(json!({
            "connection_url": format!("mysql://{{{{username}}}}:{{{{password}}}}@{}:{}/{}", server.host(), server.port(), target.db),
            "max_open_connections": "2",
            "max_idle_connections": 1,
            "max_connection_lifetime": 60,
        }))
        .await
        .unwrap();
    let user = unique_name("url");
    let password = generate_password();
    backend
        .new_user(new_user(&user, &password, target.creation_statements()))
        .await
        .unwrap();
    backend
        .update_user(dbwarden_plugin::UpdateUserRequest {
            username: user.clone(),
            password: None,
            expiration: Some(dbwarden_plugin::ChangeExpiration {
                new_expiration: Utc::now() + chrono::Duration::days(1),
                statements: vec!["ALTER USER '{{name}}'@'%' WITH MAX_USER_CONNECTIONS 10; SELECT '{{expiration}}'".into()],
            }),
        })
        .await
        .unwrap();
    target.login_and_query(&user, &password).await.unwrap();
    backend.delete_user(revoke(&user)).await.unwrap();
    backend.close().await;
    target.finish().await;
}

/// Issuance runs in parallel up to `max_open_connections`, never beyond.
#[tokio::test]
async fn pool_limit_is_honoured() {
    install_crypto_provider();
    let target = MysqlTarget::new("mysql-database-plugin").await;
    let backend: std::sync::Arc<dyn DatabaseBackend> = target
        .open(json!({"max_open_connections": 3}))
        .await
        .unwrap()
        .into();
    let server = TestMysql::shared();
    let mut admin = server.connect().await;
    let mut tasks = tokio::task::JoinSet::new();
    let mut users = Vec::new();
    for _ in 0..9 {
        let user = unique_name("pool");
        users.push(user.clone());
        let backend = backend.clone();
        let statements = vec!["DO SLEEP(0.3)".to_owned(), target.create_statement()];
        tasks.spawn(async move {
            backend
                .new_user(new_user(&user, &generate_password(), statements))
                .await
        });
    }
    let mut peak = 0;
    while !tasks.is_empty() {
        let n: Option<i64> = admin
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.processlist WHERE db = ? AND user = ?",
                (&target.db, server.admin_user()),
            )
            .await
            .unwrap();
        peak = peak.max(n.unwrap_or(0));
        tokio::select! {
            done = tasks.join_next() => done.unwrap().unwrap().unwrap(),
            _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
        }
    }
    assert!(
        peak <= 3,
        "{peak} connections with max_open_connections = 3"
    );
    assert!(peak >= 2, "issuance did not run in parallel (peak {peak})");
    for user in users {
        backend.delete_user(revoke(&user)).await.unwrap();
    }
    let _ = admin.disconnect().await;
    backend.close().await;
    target.finish().await;
}
