//! The conformance suite, run for real through Debian's ODBC drivers and unixODBC:
//! PostgreSQL (psqlODBC, `Driver={PostgreSQL Unicode}`) against the throwaway cluster, and
//! MariaDB (MariaDB Connector/ODBC, `Driver={MariaDB Unicode}`) against the test server.
//! Logins, sessions and catalog checks go through the native Rust clients, so the ODBC
//! backend is checked by something other than itself.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use dbwarden_plugin::conformance::{self, ConformanceTarget, SessionProbe, generate_password};
use dbwarden_plugin::{
    BackendError, ChangePassword, DatabaseBackend, DeleteUserRequest, NewUserRequest, OpenRequest,
    UpdateUserRequest,
};
use dbwarden_testkit::{TempPostgres, TestMysql, install_crypto_provider, unique_name};
use mysql_async::prelude::Queryable as _;
use secrecy::SecretString;
use serde_json::{Map, Value, json};

const PG_CREATE: &str = r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';
GRANT SELECT ON conformance_t TO "{{name}}";"#;

/// Skips (with a message) when the ODBC drivers are not installed.
fn drivers_present() -> bool {
    match dbwarden_odbc::installed_drivers() {
        Ok(drivers)
            if drivers.iter().any(|d| d == "PostgreSQL Unicode")
                && drivers.iter().any(|d| d == "MariaDB Unicode") =>
        {
            true
        }
        other => {
            eprintln!(
                "SKIPPED: the PostgreSQL Unicode and MariaDB Unicode ODBC drivers are not installed \
                 (apt-get install unixodbc odbc-postgresql odbc-mariadb): {other:?}"
            );
            false
        }
    }
}

/// A database of the throwaway PostgreSQL cluster, reached through psqlODBC.
struct PgOdbc {
    db: String,
    admin_user: String,
    admin_password: String,
    extra: Map<String, Value>,
    admin: tokio_postgres::Client,
}

impl PgOdbc {
    async fn new(extra: Value) -> Self {
        let pg = TempPostgres::shared();
        let db = unique_name("odbc_");
        pg.create_database(&db).await;
        let admin = pg.connect(&db).await;
        admin
            .batch_execute(
                "CREATE TABLE conformance_t (x int); INSERT INTO conformance_t VALUES (1);",
            )
            .await
            .unwrap();
        PgOdbc {
            db,
            admin_user: pg.superuser().into(),
            admin_password: pg.superuser_password().into(),
            extra: extra.as_object().cloned().unwrap_or_default(),
            admin,
        }
    }

    fn url(&self) -> String {
        format!(
            "Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port={};Database={};UID={{{{username}}}};PWD={{{{password}}}};SSLmode=disable;",
            TempPostgres::shared().port(),
            self.db
        )
    }

    async fn open(&self, overrides: Value) -> Result<Box<dyn DatabaseBackend>, BackendError> {
        let mut details = self.details();
        details.extend(overrides.as_object().cloned().unwrap_or_default());
        (dbwarden_odbc::DESCRIPTOR.open)(OpenRequest {
            plugin_name: "odbc-database-plugin".into(),
            details,
            verify_connection: true,
        })
        .await
    }
}

struct PgSession(tokio_postgres::Client);

#[async_trait]
impl SessionProbe for PgSession {
    async fn is_alive(&mut self) -> bool {
        self.0.simple_query("SELECT 1").await.is_ok()
    }
}

#[async_trait]
impl ConformanceTarget for PgOdbc {
    fn plugin_name(&self) -> &str {
        "odbc-database-plugin"
    }

    fn details(&self) -> Map<String, Value> {
        let mut details = json!({
            "connection_url": self.url(),
            "username": self.admin_user,
            "password": self.admin_password,
            "dialect": "postgresql",
        })
        .as_object()
        .cloned()
        .unwrap();
        details.extend(self.extra.clone());
        details
    }

    fn creation_statements(&self) -> Vec<String> {
        vec![PG_CREATE.to_owned()]
    }

    fn revocation_statements(&self) -> Vec<String> {
        vec![
            r#"REVOKE ALL ON conformance_t FROM "{{name}}"; DROP ROLE IF EXISTS "{{name}}";"#
                .to_owned(),
        ]
    }

