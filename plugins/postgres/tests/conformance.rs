//! The conformance suite and PostgreSQL-specific behaviour, against a throwaway PostgreSQL
//! cluster (password authentication for every login, TLS on).

use async_trait::async_trait;
use chrono::Utc;
use dbwarden_plugin::conformance::{self, ConformanceTarget, SessionProbe, generate_password};
use dbwarden_plugin::{
    BackendError, DatabaseBackend, DeleteUserRequest, NewUserRequest, OpenRequest,
};
use dbwarden_testkit::{TempPostgres, install_crypto_provider, unique_name};
use secrecy::SecretString;
use serde_json::{Map, Value, json};

const CREATE: &str = r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';
GRANT SELECT ON conformance_t TO "{{name}}";"#;

/// A database of the throwaway cluster with a readable table, and an admin for it.
struct PgTarget {
    /// The `plugin_name` (dialect) under test; stand-in dialects run on the same PostgreSQL.
    plugin: &'static str,
    db: String,
    admin_user: String,
    admin_password: String,
    extra: Map<String, Value>,
    admin: tokio_postgres::Client,
}

impl PgTarget {
    /// A fresh database administered by the superuser.
    async fn superuser(extra: Value) -> Self {
        Self::superuser_for("postgresql-database-plugin", extra).await
    }

    /// A fresh database administered by the superuser, opened with `plugin`.
    async fn superuser_for(plugin: &'static str, extra: Value) -> Self {
        let pg = TempPostgres::shared();
        let db = unique_name("cf_");
        pg.create_database(&db).await;
        let admin = pg.connect(&db).await;
        admin
            .batch_execute(
                "CREATE TABLE conformance_t (x int); INSERT INTO conformance_t VALUES (1);",
            )
            .await
            .unwrap();
        PgTarget {
            plugin,
            db,
            admin_user: pg.superuser().into(),
            admin_password: pg.superuser_password().into(),
            extra: extra.as_object().cloned().unwrap_or_default(),
            admin,
        }
    }

    /// A fresh database administered by a non-superuser with CREATEROLE that owns the table,
    /// the setup Vault's documentation recommends.
    async fn createrole_admin() -> Self {
        let mut target = Self::superuser(json!({})).await;
        let name = unique_name("adm_");
        let password = generate_password();
        target
            .admin
            .batch_execute(&format!(
                "CREATE ROLE {name} LOGIN CREATEROLE PASSWORD '{password}'; ALTER TABLE conformance_t OWNER TO {name};"
            ))
            .await
            .unwrap();
        target.admin_user = name;
        target.admin_password = password;
        target
    }

    fn descriptor_open(&self, details: Map<String, Value>) -> OpenRequest {
        OpenRequest {
            plugin_name: self.plugin.into(),
            details,
            verify_connection: true,
        }
    }

