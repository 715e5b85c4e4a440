//! The sidecar agent against a real server and real PostgreSQL: files with mode 0400 whose
//! credentials log in, renewal without a new credential, rotation before the max TTL with a
//! reload and a revocation after the grace period, and restarts that reuse the lease.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dbwarden_testkit::TempPostgres;
use serde_json::{Value, json};

use crate::k8s;
use crate::postgres::{prepare_db, register};
use crate::support::{Client, Server};

/// A running `dbwarden agent`.
pub struct Agent {
    child: Child,
    /// Its stderr (logs).
    pub log_path: PathBuf,
}

impl Agent {
    /// Starts `dbwarden agent --config <config> [extra args]`, logging to `<config>.log`.
    pub fn start(config: &Path, extra: &[&str]) -> Agent {
        let log_path = config.with_extension("log");
        let child = Command::new(env!("CARGO_BIN_EXE_dbwarden"))
            .args(["agent", "--config", config.to_str().unwrap()])
            .args(extra)
            .env("DBWARDEN_LOG", "dbwarden=debug,info")
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(&log_path)
                    .unwrap(),
            )
            .spawn()
            .expect("start the agent");
        Agent { child, log_path }
    }

    /// Stops it with SIGTERM and returns its log.
    pub fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        self.log()
    }

    /// Waits for it to exit on its own (`--once`) and returns the exit code.
    pub fn wait(mut self, limit: Duration) -> (Option<i32>, String) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        (None, self.log())
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates role `name` on connection `pg` with the given TTLs.
pub async fn role(client: &Client, name: &str, ttl: &str, max_ttl: &str) {
    client
        .ok(
            "POST",
            &format!("database/roles/{name}"),
            Some(json!({
                "db_name": "pg",
                "creation_statements": [
                    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
                    "GRANT SELECT ON t TO \"{{name}}\";"
                ],
                "default_ttl": ttl,
                "max_ttl": max_ttl,
            })),
        )
        .await;
}

/// A policy that lets an agent read `database/creds/<role>` and revoke its old leases.
pub fn agent_policy(role: &str) -> String {
    format!(
        r#"path "database/creds/{role}" {{ capabilities = ["read"] }}
path "sys/leases/revoke" {{ capabilities = ["update"] }}"#
    )
}

/// Stores the agent policy for `role` as `agent-<role>`.
pub async fn create_agent_policy(root: &Client, role: &str) {
    root.ok(
        "PUT",
        &format!("sys/policies/acl/agent-{role}"),
        Some(json!({ "policy": agent_policy(role) })),
    )
    .await;
}

/// Enables Kubernetes auth trusting the test RSA and EC keys, with role `k8s_role` bound to
/// ServiceAccount `ns/sa`, audience `audience`, and policy `agent-<db_role>`.
pub async fn kubernetes_auth(
    root: &Client,
    k8s_role: &str,
    ns: &str,
    sa: &str,
    audience: &str,
    db_role: &str,
) {
    create_agent_policy(root, db_role).await;
    let (status, _) = root.call("GET", "auth/kubernetes/config", None).await;
    if status != 200 {
        root.ok(
            "POST",
            "sys/auth/kubernetes",
            Some(json!({"type": "kubernetes"})),
        )
        .await;
        let k = k8s::keys();
        root.ok(
            "POST",
            "auth/kubernetes/config",
            Some(json!({
                "kubernetes_host": "https://127.0.0.1:1",
                "pem_keys": [k.rsa.public_pem, k.ec.public_pem],
            })),
        )
        .await;
    }
    root.ok(
        "POST",
        &format!("auth/kubernetes/role/{k8s_role}"),
        Some(json!({
            "bound_service_account_names": [sa],
            "bound_service_account_namespaces": [ns],
            "audience": audience,
            "token_policies": [format!("agent-{db_role}")],
            "token_ttl": "1h",
        })),
    )
    .await;
}

/// Creates a token holding the agent policy for `role`.
pub async fn agent_token(root: &Client, role: &str) -> String {
    create_agent_policy(root, role).await;
    let created = root
        .ok(
            "POST",
            "auth/token/create",
            Some(json!({"policies": [format!("agent-{role}")], "ttl": "1h"})),
        )
        .await;
    created["auth"]["client_token"].as_str().unwrap().to_owned()
}