    fn failing_statement(&self) -> String {
        "SELECT '{{password}}'::int".to_owned()
    }

    fn failing_statement_echoes_password(&self) -> bool {
        true
    }

    fn max_username_len(&self) -> usize {
        63
    }

    async fn login_and_query(&self, user: &str, password: &str) -> Result<(), String> {
        let client = TempPostgres::shared()
            .connect_as(&self.db, user, password)
            .await
            .map_err(|e| e.to_string())?;
        client
            .query_one("SELECT count(*) FROM conformance_t", &[])
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn user_exists(&self, user: &str) -> bool {
        self.admin
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&user])
            .await
            .unwrap()
            .is_some()
    }

    async fn open_session(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Box<dyn SessionProbe>, String> {
        let client = TempPostgres::shared()
            .connect_as(&self.db, user, password)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Box::new(PgSession(client)))
    }
}

/// A database of its own on the MariaDB test server, reached through MariaDB Connector/ODBC.
struct MysqlOdbc {
    db: String,
}

impl MysqlOdbc {
    async fn new() -> Self {
        let server = TestMysql::shared();
        let db = server.create_database("odbc_").await;
        let mut conn = server.connect().await;
        conn.query_drop(format!(
            "CREATE TABLE `{db}`.conformance_t (x int); INSERT INTO `{db}`.conformance_t VALUES (1);"
        ))
        .await
        .unwrap();
        let _ = conn.disconnect().await;
        MysqlOdbc { db }
    }

    async fn finish(self) {
        TestMysql::shared().drop_database(&self.db).await;
    }