    async fn open(&self, overrides: Value) -> Result<Box<dyn DatabaseBackend>, BackendError> {
        let mut details = self.details();
        details.extend(overrides.as_object().cloned().unwrap_or_default());
        (dbwarden_postgres::DESCRIPTOR.open)(self.descriptor_open(details)).await
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
impl ConformanceTarget for PgTarget {
    fn plugin_name(&self) -> &str {
        self.plugin
    }

    fn details(&self) -> Map<String, Value> {
        let mut details = json!({
            "connection_url": TempPostgres::shared().connection_url_template(&self.db),
            "username": self.admin_user,
            "password": self.admin_password,
        })
        .as_object()
        .cloned()
        .unwrap();
        details.extend(self.extra.clone());
        details
    }

    fn creation_statements(&self) -> Vec<String> {
        vec![CREATE.to_owned()]
    }

    fn revocation_statements(&self) -> Vec<String> {
        vec![
            r#"REVOKE ALL ON conformance_t FROM "{{name}}"; DROP ROLE IF EXISTS "{{name}}";"#
                .to_owned(),
        ]
    }

    fn failing_statement(&self) -> String {
        // PostgreSQL echoes the value: `invalid input syntax for type integer: "<password>"`.
        "SELECT '{{password}}'::int".to_owned()
    }

    fn failing_statement_echoes_password(&self) -> bool {
        true
    }

    fn max_username_len(&self) -> usize {
        dbwarden_postgres::Dialect::from_plugin_name(self.plugin)
            .unwrap()
            .max_username_bytes()
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

fn new_user(
    user: &str,
    password: &str,
    statements: &[&str],
    expiration: chrono::DateTime<Utc>,
) -> NewUserRequest {
    NewUserRequest {
        username: user.into(),
        password: SecretString::from(password.to_owned()),
        statements: statements.iter().map(|s| s.to_string()).collect(),
        expiration,
    }
}

#[tokio::test]
async fn conformance_superuser_admin() {
    install_crypto_provider();
    let target = PgTarget::superuser(json!({})).await;
    conformance::run_all(&target, dbwarden_postgres::DESCRIPTOR.open).await;
}

#[tokio::test]
async fn conformance_scram_verifier() {
    install_crypto_provider();
    let target = PgTarget::superuser(json!({"password_authentication": "scram-sha-256"})).await;
    conformance::run_all(&target, dbwarden_postgres::DESCRIPTOR.open).await;
}

#[tokio::test]
async fn conformance_createrole_admin() {
    install_crypto_provider();
    let target = PgTarget::createrole_admin().await;
    conformance::run_all(&target, dbwarden_postgres::DESCRIPTOR.open).await;
}

/// The PostgreSQL-common part of KingbaseES, HighGo and PolarDB for PostgreSQL runs on
/// PostgreSQL: their statements are PostgreSQL's, and KingbaseES falls back from its
/// `sys_catalog` names (not on this server) to `pg_catalog`. Their own syntax is covered by
/// golden SQL only.
async fn stand_in(plugin: &'static str, createrole_admin: bool) {
    install_crypto_provider();
    let mut target = if createrole_admin {
        PgTarget::createrole_admin().await
    } else {
        PgTarget::superuser(json!({})).await
    };
    target.plugin = plugin;
    conformance::run_all(&target, dbwarden_postgres::DESCRIPTOR.open).await;
}

#[tokio::test]
async fn conformance_kingbase_on_postgresql() {
    stand_in("kingbase-database-plugin", false).await;
}

/// KingbaseES's `sys_catalog` path always grants the admin the role's privileges first; on
/// the fallback path a CREATEROLE admin needs them too.
#[tokio::test]
async fn conformance_kingbase_on_postgresql_createrole_admin() {
    stand_in("kingbase-database-plugin", true).await;
}

#[tokio::test]
async fn conformance_highgo_on_postgresql() {
    stand_in("highgo-database-plugin", false).await;
}

/// PolarDB for PostgreSQL has no superuser: its privileged account is CREATEROLE-like.
#[tokio::test]
async fn conformance_polardb_pg_on_postgresql_createrole_admin() {
    stand_in("polardb-postgresql-database-plugin", true).await;
}

#[tokio::test]
async fn scram_mode_stores_the_verifier_not_the_password() {
    install_crypto_provider();
    let target = PgTarget::superuser(json!({"password_authentication": "scram-sha-256"})).await;
    let backend = target.open(json!({})).await.unwrap();
    let user = unique_name("scram_");
    let password = generate_password();
    // The statement proves what reached the server: a verifier, never the password.
    let probe = r#"DO $$ BEGIN IF '{{password}}' NOT LIKE 'SCRAM-SHA-256$4096:%' THEN RAISE EXCEPTION 'plain password sent'; END IF; END $$;"#;
    backend
        .new_user(new_user(
            &user,
            &password,
            &[probe, CREATE],
            Utc::now() + chrono::Duration::hours(1),
        ))
        .await
        .unwrap();
    target.login_and_query(&user, &password).await.unwrap();
    backend
        .delete_user(DeleteUserRequest {
            username: user,
            statements: vec![],
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn expiry_in_the_past_refuses_login() {
    install_crypto_provider();
    let target = PgTarget::superuser(json!({})).await;
    let backend = target.open(json!({})).await.unwrap();
    let user = unique_name("expired_");
    let password = generate_password();
    backend
        .new_user(new_user(
            &user,
            &password,
            &[CREATE],
            Utc::now() - chrono::Duration::hours(1),
        ))
        .await
        .unwrap();
    assert!(target.login_and_query(&user, &password).await.is_err());
    backend
        .delete_user(DeleteUserRequest {
            username: user.clone(),
            statements: vec![],
        })
        .await
        .unwrap();
    assert!(!target.user_exists(&user).await);
}

#[tokio::test]
async fn grants_in_another_database_block_the_drop_but_not_the_lock() {
    install_crypto_provider();
    let target = PgTarget::superuser(json!({})).await;
    let pg = TempPostgres::shared();
    let other = unique_name("other_");
    pg.create_database(&other).await;
    let backend = target.open(json!({})).await.unwrap();
    let user = unique_name("multi_");
    let password = generate_password();
    backend
        .new_user(new_user(
            &user,
            &password,
            &[CREATE],
            Utc::now() + chrono::Duration::hours(1),
        ))
        .await
        .unwrap();
    let other_admin = pg.connect(&other).await;
    other_admin
        .batch_execute(&format!(
            "CREATE TABLE elsewhere (x int); GRANT SELECT ON elsewhere TO \"{user}\";"
        ))
        .await
        .unwrap();
    let mut session = target.open_session(&user, &password).await.unwrap();

    let err = backend
        .delete_user(DeleteUserRequest {
            username: user.clone(),
            statements: vec![],
        })
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BackendError::Database(_)), "{err:?}");
    assert!(
        text.contains(&other),
        "the error should name the other database: {text}"
    );
    assert!(text.contains("NOLOGIN"), "{text}");
    // Access is cut even though the role could not be dropped.
    assert!(target.login_and_query(&user, &password).await.is_err());
    let mut alive = true;
    for _ in 0..50 {
        alive = session.is_alive().await;
        if !alive {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!alive, "the session survived");

    // Once the other database lets go, a retry finishes the job.
    other_admin
        .batch_execute(&format!("DROP OWNED BY \"{user}\";"))
        .await
        .unwrap();
    backend
        .delete_user(DeleteUserRequest {
            username: user.clone(),
            statements: vec![],
        })
        .await
        .unwrap();
    assert!(!target.user_exists(&user).await);
}

#[tokio::test]
async fn owned_objects_are_reassigned_not_blocking() {
    install_crypto_provider();
    let target = PgTarget::superuser(json!({})).await;
    target
        .admin
        .batch_execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
        .await
        .unwrap();
    let backend = target.open(json!({})).await.unwrap();
    let user = unique_name("owner_");
    let password = generate_password();
    backend
        .new_user(new_user(
            &user,
            &password,
            &[CREATE],
            Utc::now() + chrono::Duration::hours(1),
        ))
        .await
        .unwrap();
    let client = TempPostgres::shared()
        .connect_as(&target.db, &user, &password)
        .await
        .unwrap();
    let table = format!("made_by_{user}");
    client
        .batch_execute(&format!("CREATE TABLE {table} (x int)"))
        .await
        .unwrap();
    drop(client);
    backend
        .delete_user(DeleteUserRequest {
            username: user.clone(),
            statements: vec![],
        })
        .await
        .unwrap();
    assert!(!target.user_exists(&user).await);
    let owner: String = target
        .admin
        .query_one(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = $1",
            &[&table],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        owner, "postgres",
        "the table should now belong to the admin"
    );
}

#[tokio::test]
async fn tls_modes() {
    install_crypto_provider();
    let pg = TempPostgres::shared();
    let Some(ca) = pg.tls_root_cert() else {
        eprintln!("SKIPPED: the test cluster has no TLS (openssl missing)");
        return;
    };
    let target = PgTarget::superuser(json!({})).await;
    let base = format!(
        "postgres://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/{}",
        pg.port(),
        target.db
    );
    let encode = |s: &str| s.replace('/', "%2F");
    // A creation statement that fails unless the pooled connection is encrypted.
    let assert_tls = "DO $$ BEGIN IF NOT (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) THEN RAISE EXCEPTION 'not encrypted'; END IF; END $$;";
    for (query, encrypted) in [
        ("?sslmode=disable".to_owned(), false),
        (String::new(), true),
        ("?sslmode=require".to_owned(), true),
        (
            format!(
                "?sslmode=verify-ca&sslrootcert={}",
                encode(&ca.display().to_string())
            ),
            true,
        ),
        (
            format!(
                "?sslmode=verify-full&sslrootcert={}",
                encode(&ca.display().to_string())
            ),
            true,
        ),
    ] {
        let backend = target
            .open(json!({"connection_url": format!("{base}{query}")}))
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        let user = unique_name("tls_");
        let result = backend
            .new_user(new_user(
                &user,
                &generate_password(),
                &[assert_tls, CREATE],
                Utc::now() + chrono::Duration::hours(1),
            ))
            .await;
        if encrypted {
            result.unwrap_or_else(|e| panic!("{query}: {e}"));
            backend
                .delete_user(DeleteUserRequest {
                    username: user,
                    statements: vec![],
                })
                .await
                .unwrap();
        } else {
            assert!(
                matches!(result, Err(BackendError::Statement { index: 1, .. })),
                "{query}: {result:?}"
            );
        }
        backend.close().await;
    }
    // The throwaway CA is not among the webpki roots.
    let err = target
        .open(json!({"connection_url": format!("{base}?sslmode=verify-full")}))
        .await
        .err()
        .expect("verify-full against an unknown CA must fail");
    assert!(matches!(err, BackendError::Connect(_)), "{err:?}");
}

#[tokio::test]
async fn key_value_connection_strings_work() {
    install_crypto_provider();
    let pg = TempPostgres::shared();
    let target = PgTarget::superuser(json!({})).await;
    let backend = target
        .open(json!({
            "connection_url": format!(
                "host=127.0.0.1 port={} dbname={} user={{{{username}}}} password='{{{{password}}}}' sslmode=disable",
                pg.port(), target.db
            ),
            "max_open_connections": "2",
            "max_idle_connections": 1,
            "max_connection_lifetime": "1s",
        }))
        .await
        .unwrap();
    for _ in 0..3 {
        let user = unique_name("kv_");
        backend
            .new_user(new_user(
                &user,
                &generate_password(),
                &[CREATE],
                Utc::now() + chrono::Duration::hours(1),
            ))
            .await
            .unwrap();
        backend
            .delete_user(DeleteUserRequest {
                username: user,
                statements: vec![],
            })
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    }
    backend.close().await;
}

/// Issuance runs in parallel up to `max_open_connections`, never beyond, and idle connections
/// above `max_idle_connections` are closed when returned.
#[tokio::test]
async fn pool_limits_are_honoured() {
    install_crypto_provider();
    let target = PgTarget::superuser(json!({})).await;
    let backend: std::sync::Arc<dyn DatabaseBackend> = target
        .open(json!({"max_open_connections": 3, "max_idle_connections": 1}))
        .await
        .unwrap()
        .into();
    let count = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'dbwarden'";
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
                    &["SELECT pg_sleep(0.3)", CREATE],
                    Utc::now() + chrono::Duration::hours(1),
                ))
                .await
        });
    }
    let mut peak = 0;
    while !tasks.is_empty() {
        let n: i64 = target
            .admin
            .query_one(count, &[&target.db])
            .await
            .unwrap()
            .get(0);
        peak = peak.max(n);
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
    // A discarded connection's server process takes a moment to leave pg_stat_activity.
    let mut idle = i64::MAX;
    for _ in 0..40 {
        idle = target
            .admin
            .query_one(count, &[&target.db])
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
        "{idle} idle connections with max_idle_connections = 1"
    );
    for user in users {
        backend
            .delete_user(DeleteUserRequest {
                username: user,
                statements: vec![],
            })
            .await
            .unwrap();
    }
    backend.close().await;
}