/// Polls `check` every 100 ms for up to `limit`; returns its first `Some`.
pub async fn poll<T>(limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The lease ids under `database/creds/<role>/`.
pub async fn leases(root: &Client, role: &str) -> Vec<String> {
    let (status, body) = root
        .call(
            "LIST",
            &format!("sys/leases/lookup/database/creds/{role}"),
            None,
        )
        .await;
    if status == 404 {
        return Vec::new();
    }
    body["data"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| format!("database/creds/{role}/{}", k.as_str().unwrap()))
        .collect()
}

/// `sys/leases/lookup` data, or `None` when the lease is gone.
pub async fn lookup(root: &Client, lease_id: &str) -> Option<Value> {
    let (status, body) = root
        .call(
            "PUT",
            "sys/leases/lookup",
            Some(json!({ "lease_id": lease_id })),
        )
        .await;
    (status == 200).then(|| body["data"].clone())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes an agent configuration with token-file auth for secret `database/creds/<role>`.
pub fn write_config(
    dir: &Path,
    server: &Server,
    auth: &str,
    role: &str,
    lifecycle: &str,
    listen: Option<u16>,
) -> PathBuf {
    let out = dir.join("secrets");
    let listen = listen
        .map(|p| format!("listen_address = \"127.0.0.1:{p}\"\n"))
        .unwrap_or_default();
    let marker = dir.join("reloads");
    let text = format!(
        r#"{listen}
[server]
address = "{addr}"

{auth}

[lifecycle]
{lifecycle}

[[secret]]
name = "db"
path = "database/creds/{role}"

[secret.reload]
command = ["/bin/sh", "-c", "echo reloaded >> '{marker}'"]

[[secret.output]]
type = "field"
field = "username"
path = "{out}/db-user"

[[secret.output]]
type = "field"
field = "password"
path = "{out}/db-pass"

[[secret.output]]
type = "json"
path = "{out}/db.json"
mode = "0440"

[[secret.output]]
type = "env"
prefix = "PG"
path = "{out}/db.env"

[[secret.output]]
type = "template"
path = "{out}/dsn"
template = "postgresql://{{{{ username }}}}:{{{{ password | urlquote }}}}@127.0.0.1/app"
"#,
        addr = server.addr,
        marker = marker.display(),
        out = out.display(),
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn agent_writes_renews_and_restarts_without_a_second_lease() {
    dbwarden_testkit::install_crypto_provider();
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    let server = Server::dev();
    let root = server.client();
    register(&root, pg, &db, "pg", "ro").await;
    role(&root, "app", "4s", "1h").await;
    kubernetes_auth(
        &root,
        "order-service",
        "shop",
        "order-service",
        "dbwarden",
        "app",
    )
    .await;
    // The Pod's projected ServiceAccount token, signed with the test cluster's RSA key.
    let jwt = k8s::sign(
        &k8s::keys().rsa,
        jsonwebtoken::Algorithm::RS256,
        None,
        &k8s::claims("shop", "order-service", "dbwarden", 3600),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sa-token"), &jwt).unwrap();
    let auth = format!(
        "[auto_auth]\nmethod = \"kubernetes\"\nrole = \"order-service\"\ntoken_path = \"{}\"\n\n[token_sink]\npath = \"{}\"",
        dir.path().join("sa-token").display(),
        dir.path().join("sink/token").display()
    );
    let port = free_port();
    let config = write_config(
        dir.path(),
        &server,
        &auth,
        "app",
        "jitter = 0.0",
        Some(port),
    );
    let out = dir.path().join("secrets");

    // An init container first: --once writes the files and the state, then exits 0.
    let (code, log) = Agent::start(&config, &["--once"]).wait(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{log}");
    let user = read(&out.join("db-user"));
    let pass = read(&out.join("db-pass"));
    assert!(user.contains("-app-"), "{user:?}");
    assert!(log.contains("logged in"), "{log}");
    for file in ["db-user", "db-pass", "db.env", "dsn"] {
        let mode = std::fs::metadata(out.join(file)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o400, "{file}");
    }
    assert_eq!(
        std::fs::metadata(out.join("db.json")).unwrap().mode() & 0o777,
        0o440
    );
    let state = std::fs::metadata(out.join(".dbwarden-agent-state.json")).unwrap();
    assert_eq!(state.mode() & 0o777, 0o400);
    let json: Value = serde_json::from_str(&read(&out.join("db.json"))).unwrap();
    assert_eq!(json["username"], user.as_str());
    assert!(read(&out.join("db.env")).contains(&format!("PGUSERNAME='{user}'")));
    assert!(read(&out.join("dsn")).starts_with(&format!("postgresql://{user}:")));
    let session = pg
        .connect_as(&db, &user, &pass)
        .await
        .expect("the written credentials log in");
    let row = session.query_one("SELECT v FROM t", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    let first = leases(&root, "app").await;
    assert_eq!(first.len(), 1, "{first:?}");
    let lease_id = first[0].clone();

    // The sidecar starts after the init container: it reuses the lease and renews it.
    let agent = Agent::start(&config, &[]);
    let reused_token = poll(Duration::from_secs(10), async || {
        agent
            .log()
            .contains("reusing the recorded token")
            .then_some(())
    })
    .await;
    assert!(reused_token.is_some(), "{}", agent.log());
    let renewed = poll(Duration::from_secs(15), async || {
        let data = lookup(&root, &lease_id).await?;
        data["last_renewal"].as_str().map(str::to_owned)
    })
    .await;
    assert!(renewed.is_some(), "lease never renewed: {}", agent.log());
    // Renewals keep going without a new credential.
    let before = renewed.unwrap();
    let later = poll(Duration::from_secs(10), async || {
        let data = lookup(&root, &lease_id).await?;
        let at = data["last_renewal"].as_str()?.to_owned();
        (at != before).then_some(at)
    })
    .await;
    assert!(later.is_some(), "no second renewal: {}", agent.log());
    assert_eq!(leases(&root, "app").await, vec![lease_id.clone()]);
    assert_eq!(read(&out.join("db-user")), user);
    assert!(
        !dir.path().join("reloads").exists(),
        "nothing changed, so no reload"
    );

    // Health and metrics.
    let http = reqwest::Client::new();
    let health = http
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let body: Value = health.json().await.unwrap();
    assert_eq!(body["status"], "ok", "{body}");
    let metrics = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("dbwarden_agent_lease_renewals_total"),
        "{metrics}"
    );
    assert!(metrics.contains("dbwarden_agent_leases_reused_total"));

    // A restart reuses the lease again.
    let log = agent.stop();
    let agent = Agent::start(&config, &[]);
    let reused = poll(Duration::from_secs(10), async || {
        agent
            .log()
            .matches("reusing the recorded lease")
            .nth(1)
            .map(drop)
    })
    .await;
    assert!(reused.is_some(), "{}", agent.log());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(leases(&root, "app").await, vec![lease_id.clone()]);
    assert_eq!(read(&out.join("db-user")), user);
    let log = format!("{log}{}", agent.stop());
    assert!(!log.contains(&pass), "password in the agent log");
    assert!(!log.contains(&jwt), "ServiceAccount token in the agent log");
    let state: Value =
        serde_json::from_str(&read(&out.join(".dbwarden-agent-state.json"))).unwrap();
    let token = state["token"].as_str().unwrap();
    assert!(!log.contains(token), "token in the agent log");
    // The token sink holds the same token, mode 0400.
    let sink = dir.path().join("sink/token");
    assert_eq!(read(&sink), token);
    assert_eq!(std::fs::metadata(&sink).unwrap().mode() & 0o777, 0o400);
}

#[test]
fn bad_agent_configuration_exits_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "[server]\naddress = \"http://127.0.0.1:1\"\n[auto_auth]\nmethod = \"kubernetes\"\nrole = \"r\"\nrol = \"typo\"\n",
    )
    .unwrap();
    let (code, _, stderr) =
        crate::support::run_cli(&["agent", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("rol"), "{stderr}");
    let (code, _, stderr) = crate::support::run_cli(&["agent", "--config", "/nonexistent.toml"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("/nonexistent.toml"), "{stderr}");
}

#[tokio::test]
async fn agent_replaces_credentials_before_max_ttl_reloads_and_revokes_the_old() {
    dbwarden_testkit::install_crypto_provider();
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    let server = Server::dev();
    let root = server.client();
    register(&root, pg, &db, "pg", "ro").await;
    // Renewals every ~1.2 s; the max is noticed about 10 s in, with ~5 s left; new
    // credentials after 30% of that; the old lease revoked 1 s later, well before its max.
    role(&root, "short", "6s", "15s").await;
    // AppRole auth this time.
    create_agent_policy(&root, "short").await;
    root.ok("POST", "sys/auth/approle", Some(json!({"type": "approle"})))
        .await;
    root.ok(
        "POST",
        "auth/approle/role/agent",
        Some(json!({"token_policies": ["agent-short"], "token_ttl": "1h"})),
    )
    .await;
    let role_id = root
        .ok("GET", "auth/approle/role/agent/role-id", None)
        .await["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret_id = root
        .ok("POST", "auth/approle/role/agent/secret-id", None)
        .await["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("role-id"), &role_id).unwrap();
    std::fs::write(dir.path().join("secret-id"), &secret_id).unwrap();
    let auth = format!(
        "[auto_auth]\nmethod = \"approle\"\nrole_id_file = \"{}\"\nsecret_id_file = \"{}\"",
        dir.path().join("role-id").display(),
        dir.path().join("secret-id").display()
    );
    let lifecycle =
        "renew_fraction = 0.2\njitter = 0.0\nrotate_threshold = 0.3\nrevoke_grace = \"1s\"";
    let config = write_config(dir.path(), &server, &auth, "short", lifecycle, None);
    let out = dir.path().join("secrets");
    let agent = Agent::start(&config, &[]);
    let old_user = poll(Duration::from_secs(15), async || {
        Some(read(&out.join("db-user"))).filter(|u| !u.is_empty())
    })
    .await
    .unwrap_or_else(|| panic!("no files: {}", agent.log()));
    let old_pass = read(&out.join("db-pass"));
    let old_lease = leases(&root, "short").await.pop().unwrap();
    let old_expire_max = lookup(&root, &old_lease).await.unwrap();
    let issued =
        chrono::DateTime::parse_from_rfc3339(old_expire_max["issue_time"].as_str().unwrap())
            .unwrap();
    let max_end = issued + chrono::Duration::seconds(15);

    // New credentials appear while the old lease is still alive.
    let new_user = poll(Duration::from_secs(25), async || {
        let user = read(&out.join("db-user"));
        (!user.is_empty() && user != old_user).then_some(user)
    })
    .await
    .unwrap_or_else(|| panic!("no rotation: {}", agent.log()));
    let rotated_at = chrono::Utc::now();
    assert!(
        rotated_at < max_end,
        "rotated at {rotated_at}, max {max_end}"
    );
    assert!(
        lookup(&root, &old_lease).await.is_some(),
        "the old lease must still be valid when the new one is written"
    );
    let new_pass = read(&out.join("db-pass"));
    pg.connect_as(&db, &new_user, &new_pass)
        .await
        .expect("new credentials log in");
    // The reload command ran.
    let reloaded = poll(Duration::from_secs(5), async || {
        read(&dir.path().join("reloads"))
            .contains("reloaded")
            .then_some(())
    })
    .await;
    assert!(reloaded.is_some(), "{}", agent.log());

    // The agent revokes the old lease after the grace period, before its max TTL.
    let gone = poll(Duration::from_secs(10), async || {
        lookup(&root, &old_lease)
            .await
            .is_none()
            .then(chrono::Utc::now)
    })
    .await
    .unwrap_or_else(|| panic!("old lease not revoked: {}", agent.log()));
    assert!(
        gone < max_end,
        "revoked at {gone}, only by expiry at {max_end}"
    );
    assert!(agent.log().contains("old lease revoked"), "{}", agent.log());
    assert!(
        pg.connect_as(&db, &old_user, &old_pass).await.is_err(),
        "the old user must be dropped"
    );
    assert_eq!(leases(&root, "short").await.len(), 1);
    let log = agent.stop();
    if std::env::var_os("SHOW_AGENT_LOG").is_some() {
        eprintln!("{log}");
    }
    for secret in [&old_pass, &new_pass, &secret_id] {
        assert!(!log.contains(secret.as_str()), "secret in the agent log");
    }
}

#[tokio::test]
async fn a_new_token_in_the_token_file_brings_new_credentials() {
    dbwarden_testkit::install_crypto_provider();
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    let server = Server::dev();
    let root = server.client();
    register(&root, pg, &db, "pg", "ro").await;
    role(&root, "tf", "1h", "2h").await;
    let first_token = agent_token(&root, "tf").await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &first_token).unwrap();
    let auth = format!(
        "[auto_auth]\nmethod = \"token_file\"\npath = \"{}\"",
        token_file.display()
    );
    let lifecycle = "token_file_poll = \"200ms\"\nrevoke_grace = \"0s\"";
    let config = write_config(dir.path(), &server, &auth, "tf", lifecycle, None);
    let out = dir.path().join("secrets");
    let agent = Agent::start(&config, &[]);
    let old_user = poll(Duration::from_secs(15), async || {
        Some(read(&out.join("db-user"))).filter(|u| !u.is_empty())
    })
    .await
    .unwrap_or_else(|| panic!("no files: {}", agent.log()));
    let old_lease = leases(&root, "tf").await.pop().unwrap();
    // The operator puts a new token in the file.
    let second_token = agent_token(&root, "tf").await;
    std::fs::write(&token_file, &second_token).unwrap();
    let new_user = poll(Duration::from_secs(15), async || {
        let user = read(&out.join("db-user"));
        (user != old_user).then_some(user)
    })
    .await
    .unwrap_or_else(|| panic!("no new credentials: {}", agent.log()));
    assert!(new_user.contains("-tf-"));
    assert!(
        poll(Duration::from_secs(10), async || lookup(&root, &old_lease)
            .await
            .is_none()
            .then_some(()))
        .await
        .is_some(),
        "the old lease is revoked: {}",
        agent.log()
    );
    assert!(read(&dir.path().join("reloads")).contains("reloaded"));
    let log = agent.stop();
    assert!(log.contains("the token file changed"), "{log}");
    assert!(!log.contains(&second_token) && !log.contains(&first_token));
}

#[tokio::test]
async fn static_credentials_are_read_again_after_each_rotation() {
    dbwarden_testkit::install_crypto_provider();
    let pg = TempPostgres::shared();
    let db = prepare_db(pg).await;
    let account = dbwarden_testkit::unique_name("static_");
    pg.connect("postgres")
        .await
        .batch_execute(&format!(
            "CREATE ROLE {account} WITH LOGIN PASSWORD 'Initial-{account}'"
        ))
        .await
        .unwrap();
    let server = Server::dev();
    let root = server.client();
    register(&root, pg, &db, "pg", "ro").await;
    root.ok(
        "POST",
        "database/static-roles/acct",
        Some(json!({"db_name": "pg", "username": account, "rotation_period": "5s"})),
    )
    .await;
    root.ok(
        "PUT",
        "sys/policies/acl/agent-static",
        Some(
            json!({"policy": "path \"database/static-creds/acct\" { capabilities = [\"read\"] }"}),
        ),
    )
    .await;
    let token = root
        .ok(
            "POST",
            "auth/token/create",
            Some(json!({"policies": ["agent-static"], "ttl": "1h"})),
        )
        .await["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), &token).unwrap();
    let out = dir.path().join("secrets");
    let marker = dir.path().join("reloads");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
address = "{addr}"
[auto_auth]
method = "token_file"
path = "{token}"
[[secret]]
name = "static"
path = "database/static-creds/acct"
[secret.reload]
command = ["/bin/sh", "-c", "echo reloaded >> '{marker}'"]
[[secret.output]]
type = "field"
field = "password"
path = "{out}/db-pass"
"#,
            addr = server.addr,
            token = dir.path().join("token").display(),
            marker = marker.display(),
            out = out.display(),
        ),
    )
    .unwrap();
    let agent = Agent::start(&config, &[]);
    let first = poll(Duration::from_secs(15), async || {
        Some(read(&out.join("db-pass"))).filter(|p| !p.is_empty())
    })
    .await
    .unwrap_or_else(|| panic!("no file: {}", agent.log()));
    pg.connect_as(&db, &account, &first)
        .await
        .expect("the static password logs in");
    // The 5 s rotation changes the password; the agent reads it a second later.
    let second = poll(Duration::from_secs(20), async || {
        let p = read(&out.join("db-pass"));
        (!p.is_empty() && p != first).then_some(p)
    })
    .await
    .unwrap_or_else(|| panic!("the rotated password never arrived: {}", agent.log()));
    pg.connect_as(&db, &account, &second)
        .await
        .expect("the rotated password logs in");
    let reloaded = poll(Duration::from_secs(5), async || {
        read(&marker).contains("reloaded").then_some(())
    })
    .await;
    assert!(reloaded.is_some(), "{}", agent.log());
    let log = agent.stop();
    assert!(!log.contains(&first) && !log.contains(&second) && !log.contains(&token));
}
