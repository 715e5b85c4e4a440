//! External plugins through the catalog: the PostgreSQL backend as the `dbwarden-plugin-postgres`
//! binary, registered at `sys/plugins/catalog/database/:name` on a real server, issuing and
//! revoking real credentials; hash checks before every start; restart after a crash; the
//! conformance kit through the plugin protocol; and the ODBC backend as a plugin.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use dbwarden_plugin::conformance::{self, ConformanceTarget, SessionProbe};
use dbwarden_plugin::external::{self, PluginCommand};
use dbwarden_plugin::{OpenFuture, OpenRequest};
use dbwarden_testkit::TempPostgres;
use serde_json::{Map, Value, json};
use sha2::Digest as _;

use crate::postgres::prepare_db;
use crate::support::{Client, Server};

const PLUGIN: &str = env!("CARGO_BIN_EXE_dbwarden-plugin-postgres");

fn sha256_hex(path: &Path) -> String {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    hex::encode(sha2::Sha256::digest(&bytes))
}

/// A fresh plugin directory holding a copy of `binary` named `name`.
fn plugin_dir(binary: &Path, name: &str) -> (PathBuf, PathBuf) {
    let dir = std::fs::canonicalize(tempfile::tempdir().unwrap().keep()).unwrap();
    let path = dir.join(name);
    std::fs::copy(binary, &path).unwrap();
    (dir, path)
}

/// Process ids whose executable is `path`.
fn pids_of(path: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read_link(entry.path().join("exe")).is_ok_and(|exe| exe == path) {
            pids.push(pid);
        }
    }
    pids
}