    async fn accounts(&self, user: &str) -> Vec<(String, String)> {
        let mut conn = TestMysql::shared().connect().await;
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
impl ConformanceTarget for MysqlOdbc {
    fn plugin_name(&self) -> &str {
        "odbc-database-plugin"
    }

    fn details(&self) -> Map<String, Value> {
        let server = TestMysql::shared();
        json!({
            "connection_url": format!(
                "Driver={{MariaDB Unicode}};Server={};Port={};Database={};UID={{{{username}}}};PWD={{{{password}}}};",
                server.host(), server.port(), self.db
            ),
            "username": server.admin_user(),
            "password": server.admin_password(),
            "dialect": "mysql",
        })
        .as_object()
        .cloned()
        .unwrap()
    }

    fn creation_statements(&self) -> Vec<String> {
        vec![format!(
            "CREATE USER '{{{{name}}}}'@'%' IDENTIFIED BY '{{{{password}}}}'; GRANT SELECT ON `{}`.conformance_t TO '{{{{name}}}}'@'%';",
            self.db
        )]
    }

    fn revocation_statements(&self) -> Vec<String> {
        vec![
            "REVOKE ALL PRIVILEGES, GRANT OPTION FROM '{{name}}'@'%'; DROP USER '{{name}}'@'%';"
                .to_owned(),
        ]
    }

    fn failing_statement(&self) -> String {
        "SELEC '{{password}}'".to_owned()
    }

    fn failing_statement_echoes_password(&self) -> bool {
        true
    }

    fn max_username_len(&self) -> usize {
        32
    }

    async fn login_and_query(&self, user: &str, password: &str) -> Result<(), String> {
        let mut conn = TestMysql::shared()
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
        let conn = TestMysql::shared()
            .connect_as(user, password, Some(&self.db))
            .await
            .map_err(|e| e.to_string())?;
        Ok(Box::new(MysqlSession(conn)))
    }
}

fn new_user(user: &str, password: &str, statements: &[&str]) -> NewUserRequest {
    NewUserRequest {
        username: user.into(),
        password: SecretString::from(password.to_owned()),
        statements: statements.iter().map(|s| s.to_string()).collect(),
        expiration: Utc::now() + chrono::Duration::hours(1),
    }
}

fn revoke(user: &str, statements: &[&str]) -> DeleteUserRequest {
    DeleteUserRequest {
        username: user.into(),
        statements: statements.iter().map(|s| s.to_string()).collect(),
    }
}

#[tokio::test]
async fn conformance_postgresql_through_psqlodbc() {
    if !drivers_present() {
        return;
    }
    install_crypto_provider();
    let target = PgOdbc::new(json!({})).await;
    conformance::run_all(&target, dbwarden_odbc::DESCRIPTOR.open).await;
}

#[tokio::test]
async fn conformance_mariadb_through_mariadb_connector_odbc() {
    if !drivers_present() {
        return;
    }
    install_crypto_provider();
    let target = MysqlOdbc::new().await;
    conformance::run_all(&target, dbwarden_odbc::DESCRIPTOR.open).await;
    target.finish().await;
}

/// The generic dialect runs only what the DBA wrote: no default rotation or revocation.
#[tokio::test]
async fn generic_dialect_needs_dba_statements() {
    if !drivers_present() {
        return;
    }
    install_crypto_provider();
    let target = PgOdbc::new(json!({"dialect": "generic"})).await;
    let backend = target.open(json!({})).await.unwrap();
    assert_eq!(backend.type_name(), "odbc");
    assert!(backend.default_password_policy().is_none());
    let user = unique_name("gen_");
    let password = generate_password();
    backend
        .new_user(new_user(&user, &password, &[PG_CREATE]))
        .await
        .unwrap();
    target.login_and_query(&user, &password).await.unwrap();

    let err = backend
        .update_user(UpdateUserRequest {
            username: user.clone(),
            password: Some(ChangePassword {
                new_password: SecretString::from(generate_password()),
                statements: vec![],
            }),
            expiration: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::InvalidRequest(_)), "{err:?}");
    let err = backend.delete_user(revoke(&user, &[])).await.unwrap_err();
    assert!(matches!(err, BackendError::InvalidRequest(_)), "{err:?}");

    let new = generate_password();
    backend
        .update_user(UpdateUserRequest {
            username: user.clone(),
            password: Some(ChangePassword {
                new_password: SecretString::from(new.clone()),
                statements: vec![r#"ALTER ROLE "{{username}}" PASSWORD '{{password}}'"#.into()],
            }),
            expiration: None,
        })
        .await
        .unwrap();
    target.login_and_query(&user, &new).await.unwrap();
    let drop = r#"REVOKE ALL ON conformance_t FROM "{{name}}"; DROP ROLE IF EXISTS "{{name}}";"#;
    backend.delete_user(revoke(&user, &[drop])).await.unwrap();
    assert!(!target.user_exists(&user).await);
    // Without a catalog, the statements run as written: the DBA makes them idempotent.
    let err = backend
        .delete_user(revoke(&user, &[drop]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            BackendError::Statement {
                index: 1,
                total: 2,
                ..
            }
        ),
        "{err:?}"
    );
    backend
        .delete_user(revoke(&user, &[r#"DROP ROLE IF EXISTS "{{name}}""#]))
        .await
        .unwrap();
    backend.close().await;
}

/// An admin password with every character ODBC connection strings treat specially, and
/// non-ASCII text in a password and a statement (the narrow ODBC API carries UTF-8).
#[tokio::test]
async fn odbc_escaping_and_non_ascii() {
    if !drivers_present() {
        return;
    }
    install_crypto_provider();
    let mut target = PgOdbc::new(json!({})).await;
    let admin = unique_name("adm_");
    let hostile = "p;w{d}}=x+y #%^ é";
    target
        .admin
        .batch_execute(&format!(
            "CREATE ROLE {admin} LOGIN CREATEROLE PASSWORD '{hostile}'; ALTER TABLE conformance_t OWNER TO {admin};"
        ))
        .await
        .unwrap();
    target.admin_user = admin;
    target.admin_password = hostile.into();
    let backend = target.open(json!({})).await.unwrap();

    let user = unique_name("utf_");
    // `?` inside a literal must not be taken for a parameter marker.
    let password = "Pässwörd-1-日本?";
    backend
        .new_user(new_user(
            &user,
            password,
            &[
                PG_CREATE,
                "COMMENT ON ROLE \"{{name}}\" IS 'créé par dbwarden, 达梦'",
            ],
        ))
        .await
        .unwrap();
    target.login_and_query(&user, password).await.unwrap();
    let comment: String = target
        .admin
        .query_one(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
            &[&user],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(comment, "créé par dbwarden, 达梦");
    backend.delete_user(revoke(&user, &[])).await.unwrap();
    assert!(!target.user_exists(&user).await);

    let wrong = target
        .open(json!({"password": "p;w{d}}=x+y #%^ è"}))
        .await
        .err()
        .expect("a wrong admin password must be refused");
    assert!(matches!(wrong, BackendError::Connect(_)), "{wrong:?}");
    assert!(!wrong.to_string().contains("p;w{d}}"), "{wrong}");
    backend.close().await;
}

/// At most `max_open_connections` sessions, even with many callers at once.
#[tokio::test]
async fn pool_limit_is_honoured() {
    if !drivers_present() {
        return;
    }
    install_crypto_provider();
    let mut target = PgOdbc::new(json!({})).await;
    let admin = unique_name("pool_adm_");
    let password = generate_password();
    target
        .admin
        .batch_execute(&format!(
            "CREATE ROLE {admin} LOGIN SUPERUSER PASSWORD '{password}';"
        ))
        .await
        .unwrap();
    target.admin_user = admin.clone();
    target.admin_password = password;
    let backend: Arc<dyn DatabaseBackend> = target
        .open(json!({"max_open_connections": 3, "max_idle_connections": 1}))
        .await
        .unwrap()
        .into();
    let count = "SELECT count(*) FROM pg_stat_activity WHERE usename = $1";
    let mut tasks = tokio::task::JoinSet::new();
    let mut users = Vec::new();
    for _ in 0..9 {
        let user = unique_name("pool_");
        users.push(user.clone());
        let backend = backend.clone();
        tasks.spawn(async move {
            backend
                .new_user(new_user(
                    &user,
                    &generate_password(),
                    &["SELECT pg_sleep(0.3)", PG_CREATE],
                ))
                .await
        });
    }
    let mut peak = 0;
    while !tasks.is_empty() {
        let n: i64 = target
            .admin
            .query_one(count, &[&admin])
            .await
            .unwrap()
            .get(0);
        peak = peak.max(n);
        tokio::select! {
            done = tasks.join_next() => done.unwrap().unwrap().unwrap(),
            _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
        }
    }
    assert!(peak <= 3, "{peak} sessions with max_open_connections = 3");
    assert!(peak >= 2, "issuance did not run in parallel (peak {peak})");
    let mut idle = i64::MAX;
    for _ in 0..40 {
        idle = target
            .admin
            .query_one(count, &[&admin])
            .await
            .unwrap()
            .get(0);
        if idle <= 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        idle <= 1,
        "{idle} idle sessions with max_idle_connections = 1"
    );
    for user in users {
        backend.delete_user(revoke(&user, &[])).await.unwrap();
    }
    backend.close().await;
}

/// A creation that fails after `CREATE USER` on MariaDB (DDL commits implicitly) leaves no
/// account, and a name that exists already is never taken over.
#[tokio::test]
async fn mariadb_failed_creation_is_cleaned_up_and_existing_accounts_kept() {
    if !drivers_present() {
        return;
    }
    install_crypto_provider();
    let target = MysqlOdbc::new().await;
    let backend = (dbwarden_odbc::DESCRIPTOR.open)(OpenRequest {
        plugin_name: "odbc-database-plugin".into(),
        details: target.details(),
        verify_connection: true,
    })
    .await
    .unwrap();
    let user = unique_name("taken");
    let mut admin = TestMysql::shared().connect().await;
    admin
        .query_drop(format!(
            "CREATE USER '{user}'@'%' IDENTIFIED BY 'Someone-Elses-1'"
        ))
        .await
        .unwrap();
    let err = backend
        .new_user(new_user(
            &user,
            &generate_password(),
            &["CREATE USER IF NOT EXISTS '{{name}}'@'%' IDENTIFIED BY '{{password}}'"],
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::InvalidRequest(_)), "{err:?}");
    assert_eq!(target.accounts(&user).await.len(), 1);
    backend.delete_user(revoke(&user, &[])).await.unwrap();
    assert!(target.accounts(&user).await.is_empty());
    let _ = admin.disconnect().await;
    backend.close().await;
    target.finish().await;
}