/// Waits until exactly one process runs `path` and returns its pid.
async fn one_plugin_process(path: &Path) -> i32 {
    let mut pids = Vec::new();
    for _ in 0..100 {
        pids = pids_of(path);
        if pids.len() == 1 {
            return pids[0];
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("expected one plugin process, found {pids:?}");
}

async fn kill_and_wait(pid: i32) {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..100 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("plugin process {pid} did not go away");
}

async fn register_connection(client: &Client, pg: &TempPostgres, db: &str, plugin: &str) {
    client
        .ok(
            "POST",
            "database/config/ext",
            Some(json!({
                "plugin_name": plugin,
                "connection_url": pg.connection_url_template(db),
                "username": pg.superuser(),
                "password": pg.superuser_password(),
                "allowed_roles": "*",
            })),
        )
        .await;
    client
        .ok(
            "POST",
            "database/roles/ro",
            Some(json!({
                "db_name": "ext",
                "creation_statements": [
                    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
                    "GRANT SELECT ON t TO \"{{name}}\";"
                ],
                "default_ttl": "1h",
            })),
        )
        .await;
}

/// Issues a credential and proves it works; returns (lease id, username, password).
async fn issue(client: &Client, pg: &TempPostgres, db: &str) -> (String, String, String) {
    let creds = client.ok("GET", "database/creds/ro", None).await;
    let lease = creds["lease_id"].as_str().unwrap().to_owned();
    let user = creds["data"]["username"].as_str().unwrap().to_owned();
    let pass = creds["data"]["password"].as_str().unwrap().to_owned();
    let session = pg.connect_as(db, &user, &pass).await.unwrap();
    let v: i32 = session
        .query_one("SELECT v FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 42);
    (lease, user, pass)
}

async fn revoke(client: &Client, pg: &TempPostgres, lease: &str, user: &str) {
    let (status, body) = client
        .call("PUT", "sys/leases/revoke", Some(json!({"lease_id": lease})))
        .await;
    assert_eq!(status, 204, "{body}");
    let n: i64 = pg
        .connect("postgres")
        .await
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname = $1", &[&user])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "{user} survived revocation");
}

#[tokio::test]
async fn catalog_plugin_issues_revokes_checks_hash_and_restarts() {
    dbwarden_testkit::install_crypto_provider();
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    let (dir, path) = plugin_dir(Path::new(PLUGIN), "pg-plugin");
    let sha = sha256_hex(&path);
    let server = Server::dev_with_args(&["--dev-plugin-dir", dir.to_str().unwrap()]);
    let client = server.client();
    let entry = "sys/plugins/catalog/database/pg-ext";

    // The catalog needs sudo.
    client
        .ok(
            "PUT",
            "sys/policy/plugins-no-sudo",
            Some(json!({"policy": "path \"sys/plugins/*\" { capabilities = [\"create\", \"update\", \"read\", \"list\"] }"})),
        )
        .await;
    let token = client
        .ok(
            "POST",
            "auth/token/create",
            Some(json!({"policies": ["plugins-no-sudo"]})),
        )
        .await["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = client
        .with_token(&token)
        .call(
            "POST",
            entry,
            Some(json!({"command": "pg-plugin", "sha256": sha})),
        )
        .await;
    assert_eq!(status, 403);

    // A wrong sha256 is refused, clearly, and nothing is registered.
    let wrong = "0".repeat(64);
    let (status, body) = client
        .call(
            "POST",
            entry,
            Some(json!({"command": "pg-plugin", "sha256": wrong})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let message = body["errors"][0].as_str().unwrap();
    assert!(message.contains("sha256 mismatch"), "{message}");
    assert!(message.contains(&sha), "{message}");
    let (status, _) = client.call("GET", entry, None).await;
    assert_eq!(status, 404);
    // Commands stay inside the plugin directory.
    for command in ["../pg-plugin", "/bin/sh", "missing"] {
        let (status, body) = client
            .call(
                "POST",
                entry,
                Some(json!({"command": command, "sha256": sha})),
            )
            .await;
        assert_eq!(status, 400, "{command}: {body}");
    }

    client
        .ok(
            "POST",
            entry,
            Some(json!({
                "command": "pg-plugin",
                "sha256": sha.to_uppercase(),
                "args": [],
                "env": ["DBWARDEN_PLUGIN_LOG=info"],
                "version": "v0.1.0",
            })),
        )
        .await;
    let read = client.ok("GET", entry, None).await;
    assert_eq!(read["data"]["command"], "pg-plugin");
    assert_eq!(read["data"]["sha256"], sha.as_str());
    assert_eq!(read["data"]["builtin"], false);
    assert_eq!(read["data"]["version"], "v0.1.0");
    assert!(read["data"].get("env").is_none(), "env may hold secrets");
    let listed = client
        .ok("LIST", "sys/plugins/catalog/database", None)
        .await;
    let keys: Vec<&str> = listed["data"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(keys.contains(&"pg-ext") && keys.contains(&"postgresql-database-plugin"));

    // Real credentials through the plugin.
    register_connection(&client, pg, &db, "pg-ext").await;
    let (lease, user, pass) = issue(&client, pg, &db).await;
    let first = one_plugin_process(&path).await;
    revoke(&client, pg, &lease, &user).await;

    // A killed plugin is restarted at the next use.
    kill_and_wait(first).await;
    let (lease2, user2, pass2) = issue(&client, pg, &db).await;
    let second = one_plugin_process(&path).await;
    assert_ne!(first, second);
    revoke(&client, pg, &lease2, &user2).await;

    // The hash is checked before every start: a changed binary is not run.
    kill_and_wait(second).await;
    let mut tampered = std::fs::read(&path).unwrap();
    tampered.extend_from_slice(b"tampered");
    std::fs::write(&path, &tampered).unwrap();
    let (status, body) = client.call("GET", "database/creds/ro", None).await;
    assert_eq!(status, 400, "{body}");
    let message = body["errors"][0].as_str().unwrap();
    assert!(message.contains("sha256 mismatch"), "{message}");
    assert!(pids_of(&path).is_empty(), "the changed binary was started");
    std::fs::copy(PLUGIN, &path).unwrap();
    let (lease3, user3, pass3) = issue(&client, pg, &db).await;
    revoke(&client, pg, &lease3, &user3).await;

    // Deleting the entry stops the plugin and the name stops resolving.
    let third = one_plugin_process(&path).await;
    client.ok("DELETE", entry, None).await;
    for _ in 0..100 {
        if !Path::new(&format!("/proc/{third}")).exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(pids_of(&path).is_empty(), "the plugin outlived its entry");
    let (status, _) = client.call("GET", "database/creds/ro", None).await;
    assert_eq!(status, 400);

    let log = server.stop();
    assert!(log.contains("started external plugin"), "{log}");
    assert!(log.contains("exited unexpectedly"), "{log}");
    assert!(
        log.contains("dbwarden plugin serving"),
        "the plugin's stderr is not in the server log"
    );
    for secret in [
        pg.superuser_password(),
        pass.as_str(),
        pass2.as_str(),
        pass3.as_str(),
    ] {
        assert!(!log.contains(secret), "a password reached the server log");
    }
}

#[tokio::test]
async fn catalog_refuses_without_a_plugin_directory() {
    dbwarden_testkit::install_crypto_provider();
    let server = Server::dev();
    let client = server.client();
    let (status, body) = client
        .call(
            "POST",
            "sys/plugins/catalog/database/x",
            Some(json!({"command": "x", "sha256": "0".repeat(64)})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap()
            .contains("plugin_directory"),
        "{body}"
    );
    let builtin = client
        .ok(
            "GET",
            "sys/plugins/catalog/database/postgresql-database-plugin",
            None,
        )
        .await;
    assert_eq!(builtin["data"]["builtin"], true);
}

/// The ODBC backend, shipped as the `dbwarden-plugin-odbc` binary, through the catalog and the
/// whole server, against PostgreSQL via psqlODBC. The binary belongs to another package of the
/// workspace: it is found next to the server binary when the workspace was built.
#[tokio::test]
async fn odbc_plugin_through_the_catalog() {
    dbwarden_testkit::install_crypto_provider();
    let binary = Path::new(env!("CARGO_BIN_EXE_dbwarden"))
        .parent()
        .unwrap()
        .join("dbwarden-plugin-odbc");
    let drivers = dbwarden_odbc::installed_drivers().unwrap_or_default();
    if !binary.exists() || !drivers.iter().any(|d| d == "PostgreSQL Unicode") {
        eprintln!(
            "SKIPPED: needs {} (cargo build --workspace) and the PostgreSQL Unicode ODBC driver",
            binary.display()
        );
        return;
    }
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    let (dir, path) = plugin_dir(&binary, "dbwarden-plugin-odbc");
    let server = Server::dev_with_args(&["--dev-plugin-dir", dir.to_str().unwrap()]);
    let client = server.client();
    client
        .ok(
            "POST",
            "sys/plugins/catalog/database/odbc-database-plugin",
            Some(json!({"command": "dbwarden-plugin-odbc", "sha256": sha256_hex(&path)})),
        )
        .await;
    client
        .ok(
            "POST",
            "database/config/ext",
            Some(json!({
                "plugin_name": "odbc-database-plugin",
                "dialect": "postgresql",
                "connection_url": format!(
                    "Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port={};Database={db};UID={{{{username}}}};PWD={{{{password}}}};SSLmode=disable;",
                    pg.port()
                ),
                "username": pg.superuser(),
                "password": pg.superuser_password(),
                "allowed_roles": "*",
            })),
        )
        .await;
    client
        .ok(
            "POST",
            "database/roles/ro",
            Some(json!({
                "db_name": "ext",
                "creation_statements": [
                    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
                    "GRANT SELECT ON t TO \"{{name}}\";"
                ],
                "default_ttl": "1h",
            })),
        )
        .await;
    let (lease, user, pass) = issue(&client, pg, &db).await;
    let session = pg.connect_as(&db, &user, &pass).await.unwrap();
    revoke(&client, pg, &lease, &user).await;
    assert!(
        session.query_one("SELECT v FROM t", &[]).await.is_err(),
        "the live session survived revocation"
    );
    drop(session);
    let log = server.stop();
    assert!(!log.contains(pg.superuser_password()));
    assert!(!log.contains(&pass));
}

// ---------------------------------------------------------------------------------------------
// The conformance kit through the plugin protocol.

fn open_plugin(req: OpenRequest) -> OpenFuture {
    Box::pin(external::open(
        PluginCommand {
            name: "pg-conformance".into(),
            program: PathBuf::from(PLUGIN),
            args: vec![],
            env: vec![],
        },
        req,
    ))
}

struct PgTarget {
    db: String,
    admin: tokio_postgres::Client,
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
        "postgresql-database-plugin"
    }

    fn details(&self) -> Map<String, Value> {
        let pg = TempPostgres::shared();
        json!({
            "connection_url": pg.connection_url_template(&self.db),
            "username": pg.superuser(),
            "password": pg.superuser_password(),
        })
        .as_object()
        .cloned()
        .unwrap()
    }

    fn creation_statements(&self) -> Vec<String> {
        vec![
            "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT SELECT ON t TO \"{{name}}\";"
                .to_owned(),
        ]
    }

    fn revocation_statements(&self) -> Vec<String> {
        vec!["REVOKE ALL ON t FROM \"{{name}}\"; DROP ROLE IF EXISTS \"{{name}}\";".to_owned()]
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
            .query_one("SELECT count(*) FROM t", &[])
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

#[tokio::test]
async fn conformance_through_the_plugin_protocol() {
    dbwarden_testkit::install_crypto_provider();
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    let target = PgTarget {
        admin: pg.connect(&db).await,
        db,
    };
    conformance::run_all(&target, open_plugin).await;
    // Every plugin process the suite started has been closed.
    for _ in 0..100 {
        if pids_of(Path::new(PLUGIN)).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = pids_of(Path::new(PLUGIN));
    // Other tests may run the same binary only through copies, so these are the suite's.
    assert!(left.is_empty(), "plugin processes left running: {left:?}");
}
